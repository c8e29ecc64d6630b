/**
 * `npm run bench -- dh`: the cost of the dh rekey mode (docs/PROTOCOL.md
 * §11) on the hub, against the classic mode in the same run: rotations/s and
 * hub CPU per rotation with the same number of rotations in flight, in
 * interleaved windows (classic, dh, classic, dh) over devices of each mode
 * connected at once from a separate swarm process; and the bytes each mode
 * puts on the wire per rotation, measured by sealing the frames with the
 * real codec.
 *
 * Goal (issue): >= 2,000 dh rotations/s on 2 cores. Environment:
 * LOCKSTEP_BENCH_DH_DEVICES (per mode, default 1000), LOCKSTEP_BENCH_DH_WINDOW_S
 * (default 5), LOCKSTEP_BENCH_DH_IN_FLIGHT (default 256).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { nodeAead } from '../../hosts/node/crypto';
import { nodeKeyAgreement } from '../../hosts/node/key-agreement';
import { deriveRekeyKey, drawEphemeral } from '../../modules/crypto/dh-rekey';
import type { RekeyMode } from '../../modules/platform/keys';
import { MessageType } from '../../modules/protocol/constants';
import { sealFrame } from '../../modules/protocol/frame';
import { withLengthPrefix } from '../../modules/protocol/framing';
import type { Message } from '../../modules/protocol/messages';
import { bundleProgram, childEnv } from '../demo/hub-process';
import type { SwarmConfig } from '../demo/swarm';
import { newDeviceRecord, toHubRecordJson, type DeviceRecord } from '../hub/records';
import { LockstepHub } from '../hub/server';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export async function run(): Promise<void> {
  const perMode = Number(process.env.LOCKSTEP_BENCH_DH_DEVICES ?? 1000);
  const windowMs = Number(process.env.LOCKSTEP_BENCH_DH_WINDOW_S ?? 5) * 1000;
  const level = Number(process.env.LOCKSTEP_BENCH_DH_IN_FLIGHT ?? 256);
  console.log(`\n== DH rekey mode vs classic on the hub: ${perMode} devices per mode, ${level} rotations in flight; goal >= 2,000 dh rotations/s ==`);
  printWireBytes();
  const rotations = await measureHubRotations({ perMode, windowMs, level });
  console.log('mode      rotations/s (2 windows)     hub CPU ms/rotation');
  for (const mode of ['classic', 'dh'] as const) {
    const windows = rotations[mode];
    console.log(`${mode.padEnd(9)} ${windows.windows.map((r) => r.rate.toFixed(0).padStart(6)).join(' ')}  mean ${windows.rate.toFixed(0).padStart(6)}     ${windows.cpuMs.toFixed(3)}`);
  }
  console.log(
    `ratio dh / classic: rotations/s ${(rotations.dh.rate / rotations.classic.rate).toFixed(2)}×, hub CPU per rotation ${(rotations.dh.cpuMs / rotations.classic.cpuMs).toFixed(2)}× ` +
      `(the swarm's devices run on the same 2 cores and pay their own X25519)`,
  );
  printPrimitiveCost();
}

export interface RotationWindow {
  /** Rotations completed per second in the window. */
  readonly rate: number;
  /** The hub process's CPU (user + system) per completed rotation, in ms. */
  readonly cpuMs: number;
}

export type HubRotationCost = Record<RekeyMode, { readonly windows: readonly RotationWindow[]; readonly rate: number; readonly cpuMs: number }>;

/**
 * The hub's rotations/s and CPU per rotation of each mode, `level` rotations
 * in flight, in interleaved windows (classic, dh, classic, dh) over
 * `perMode` devices of each mode connected at once from a swarm process.
 * Also used by `npm run bench -- recovery` (tools/bench/recovery.ts).
 */
export async function measureHubRotations(options: { perMode: number; windowMs: number; level: number }): Promise<HubRotationCost> {
  const { perMode, windowMs, level } = options;
  const dir = mkdtempSync(join(tmpdir(), 'lockstep-bench-dh-'));
  let swarm: ChildProcess | undefined;
  let hub: LockstepHub | undefined;
  try {
    const records: DeviceRecord[] = [];
    for (const mode of ['classic', 'dh'] as const) for (let i = 0; i < perMode; i++) records.push(newDeviceRecord(1, mode));
    hub = await LockstepHub.start({ database: join(dir, 'hub.db'), tcp: { port: 0 }, limits: { maxConnections: records.length + 100 } });
    for (const record of records) hub.provision(record);
    const recordsPath = join(dir, 'records.jsonl');
    writeFileSync(recordsPath, records.map((r) => JSON.stringify(toHubRecordJson(r))).join('\n'));
    const config: SwarmConfig = { recordsPath, host: '127.0.0.1', port: hub.addresses[0]?.port as number, maxConnecting: 400 };
    let connected = false;
    swarm = spawn(process.execPath, [bundleProgram('tools/demo/swarm.ts'), JSON.stringify(config)], { stdio: ['pipe', 'pipe', 'inherit'], env: childEnv() });
    let buffer = '';
    swarm.stdout?.setEncoding('utf8');
    swarm.stdout?.on('data', (text: string) => {
      buffer += text;
      let newline: number;
      while ((newline = buffer.indexOf('\n')) >= 0) {
        const line = buffer.slice(0, newline);
        buffer = buffer.slice(newline + 1);
        if ((JSON.parse(line) as { type: string }).type === 'connected') connected = true;
      }
    });
    const deadline = Date.now() + 120_000;
    while (!connected && Date.now() < deadline) await sleep(100);
    if (!connected) throw new Error(`dh bench: only ${hub.stats().devicesOnline} of ${records.length} devices connected in 120 s`);

    const byMode: Record<RekeyMode, string[]> = { classic: [], dh: [] };
    for (const record of records) byMode[record.mode].push(record.deviceId);
    let current: RekeyMode = 'classic';
    let inFlight = 0;
    let target = 0;
    let completed = 0;
    let next = 0;
    const live = hub;
    const startMore = (): void => {
      const ids = byMode[current];
      for (let tries = 0; tries < ids.length && inFlight < target; tries++) {
        const id = ids[next++ % ids.length] as string;
        const state = live.deviceState(id);
        if (!state.connected || state.pendingKeyId !== undefined || state.persisting) continue;
        if (live.rotate(id) === 'started') inFlight++;
      }
    };
    live.on('keyConfirmed', () => {
      completed++;
      inFlight--;
      startMore();
    });
    const measure = async (mode: RekeyMode) => {
      current = mode;
      target = level;
      startMore();
      await sleep(1000);
      const done0 = completed;
      const cpu0 = process.cpuUsage();
      const t0 = performance.now();
      await sleep(windowMs);
      const seconds = (performance.now() - t0) / 1000;
      const cpu = process.cpuUsage(cpu0);
      const done = completed - done0;
      target = 0;
      const drain = Date.now() + 20_000;
      while (inFlight > 0 && Date.now() < drain) await sleep(20);
      return { rate: done / seconds, cpuMs: (cpu.user + cpu.system) / 1000 / Math.max(done, 1) };
    };
    const results: Record<RekeyMode, RotationWindow[]> = { classic: [], dh: [] };
    for (let round = 0; round < 2; round++) for (const mode of ['classic', 'dh'] as const) results[mode].push(await measure(mode));
    const mean = (mode: RekeyMode, field: 'rate' | 'cpuMs') => results[mode].reduce((sum, r) => sum + r[field], 0) / results[mode].length;
    const summary = (mode: RekeyMode) => ({ windows: results[mode], rate: mean(mode, 'rate'), cpuMs: mean(mode, 'cpuMs') });
    return { classic: summary('classic'), dh: summary('dh') };
  } finally {
    swarm?.kill('SIGTERM');
    await hub?.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Bytes on the wire per rotation (length prefixes included; TCP/TLS framing excluded), from the real codec. */
function printWireBytes(): void {
  const key = new Uint8Array(64).fill(1);
  const iv = new Uint8Array(16);
  const header = { deviceId: new Uint8Array(8), keyId: 2, sequence: 1, sessionId: new Uint8Array(16) };
  const size = (message: Message, fromHub: boolean, share?: Uint8Array) =>
    withLengthPrefix(sealFrame({ aead: nodeAead, key, iv, header: share === undefined ? { ...header, fromHub } : { ...header, fromHub, share }, message })).length;
  const share = new Uint8Array(32).fill(9);
  const classic = size({ type: MessageType.REKEY, newKeyId: 2, newKey: key }, true) + size({ type: MessageType.REKEY_ACK, newKeyId: 2 }, false) + size({ type: MessageType.CONFIRM, keyId: 2 }, true);
  const dh = size({ type: MessageType.REKEY_DH, newKeyId: 2, hubShare: share }, true) + size({ type: MessageType.REKEY_ACK, newKeyId: 2 }, false, share) + size({ type: MessageType.CONFIRM, keyId: 2 }, true);
  console.log(`bytes on the wire per rotation (REKEY + REKEY_ACK + CONFIRM): classic ${classic}, dh ${dh} (${(dh / classic).toFixed(2)}×); each later frame under a dh future key carries 32 bytes more until the device promotes`);
}

/** The primitives of one dh rotation on the hub, in isolation (node:crypto): a fresh pair, X25519 with the device's share, HKDF. */
function printPrimitiveCost(): void {
  const n = 2000;
  const previousKey = new Uint8Array(64).fill(3);
  const deviceId = new Uint8Array(8);
  const device = nodeKeyAgreement.x25519PublicKey(new Uint8Array(32).fill(5));
  const random = { fill: (bytes: Uint8Array) => bytes.set(randomBytes(bytes.length)) };
  const t0 = performance.now();
  for (let i = 0; i < n; i++) {
    const pair = drawEphemeral(nodeKeyAgreement, random);
    deriveRekeyKey(nodeKeyAgreement, { previousKey, privateKey: pair.privateKey, peerShare: device, deviceId, newKeyId: 2, hubShare: pair.publicKey, deviceShare: device });
  }
  console.log(`the hub's X25519 + HKDF per dh rotation (${nodeKeyAgreement.name}, in isolation): ${((performance.now() - t0) / n * 1000).toFixed(0)} µs`);
}
