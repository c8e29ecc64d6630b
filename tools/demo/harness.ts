/**
 * A fleet of simulated devices against an in-process hub (the library API),
 * for the end-to-end tests: real sockets on 127.0.0.1 (TCP or TLS), the
 * flash keystore, chaos, application traffic booked in a Ledger, and a
 * sync check of every device against the hub (memory and database).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createDevCertificate } from '../hub/cert';
import type { HubOptions } from '../hub/options';
import { LockstepHub } from '../hub/server';
import { NO_CHAOS, provisionFleet, SimulatedDevice, type ChaosSettings } from './fleet';
import { Ledger } from './ledger';
import { settled, syncProblem } from './sync-check';

export interface HarnessOptions {
  readonly devices: number;
  readonly tls?: boolean;
  readonly chaos?: ChaosSettings;
  readonly rotateEveryMs: number;
  readonly telemetryEveryMs?: number;
  readonly commandEveryMs?: number;
  /** Keep flash images in files under the harness directory (default: in memory). */
  readonly fileFlash?: boolean;
  readonly hub?: Partial<Omit<HubOptions, 'database' | 'tcp' | 'tls'>>;
}

export class Harness {
  readonly dir: string;
  readonly hub: LockstepHub;
  readonly devices: SimulatedDevice[];
  readonly ledger = new Ledger();
  readonly confirmed = new Map<string, number>();
  /** Sync problems ever seen by `check` (empty when all is well). */
  readonly problems: string[] = [];
  #commands: NodeJS.Timeout | undefined;
  #checker: NodeJS.Timeout | undefined;
  #commandCount = 0;
  checks = 0;

  static async start(options: HarnessOptions): Promise<Harness> {
    const dir = mkdtempSync(join(tmpdir(), 'lockstep-e2e-'));
    const cert = options.tls === true ? await createDevCertificate() : undefined;
    const hub = await LockstepHub.start({
      tickMs: 50,
      controlPollMs: 1000,
      ...options.hub,
      database: join(dir, 'hub.db'),
      tcp: cert === undefined ? { port: 0 } : false,
      ...(cert ? { tls: { port: 0, cert: cert.certPem, key: cert.keyPem } } : {}),
      rotation: { intervalMs: options.rotateEveryMs, jitterMs: options.rotateEveryMs, ...options.hub?.rotation },
      timing: { rekeyRetryInitialMs: 200, rekeyRetryMaxMs: 1000, ...options.hub?.timing },
    });
    return new Harness(dir, hub, options, cert?.certPem);
  }

  private constructor(dir: string, hub: LockstepHub, options: HarnessOptions, ca: string | undefined) {
    this.dir = dir;
    this.hub = hub;
    const port = hub.addresses[0]?.port as number;
    const fleet = provisionFleet(options.devices, options.fileFlash === true ? join(dir, 'devices') : undefined);
    for (const device of fleet) hub.provision(device.record);
    this.ledger.setEpoch('hub', 0);
    hub.on('data', ({ deviceId, payload }) => {
      const text = Buffer.from(payload).toString('latin1');
      this.ledger.delivered('up', deviceId, text.startsWith('u:') ? text.slice(2) : `?${text}`, 0);
    });
    hub.on('keyConfirmed', ({ deviceId }) => this.confirmed.set(deviceId, (this.confirmed.get(deviceId) ?? 0) + 1));
    this.devices = fleet.map(
      (provisioned) =>
        new SimulatedDevice(provisioned, {
          endpoint: { host: '127.0.0.1', port, ...(ca ? { tls: { ca } } : {}) },
          chaos: options.chaos ?? NO_CHAOS,
          ledger: this.ledger,
          telemetryEveryMs: options.telemetryEveryMs ?? 0,
          host: { reconnectInitialMs: 20, reconnectMaxMs: 500, bootDelayMs: 20 },
        }),
    );
    for (const device of this.devices) device.start();
    const commandEvery = options.commandEveryMs ?? 0;
    if (commandEvery > 0) this.#commands = setInterval(() => this.#sendCommands(), commandEvery);
    this.#checker = setInterval(() => this.check(), 100);
  }

  rotations(deviceId: string): number {
    return this.confirmed.get(deviceId) ?? 0;
  }

  minRotations(): number {
    return Math.min(...this.devices.map((d) => this.rotations(d.deviceId)));
  }

  /** Sync invariants of every powered device against the hub's memory and database. */
  check(): void {
    this.checks++;
    const rows = new Map(this.hub.store.loadDevices().map((row) => [row.deviceId, row]));
    for (const device of this.devices) {
      if (!device.host.powered) continue;
      const keys = device.host.keys;
      const memory = syncProblem(keys, this.hub.deviceKeys(device.deviceId), device.deviceId);
      const row = rows.get(device.deviceId);
      const durable = row === undefined ? 'missing from the database' : syncProblem(keys, row);
      for (const problem of [memory, durable]) if (problem !== undefined && this.problems.length < 50) this.problems.push(`${device.deviceId}: ${problem}`);
    }
  }

  async waitUntil(predicate: () => boolean, timeoutMs: number, what: string): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!predicate()) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  /** Faults, traffic and scheduled rotations stop; then everything must converge. */
  async settle(timeoutMs = 20_000): Promise<void> {
    for (const device of this.devices) {
      device.chaos = NO_CHAOS;
      device.stopTelemetry();
    }
    if (this.#commands !== undefined) clearInterval(this.#commands);
    this.#commands = undefined;
    this.hub.setRotationPolicy({ intervalMs: 0, maxMessages: 0 });
    await this.waitUntil(
      () =>
        this.devices.every((d) => d.host.online && settled(d.host.keys, this.hub.deviceKeys(d.deviceId))) &&
        this.ledger.inFlight() === 0,
      timeoutMs,
      'all devices online, settled on one key, no message in flight',
    );
  }

  async close(): Promise<void> {
    if (this.#commands !== undefined) clearInterval(this.#commands);
    if (this.#checker !== undefined) clearInterval(this.#checker);
    for (const device of this.devices) device.stop();
    await this.hub.close();
    for (const device of this.devices) device.close();
    rmSync(this.dir, { recursive: true, force: true });
  }

  #sendCommands(): void {
    for (const device of this.devices) {
      if (!this.hub.deviceState(device.deviceId).connected) continue;
      const tag = String(++this.#commandCount);
      this.ledger.sent('down', device.deviceId, tag, 0);
      try {
        this.hub.send(device.deviceId, Buffer.from(`d:${tag}`, 'latin1'));
      } catch {
        this.ledger.cancelled('down', device.deviceId, tag);
      }
    }
  }
}
