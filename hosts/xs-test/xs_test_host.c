/*
 * lockstep-xs-test: a small program embedding the real XS engine (C sources
 * of the npm package @agoric/xsnap, version pinned in package.json; its
 * platform layer xsnapPlatform.c supplies the job queue and file loading),
 * linked with the native module hosts/moddable/native (mbedTLS backend).
 *
 * It runs one script (a bundled ES2022 Script, not a module) and gives it:
 *   print(...values)                 one line on stdout
 *   xsTest.gc()                      a full garbage collection
 *   xsTest.heapStats()               { chunkBytes, slotCount, slotBytes, peakChunkBytes, peakSlotCount }
 *   xsTest.setExitCode(n)            this process's exit status
 *   xsTest.callgrindToggle()         start/stop callgrind event collection (no-op outside callgrind)
 *   xsTest.callgrindDump(label)      write a callgrind profile part named `label`
 *   xsTest.args                      the command-line arguments after the script path
 *   xs_lockstep_aead_seal/_open/_random/_cbc/_hmac/_x25519_public/_x25519/_hkdf
 *                                    the native module under its native names
 * No console, timers, clock or crypto: the portable core must not need them.
 *
 * Exit status: the last setExitCode value (0 by default); 70 when the script
 * throws or XS aborts (memory full, stack overflow); 64 on a usage error.
 */
#include "xsAll.h"
#include "xs.h"

#if defined(__has_include)
#if __has_include(<valgrind/callgrind.h>)
#include <valgrind/callgrind.h>
#define HAVE_CALLGRIND 1
#endif
#endif

#define EXIT_USAGE 64
#define EXIT_SOFTWARE 70

extern void fxRunProgramFile(txMachine *the, txString path);
extern void fxRunLoop(txMachine *the);

extern void xs_lockstep_aead_seal(xsMachine *the);
extern void xs_lockstep_aead_open(xsMachine *the);
extern void xs_lockstep_aead_random(xsMachine *the);
extern void xs_lockstep_aead_cbc(xsMachine *the);
extern void xs_lockstep_aead_hmac(xsMachine *the);
extern void xs_lockstep_aead_x25519_public(xsMachine *the);
extern void xs_lockstep_aead_x25519(xsMachine *the);
extern void xs_lockstep_aead_hkdf(xsMachine *the);

static int gExitCode = 0;

static void xs_test_print(xsMachine *the)
{
	xsIntegerValue count = xsToInteger(xsArgc), i;
	for (i = 0; i < count; i++) {
		if (i)
			fputc(' ', stdout);
		fputs(xsToString(xsArg(i)), stdout);
	}
	fputc('\n', stdout);
	fflush(stdout);
}

static void xs_test_gc(xsMachine *the)
{
	xsCollectGarbage();
}

static void xs_test_heap_stats(xsMachine *the)
{
	xsVars(1);
	xsResult = xsNewObject();
	xsVar(0) = xsInteger(the->currentChunksSize);
	xsSet(xsResult, xsID("chunkBytes"), xsVar(0));
	xsVar(0) = xsInteger(the->currentHeapCount);
	xsSet(xsResult, xsID("slotCount"), xsVar(0));
	xsVar(0) = xsInteger((xsIntegerValue)sizeof(txSlot));
	xsSet(xsResult, xsID("slotBytes"), xsVar(0));
	xsVar(0) = xsInteger(the->peakChunksSize);
	xsSet(xsResult, xsID("peakChunkBytes"), xsVar(0));
	xsVar(0) = xsInteger(the->peakHeapCount);
	xsSet(xsResult, xsID("peakSlotCount"), xsVar(0));
}

static void xs_test_set_exit_code(xsMachine *the)
{
	gExitCode = xsToInteger(xsArg(0));
}

static void xs_test_callgrind_toggle(xsMachine *the)
{
#ifdef HAVE_CALLGRIND
	CALLGRIND_TOGGLE_COLLECT;
#endif
}

static void xs_test_callgrind_dump(xsMachine *the)
{
#ifdef HAVE_CALLGRIND
	CALLGRIND_DUMP_STATS_AT(xsToString(xsArg(0)));
#endif
}

static void define_function(xsMachine *the, xsSlot target, char *name, xsCallback callback, xsIntegerValue length)
{
	xsResult = xsNewHostFunction(callback, length);
	xsDefine(target, xsID(name), xsResult, xsDontEnum);
}

int main(int argc, char *argv[])
{
	xsCreation creation = {
		.initialChunkSize = 4 * 1024 * 1024,
		.incrementalChunkSize = 1024 * 1024,
		.initialHeapCount = 64 * 1024,
		.incrementalHeapCount = 32 * 1024,
		.stackCount = 4096,
		.initialKeyCount = 32000,
		.incrementalKeyCount = 8000,
		.nameModulo = 1993,
		.symbolModulo = 127,
		.parserBufferSize = 8 * 1024 * 1024,
		.parserTableModulo = 1993,
		.staticSize = 0,
	};
	char path[C_PATH_MAX];
	xsMachine *machine;
	int status;
	int i;

	if (argc < 2) {
		fprintf(stderr, "usage: %s <script.js> [arguments...]\n", argv[0]);
		return EXIT_USAGE;
	}
	if (!c_realpath(argv[1], path)) {
		fprintf(stderr, "%s: cannot find %s\n", argv[0], argv[1]);
		return EXIT_USAGE;
	}

	fxInitializeSharedCluster();
	machine = xsCreateMachine(&creation, "lockstep-xs-test", NULL);
	xsBeginHost(machine);
	{
		xsVars(2);
		xsTry {
			define_function(the, xsGlobal, "print", xs_test_print, 1);
			define_function(the, xsGlobal, "xs_lockstep_aead_seal", xs_lockstep_aead_seal, 4);
			define_function(the, xsGlobal, "xs_lockstep_aead_open", xs_lockstep_aead_open, 5);
			define_function(the, xsGlobal, "xs_lockstep_aead_random", xs_lockstep_aead_random, 1);
			define_function(the, xsGlobal, "xs_lockstep_aead_cbc", xs_lockstep_aead_cbc, 4);
			define_function(the, xsGlobal, "xs_lockstep_aead_hmac", xs_lockstep_aead_hmac, 1);
			define_function(the, xsGlobal, "xs_lockstep_aead_x25519_public", xs_lockstep_aead_x25519_public, 1);
			define_function(the, xsGlobal, "xs_lockstep_aead_x25519", xs_lockstep_aead_x25519, 2);
			define_function(the, xsGlobal, "xs_lockstep_aead_hkdf", xs_lockstep_aead_hkdf, 4);
			xsVar(1) = xsNewObject();
			define_function(the, xsVar(1), "gc", xs_test_gc, 0);
			define_function(the, xsVar(1), "heapStats", xs_test_heap_stats, 0);
			define_function(the, xsVar(1), "setExitCode", xs_test_set_exit_code, 1);
			define_function(the, xsVar(1), "callgrindToggle", xs_test_callgrind_toggle, 0);
			define_function(the, xsVar(1), "callgrindDump", xs_test_callgrind_dump, 1);
			xsVar(0) = xsNewArray(0);
			for (i = 2; i < argc; i++) {
				xsResult = xsString(argv[i]);
				xsCall1(xsVar(0), xsID("push"), xsResult);
			}
			xsDefine(xsVar(1), xsID("args"), xsVar(0), xsDontEnum);
			xsDefine(xsGlobal, xsID("xsTest"), xsVar(1), xsDontEnum);

			fxRunProgramFile(the, path);
			fxRunLoop(the);
		}
		xsCatch {
			fprintf(stderr, "lockstep-xs-test: uncaught exception: %s\n", xsToString(xsException));
			gExitCode = EXIT_SOFTWARE;
		}
	}
	xsEndHost(machine);

	status = machine->abortStatus ? EXIT_SOFTWARE : gExitCode;
	xsDeleteMachine(machine);
	fxTerminateSharedCluster();
	return status;
}
