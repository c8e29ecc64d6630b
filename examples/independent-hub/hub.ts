// CLI of the independent hub: tsx examples/independent-hub/hub.ts --state FILE [--import RECORDS] …
// Commands on stdin, one per line: rotate [DEVICE|all] · send DEVICE TEXT · set-mode DEVICE dh · approve DEVICE ·
// policy DEVICE auto|approve|off · status.
// SIGUSR1 rotates every device.
import { createInterface } from 'node:readline';
import { chmodSync, closeSync, existsSync, openSync, readFileSync, unlinkSync, writeSync } from 'node:fs';
import { createConnection, createServer } from 'node:net';
import { randomBytes } from 'node:crypto';
import { IndependentHub } from './core';
import { x25519Public } from './wire';

function usage(): never {
  process.stderr.write(`usage: hub.ts --state FILE [--kek FILE (default FILE.kek)] [--import RECORDS.json] [--port 7700] [--host 127.0.0.1]
              [--rotate-every SECONDS] [--idle-timeout-ms 45000] [--handshake-timeout-ms 10000] [--no-hk11]
              [--static-keys FILE] [--recovery-policy auto|approve|off] [--control SOCKET]
              [--status: print every device's ids and exit]
       hub.ts --control SOCKET --command 'rotate DEVICE'   (send one command to a running hub)
       hub.ts --make-static-key FILE [--static-id 1]
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
if (typeof opts.command === 'string') {
  // Client mode: send one command to a running hub's --control socket and print its reply.
  if (typeof opts.control !== 'string') usage();
  const socket = createConnection(opts.control, () => socket.write(`${opts.command}\n`));
  const replies = createInterface({ input: socket });
  replies.once('line', (reply) => {
    process.stdout.write(`${reply}\n`);
    process.exit(reply.startsWith('error') ? 1 : 0);
  });
  replies.on('error', () => undefined); // reported by the socket's handler below
  socket.on('error', (error) => {
    process.stderr.write(`hub: ${error.message}\n`);
    process.exit(1);
  });
  await new Promise<never>(() => undefined); // the reply handler exits
} else if (typeof opts['make-static-key'] === 'string') {
  // Writes a hub static key file (0600) with one fresh key; prints the public key for provisioning.
  const path = opts['make-static-key'];
  const id = Number(opts['static-id'] ?? 1);
  if (existsSync(path) || !Number.isInteger(id) || id < 1 || id > 0xffffffff) usage();
  const priv = randomBytes(32);
  const fd = openSync(path, 'wx', 0o600);
  writeSync(fd, `${JSON.stringify([{ id, privateKey: priv.toString('hex') }])}\n`);
  closeSync(fd);
  process.stdout.write(`${JSON.stringify({ hubStaticId: id, hubPublicKey: x25519Public(priv).toString('hex') })}\n`);
  process.exit(0);
}
if (typeof opts.command !== 'string' && (opts.help || typeof opts.state !== 'string')) usage();

function readStaticKeys(path: string): Map<number, Buffer> {
  // A JSON array of {id, privateKey}, or an object whose `keys` is one (as the reference's static key file).
  const parsed = JSON.parse(readFileSync(path, 'utf8')) as { id: number; privateKey: string }[] | { keys?: unknown };
  const list = (Array.isArray(parsed) ? parsed : parsed.keys) as { id: number; privateKey: string }[];
  if (!Array.isArray(list)) throw new Error(`${path}: expected a JSON array of {id, privateKey}`);
  return new Map(list.map((k) => {
    if (!/^[0-9a-fA-F]{64}$/.test(k.privateKey)) throw new Error(`${path}: key ${k.id}: privateKey must be 64 hex digits`);
    return [k.id, Buffer.from(k.privateKey, 'hex')] as const;
  }));
}

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
    statePath: opts.state as string, kekPath: typeof opts.kek === 'string' ? opts.kek : undefined, port: num('port') ?? 7700, host: typeof opts.host === 'string' ? opts.host : '127.0.0.1',
    idleTimeoutMs: num('idle-timeout-ms'), handshakeTimeoutMs: num('handshake-timeout-ms'),
    rotateEveryMs: rotateEvery === undefined ? 0 : rotateEvery * 1000, applyHk11: !opts['no-hk11'],
    staticKeys: typeof opts['static-keys'] === 'string' ? readStaticKeys(opts['static-keys']) : undefined,
    recoveryPolicy: opts['recovery-policy'] === 'auto' || opts['recovery-policy'] === 'approve' || opts['recovery-policy'] === 'off' ? opts['recovery-policy'] : undefined,
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

/** One operator command; returns the reply line. */
function run(line: string): string {
  const [command, device, ...rest] = line.trim().split(/\s+/);
  try {
    if (command === 'rotate') {
      if (!device || device === 'all') {
        hub.rotateAll();
        return 'ok';
      }
      const result = hub.rotate(device.toLowerCase());
      return result === 'started' || result === 'queued' ? result : `error: ${result}`;
    } else if (command === 'send' && device) {
      return `sent ${hub.send(device.toLowerCase(), Buffer.from(rest.join(' '), 'utf8'))}`;
    } else if (command === 'set-mode' && device && (rest[0] === 'dh' || rest[0] === 'classic')) {
      hub.setMode(device.toLowerCase(), rest[0]);
    } else if (command === 'approve' && device) {
      hub.approveRecovery(device.toLowerCase());
    } else if (command === 'policy' && device && (rest[0] === 'auto' || rest[0] === 'approve' || rest[0] === 'off')) {
      hub.setRecoveryPolicy(device.toLowerCase(), rest[0]);
    } else if (command === 'status') {
      return JSON.stringify(hub.status());
    } else if (command === 'import' && device) {
      return `imported ${hub.importFile(device)}`;
    } else {
      return 'error: commands: rotate [DEVICE|all] · send DEVICE TEXT · set-mode DEVICE dh · approve DEVICE · policy DEVICE auto|approve|off · import FILE · status';
    }
    return 'ok';
  } catch (error) {
    return `error: ${(error as Error).message}`;
  }
}

const rl = createInterface({ input: process.stdin });
rl.on('line', (line) => {
  if (line.trim() !== '') process.stdout.write(`${run(line)}\n`);
});

if (typeof opts.control === 'string') {
  // The same commands over a Unix socket (mode 0600), one line in, one line out: for --rotate-cmd.
  const path = opts.control;
  if (existsSync(path)) unlinkSync(path);
  const control = createServer((socket) => {
    const lines = createInterface({ input: socket });
    lines.on('line', (line) => socket.write(`${run(line)}\n`));
    socket.on('error', () => undefined);
  });
  control.listen(path, () => chmodSync(path, 0o600));
}
