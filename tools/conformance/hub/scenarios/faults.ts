/**
 * Randomized fault runs for --duration: several real device cores (the
 * `faultDevices`) against the hub under test while the kit cuts their
 * connections after a random number of bytes, power-cycles them, asks for
 * rotations and sends application data at random. Then the faults stop, and
 * within a settling time every device must be in session with the hub
 * under its newest key, hold a single key (every rotation completed), and
 * have every message acknowledged. The seed is printed; the same seed
 * replays the same choices (the hub's own timing is not under its control).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { randomInt } from 'node:crypto';
import type { NodeDevice } from '../../../../hosts/node/device-host';
import type { KitDevice } from '../kit-devices';
import { adoptKeys, realDevice } from '../real-device';
import type { Scenario } from './scenario';

/** A small seeded PRNG for the run's choices (never for keys). */
function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const SETTLE_MS = 20_000;

interface Faulty {
  readonly kit: KitDevice;
  readonly node: NodeDevice;
  readonly sent: Set<number>;
  readonly delivered: Set<number>;
  faults: boolean;
}

export const faultsScenario: Scenario = {
  name: 'faults',
  description: 'randomized faults for --duration: real device cores with connections cut at random bytes, power cuts, rotations and data; then every device must be in sync',
  covers: ['H-HELLO-2', 'H-CONFIRM-3', 'W-DATA-2'],
  exclusive: true,
  unavailable: (context) => ((context.options.durationMs ?? 0) <= 0 ? 'no --duration given' : undefined),
  async run(context, run) {
    const seed = context.options.seed ?? randomInt(0, 2 ** 31);
    context.log(`faults: seed ${seed}`);
    const random = mulberry32(seed);
    const devices: Faulty[] = [];
    const wanted = context.options.faultDevices ?? 4;
    const releases: (() => void)[] = [];
    try {
      for (let i = 0; i < wanted; i++) {
        const kit = context.claim();
        if (kit === undefined) break;
        releases.push(await context.link.budget.acquire());
        const entry: Faulty = { kit, node: undefined as unknown as NodeDevice, sent: new Set(), delivered: new Set(), faults: true };
        const node = realDevice(kit, {
          target: context.target,
          recording: run.recording,
          cutAfter: () => (entry.faults && random() < 0.35 ? Math.floor(random() * 600) : undefined),
        });
        (entry as { node: NodeDevice }).node = node;
        node.on('delivered', ({ messageId }) => entry.delivered.add(messageId));
        node.on('booted', () => {
          // A power cut loses the unacknowledged outbox (§7: at most once across a sender restart).
          entry.sent.clear();
          entry.delivered.clear();
        });
        devices.push(entry);
        node.start();
      }
      if (devices.length === 0) return;
      const until = performance.now() + (context.options.durationMs ?? 0);
      while (performance.now() < until && performance.now() < context.deadline) {
        const entry = devices[Math.floor(random() * devices.length)] as Faulty;
        const roll = random();
        if (roll < 0.15 && context.options.hooks?.rotate !== undefined) await context.requestRotation(entry.kit.deviceId).catch(() => undefined);
        else if (roll < 0.2) entry.node.powerCycle(20 + Math.floor(random() * 200));
        else if (roll < 0.6 && entry.node.online) {
          try {
            entry.sent.add(entry.node.send(new Uint8Array(1 + Math.floor(random() * 64))));
          } catch {
            // outbox full: the application waits (§7)
          }
        }
        await sleep(20 + Math.floor(random() * 80));
      }
      // Faults stop: every device must settle in sync.
      for (const entry of devices) entry.faults = false;
      const settled = performance.now() + SETTLE_MS;
      const inSync = (entry: Faulty): boolean => entry.node.online && entry.node.powered && entry.node.keys.future === undefined && [...entry.sent].every((id) => entry.delivered.has(id));
      while (performance.now() < settled && !devices.every(inSync)) await sleep(100);
      for (const entry of devices) {
        const name = `${entry.kit.deviceId} (seed ${seed})`;
        run.check('H-HELLO-2', entry.node.online, `${name}: not in session with the hub ${SETTLE_MS} ms after the faults stopped`);
        if (entry.node.online) {
          run.check('H-CONFIRM-3', entry.node.keys.future === undefined, `${name}: still holds future key ${entry.node.keys.future?.id} ${SETTLE_MS} ms after the faults stopped (a rotation never confirmed)`);
          const missing = [...entry.sent].filter((id) => !entry.delivered.has(id));
          run.check('W-DATA-2', missing.length === 0, `${name}: messages ${missing.slice(0, 10).join(', ')} never acknowledged`);
        }
      }
    } finally {
      for (const entry of devices) {
        entry.node.stop();
        if (entry.node.powered) adoptKeys(entry.kit, entry.node.keys);
        context.release(entry.kit);
      }
      for (const release of releases) release();
    }
  },
};


