/**
 * One simulated device on Node, from a keystore image written by
 * tools/provision or `lockstep-hub provision --out` (`npm run device -- --image DIR/keystore.bin`).
 * It connects to the hub (TCP, or TLS with --ca), reconnects with backoff,
 * sends a telemetry sample every --every, prints what it receives and every
 * key change, and keeps its keys in the image across restarts.
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { Command, InvalidArgumentError } from 'commander';
import { NodeDevice } from '../../hosts/node/device-host';
import { FileFlash } from '../../hosts/node/flash-file';
import { openFlashKeystore } from '../../hosts/node/flash-key-storage';
import { parseDuration } from '../hub/duration';

const program = new Command()
  .name('lockstep-device')
  .description('a simulated Lockstep device on Node, keys in a keystore image file')
  .requiredOption('--image <file>', 'keystore partition image (keystore.bin)')
  .option('--host <address>', 'hub address', '127.0.0.1')
  .option('--port <port>', 'hub port', (v) => Number(v), 7700)
  .option('--keywrap <file>', 'key-wrap partition image (default: keywrap.bin next to the image, if present)')
  .option('--ca <file>', 'connect with TLS, trusting this certificate (PEM)')
  .option('--servername <name>', 'TLS server name to check', undefined)
  .option('--every <duration>', 'telemetry period (0 = none)', (v) => {
    try {
      return parseDuration(v);
    } catch (error) {
      throw new InvalidArgumentError((error as Error).message);
    }
  }, 5000)
  .action((flags: { image: string; keywrap?: string; host: string; port: number; ca?: string; servername?: string; every: number }) => {
    const flash = new FileFlash(flags.image, { create: false });
    const keyWrapPath = flags.keywrap ?? join(dirname(flags.image), 'keywrap.bin');
    const keyWrapImage = flags.keywrap !== undefined || existsSync(keyWrapPath) ? new Uint8Array(readFileSync(keyWrapPath)) : undefined;
    const ca = flags.ca === undefined ? undefined : readFileSync(flags.ca);
    const host = new NodeDevice({
      storage: openFlashKeystore(flash, keyWrapImage === undefined ? {} : { keyWrapImage }),
      endpoint: { host: flags.host, port: flags.port, ...(ca ? { tls: { ca, ...(flags.servername ? { servername: flags.servername } : {}) } } : {}) },
    });
    const log = (event: string, fields: Record<string, unknown> = {}) =>
      process.stdout.write(`${JSON.stringify({ time: new Date().toISOString(), deviceId: host.deviceId, event, ...fields })}\n`);
    host.on('established', ({ keyId }) => log('established', { keyId }));
    host.on('disconnected', ({ reason }) => log('disconnected', { reason }));
    host.on('keyStored', ({ keyId }) => log('keyStored', { keyId }));
    host.on('keyPromoted', ({ keyId }) => log('keyPromoted', { keyId }));
    host.on('data', ({ payload }) => log('data', { text: Buffer.from(payload).toString('utf8') }));
    host.on('rekeyRefused', (e) => log('rekeyRefused', e));
    if (!host.hasCredential) log('noRecoveryCredential', { hint: 'provision with --hub-static-public/--hub-static-id, or `hub enrol` the device' });
    host.on('hubLostKey', (e) => log('hubLostKey', e));
    host.on('recovered', (e) => log('recovered', e));
    host.on('recoveryRefused', (e) => log('recoveryRefused', e));
    host.on('recoveryInSync', () => log('recoveryInSync'));
    host.on('enrolled', (e) => log('enrolled', e));
    host.on('staticKeyLocked', () => log('staticKeyLocked'));
    host.start();
    // After start(): the core (and so the keys) exist only once the keystore is mounted.
    log('booted', { activeKeyId: host.keys.active.id, futureKeyId: host.keys.future?.id ?? null });
    let sample = 0;
    if (flags.every > 0) {
      setInterval(() => {
        try {
          host.send(Buffer.from(JSON.stringify({ sample: ++sample, uptimeS: Math.round(process.uptime()) })));
        } catch {
          // Outbox full while offline: this sample is skipped.
        }
      }, flags.every);
    }
    const stop = () => {
      host.stop();
      process.exit(0);
    };
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });

program.parse(process.argv);
