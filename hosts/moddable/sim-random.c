/*
 * Secure random bytes for the simulator, from the host OS.
 *   fillRandom(bytes: Uint8Array): void
 * Linux: getrandom(2), retried on EINTR and short reads (it blocks only
 * until the kernel pool is first initialised). macOS: arc4random_buf(3).
 * Windows: rand_s (RtlGenRandom), 4 bytes at a time.
 * The buffer pointer is fetched once and nothing allocates on the XS heap
 * afterwards, so it stays valid (modules/crypt/bin/bin.c pattern).
 */
#if defined(_WIN32)
	#define _CRT_RAND_S
	#include <stdlib.h>
#elif defined(__APPLE__)
	#include <stdlib.h>
#else
	#include <errno.h>
	#include <sys/random.h>
#endif

#include "xsmc.h"
#include "xsHost.h"

void xs_lockstep_sim_random_fill(xsMachine *the)
{
	void *data;
	xsUnsignedValue length;
	uint8_t *bytes;

	xsmcGetBufferWritable(xsArg(0), &data, &length);
	bytes = data;

#if defined(_WIN32)
	while (length > 0) {
		unsigned int word, i;
		if (rand_s(&word) != 0)
			xsUnknownError("sim-random: rand_s failed");
		for (i = 0; (i < 4) && (length > 0); i++, length--) {
			*bytes++ = (uint8_t)word;
			word >>= 8;
		}
	}
#elif defined(__APPLE__)
	arc4random_buf(bytes, length);
#else
	while (length > 0) {
		ssize_t got = getrandom(bytes, length, 0);
		if (got < 0) {
			if (errno == EINTR)
				continue;
			xsUnknownError("sim-random: getrandom failed");
		}
		bytes += got;
		length -= (xsUnsignedValue)got;
	}
#endif
}
