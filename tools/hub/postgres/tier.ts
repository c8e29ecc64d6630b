/**
 * A tier of hub instances on one PostgreSQL database, each a child process
 * (tools/hub/postgres/instance-main.ts, bundled once with esbuild), behind a
 * TcpBalancer that picks one at random per connection. The chaos test,
 * `npm start -- --postgres` and the benchmark drive it: kill an instance
 * with SIGKILL and start a fresh one, stop one with SIGSTOP and resume it.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { bundleProgram } from '../../demo/hub-process';
import { TcpBalancer } from './balancer';

export interface InstanceSettings {
  readonly url: string;
  readonly rotationIntervalMs?: number;
  readonly rotationJitterMs?: number;
  readonly statementTimeoutMs?: number;
  readonly poolSize?: number;
  readonly tickMs?: number;
  readonly controlPollMs?: number;
  readonly lastSeenFlushMs?: number;
  readonly maxConnections?: number;
  readonly maxLeasesInFlight?: number;
  readonly idleTimeoutMs?: number;
  /** LOCKSTEP_KEK for the instances ("1:<64 hex>"). */
  readonly kek: string;
  /** Node flags for the instance processes (the fleet benchmark: --expose-gc). */
  readonly execArgv?: readonly string[];
  /** Stdin is a pipe from this process; when it ends (this process is gone) the instance closes. */
  readonly lifeline?: boolean;
}

export class InstanceProcess {
  readonly child: ChildProcess;
  port = 0;
  stats: Record<string, number> = {};
  exited = false;
  stopped = false;
  readonly #ready: Promise<void>;

  constructor(
    readonly run: number,
    settings: InstanceSettings,
    onLine: (run: number, line: string) => void,
  ) {
    const { kek, execArgv = [], ...config } = settings;
    this.child = spawn(process.execPath, [...execArgv, bundleProgram('tools/hub/postgres/instance-main.ts'), JSON.stringify(config)], {
      env: { ...process.env, LOCKSTEP_KEK: kek },
      stdio: [settings.lifeline === true ? 'pipe' : 'ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    this.child.stderr?.on('data', (chunk: Buffer) => {
      if (stderr.length < 4000) stderr += chunk.toString();
    });
    this.#ready = new Promise((resolve, reject) => {
      const lines = createInterface({ input: this.child.stdout! });
      lines.on('line', (line) => {
        if (line.startsWith('READY ')) {
          this.port = Number(line.slice(6));
          resolve();
        } else if (line.startsWith('STATS ')) {
          this.stats = JSON.parse(line.slice(6)) as Record<string, number>;
        } else {
          onLine(this.run, line);
        }
      });
      this.child.once('exit', (code, signal) => {
        this.exited = true;
        reject(new Error(`hub instance exited before it was ready (${code ?? signal}): ${stderr.trim()}`));
      });
    });
  }

  ready(): Promise<void> {
    return this.#ready;
  }

  kill(): Promise<void> {
    if (this.exited) return Promise.resolve();
    return new Promise((resolve) => {
      this.child.once('exit', () => resolve());
      this.child.kill('SIGKILL');
    });
  }

  pause(): void {
    this.stopped = true;
    this.child.kill('SIGSTOP');
  }

  resume(): void {
    this.stopped = false;
    this.child.kill('SIGCONT');
  }

  signal(name: NodeJS.Signals): void {
    if (!this.exited) this.child.kill(name);
  }

  async terminate(): Promise<void> {
    if (this.exited) return;
    if (this.stopped) this.resume();
    await new Promise<void>((resolve) => {
      const force = setTimeout(() => this.child.kill('SIGKILL'), 5000);
      this.child.once('exit', () => {
        clearTimeout(force);
        resolve();
      });
      this.child.kill('SIGTERM');
    });
  }
}

export class HubTier {
  readonly instances: InstanceProcess[] = [];
  /** Every instance run so far (killed ones included), for their final figures. */
  readonly runs: InstanceProcess[] = [];
  #nextRun = 0;

  private constructor(
    readonly balancer: TcpBalancer,
    private readonly settings: InstanceSettings,
    private readonly onLine: (run: number, line: string) => void,
  ) {}

  static async start(count: number, settings: InstanceSettings, onLine: (run: number, line: string) => void = () => {}, balancerPort = 0): Promise<HubTier> {
    const balancer = await TcpBalancer.start([], { port: balancerPort });
    const tier = new HubTier(balancer, settings, onLine);
    try {
      await Promise.all(Array.from({ length: count }, () => tier.#spawn()));
    } catch (error) {
      await tier.close();
      throw error;
    }
    tier.#route();
    return tier;
  }

  get port(): number {
    return this.balancer.port;
  }

  /** SIGKILL instance `index`, then a fresh instance (a new run) takes its place. */
  async killAndReplace(index: number): Promise<void> {
    const victim = this.instances[index];
    if (victim === undefined) return;
    this.instances.splice(index, 1);
    this.#route();
    await victim.kill();
    await this.#spawn();
    this.#route();
  }

  /** SIGSTOP instance `index` and cut its connections at the balancer (its devices re-dial elsewhere). */
  pause(index: number): InstanceProcess | undefined {
    const victim = this.instances[index];
    if (victim === undefined) return undefined;
    victim.pause();
    this.balancer.setBackends(this.instances.filter((i) => i !== victim).map((i) => ({ host: '127.0.0.1', port: i.port })));
    this.balancer.dropBackend(victim.port);
    return victim;
  }

  resume(instance: InstanceProcess): void {
    instance.resume();
    this.#route();
  }

  signalAll(name: NodeJS.Signals): void {
    for (const instance of this.instances) instance.signal(name);
  }

  async close(): Promise<void> {
    await this.balancer.close();
    await Promise.all(this.instances.map((i) => i.terminate()));
    await Promise.all(this.runs.map((i) => i.kill()));
  }

  async #spawn(): Promise<InstanceProcess> {
    const instance = new InstanceProcess(++this.#nextRun, this.settings, this.onLine);
    this.runs.push(instance);
    await instance.ready();
    this.instances.push(instance);
    return instance;
  }

  #route(): void {
    this.balancer.setBackends(this.instances.filter((i) => !i.stopped).map((i) => ({ host: '127.0.0.1', port: i.port })));
  }
}
