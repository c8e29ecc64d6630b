/**
 * `Lockstep` on the Moddable SDK: the channel (channel.ts) given the SDK's
 * services — `mc/config`, `Timer`, a monotonic clock over `Time`, the hub
 * socket (`socket` / `securesocket`) through SocketTransport, and the
 * target's platform (hosts/moddable/platform: keystore, AEAD, randomness,
 * network). The module `lockstep` (lockstep.js) re-exports this one; its
 * types are lockstep.d.ts, which check.ts proves this module matches.
 */
import config from 'mc/config';
import Time from 'time';
import Timer from 'timer';
import { MonotonicClock } from '../clock';
import { openHubSocket } from '../hub-socket';
import { platform } from '../platform';
import { SocketTransport } from '../socket-transport';
import { LockstepChannel } from './channel';
import type { LockstepOptions } from './lockstep';

export { LockstepError } from '../../../modules/errors';

const clock = new MonotonicClock(Time);

function log(line: string): void {
  trace(`[lockstep ${(clock.now() / 1000).toFixed(3)}] ${line}\n`);
}

export class Lockstep extends LockstepChannel {
  constructor(options: LockstepOptions = {}) {
    const raw = config as Readonly<Record<string, unknown>> & { file?: { root?: string } };
    super(options, {
      config: raw,
      fileRoot: raw.file?.root ?? '',
      platform,
      openConnection: (settings, events) => new SocketTransport(() => openHubSocket(settings), events, (callback) => {
        Timer.set(callback, 0);
      }),
      timers: { set: (callback, delayMs) => Timer.set(callback, delayMs), clear: (handle) => Timer.clear(handle as Timer) },
      clock,
      log,
      defer: (callback) => {
        Timer.set(callback, 0);
      },
    });
  }
}
