/**
 * The hub under test as a child process the kit can crash (SIGKILL) and
 * restart on the same port and database: the reference hub, or one of the
 * excluded designs (broken-hub.ts). Bundled once with esbuild for fast
 * restarts (tools/demo/hub-process.ts). Its hooks plug into the kit's
 * `HubHooks`: rotate (a line on its stdin), kill, start.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { bundleProgram, childEnv } from '../../demo/hub-process';
import type { BrokenHubConfig } from './broken-hub';
import type { HubHooks } from './context';

export class HubUnderTest {
  readonly #config: BrokenHubConfig;
  #child: ChildProcess | undefined;
  #port: number;
  #waiters = new Map<string, (line: string) => void>();
  stderr = '';
  starts = 0;

  constructor(config: BrokenHubConfig) {
    this.#config = config;
    this.#port = config.port;
  }

  get port(): number {
    return this.#port;
  }

  /** Starts the hub; resolves with its port once it listens. */
  async start(): Promise<number> {
    if (this.#child !== undefined) throw new Error('the hub under test is already running');
    const child = spawn(process.execPath, [bundleProgram('tools/conformance/hub/broken-hub-main.ts'), JSON.stringify({ ...this.#config, port: this.#port })], { stdio: ['pipe', 'pipe', 'pipe'], env: childEnv() });
    this.#child = child;
    this.starts++;
    child.stderr?.setEncoding('utf8');
    child.stderr?.on('data', (text: string) => {
      this.stderr = (this.stderr + text).slice(-8_000);
    });
    child.on('exit', () => {
      if (this.#child === child) this.#child = undefined;
    });
    const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream });
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`the hub under test did not start within 20 s: ${this.stderr}`)), 20_000);
      child.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`the hub under test exited (${code}) before listening: ${this.stderr}`));
      });
      lines.on('line', (line) => {
        const listening = /^listening (\d+)$/.exec(line);
        if (listening !== null) {
          clearTimeout(timer);
          this.#port = Number(listening[1]);
          resolve(this.#port);
          return;
        }
        const reply = /^rotate (\S+) /.exec(line);
        if (reply !== null) {
          this.#waiters.get(reply[1] as string)?.(line);
          this.#waiters.delete(reply[1] as string);
        }
      });
    });
  }

  /** SIGKILL: nothing is flushed (a crash). Resolves when the process is gone. */
  async kill(): Promise<void> {
    const child = this.#child;
    if (child === undefined) return;
    const gone = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill('SIGKILL');
    await gone;
    this.#child = undefined;
  }

  /** Asks the running hub to rotate the device now (HK1). */
  rotate(deviceId: string): Promise<void> {
    const child = this.#child;
    if (child === undefined) return Promise.reject(new Error('the hub under test is not running'));
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.#waiters.delete(deviceId);
        resolve();
      }, 5_000);
      this.#waiters.set(deviceId, () => {
        clearTimeout(timer);
        resolve();
      });
      child.stdin?.write(`rotate ${deviceId}\n`);
    });
  }

  hooks(): HubHooks {
    return {
      rotate: (deviceId) => this.rotate(deviceId),
      kill: () => this.kill(),
      start: async () => {
        await this.start();
      },
    };
  }

  /** Stops it (SIGTERM: a clean stop), if running. */
  async stop(): Promise<void> {
    const child = this.#child;
    if (child === undefined) return;
    const gone = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill('SIGTERM');
    await gone;
    this.#child = undefined;
  }
}
