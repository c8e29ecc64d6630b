/**
 * The rotation schedule (tools/hub/scheduler.ts): a pass walks the devices
 * online that it is given, not every device the hub knows (a PostgreSQL
 * instance knows the whole fleet and serves a share of it), and nothing
 * at all while both triggers are off.
 */
import { RotationScheduler } from '../tools/hub/scheduler';

const ids = (n: number) => Array.from({ length: n }, (_, i) => `d${String(i).padStart(15, '0')}`);

test('a pass considers only the candidates, each due by time or by count, up to the per-pass cap', () => {
  const scheduler = new RotationScheduler({ intervalMs: 1000, jitterMs: 0, maxMessages: 3, maxStartsPerPass: 2 }, () => 0);
  const [a, b, c, d] = ids(4) as [string, string, string, string];
  for (const id of [a, b, c]) scheduler.keyActivated(id, 0);
  scheduler.keyActivated(d, 5000);
  const asked: string[] = [];
  const eligible = (id: string) => {
    asked.push(id);
    return true;
  };
  expect(scheduler.due(999, [a, b, c, d], eligible)).toEqual([]); // not yet
  asked.length = 0;
  expect(scheduler.due(1000, [c, a], eligible)).toEqual([c, a]); // b is due but not online: not even asked
  expect(asked).toEqual([c, a]);
  expect(scheduler.due(1000, [a, b, c], eligible)).toEqual([a, b]); // the cap
  for (let i = 0; i < 3; i++) scheduler.messageCounted(d);
  expect(scheduler.due(1000, [d], eligible)).toEqual([d]); // by count, long before its time
  expect(scheduler.due(1000, [d], () => false)).toEqual([]); // not eligible (a rotation in flight)
  expect(scheduler.due(1000, ['unknown'], eligible)).toEqual([]); // online but never activated (revoked meanwhile)
});

test('with both triggers off a pass walks nothing', () => {
  const scheduler = new RotationScheduler({ intervalMs: 0, maxMessages: 0 });
  const all = ids(1000);
  for (const id of all) scheduler.keyActivated(id, 0);
  let walked = 0;
  const candidates: Iterable<string> = {
    *[Symbol.iterator]() {
      for (const id of all) {
        walked++;
        yield id;
      }
    },
  };
  expect(scheduler.due(Number.MAX_SAFE_INTEGER, candidates, () => true)).toEqual([]);
  expect(walked).toBe(0);
  // The same fleet with a trigger on: the pass walks the candidates.
  scheduler.setPolicy({ intervalMs: 1 });
  expect(scheduler.due(Number.MAX_SAFE_INTEGER, candidates, () => true)).toHaveLength(500);
  expect(walked).toBe(501); // the cap stops the walk (one more is read to find it reached)
});
