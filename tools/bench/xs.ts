/**
 * XS benchmark (issue 6): on the XS test host (hosts/xs-test, release build),
 *  1. the instructions one seal and one open of 64 B and 1 KiB cost through
 *     the native module versus the same AEAD in pure JS (@noble/ciphers +
 *     @noble/hashes composed by modules/crypto/a256cbc-hs512.ts), counted by
 *     `valgrind --tool=callgrind` (instruction counts are the steadiest
 *     measure on a shared machine); goal: native >= 20x cheaper at 1 KiB;
 *  2. the XS heap the device core retains in steady state; goal <= 32 KiB;
 *  3. the instructions of one DH rotation's device-side primitives (X25519
 *     public key + X25519 + HKDF-SHA-512, docs/PROTOCOL.md §11.3) through the
 *     native module (Debian's mbedTLS here) versus @noble on XS;
 *  4. the instructions of one recovery handshake's device side
 *     (deviceRecoveryInit + deviceRecoveryReply + recoveryFinishFrame +
 *     verifyRecoveryResult, docs/PROTOCOL.md §12.3), native versus @noble, in
 *     the same run as 3, as ratios to a dh rotation; and the heap the
 *     handshake's state holds between the device's messages.
 * Prints figures only; asserts nothing. `export async function run()` is
 * called by tools/bench/index.ts; `tsx tools/bench/xs.ts` runs it alone.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildHost, bundle, runOnHost } from '../../hosts/xs-test/build';

const NATIVE_ITERATIONS = 200;
const NOBLE_ITERATIONS = 10;
const DH_NATIVE_ITERATIONS = 20;
const DH_NOBLE_ITERATIONS = 2;
const RECOVERY_NATIVE_ITERATIONS = 10;
const RECOVERY_NOBLE_ITERATIONS = 1;
const SPEEDUP_GOAL = 20;
const HEAP_GOAL_BYTES = 32 * 1024;
const REDIRECTS = {
  'hosts/node/crypto': 'tests/xs/support/node-crypto-on-xs.ts',
  'hosts/node/key-agreement': 'tests/xs/support/node-key-agreement-on-xs.ts',
};

interface Measurement {
  impl: string;
  op: string;
  bytes: number;
  iterations: number;
  instructions: number;
}

/** Reads every callgrind dump part: its trigger label and total instruction count (Ir). */
function readDumps(directory: string): Measurement[] {
  const out: Measurement[] = [];
  for (const name of readdirSync(directory)) {
    if (!name.startsWith('callgrind.out')) continue;
    const text = readFileSync(join(directory, name), 'utf8');
    const label = /^desc: Trigger: Client Request: (.*)$/m.exec(text)?.[1];
    const total = /^(?:totals|summary): (\d+)/m.exec(text)?.[1];
    const parts = label === undefined ? null : /^(\w+) (seal|open|dh|recovery) (\d+) x(\d+)$/.exec(label.trim());
    if (parts === null || total === undefined) continue;
    out.push({
      impl: parts[1]!,
      op: parts[2]!,
      bytes: Number(parts[3]),
      iterations: Number(parts[4]),
      instructions: Number(total),
    });
  }
  return out;
}

function perOperation(measurements: Measurement[], impl: string, op: string, bytes: number): number | undefined {
  const m = measurements.find((x) => x.impl === impl && x.op === op && x.bytes === bytes);
  return m === undefined ? undefined : m.instructions / m.iterations;
}

function formatCount(value: number | undefined): string {
  return value === undefined ? 'n/a' : Math.round(value).toLocaleString('en-US');
}

function hasValgrind(): boolean {
  return spawnSync('valgrind', ['--version'], { encoding: 'utf8' }).status === 0;
}

/** Runs the bench program's `mode` under callgrind and returns its dumps. */
function callgrind(program: string, script: string, args: string[]): Measurement[] {
  const directory = mkdtempSync(join(tmpdir(), 'lockstep-callgrind-'));
  try {
    const result = runOnHost(program, script, args, [
      'valgrind',
      '--tool=callgrind',
      '--collect-atstart=no',
      `--callgrind-out-file=${join(directory, 'callgrind.out')}`,
    ]);
    if (result.status !== 0) throw new Error(`xs bench: callgrind run failed (${result.status}):\n${result.stdout}${result.stderr}`);
    return readDumps(directory);
  } finally {
    rmSync(directory, { recursive: true, force: true });
  }
}

function benchDh(program: string, script: string, withRecovery: boolean): void {
  if (!hasValgrind()) {
    console.log('xs bench: valgrind is not installed; skipping the instruction counts (apt-get install valgrind)');
    return;
  }
  const measurements = callgrind(program, script, ['dh', String(DH_NATIVE_ITERATIONS), String(DH_NOBLE_ITERATIONS)]);
  const native = perOperation(measurements, 'native', 'dh', 0);
  const noble = perOperation(measurements, 'noble', 'dh', 0);
  console.log('DH rotation on XS, device side (x25519PublicKey + x25519 + hkdfSha512 to 64 B), instructions per rotation (callgrind Ir):');
  console.log(
    `  native (mbedTLS 2.28 ECP, Linux x86-64) ${formatCount(native)}; @noble on XS ${formatCount(noble)}; ` +
      `noble/native ${native && noble ? `${(noble / native).toFixed(1)}x` : 'n/a'} ` +
      `(${DH_NATIVE_ITERATIONS} and ${DH_NOBLE_ITERATIONS} rotations; on the ESP32 the native module runs PSA: docs/NATIVE.md §7)`,
  );
  if (withRecovery) printRecovery(callgrind(program, script, ['recovery', String(RECOVERY_NATIVE_ITERATIONS), String(RECOVERY_NOBLE_ITERATIONS)]), native, noble);
}


/** The recovery handshake's device side, against the dh rotation measured just before (§12.3). */
function printRecovery(measurements: Measurement[], dhNative: number | undefined, dhNoble: number | undefined): void {
  const native = perOperation(measurements, 'native', 'recovery', 0);
  const noble = perOperation(measurements, 'noble', 'recovery', 0);
  const ratio = (a: number | undefined, b: number | undefined) => (a && b ? `${(a / b).toFixed(1)}x` : 'n/a');
  console.log('Recovery handshake on XS, device side (deviceRecoveryInit + deviceRecoveryReply + recoveryFinishFrame + verifyRecoveryResult), instructions per handshake (callgrind Ir):');
  console.log(
    `  native ${formatCount(native)}; @noble on XS ${formatCount(noble)}; noble/native ${ratio(noble, native)} ` +
      `(${RECOVERY_NATIVE_ITERATIONS} and ${RECOVERY_NOBLE_ITERATIONS} handshakes; the hub's side runs outside the window)`,
  );
  console.log(`  one recovery = ${ratio(native, dhNative)} a dh rotation's device primitives on the native module, ${ratio(noble, dhNoble)} on @noble (5 X25519 and 7 HKDFs against 2 and 1)`);
}

function benchRecoveryHeap(program: string, script: string): void {
  const result = runOnHost(program, script, ['recovery-heap']);
  if (result.status !== 0) throw new Error(`xs bench: recovery heap run failed (${result.status}):\n${result.stdout}${result.stderr}`);
  const heap = JSON.parse(result.stdout.trim().split('\n').pop() ?? '{}') as {
    slotBytesHere: number;
    afterInitBytesHere: number;
    afterInitSlots: number;
    afterInitChunkBytes: number;
    afterReplyBytesHere: number;
    afterReplySlots: number;
    afterReplyChunkBytes: number;
  };
  const esp32 = (slots: number, chunks: number) => chunks + slots * 16;
  console.log('Recovery handshake state on XS, device side (full GC before each reading):');
  console.log(
    `  between RECOVER_INIT and RECOVER_REPLY (the INIT frame, e_d, k1): ${heap.afterInitSlots} slots + ${heap.afterInitChunkBytes} chunk bytes = ${heap.afterInitBytesHere} bytes here, ` +
      `~${esp32(heap.afterInitSlots, heap.afterInitChunkBytes)} on the ESP32 (16-byte slots)`,
  );
  console.log(
    `  between RECOVER_FINISH and RECOVER_RESULT (MAC key, K_N, the FINISH frame): ${heap.afterReplySlots} slots + ${heap.afterReplyChunkBytes} chunk bytes = ${heap.afterReplyBytesHere} bytes here, ` +
      `~${esp32(heap.afterReplySlots, heap.afterReplyChunkBytes)} on the ESP32`,
  );
}

function benchAead(program: string, script: string): void {
  if (!hasValgrind()) {
    console.log('xs bench: valgrind is not installed; skipping the instruction counts (apt-get install valgrind)');
    return;
  }
  {
    const measurements = callgrind(program, script, ['aead', String(NATIVE_ITERATIONS), String(NOBLE_ITERATIONS)]);
    console.log('A256CBC-HS512 on XS, instructions per operation (callgrind Ir, including the JS call):');
    console.log('  size    op     native          @noble (pure JS)   noble/native');
    for (const bytes of [64, 1024]) {
      for (const op of ['seal', 'open']) {
        const native = perOperation(measurements, 'native', op, bytes);
        const noble = perOperation(measurements, 'noble', op, bytes);
        const ratio = native && noble ? `${(noble / native).toFixed(1)}x` : 'n/a';
        console.log(`  ${String(bytes).padEnd(6)}  ${op}   ${formatCount(native).padStart(12)}   ${formatCount(noble).padStart(16)}   ${ratio.padStart(10)}`);
      }
    }
    const nativeKiB = (perOperation(measurements, 'native', 'seal', 1024) ?? NaN) + (perOperation(measurements, 'native', 'open', 1024) ?? NaN);
    const nobleKiB = (perOperation(measurements, 'noble', 'seal', 1024) ?? NaN) + (perOperation(measurements, 'noble', 'open', 1024) ?? NaN);
    const speedup = nobleKiB / nativeKiB;
    console.log(
      `  seal+open 1 KiB: native ${formatCount(nativeKiB)}, @noble ${formatCount(nobleKiB)}: ` +
        `native is ${speedup.toFixed(1)}x cheaper (goal >= ${SPEEDUP_GOAL}x: ${speedup >= SPEEDUP_GOAL ? 'met' : 'NOT met'})`,
    );
  }
}

function benchHeap(program: string, script: string): void {
  const result = runOnHost(program, script, ['heap']);
  if (result.status !== 0) throw new Error(`xs bench: heap run failed (${result.status}):\n${result.stdout}${result.stderr}`);
  const line = result.stdout.trim().split('\n').pop() ?? '{}';
  const heap = JSON.parse(line) as {
    deviceSlots: number;
    deviceChunkBytes: number;
    slotBytesHere: number;
    deviceHeapBytesHere: number;
    deviceHeapBytesEsp32Estimate: number;
    freshDeviceHeapBytesHere: number;
    midRekeyExtraBytesHere: number;
  };
  console.log('Device core XS heap in steady state (dh mode, native X25519; after 20 rotations with data both ways, full GC):');
  console.log(
    `  ${heap.deviceSlots} slots + ${heap.deviceChunkBytes} chunk bytes = ${heap.deviceHeapBytesHere} bytes on this 64-bit host ` +
      `(${heap.slotBytesHere}-byte slots); ESP32 estimate with 16-byte slots: ${heap.deviceHeapBytesEsp32Estimate} bytes ` +
      `(goal <= ${HEAP_GOAL_BYTES}: ${heap.deviceHeapBytesHere <= HEAP_GOAL_BYTES ? 'met even at 64-bit sizes' : heap.deviceHeapBytesEsp32Estimate <= HEAP_GOAL_BYTES ? 'met on the ESP32 estimate' : 'NOT met'})`,
  );
  console.log(`  (a freshly constructed, offline core: ${heap.freshDeviceHeapBytesHere} bytes on this host)`);
  console.log(`  in the middle of a dh rekey (future key and both shares held, before the promotion): +${heap.midRekeyExtraBytesHere} bytes over the steady state (whole program, an upper bound for the device)`);
}

export async function run(): Promise<void> {
  const program = buildHost('release').mbedtls;
  const script = await bundle('tools/bench/xs-program.ts', 'bench', { redirects: REDIRECTS });
  benchDh(program, script, true);
  benchRecoveryHeap(program, script);
  benchAead(program, script);
  benchHeap(program, script);
}

/** `npm run bench -- recovery` runs this part: the dh rotation and the recovery handshake on XS, in one run. */
export async function runRecovery(): Promise<void> {
  const program = buildHost('release').mbedtls;
  const script = await bundle('tools/bench/xs-program.ts', 'bench', { redirects: REDIRECTS });
  benchDh(program, script, true);
  benchRecoveryHeap(program, script);
}

if (process.argv[1] !== undefined && /tools[\\/]bench[\\/]xs\.ts$/.test(process.argv[1])) {
  run().catch((error: unknown) => {
    console.error(error instanceof Error ? error.message : String(error));
    process.exitCode = 1;
  });
}
