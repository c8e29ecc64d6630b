/**
 * The demo's hub application, run as a child process so it can be killed
 * with SIGKILL and restarted from its database: the library hub
 * (tools/hub) plus a small app that sends commands down to online devices
 * and books application data in a ledger file.
 *
 * Ledger lines are written with writeSync *before* the protocol acts on
 * them (an up delivery is booked before its DATA_ACK is transmitted, a
 * command before it is queued), so they survive a SIGKILL in the page
 * cache and the parent's accounting is exact:
 *   U <device> <tag> <epoch>   up message delivered to the app
 *   S <device> <tag> <epoch>   down message about to be sent
 *   X <device> <tag>           that send was refused (outbox full)
 *   C <device> <keyId>         rotation confirmed
 *   R <device> <status> <id>   a recovery decided (issue 14)
 *
 * argv[2] is a JSON HubAppConfig. stdout: JSON lines ({"type":"ready"...},
 * {"type":"stats"...}). stdin: "settle" stops rotations and commands.
 */
import { closeSync, openSync, readFileSync, writeSync } from 'node:fs';
import type { HubTiming } from '../../modules/hub/hub';
import { jsonLogger } from '../hub/log';
import type { RecoveryPolicy } from '../hub/recovery';
import { LockstepHub } from '../hub/server';
import type { TokenConfig } from '../hub/http/options';

export interface HubAppConfig {
  readonly database: string;
  readonly tcpPort: number;
  readonly tls?: { readonly port: number; readonly certPath: string; readonly keyPath: string };
  readonly rotateEveryMs: number;
  readonly rotateJitterMs: number;
  /** Each online device gets a command about this often (0 = none). */
  readonly commandEveryMs: number;
  readonly ledgerPath: string;
  readonly epoch: number;
  readonly timing?: Partial<HubTiming>;
  readonly tickMs?: number;
  readonly logLevel?: 'debug' | 'info' | 'warn' | 'error' | 'silent';
  /** Issue 14: the recovery policy and limits (tools/hub/recovery.ts); the static key file is the default one beside the database. */
  readonly recovery?: Partial<RecoveryPolicy>;
  /** The operator API and dashboard on this port (the same one across hub restarts). */
  readonly http?: { readonly port: number; readonly tokens: readonly TokenConfig[] };
}

async function main(): Promise<void> {
  const config = JSON.parse(process.argv[2] ?? '{}') as HubAppConfig;
  const ledger = openSync(config.ledgerPath, 'a');
  const book = (line: string): void => {
    writeSync(ledger, `${line}\n`);
  };
  const hub = await LockstepHub.start({
    database: config.database,
    tcp: config.tls === undefined ? { port: config.tcpPort } : false,
    ...(config.tls
      ? { tls: { port: config.tls.port, cert: readFileSync(config.tls.certPath), key: readFileSync(config.tls.keyPath) } }
      : {}),
    rotation: { intervalMs: config.rotateEveryMs, jitterMs: config.rotateJitterMs },
    ...(config.timing ? { timing: config.timing } : {}),
    tickMs: config.tickMs ?? 100,
    controlPollMs: 500,
    logger: jsonLogger(config.logLevel ?? 'warn'),
    ...(config.http ? { http: { port: config.http.port, tokens: config.http.tokens } } : {}),
    ...(config.recovery ? { recovery: config.recovery } : {}),
  });
  const online = new Set<string>();
  let commands = 0;
  let settling = false;
  hub.on('deviceConnected', ({ deviceId }) => online.add(deviceId));
  hub.on('deviceDisconnected', ({ deviceId }) => online.delete(deviceId));
  hub.on('data', ({ deviceId, payload }) => {
    const text = Buffer.from(payload).toString('latin1');
    book(`U ${deviceId} ${text.startsWith('u:') ? text.slice(2) : `?${text.replace(/\s/g, '_')}`} ${config.epoch}`);
  });
  hub.on('keyConfirmed', ({ deviceId, keyId }) => book(`C ${deviceId} ${keyId}`));
  // Issue 14: every recovery decision after authentication (R <device> <status> <new key id>).
  hub.on('recoveryDecided', ({ deviceId, status, newKeyId }) => book(`R ${deviceId} ${status} ${newKeyId}`));

  if (config.commandEveryMs > 0) {
    const timer = setInterval(() => {
      if (settling) return;
      for (const deviceId of online) {
        if (Math.random() >= 0.5) continue;
        const tag = `${config.epoch}.${++commands}`;
        book(`S ${deviceId} ${tag} ${config.epoch}`);
        try {
          hub.send(deviceId, Buffer.from(`d:${tag}`, 'latin1'));
        } catch {
          book(`X ${deviceId} ${tag}`);
        }
      }
    }, config.commandEveryMs / 2);
    timer.unref();
  }

  const address = (transport: 'tcp' | 'tls') => hub.addresses.find((a) => a.transport === transport)?.port;
  process.stdout.write(`${JSON.stringify({ type: 'ready', tcpPort: address('tcp'), tlsPort: address('tls'), pid: process.pid })}\n`);
  const stats = setInterval(() => process.stdout.write(`${JSON.stringify({ type: 'stats', ...hub.stats() })}\n`), 500);

  process.stdin.setEncoding('utf8');
  process.stdin.on('data', (chunk: string) => {
    if (chunk.includes('settle')) {
      settling = true;
      hub.setRotationPolicy({ intervalMs: 0 });
    }
  });
  process.stdin.on('end', () => shutdown());
  const shutdown = (): void => {
    clearInterval(stats);
    void hub.close().then(() => {
      closeSync(ledger);
      process.exit(0);
    });
  };
  process.once('SIGTERM', shutdown);
  process.once('SIGINT', shutdown);
}

main().catch((error: unknown) => {
  process.stderr.write(`hub-app: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exit(1);
});
