/**
 * The pre-authentication eviction policy (tools/hub/eviction.ts,
 * docs/HUB.md §5.1): the source holding the most gives way, its oldest
 * first; sources are IPv4 addresses or IPv6 /64s.
 */
import { SourceCap, sourceOf } from '../tools/hub/eviction';

test('the source with the most gives way, its oldest first; others are never chosen while it is larger', () => {
  const cap = new SourceCap<string>(4);
  cap.add('device', '10.0.0.3');
  for (const id of ['f1', 'f2', 'f3']) cap.add(id, '10.0.0.2');
  expect(cap.full).toBe(true);
  expect(cap.victim()).toBe('f1');
  cap.remove('f1');
  expect(cap.victim()).toBe('f2');
  cap.remove('f2');
  // 10.0.0.2 holds one (f3), 10.0.0.3 one: the tie goes to the source that reached that count first.
  expect(cap.size).toBe(2);
  expect(cap.victim()).toBe('device');
  cap.remove('device');
  cap.remove('f3');
  expect(cap.victim()).toBeUndefined();
  expect(cap.size).toBe(0);
});

test('the largest source is tracked as counts go up and down', () => {
  const cap = new SourceCap<number>(100);
  for (let i = 0; i < 5; i++) cap.add(i, 'a');
  for (let i = 5; i < 8; i++) cap.add(i, 'b');
  expect(cap.victim()).toBe(0);
  for (let i = 0; i < 3; i++) cap.remove(i); // a: 2, b: 3
  expect(cap.victim()).toBe(5);
  cap.remove(5);
  cap.remove(6); // a: 2, b: 1
  expect(cap.victim()).toBe(3);
  cap.remove(99); // not counted: no-op
  cap.add(3, 'a'); // already counted: no-op
  expect(cap.size).toBe(3);
  expect(cap.over).toBe(false);
});

test('sources: IPv4 as is, IPv4-mapped as IPv4, IPv6 by its /64', () => {
  expect(sourceOf('127.0.0.2')).toBe('127.0.0.2');
  expect(sourceOf('::ffff:192.0.2.7')).toBe('192.0.2.7');
  expect(sourceOf('2001:db8:0:1::5')).toBe('2001:db8:0:1::/64');
  expect(sourceOf('2001:0db8:0000:0001:aaaa:bbbb:cccc:dddd')).toBe('2001:db8:0:1::/64');
  expect(sourceOf('2001:db8::1')).toBe('2001:db8:0:0::/64');
  expect(sourceOf('::1')).toBe('0:0:0:0::/64');
  expect(sourceOf(undefined)).toBe('?');
});
