/**
 * The device under test as a process (test support for device mode,
 * docs/CONFORMANCE.md): the real Node device host from a keystore image,
 * unchanged (`--design reference`) or with one of the excluded designs of
 * docs/PROTOCOL.md §8.5 injected (tools/conformance/device/designs.ts), so
 * that the kit's --device-kill-cmd (SIGKILL: a power cut) and
 * --device-start-cmd act on a real process:
 *
 *   tsx tools/conformance/device/broken-device.ts --image DIR/keystore.bin --port 7700 \
 *       --design acks-before-persisting [--keepalive 1s --idle-timeout 3s --handshake-timeout 2s] [--pid-file F]
 */
import { writeFileSync } from 'node:fs';
import { Command, InvalidArgumentError, Option } from 'commander';
import { parseDuration } from '../../hub/duration';
import { DEVICE_DESIGNS, launchDevice, type DeviceDesign } from './designs';

function duration(value: string): number {
  try {
    return parseDuration(value);
  } catch (error) {
    throw new InvalidArgumentError((error as Error).message);
  }
}

const program = new Command()
  .name('broken-device')
  .description('the real Node device host, unchanged or with an excluded design of docs/PROTOCOL.md §8.5 injected')
  .requiredOption('--image <file>', 'keystore image (keystore.bin)')
  .option('--host <address>', 'hub address', '127.0.0.1')
  .requiredOption('--port <port>', 'hub port', (v) => Number(v))
  .addOption(new Option('--design <design>', 'device design').choices([...DEVICE_DESIGNS]).default('reference'))
  .option('--keepalive <duration>', 'keep-alive interval', duration)
  .option('--idle-timeout <duration>', 'idle timeout', duration)
  .option('--handshake-timeout <duration>', 'handshake timeout', duration)
  .option('--pid-file <file>', 'write the process id here')
  .action((flags: { image: string; host: string; port: number; design: DeviceDesign; keepalive?: number; idleTimeout?: number; handshakeTimeout?: number; pidFile?: string }) => {
    if (flags.pidFile !== undefined) writeFileSync(flags.pidFile, `${process.pid}\n`);
    const timing = {
      ...(flags.keepalive === undefined ? {} : { keepaliveIntervalMs: flags.keepalive }),
      ...(flags.idleTimeout === undefined ? {} : { idleTimeoutMs: flags.idleTimeout }),
      ...(flags.handshakeTimeout === undefined ? {} : { handshakeTimeoutMs: flags.handshakeTimeout }),
    };
    const launched = launchDevice({ image: flags.image, host: flags.host, port: flags.port, design: flags.design, timing });
    const log = (event: string, fields: Record<string, unknown> = {}) => process.stdout.write(`${JSON.stringify({ time: new Date().toISOString(), design: flags.design, event, ...fields })}\n`);
    launched.device.on('established', (e) => log('established', e));
    launched.device.on('keyStored', (e) => log('keyStored', e));
    launched.device.on('keyPromoted', (e) => log('keyPromoted', e));
    launched.device.on('recovered', (e) => log('recovered', e));
    log('booted', { activeKeyId: launched.device.keys.active.id, futureKeyId: launched.device.keys.future?.id ?? null });
    const stop = () => {
      launched.stop();
      process.exit(0);
    };
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });

program.parse(process.argv);
