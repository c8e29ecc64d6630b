// CLI of the independent hub: tsx examples/independent-hub/hub.ts --state FILE [--import RECORDS] …
// Commands on stdin, one per line: rotate [DEVICE|all] · send DEVICE TEXT · set-mode DEVICE dh · status.
// SIGUSR1 rotates every device.
import { createInterface } from 'node:readline';
import { IndependentHub } from './core';

function usage(): never {
  process.stderr.write(`usage: hub.ts --state FILE [--kek FILE (default FILE.kek)] [--import RECORDS.json] [--port 7700] [--host 127.0.0.1]
              [--rotate-every SECONDS] [--idle-timeout-ms 45000] [--handshake-timeout-ms 10000] [--no-hk11]
              [--status: print every device's ids and exit]
`);
  process.exit(2);
}

const args = process.argv.slice(2);
const opts: Record<string, string | boolean> = {};
for (let i = 0; i < args.length; i++) {
  const a = args[i]!;
  if (!a.startsWith('--')) usage();
  if (a === '--no-hk11' || a === '--help' || a === '--status') opts[a.slice(2)] = true;
  else {
    const v = args[++i];
    if (v === undefined) usage();
    opts[a.slice(2)] = v;
  }
}
if (opts.help || typeof opts.state !== 'string') usage();

function num(name: string): number | undefined {
  const v = opts[name];
  if (v === undefined) return undefined;
  const n = Number(v);
  if (typeof v !== 'string' || !Number.isFinite(n) || n < 0) {
    process.stderr.write(`--${name}: not a number\n`);
    process.exit(2);
  }
  return n;
}

let hub: IndependentHub;
try {
  const rotateEvery = num('rotate-every');
  hub = new IndependentHub({
    statePath: opts.state, kekPath: typeof opts.kek === 'string' ? opts.kek : undefined, port: num('port') ?? 7700, host: typeof opts.host === 'string' ? opts.host : '127.0.0.1',
    idleTimeoutMs: num('idle-timeout-ms'), handshakeTimeoutMs: num('handshake-timeout-ms'),
    rotateEveryMs: rotateEvery === undefined ? 0 : rotateEvery * 1000, applyHk11: !opts['no-hk11'],
  });
  if (typeof opts.import === 'string') hub.importFile(opts.import);
  if (opts.status) {
    process.stdout.write(`${JSON.stringify(hub.status())}\n`);
    process.exit(0);
  }
} catch (error) {
  process.stderr.write(`hub: ${(error as Error).message}\n`);
  process.exit(1);
}

await hub.listen();
process.on('SIGUSR1', () => hub.rotateAll());
process.on('SIGTERM', () => void hub.close().then(() => process.exit(0)));
process.on('SIGINT', () => void hub.close().then(() => process.exit(0)));

const rl = createInterface({ input: process.stdin });
rl.on('line', (line) => {
  const [command, device, ...rest] = line.trim().split(/\s+/);
  try {
    if (command === 'rotate') {
      if (!device || device === 'all') hub.rotateAll();
      else process.stdout.write(`${hub.rotate(device.toLowerCase())}\n`);
    } else if (command === 'send' && device) {
      process.stdout.write(`sent ${hub.send(device.toLowerCase(), Buffer.from(rest.join(' '), 'utf8'))}\n`);
    } else if (command === 'set-mode' && device && (rest[0] === 'dh' || rest[0] === 'classic')) {
      hub.setMode(device.toLowerCase(), rest[0]);
    } else if (command === 'status') {
      process.stdout.write(`${JSON.stringify(hub.status())}\n`);
    } else if (command) {
      process.stdout.write('commands: rotate [DEVICE|all] · send DEVICE TEXT · set-mode DEVICE dh · status\n');
    }
  } catch (error) {
    process.stdout.write(`error: ${(error as Error).message}\n`);
  }
});
