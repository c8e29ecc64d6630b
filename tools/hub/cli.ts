/**
 * lockstep-hub: the reference hub's command line (`npm run hub -- <command>`).
 *   serve            run the hub (TCP and/or TLS), rotating keys on schedule
 *   provision        create devices (or import records from tools/provision)
 *   devices          list devices with key ids, pending rotation, last seen
 *   rotate <device>  ask the serving hub to rotate a device's key now
 *   kek rotate       re-wrap every key under a new key-encryption key, online
 *   cert             write a self-signed development certificate for TLS
 *   revoke <device>  erase a device's keys and refuse it from now on
 *   audit            the audit trail (who, what, when, outcome)
 *   token            create an operator API token (its hash goes in the config)
 *   recover <device> approve a device's recorded recovery request (policy approve)
 *   enrol <device>   arm the one-time enrolment of a device provisioned without a credential
 *   static-key       the hub's static recovery keys: status, rotate, retire <id>
 * Every command works on the database given by --db: a SQLite file, or a
 * postgres:// URL for the commands that take one (a tier of instances,
 * docs/HUB.md §13). Only `serve`
 * changes keys; `rotate` and `provision` leave requests and rows that the
 * serving hub picks up within a second, so the two never race on a key.
 * `revoke` deletes the row itself: a commit of the serving hub for that
 * device then does not apply (a conditional update), and the hub drops the
 * device at its next poll.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Command, InvalidArgumentError, Option } from 'commander';
import { isLockstepError } from '../../modules/errors';
import type { RekeyMode } from '../../modules/platform/keys';
import { provisionDevice } from '../provision/provision';
import { createDevCertificate } from './cert';
import { defaultServeConfig, hubOptionsFrom, loadConfigFile, DEFAULT_DATABASE, type ServeConfig } from './config';
import { DURATION_HELP, formatDuration, parseDuration } from './duration';
import { isLogLevel, jsonLogger, type LogLevel } from './log';
import { DEFAULT_HOST, DEFAULT_TCP_PORT, DEFAULT_TLS_PORT } from './options';
import { timingOutsideSpec } from './spec-bounds';
import { newDeviceRecord, parseHubRecord, parseHubRecords, toHubRecordJson, type DeviceRecord } from './records';
import { LockstepHub } from './server';
import { defaultKeyringPath, KEK_BYTES, readKeyringFile, writeKeyringFile, type KeyringChoice } from './kek';
import { HubStore, type DeviceSummary } from './store';
import { auditPostgres, kekStatusPostgres, listPostgres, provisionPostgres, revokePostgres, rotateKekPostgres, rotatePostgres, servePostgres, upgradePostgres } from './postgres/cli-actions';
import type { AuditEntry } from './audit';
import { isPostgresUrl, pgStaticKeyPath, redact } from './postgres/store';
import { currentHubStatic, openRecoveryAdmin, type RecoveryAdmin } from './recovery-admin';
import { userInfo } from 'node:os';
import { checkTokenConfig, newToken, type TokenConfig } from './http/options';
import { RECOVERY_MODES, type RecoveryMode, type RecoveryRequestRow } from './recovery';
import { readStaticKeyFile, resolveStaticKeys, retireStaticKey, rotateStaticKey, staticKeyPath, StaticKeyError } from './static-keys';

const durationArg = (value: string): number => {
  try {
    return parseDuration(value);
  } catch (error) {
    throw new InvalidArgumentError((error as Error).message);
  }
};
const modeArg = (value: string): RekeyMode => {
  if (value !== 'dh' && value !== 'classic') throw new InvalidArgumentError('dh or classic');
  return value;
};
const integerArg = (value: string): number => {
  if (!/^\d+$/.test(value)) throw new InvalidArgumentError('expected a non-negative integer');
  return Number(value);
};
const logLevelArg = (value: string): LogLevel => {
  if (!isLogLevel(value)) throw new InvalidArgumentError('one of debug, info, warn, error, silent');
  return value;
};

const program = new Command()
  .name('lockstep-hub')
  .description('The Lockstep reference hub: key rotation that never loses sync with its devices.')
  .showHelpAfterError();

const dbOption = () => new Option('--db <path>', 'hub database: a SQLite file, or postgres://… for a tier of instances (docs/HUB.md §13)').default(DEFAULT_DATABASE);

interface ServeFlags {
  db: string;
  config?: string;
  host?: string;
  port?: number;
  tcp: boolean;
  tlsPort?: number;
  cert?: string;
  key?: string;
  rotateEvery?: number;
  rotateJitter?: number;
  rotateAfterMessages?: number;
  maxConnections?: number;
  maxUnauthenticated?: number;
  handshakeTimeout?: number;
  idleTimeout?: number;
  logLevel?: LogLevel;
  kekFile?: string;
  httpHost?: string;
  httpPort?: number;
  httpTokens?: string;
  recovery?: RecoveryMode;
  staticKeyFile?: string;
}

/** Who a CLI command acts as, in the audit trail. */
function cliActor(): string {
  let user = 'unknown';
  try {
    user = userInfo().username;
  } catch {
    // no passwd entry (a container): keep "unknown"
  }
  return `cli:${user}`.slice(0, 64);
}

const recoveryArg = (value: string): RecoveryMode => {
  if (!RECOVERY_MODES.includes(value as RecoveryMode)) throw new InvalidArgumentError('auto, approve or off');
  return value as RecoveryMode;
};
const staticKeyOption = () => new Option('--static-key-file <path>', 'the hub\'s static recovery keys, mode 0600 (default: $LOCKSTEP_STATIC_KEY_FILE, else <db>.static; PostgreSQL: <KEK file>.static)');

const kekOption = () => new Option('--kek-file <path>', 'keyring file of key-encryption keys, mode 0600 (default: $LOCKSTEP_KEK_FILE, $LOCKSTEP_KEK, or <db>.kek)');

/** Where the KEK comes from: --kek-file, else the store's own order (LOCKSTEP_KEK_FILE, LOCKSTEP_KEK, <db>.kek). */
function kekChoice(flags: { kekFile?: string }): KeyringChoice {
  return flags.kekFile === undefined ? {} : { kekFile: flags.kekFile };
}

program
  .command('serve')
  .description('run the hub')
  .addOption(dbOption())
  .option('--config <file>', 'JSON configuration file (flags override it)')
  .option('--host <address>', `listen address (default ${DEFAULT_HOST})`)
  .option('--port <port>', `TCP port (default ${DEFAULT_TCP_PORT}; 0 = any free port)`, integerArg)
  .option('--no-tcp', 'no plain TCP listener (TLS only)')
  .option('--tls-port <port>', `TLS port (with --cert and --key; e.g. ${DEFAULT_TLS_PORT})`, integerArg)
  .option('--cert <file>', 'TLS certificate chain (PEM)')
  .option('--key <file>', 'TLS private key (PEM)')
  .option('--rotate-every <duration>', `rotate each device this long after its last rotation (${DURATION_HELP}; default: never)`, durationArg)
  .option('--rotate-jitter <duration>', 'add up to this much random delay per device (default 0)', durationArg)
  .option('--rotate-after-messages <n>', 'also rotate after this many application messages under one key', integerArg)
  .option('--max-connections <n>', 'cap on open connections', integerArg)
  .option('--max-unauthenticated <n>', 'cap on connections still in the handshake (oldest evicted)', integerArg)
  .option('--handshake-timeout <duration>', 'time allowed for the handshake', durationArg)
  .option('--idle-timeout <duration>', 'close a session silent this long', durationArg)
  .option('--log-level <level>', 'debug | info | warn | error | silent', logLevelArg)
  .option('--http-port <port>', 'operator API, metrics and dashboard on this port (needs tokens: --http-tokens or the config file\'s http section)', integerArg)
  .option('--http-host <address>', 'operator API listen address (default 127.0.0.1)')
  .option('--http-tokens <file>', 'JSON array of API tokens { id, scope, sha256 } (see `lockstep-hub token`)')
  .option('--recovery <policy>', 'recovery after a rollback (docs/HUB.md §14): auto (default), approve (`lockstep-hub recover <device>`), off', recoveryArg)
  .addOption(staticKeyOption())
  .addOption(kekOption())
  .action(async (flags: ServeFlags, command: Command) => {
    const config = flags.config === undefined ? defaultServeConfig() : loadConfigFile(flags.config);
    applyServeFlags(config, flags, command);
    const logger = jsonLogger(config.logLevel);
    for (const outside of timingOutsideSpec(config.timing)) logger.warn('timingOutsideSpec', { ...outside });
    // The handlers go in before the hub starts: its listener accepts (and logs `listening`) before start()
    // returns, and a SIGTERM in between must still stop it cleanly, once it is up.
    const shutdown = shutdownOnSignals(logger);
    if (isPostgresUrl(config.database)) {
      const { database: _sqlite, ...options } = hubOptionsFrom(config);
      void _sqlite;
      const pgHub = await servePostgres(config.database, options, kekChoice({ ...(config.kekFile !== undefined ? { kekFile: config.kekFile } : {}) }), logger);
      logger.info('ready', {
        devices: pgHub.deviceIds.length,
        instance: pgHub.instance,
        recovery: pgHub.staticKeyIds === undefined ? 'off (no static keys)' : pgHub.recoveryPolicy.mode,
        hubStaticId: pgHub.staticKeyIds?.current ?? null,
        revocationFile: pgHub.store.revocationFile ?? null,
        pid: process.pid,
        api: apiUrl(pgHub.apiAddress),
      });
      shutdown.started(() => pgHub.close());
      setInterval(() => {}, 1 << 30);
      return;
    }
    // The store is opened here so that it gets the keyring (KEK); the hub refuses to start without it.
    const store = new HubStore(config.database, kekChoice({ ...(config.kekFile !== undefined ? { kekFile: config.kekFile } : {}) }));
    let hub: LockstepHub;
    try {
      hub = await LockstepHub.start({ ...hubOptionsFrom(config), database: store, logger });
    } catch (error) {
      store.close();
      throw error;
    }
    logger.info('ready', {
      devices: hub.deviceIds.length,
      rotateEvery: config.rotation.intervalMs ? formatDuration(config.rotation.intervalMs) : 'never',
      recovery: hub.staticKeyIds === undefined ? 'off (no static keys)' : hub.recoveryPolicy.mode,
      hubStaticId: hub.staticKeyIds?.current ?? null,
      pid: process.pid,
      api: apiUrl(hub.apiAddress),
    });
    shutdown.started(async () => {
      await hub.close();
      store.close();
    });
    // Keep the process alive: the hub's timers are unref'd so embedders can exit freely.
    setInterval(() => {}, 1 << 30);
  });

/**
 * SIGINT/SIGTERM stop `serve` cleanly (exit 0) whenever they come: before the hub is up the signal is
 * remembered and acted on once it is (a hub half started is never left behind).
 */
function shutdownOnSignals(logger: { info(event: string, fields?: Record<string, unknown>): void }): { started(close: () => Promise<void>): void } {
  let close: (() => Promise<void>) | undefined;
  let requested: string | undefined;
  const stop = (signal: string): void => {
    logger.info('shutdown', { signal });
    void close!().then(() => process.exit(0));
  };
  const onSignal = (signal: string): void => {
    if (requested !== undefined) return;
    requested = signal;
    if (close !== undefined) stop(signal);
  };
  process.once('SIGINT', () => onSignal('SIGINT'));
  process.once('SIGTERM', () => onSignal('SIGTERM'));
  return {
    started(closeHub) {
      close = closeHub;
      if (requested !== undefined) stop(requested);
    },
  };
}

/** The dashboard's URL for the `ready` line, or 'off'. */
function apiUrl(address: { host: string; port: number; tls: boolean } | undefined): string {
  return address === undefined ? 'off' : `${address.tls ? 'https' : 'http'}://${address.host}:${address.port}/dashboard/`;
}

function applyServeFlags(config: ServeConfig, flags: ServeFlags, command: Command): void {
  if (command.getOptionValueSource('db') === 'cli' || flags.config === undefined) config.database = flags.db;
  if (!flags.tcp) config.tcp = false;
  else if (flags.host !== undefined || flags.port !== undefined) {
    const base = config.tcp === false ? {} : config.tcp;
    config.tcp = { ...base, ...(flags.host !== undefined ? { host: flags.host } : {}), ...(flags.port !== undefined ? { port: flags.port } : {}) };
  }
  if (flags.tlsPort !== undefined || flags.cert !== undefined || flags.key !== undefined) {
    const certPath = flags.cert ?? config.tls?.certPath;
    const keyPath = flags.key ?? config.tls?.keyPath;
    if (certPath === undefined || keyPath === undefined) throw new InvalidArgumentError('TLS needs --cert and --key (see `lockstep-hub cert`)');
    config.tls = {
      host: flags.host ?? config.tls?.host ?? DEFAULT_HOST,
      port: flags.tlsPort ?? config.tls?.port ?? DEFAULT_TLS_PORT,
      certPath,
      keyPath,
    };
  }
  if (flags.rotateEvery !== undefined) config.rotation.intervalMs = flags.rotateEvery;
  if (flags.rotateJitter !== undefined) config.rotation.jitterMs = flags.rotateJitter;
  if (flags.rotateAfterMessages !== undefined) config.rotation.maxMessages = flags.rotateAfterMessages;
  if (flags.maxConnections !== undefined) config.limits.maxConnections = flags.maxConnections;
  if (flags.maxUnauthenticated !== undefined) config.limits.maxUnauthenticated = flags.maxUnauthenticated;
  if (flags.handshakeTimeout !== undefined) config.timing.handshakeTimeoutMs = flags.handshakeTimeout;
  if (flags.idleTimeout !== undefined) config.timing.idleTimeoutMs = flags.idleTimeout;
  if (flags.logLevel !== undefined) config.logLevel = flags.logLevel;
  if (flags.kekFile !== undefined) config.kekFile = flags.kekFile;
  if (flags.recovery !== undefined) config.recovery = { ...config.recovery, mode: flags.recovery };
  if (flags.staticKeyFile !== undefined) config.staticKeyFile = flags.staticKeyFile;
  if (flags.httpPort !== undefined || flags.httpHost !== undefined || flags.httpTokens !== undefined) {
    const tokens = flags.httpTokens !== undefined ? readTokenFile(flags.httpTokens) : (config.http?.tokens ?? []);
    if (tokens.length === 0) throw new InvalidArgumentError('the operator API needs tokens: --http-tokens <file> (see `lockstep-hub token`)');
    config.http = {
      ...config.http,
      tokens,
      ...(flags.httpPort !== undefined ? { port: flags.httpPort } : {}),
      ...(flags.httpHost !== undefined ? { host: flags.httpHost } : {}),
    };
  }
}

function readTokenFile(path: string): TokenConfig[] {
  const value: unknown = JSON.parse(readFileSync(path, 'utf8'));
  if (!Array.isArray(value)) throw new InvalidArgumentError(`${path}: a JSON array of { id, scope, sha256 }`);
  return value.map((t) => checkTokenConfig(t));
}

program
  .command('provision')
  .description('create devices in the hub database and print their hub records (JSON lines)')
  .addOption(dbOption())
  .option('--out <dir>', 'also write each device\'s keystore image and record (tools/provision format) under <dir>')
  .option('--count <n>', 'how many devices', integerArg, 1)
  .option('--import <file...>', 'import hub records written by tools/provision (device.json) instead')
  .option('--force', 'overwrite existing output files', false)
  .option('--key-wrap', 'with --out: also write a key-wrapping key (keywrap.bin) and wrap the key in keystore.bin (docs/FIRMWARE.md, flash encryption)', false)
  .option('--mode <mode>', 'rekey mode: dh (X25519 in every rotation, docs/PROTOCOL.md §11) or classic', modeArg, 'dh')
  .addOption(staticKeyOption())
  .addOption(kekOption())
  .action(async (flags: { db: string; out?: string; count: number; import?: string[]; force: boolean; keyWrap: boolean; mode: RekeyMode; kekFile?: string; staticKeyFile?: string }) => {
    if (flags.keyWrap && (flags.out === undefined || flags.import !== undefined)) {
      process.stderr.write('provision: --key-wrap needs --out (it writes keywrap.bin next to keystore.bin)\n');
      process.exitCode = 1;
      return;
    }
    const store = isPostgresUrl(flags.db) ? undefined : new HubStore(flags.db, kekChoice(flags));
    let hubStatic: { id: number; publicKey: Uint8Array } | undefined;
    try {
      const records: DeviceRecord[] = [];
      if (flags.import !== undefined) {
        for (const file of flags.import) records.push(...parseHubRecords(readFileSync(file, 'utf8')));
      } else {
        for (let i = 0; i < flags.count; i++) {
          if (flags.out === undefined) {
            records.push(newDeviceRecord(1, flags.mode));
          } else {
            const outDir = flags.count === 1 ? flags.out : join(flags.out, `device-${i}`);
            // Issue 14: the device's credential names the hub's current static key (docs/HUB.md §14.3; on PostgreSQL the tier's).
            hubStatic ??= await hubStaticFor(flags.db, flags, store);
            records.push(parseHubRecord(provisionDevice({ outDir, force: flags.force, keyWrap: flags.keyWrap, mode: flags.mode, ...(hubStatic ? { hubStatic } : {}) }).record));
          }
        }
      }
      if (store === undefined) {
        await provisionPostgres(flags.db, records, kekChoice(flags), cliActor(), flags.import ? 'device.import' : 'device.provision');
      } else {
        store.insertDevices(records, Date.now());
        store.appendAudit(records.map((r) => ({ actor: cliActor(), action: flags.import ? 'device.import' : 'device.provision', deviceId: r.deviceId, outcome: 'ok', detail: { keyId: r.active.id } })), Date.now());
      }
      for (const record of records) process.stdout.write(`${JSON.stringify(toHubRecordJson(record))}\n`);
      process.stderr.write(
        `provisioned ${records.length} device(s) in ${redact(flags.db)}` +
          (flags.out !== undefined && flags.import === undefined ? `; keystore images under ${flags.out}` : '') +
          '. The records hold the initial keys: keep them secret.\n',
      );
    } finally {
      store?.close();
    }
  });

program
  .command('devices')
  .description('list devices: key ids, pending rotation, last seen')
  .addOption(dbOption())
  .option('--json', 'one JSON object per device (no keys)', false)
  .addOption(kekOption())
  .action(async (flags: { db: string; json: boolean; kekFile?: string }) => {
    if (isPostgresUrl(flags.db)) {
      for (const device of await listPostgres(flags.db, kekChoice(flags))) process.stdout.write(`${JSON.stringify(deviceSummary(device))}\n`);
      return;
    }
    const store = new HubStore(flags.db, { readonly: true });
    try {
      const devices = store.listDevices();
      if (flags.json) {
        for (const device of devices) process.stdout.write(`${JSON.stringify(deviceSummary(device))}\n`);
        return;
      }
      const rows = devices.map((d) => [
        d.deviceId,
        d.mode,
        String(d.activeKeyId),
        d.pendingKeyId === undefined ? '-' : String(d.pendingKeyId),
        String(d.rotations),
        iso(d.activeSince),
        d.lastSeenAt === undefined ? 'never' : iso(d.lastSeenAt),
        d.rotateRequestedAt === undefined ? '' : 'rotation requested',
      ]);
      printTable(['DEVICE', 'MODE', 'ACTIVE', 'PENDING', 'ROTATIONS', 'ACTIVE SINCE', 'LAST SEEN', ''], rows);
      const lock = store.readLock();
      process.stderr.write(`${devices.length} device(s); ${lock === undefined ? 'no hub serving' : `served by pid ${lock.pid} on ${lock.host}`}\n`);
    } finally {
      store.close();
    }
  });

program
  .command('set-mode <device> <mode>')
  .description('move a device to the dh rekey mode (docs/PROTOCOL.md §11.6); never back to classic')
  .addOption(dbOption())
  .addOption(kekOption())
  .action(async (deviceId: string, mode: string, flags: { db: string; kekFile?: string }) => {
    if (mode !== 'dh') {
      process.stderr.write(`set-mode: ${mode === 'classic' ? 'the rekey mode never moves back from dh to classic' : `unknown mode ${JSON.stringify(mode)} (dh)`}\n`);
      process.exitCode = 1;
      return;
    }
    const store = isPostgresUrl(flags.db) ? undefined : new HubStore(flags.db, kekChoice(flags));
    try {
      // PostgreSQL: the row's mode; every instance's next lease adopts it, the serving one's poll applies it.
      const outcome = store === undefined ? await upgradePostgres(flags.db, deviceId, kekChoice(flags)) : store.upgradeToDh(deviceId, Date.now());
      if (outcome === 'missing') {
        process.stderr.write(`set-mode: no device ${deviceId} in ${redact(flags.db)}\n`);
        process.exitCode = 1;
        return;
      }
      process.stderr.write(outcome === 'already' ? `${deviceId} is already in the dh mode\n` : `${deviceId} moves to the dh mode from its next rotation\n`);
    } finally {
      store?.close();
    }
  });

program
  .command('rotate <device>')
  .description('ask the serving hub to rotate this device\'s key now')
  .addOption(dbOption())
  .option('--wait [duration]', 'wait until the device confirms the new key (default 30s)', durationArg)
  .addOption(kekOption())
  .action(async (deviceId: string, flags: { db: string; wait?: number | boolean; kekFile?: string }) => {
    if (isPostgresUrl(flags.db)) {
      const waitMs = flags.wait === undefined || flags.wait === false ? undefined : flags.wait === true ? 30_000 : flags.wait;
      const outcome = await rotatePostgres(flags.db, deviceId, kekChoice(flags), waitMs, cliActor());
      if (!outcome.found) {
        process.stderr.write(`rotate: no device ${deviceId} in ${redact(flags.db)}\n`);
        process.exitCode = 1;
      } else if (outcome.confirmed !== undefined) {
        process.stdout.write(`${JSON.stringify(deviceSummary(outcome.confirmed))}\n`);
      } else if (waitMs !== undefined) {
        process.stderr.write('rotate: not confirmed in time (is the device online?)\n');
        process.exitCode = 2;
      } else {
        process.stderr.write(`rotation of ${deviceId} requested; the instance serving it starts it (now, or at its next connection)\n`);
      }
      return;
    }
    const store = new HubStore(flags.db, kekChoice(flags));
    try {
      const before = store.getSummary(deviceId);
      if (before === undefined) {
        process.stderr.write(`rotate: no device ${deviceId} in ${flags.db}\n`);
        process.exitCode = 1;
        return;
      }
      store.requestRotation(deviceId, Date.now());
      store.appendAudit([{ actor: cliActor(), action: 'device.rotate', deviceId: before.deviceId, outcome: 'requested' }], Date.now());
      const lock = store.readLock();
      const serving = lock !== undefined && Date.now() - lock.heartbeatAt < 10_000;
      process.stderr.write(
        serving
          ? `rotation of ${before.deviceId} requested (active key ${before.activeKeyId}); the serving hub starts it within a second\n`
          : `rotation of ${before.deviceId} requested; no hub is serving ${flags.db} now, it starts when one does\n`,
      );
      if (flags.wait === undefined || flags.wait === false) return;
      const timeoutMs = flags.wait === true ? 30_000 : flags.wait;
      const deadline = Date.now() + timeoutMs;
      while (Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 200));
        const now = store.getSummary(deviceId);
        if (now !== undefined && now.rotateRequestedAt === undefined && now.pendingKeyId === undefined && now.activeKeyId > before.activeKeyId) {
          process.stdout.write(`${JSON.stringify(deviceSummary(now))}\n`);
          return;
        }
      }
      process.stderr.write('rotate: not confirmed in time (is the device online?)\n');
      process.exitCode = 2;
    } finally {
      store.close();
    }
  });

/** The crypto-shredding schedule's default retention (docs/HUB.md §13.6): a retired KEK version is destroyed 7 days after it stopped wrapping any row. */
const PG_DESTROY_AFTER_MS = 7 * 24 * 3600_000;

const kek = program.command('kek').description('the key-encryption keys (KEK) that wrap every key in the database (docs/HUB.md §4.1)');

kek
  .command('rotate')
  .description('add a KEK version, make it active and re-wrap every key under it, online (the serving hub keeps running)')
  .addOption(dbOption())
  .addOption(kekOption())
  .option('--to <id>', 'with LOCKSTEP_KEK: the version (already in the variable, for this process and the serving hub) to switch to', integerArg)
  .option('--keep-old', 'keep the old versions in the keyring file (default: removed once no row uses them)', false)
  .option('--destroy-after <duration>', `PostgreSQL: destroy a retired version this long after it stopped wrapping any row (crypto-shredding schedule, docs/HUB.md §13.6; ${DURATION_HELP}; default 7d)`, durationArg)
  .action(async (flags: { db: string; kekFile?: string; to?: number; keepOld: boolean; destroyAfter?: number }) => {
    if (isPostgresUrl(flags.db)) {
      const kekFile = flags.kekFile ?? (process.env.LOCKSTEP_KEK_FILE || undefined);
      const result = await rotateKekPostgres(flags.db, {
        kekFile,
        to: flags.to,
        destroyAfterMs: flags.destroyAfter ?? PG_DESTROY_AFTER_MS,
        keepOld: flags.keepOld,
        actor: cliActor(),
      });
      process.stdout.write(`${JSON.stringify(result)}\n`);
      process.stderr.write(
        `kek rotate: ${result.rewrapped} row(s) re-wrapped under KEK ${result.to}` +
          (result.destroyedVersions.length > 0 ? `; versions ${result.destroyedVersions.join(', ')} destroyed (removed from ${result.keyring}): every retired key they wrapped, in dead tuples, WAL and backups, is gone` : '') +
          (result.keptUntil.length > 0 ? `; kept for backups: ${result.keptUntil.map((k) => `${k.kekId} until ${k.destroyAfter}`).join(', ')}` : '') +
          (kekFile === undefined && result.dueVersions.length > 0 ? `; due for destruction: versions ${result.dueVersions.join(', ')} — remove them from LOCKSTEP_KEK of every instance and restart it` : '') +
          '\n',
      );
      return;
    }
    if (flags.destroyAfter !== undefined) {
      process.stderr.write('kek rotate: --destroy-after is for PostgreSQL (docs/HUB.md §13.6); on SQLite the old versions leave the keyring file right after the re-wrap and WAL checkpoint, unless --keep-old\n');
      process.exitCode = 1;
      return;
    }
    const inline = flags.kekFile === undefined && (process.env.LOCKSTEP_KEK_FILE ?? '') === '' && (process.env.LOCKSTEP_KEK ?? '') !== '';
    if (inline && flags.to === undefined) {
      process.stderr.write('kek rotate: the KEK comes from LOCKSTEP_KEK; add the new version to it (here and in the serving hub) and name it with --to <id>\n');
      process.exitCode = 1;
      return;
    }
    const file = flags.kekFile ?? (process.env.LOCKSTEP_KEK_FILE || undefined) ?? defaultKeyringPath(flags.db);
    const store = new HubStore(flags.db, kekChoice(flags)); // refuses a database its keyring does not open
    try {
      let to = flags.to;
      if (!inline) {
        const versions = readKeyringFile(file);
        to ??= Math.max(...versions.keys()) + 1;
        if (!versions.has(to)) {
          versions.set(to, randomBytes(KEK_BYTES));
          writeKeyringFile(file, versions); // durable before any row is wrapped under it
        }
      }
      const result = await store.rotateKek(to as number);
      store.appendAudit([{ actor: cliActor(), action: 'kek.rotate', outcome: result.checkpointed ? 'ok' : 'ok.walBusy', detail: { to: result.to, rewrapped: result.rewrapped } }], Date.now());
      let removed: number[] = [];
      if (!inline && !flags.keepOld && result.checkpointed) {
        const versions = readKeyringFile(file);
        removed = [...versions.keys()].filter((id) => id !== to);
        if (removed.length > 0) writeKeyringFile(file, new Map([[to as number, versions.get(to as number) as Buffer]]));
      }
      process.stdout.write(`${JSON.stringify({ ...result, keyring: inline ? 'LOCKSTEP_KEK' : file, removedVersions: removed })}\n`);
      process.stderr.write(
        `kek rotate: ${result.rewrapped} row(s) re-wrapped under KEK ${result.to}` +
          (result.checkpointed ? '' : '; the WAL checkpoint was blocked by a reader: old wrapped forms leave it at the next promotion') +
          (removed.length > 0 ? `; versions ${removed.join(', ')} removed from ${file}. Backups taken before need the old keyring file.` : '') +
          '\n',
      );
    } finally {
      store.close();
    }
  });

kek
  .command('status')
  .description('which KEK version is active and how many rows each version wraps (no key material)')
  .addOption(dbOption())
  .addOption(kekOption())
  .action(async (flags: { db: string; kekFile?: string }) => {
    if (isPostgresUrl(flags.db)) {
      process.stdout.write(`${JSON.stringify(await kekStatusPostgres(flags.db, kekChoice(flags)))}\n`);
      return;
    }
    const store = new HubStore(flags.db, { readonly: true });
    try {
      const counts: Record<string, number> = {};
      for (const d of store.listDevices()) counts[d.activeKek] = (counts[d.activeKek] ?? 0) + 1;
      process.stdout.write(`${JSON.stringify({ activeKek: store.activeKek, devicesByKek: counts })}\n`);
    } finally {
      store.close();
    }
  });

program
  .command('cert')
  .description('write a development CA and the hub certificate it issues (and the key) for the TLS listener')
  .option('--out <dir>', 'output directory', '.')
  .option('--host <name...>', 'DNS names / IP addresses to include', ['localhost', '127.0.0.1'])
  .option('--days <n>', 'validity in days', integerArg, 365)
  .option('--force', 'overwrite existing files', false)
  .action(async (flags: { out: string; host: string[]; days: number; force: boolean }) => {
    const certPath = join(flags.out, 'hub-cert.pem');
    const keyPath = join(flags.out, 'hub-key.pem');
    const caPath = join(flags.out, 'hub-ca.pem');
    const pinsPath = join(flags.out, 'hub-cert-pins.json');
    for (const path of [certPath, keyPath, caPath, pinsPath]) {
      if (existsSync(path) && !flags.force) {
        process.stderr.write(`cert: ${path} exists; refusing to overwrite (use --force)\n`);
        process.exitCode = 1;
        return;
      }
    }
    mkdirSync(flags.out, { recursive: true });
    const cert = await createDevCertificate({ hosts: flags.host, days: flags.days });
    const pins = {
      sha256: cert.fingerprint256,
      spkiSha256: cert.spkiSha256Hex,
      spkiSha256Base64: cert.spkiSha256Base64,
      ca: { sha256: cert.caPins.fingerprint256, spkiSha256: cert.caPins.spkiSha256Hex, spkiSha256Base64: cert.caPins.spkiSha256Base64 },
      // What the firmware is built with to trust this CA (docs/FIRMWARE.md, TLS to the hub).
      hubCa: cert.caDerHex,
    };
    writeFileSync(certPath, cert.certPem, { mode: 0o644 });
    writeFileSync(keyPath, cert.keyPem, { mode: 0o600 });
    writeFileSync(caPath, cert.caPem, { mode: 0o644 });
    writeFileSync(pinsPath, `${JSON.stringify(pins, null, 2)}\n`, { mode: 0o644 });
    process.stdout.write(`${JSON.stringify({ cert: certPath, key: keyPath, caCert: caPath, pins: pinsPath, hosts: flags.host, ...pins })}\n`);
  });

program
  .command('revoke <device>')
  .description('revoke a device: its row and keys are erased, the serving hub closes its connections within a second, its id is refused from now on')
  .addOption(dbOption())
  .option('--reason <text>', 'recorded in the audit trail (200 characters at most)')
  .addOption(kekOption())
  .action(async (deviceId: string, flags: { db: string; reason?: string; kekFile?: string }) => {
    if (flags.reason !== undefined && (flags.reason.length > 200 || !/^[\x20-\x7e]*$/.test(flags.reason))) {
      process.stderr.write('revoke: --reason is at most 200 printable ASCII characters\n');
      process.exitCode = 1;
      return;
    }
    if (isPostgresUrl(flags.db)) {
      const { revocation, earlier } = await revokePostgres(flags.db, deviceId, kekChoice(flags), cliActor(), flags.reason);
      if (revocation === undefined) {
        process.stderr.write(earlier ? `revoke: ${earlier.deviceId} was revoked already (${iso(earlier.revokedAt)} by ${earlier.actor})\n` : `revoke: no device ${deviceId} in ${redact(flags.db)}\n`);
        process.exitCode = 1;
        return;
      }
      process.stdout.write(`${JSON.stringify({ ...revocation, revokedAt: iso(revocation.revokedAt) })}\n`);
      process.stderr.write(
        `revoked ${revocation.deviceId}: row and keys deleted; every instance closes its connections within a second. ` +
          'Its wrapped keys stay in dead tuples, WAL and backups until their KEK version is destroyed (kek rotate, docs/HUB.md §13.6)\n',
      );
      return;
    }
    const store = new HubStore(flags.db, kekChoice(flags));
    try {
      const revocation = store.revokeDevice(deviceId, cliActor(), flags.reason, Date.now());
      if (revocation === undefined) {
        const earlier = store.revocation(deviceId);
        process.stderr.write(earlier ? `revoke: ${earlier.deviceId} was revoked already (${iso(earlier.revokedAt)} by ${earlier.actor})\n` : `revoke: no device ${deviceId} in ${flags.db}\n`);
        process.exitCode = 1;
        return;
      }
      const checkpointed = await store.checkpointNow();
      process.stdout.write(`${JSON.stringify({ ...revocation, revokedAt: iso(revocation.revokedAt), walCheckpointed: checkpointed })}\n`);
      process.stderr.write(`revoked ${revocation.deviceId}: keys erased; a serving hub closes its connections within a second\n`);
    } finally {
      store.close();
    }
  });

program
  .command('audit')
  .description('the audit trail, newest first: who (token id or cli:user), what, when, outcome — never key material')
  .addOption(dbOption())
  .option('--device <id>', 'only this device')
  .option('--action <name>', 'only this action (e.g. device.revoke, rotation.confirm)')
  .option('--limit <n>', 'how many entries (at most 500)', integerArg, 50)
  .option('--before <seq>', 'entries before this sequence number (paging)', integerArg)
  .option('--json', 'one JSON object per entry', false)
  .addOption(kekOption())
  .action(async (flags: { db: string; device?: string; action?: string; limit: number; before?: number; json: boolean; kekFile?: string }) => {
    const query = {
      limit: flags.limit,
      ...(flags.device !== undefined ? { deviceId: flags.device } : {}),
      ...(flags.action !== undefined ? { action: flags.action } : {}),
      ...(flags.before !== undefined ? { before: flags.before } : {}),
    };
    if (isPostgresUrl(flags.db)) {
      printAudit(await auditPostgres(flags.db, kekChoice(flags), query), flags.json);
      return;
    }
    const store = new HubStore(flags.db, { readonly: true });
    try {
      if (store.schemaVersion < 5) throw new Error(`${flags.db} predates the audit trail (schema ${store.schemaVersion}); run serve once to migrate it`);
      printAudit(store.readAudit(query), flags.json);
    } finally {
      store.close();
    }
  });

function printAudit(entries: readonly AuditEntry[], json: boolean): void {
  if (json) {
    for (const e of entries) process.stdout.write(`${JSON.stringify({ ...e, at: new Date(e.at).toISOString() })}\n`);
    return;
  }
  printTable(
    ['SEQ', 'WHEN', 'WHO', 'WHAT', 'DEVICE', 'OUTCOME', 'DETAIL'],
    entries.map((e) => [String(e.seq), iso(e.at), e.actor, e.action, e.deviceId ?? '-', e.outcome, e.detail === undefined ? '' : Object.entries(e.detail).map(([k, v]) => `${k}=${String(v)}`).join(' ')]),
  );
}

program
  .command('token')
  .description('create an operator API token: prints the token (shown once) and the entry, with its SHA-256, for http.tokens')
  .requiredOption('--id <id>', 'names the holder in the audit trail (1-48 of A-Z a-z 0-9 . _ -)')
  .addOption(new Option('--scope <scope>', 'read (dashboard, metrics) or admin (rotate, revoke, provision)').choices(['read', 'admin']).default('read'))
  .action((flags: { id: string; scope: 'read' | 'admin' }) => {
    const { token, config } = newToken(flags.id, flags.scope);
    process.stdout.write(`${JSON.stringify({ token, config })}\n`);
    process.stderr.write('token: put "config" in http.tokens; give "token" to its holder (it is not stored anywhere)\n');
  });

// ---- issue 14: recovery (docs/HUB.md §14) ----

/** The current hub static key for `provision --out` (SQLite: the open store's file; PostgreSQL: the tier's, beside its keyring). */
async function hubStaticFor(db: string, flags: { kekFile?: string; staticKeyFile?: string }, store: HubStore | undefined): Promise<{ id: number; publicKey: Uint8Array } | undefined> {
  if (store !== undefined) {
    const keys = resolveStaticKeys(db, flags.staticKeyFile === undefined ? {} : { staticKeyFile: flags.staticKeyFile }, store.staticKeyReferences().size === 0);
    const current = keys?.keys.find((k) => k.id === keys.current);
    return current === undefined ? undefined : { id: current.id, publicKey: current.publicKey };
  }
  if (pgStaticKeyPath(kekChoice(flags), flags.staticKeyFile) === undefined) return undefined; // (no file to name: devices without a credential, as before)
  const admin = await openRecoveryAdmin(db, { ...kekChoice(flags), ...(flags.staticKeyFile === undefined ? {} : { staticKeyFile: flags.staticKeyFile }) });
  try {
    return await currentHubStatic(admin);
  } finally {
    await admin.close();
  }
}

/** The recovery commands' database (either backend). */
function adminFor(flags: { db: string; kekFile?: string; staticKeyFile?: string }, readonly = false): Promise<RecoveryAdmin> {
  return openRecoveryAdmin(flags.db, { ...kekChoice(flags), ...(flags.staticKeyFile === undefined ? {} : { staticKeyFile: flags.staticKeyFile }), readonly });
}

program
  .command('recover [device]')
  .description('approve a device\'s recorded recovery request (policy approve): its next attempt is accepted; without a device, list the requests')
  .addOption(dbOption())
  .option('--json', 'JSON output', false)
  .addOption(kekOption())
  .action(async (deviceId: string | undefined, flags: { db: string; json: boolean; kekFile?: string }) => {
    const store = await adminFor(flags);
    try {
      if (deviceId === undefined) {
        const requests = await store.recoveryRequests();
        if (flags.json) {
          for (const r of requests) process.stdout.write(`${JSON.stringify(requestJson(r))}\n`);
          return;
        }
        printTable(
          ['DEVICE', 'FIRST', 'LAST', 'ATTEMPTS', 'NEW KEY', 'DEVICE HOLDS', 'APPROVED'],
          requests.map((r) => [r.deviceId, iso(r.firstAt), iso(r.lastAt), String(r.attempts), String(r.newKeyId), `${r.claimedActive}/${r.claimedFuture}`, r.approvedAt === undefined ? '-' : `${iso(r.approvedAt)} by ${r.approvedBy ?? '?'}`]),
        );
        return;
      }
      if (!/^[0-9a-fA-F]{16}$/.test(deviceId)) throw new InvalidArgumentError('the device id is 16 hex digits');
      const outcome = await store.approveRecovery(deviceId, cliActor(), Date.now());
      const request = (await store.recoveryRequests()).find((r) => r.deviceId === deviceId.toLowerCase());
      if (flags.json) process.stdout.write(`${JSON.stringify({ deviceId: deviceId.toLowerCase(), outcome, ...(request ? { request: requestJson(request) } : {}) })}\n`);
      const messages: Record<typeof outcome, string> = {
        approved: `recovery of ${deviceId.toLowerCase()} approved: its next attempt is accepted (within the per-device limit)`,
        already: `recovery of ${deviceId.toLowerCase()} was approved already`,
        none: `recover: no recovery request recorded for ${deviceId.toLowerCase()} (the device asks first; see \`lockstep-hub recover\`)`,
        missing: `recover: no device ${deviceId} in ${store.path}`,
      };
      process.stderr.write(`${messages[outcome]}\n`);
      if (outcome === 'none' || outcome === 'missing') process.exitCode = 1;
    } finally {
      await store.close();
    }
  });

function requestJson(r: RecoveryRequestRow): Record<string, unknown> {
  return {
    deviceId: r.deviceId, firstAt: iso(r.firstAt), lastAt: iso(r.lastAt), attempts: r.attempts, newKeyId: r.newKeyId,
    claimedActive: r.claimedActive, claimedFuture: r.claimedFuture, approvedAt: r.approvedAt === undefined ? null : iso(r.approvedAt), approvedBy: r.approvedBy ?? null,
  };
}

program
  .command('enrol <device>')
  .description('arm the one-time enrolment of a device provisioned without a recovery credential (it runs under the next dh key promoted; docs/PROTOCOL.md §12.6)')
  .addOption(dbOption())
  .addOption(kekOption())
  .action(async (deviceId: string, flags: { db: string; kekFile?: string }) => {
    const store = await adminFor(flags);
    try {
      const outcome = await store.armEnrolment(deviceId, Date.now());
      await store.appendAudit([{ actor: cliActor(), action: 'enrol.arm', deviceId: deviceId.toLowerCase(), outcome }], Date.now());
      if (outcome === 'missing') {
        process.stderr.write(`enrol: no device ${deviceId} in ${store.path}\n`);
        process.exitCode = 1;
      } else if (outcome === 'enrolled') {
        process.stderr.write(`enrol: ${deviceId.toLowerCase()} is enrolled already; a static key is never changed over the wire (STATIC_KEY_LOCKED)\n`);
        process.exitCode = 1;
      } else {
        const summary = await store.getSummary(deviceId);
        process.stderr.write(
          `enrolment of ${deviceId.toLowerCase()} armed; it runs in the session after the next dh rotation completes` +
            (summary?.mode === 'classic' ? ' (the device is classic: `lockstep-hub set-mode <device> dh` first)' : '') +
            (isPostgresUrl(flags.db) ? '. The instance serving it picks it up within a second (any other at its next lease).\n' : '. The serving hub picks it up within a second.\n'),
        );
      }
    } finally {
      await store.close();
    }
  });

const staticKey = program.command('static-key').description('the hub\'s static X25519 keys for recovery, kept outside the database (docs/HUB.md §14.3)');

type StaticKeyFlags = { db: string; staticKeyFile?: string; kekFile?: string };

/** A `static-key` subcommand: the database (read-only on SQLite) and its static key file, closed afterwards. */
function staticKeyCommand(usage: string, description: string, run: (store: RecoveryAdmin, flags: StaticKeyFlags, id: string | undefined) => Promise<void>): void {
  staticKey
    .command(usage)
    .description(description)
    .addOption(dbOption())
    .addOption(staticKeyOption())
    .addOption(kekOption())
    .action(async (...args: unknown[]) => {
      const id = typeof args[0] === 'string' ? args[0] : undefined;
      const flags = (id === undefined ? args[0] : args[1]) as StaticKeyFlags;
      if (id !== undefined && !/^\d+$/.test(id)) throw new InvalidArgumentError('the hub static id is a positive integer');
      const store = await adminFor(flags, true);
      try {
        await run(store, flags, id);
      } finally {
        await store.close();
      }
    });
}

staticKeyCommand('status', 'the hub static ids, the current one, their public keys and how many device records name each (no private key)', async (store) => {
  const file = store.staticKeyFile;
  const keys = readStaticKeyFile(file);
  const refs = await store.staticKeyReferences();
  process.stdout.write(
    `${JSON.stringify({
      file,
      current: keys.current,
      keys: keys.keys.map((k) => ({ id: k.id, publicKey: Buffer.from(k.publicKey).toString('hex'), createdAt: iso(k.createdAt), devices: refs.get(k.id) ?? 0 })),
      unknownIds: [...refs.keys()].filter((id) => !keys.keys.some((k) => k.id === id)),
    })}\n`,
  );
});

staticKeyCommand('rotate', 'add a new pair with the next id and make it current (devices provisioned or enrolled from now on get it); the old pairs stay for the devices that know them', async (store, flags) => {
  const file = store.staticKeyFile;
  const pair = rotateStaticKey(file);
  process.stdout.write(`${JSON.stringify({ file, current: pair.id, publicKey: Buffer.from(pair.publicKey).toString('hex') })}\n`);
  process.stderr.write(
    isPostgresUrl(flags.db)
      ? `static-key rotate: hub static key ${pair.id} is current; copy ${file} to every instance's host (beside the keyring) and restart the instances one by one (devices keep recovering with the older pairs). Back it up with the KEK.\n`
      : `static-key rotate: hub static key ${pair.id} is current; restart the serving hub so that it holds it (devices keep recovering with the older pairs). Back up ${file} with the KEK.\n`,
  );
  try {
    await store.appendAudit([{ actor: cliActor(), action: 'staticKey.rotate', outcome: 'ok' }], Date.now());
  } catch {
    // the audit needs the KEK; the rotation itself is done
  }
});

staticKeyCommand('retire <id>', 'remove a hub static pair; refused for the current one and while any device record names it', async (store, flags, id) => {
  const file = store.staticKeyFile;
  if (!store.recoverySchema) throw new StaticKeyError('STATIC_KEY_IN_USE', `${flags.db} predates recovery; run serve once to migrate it`);
  retireStaticKey(file, Number(id), (await store.staticKeyReferences()).get(Number(id)) ?? 0);
  process.stderr.write(`static-key retire: hub static key ${id} removed from ${file}; backups of the file taken before still hold it\n`);
});

function deviceSummary(d: DeviceSummary): Record<string, unknown> {
  return {
    deviceId: d.deviceId,
    mode: d.mode,
    activeKeyId: d.activeKeyId,
    pendingKeyId: d.pendingKeyId ?? null,
    rotations: d.rotations,
    activeSince: iso(d.activeSince),
    lastSeenAt: d.lastSeenAt === undefined ? null : iso(d.lastSeenAt),
    rotationRequested: d.rotateRequestedAt !== undefined,
    enrolled: d.devicePublicKey !== undefined,
    hubStaticId: d.hubStaticId ?? null,
    enrolment: d.enrolment ?? null,
  };
}

function iso(ms: number): string {
  return new Date(ms).toISOString().replace(/\.\d+Z$/, 'Z');
}

function printTable(header: string[], rows: string[][]): void {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i] as number)).join('  ').trimEnd();
  process.stdout.write(`${line(header)}\n`);
  for (const row of rows) process.stdout.write(`${line(row)}\n`);
}

program.parseAsync(process.argv).catch((error: unknown) => {
  process.stderr.write(`lockstep-hub: ${isLockstepError(error) || error instanceof Error ? error.message : String(error)}\n`);
  process.exitCode = 1;
});
