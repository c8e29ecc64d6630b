/**
 * Which pre-authentication connection gives way when there are too many
 * (docs/HUB.md §5): the source — remote IPv4 address, or IPv6 /64 — holding
 * the most pre-authentication connections gives way, its oldest first.
 *
 * Rules:
 * - A flood from one source only ever evicts its own connections while any
 *   other source holds fewer: a device on another address is never its
 *   victim.
 * - Within one source (a carrier NAT: device and flood share the address)
 *   the oldest goes first, so what protects a device there is lifetime:
 *   cap / flood rate.
 * - Every operation is O(1): each source keeps an insertion-ordered Set
 *   (oldest first), and sources are bucketed by their count so the largest
 *   is found without a scan (`#largest` only moves by one per operation).
 */

/** The eviction group of a remote address: IPv4 as is (also when IPv4-mapped), IPv6 by its /64. */
export function sourceOf(address: string | undefined): string {
  if (address === undefined) return '?';
  if (address.startsWith('::ffff:') && address.includes('.')) return address.slice(7);
  if (!address.includes(':')) return address;
  const [head = '', tail = ''] = address.split('::');
  const left = head === '' ? [] : head.split(':');
  const right = tail === '' ? [] : tail.split(':');
  const groups = address.includes('::') ? [...left, ...Array<string>(8 - left.length - right.length).fill('0'), ...right] : left;
  return `${groups.slice(0, 4).map((g) => g.toLowerCase().replace(/^0+(?=.)/, '')).join(':')}::/64`;
}

export class SourceCap<T> {
  readonly #limit: number;
  readonly #bySource = new Map<string, Set<T>>();
  readonly #sourceOf = new Map<T, string>();
  /** count → the sources holding exactly that many (insertion-ordered). */
  readonly #buckets = new Map<number, Set<string>>();
  #largest = 0;

  constructor(limit: number) {
    this.#limit = limit;
  }

  get size(): number {
    return this.#sourceOf.size;
  }

  get full(): boolean {
    return this.#sourceOf.size >= this.#limit;
  }

  get over(): boolean {
    return this.#sourceOf.size > this.#limit;
  }

  add(item: T, source: string): void {
    if (this.#sourceOf.has(item)) return;
    this.#sourceOf.set(item, source);
    let items = this.#bySource.get(source);
    if (items === undefined) {
      items = new Set();
      this.#bySource.set(source, items);
    }
    items.add(item);
    this.#move(source, items.size - 1, items.size);
    this.#largest = Math.max(this.#largest, items.size);
  }

  /** Stops counting `item` (it authenticated or went away); no-op when not counted. */
  remove(item: T): void {
    const source = this.#sourceOf.get(item);
    if (source === undefined) return;
    this.#sourceOf.delete(item);
    const items = this.#bySource.get(source) as Set<T>;
    items.delete(item);
    if (items.size === 0) this.#bySource.delete(source);
    this.#move(source, items.size + 1, items.size);
    if (this.#buckets.get(this.#largest) === undefined) this.#largest = items.size;
  }

  /** The one to evict: the oldest of the largest source (undefined when nothing is counted). */
  victim(): T | undefined {
    const source = this.#buckets.get(this.#largest)?.values().next().value;
    if (source === undefined) return undefined;
    return this.#bySource.get(source)?.values().next().value;
  }

  #move(source: string, from: number, to: number): void {
    const old = this.#buckets.get(from);
    if (old !== undefined) {
      old.delete(source);
      if (old.size === 0) this.#buckets.delete(from);
    }
    if (to === 0) return;
    let bucket = this.#buckets.get(to);
    if (bucket === undefined) {
      bucket = new Set();
      this.#buckets.set(to, bucket);
    }
    bucket.add(source);
  }
}
