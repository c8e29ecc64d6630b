/**
 * A monotonic millisecond clock for the core's `now` (which must never
 * decrease) over the SDK's `Time.ticks` / `Time.delta`.
 *
 * Why not `Time.ticks` directly: on ESP32 it is a 32-bit millisecond counter
 * returned as a signed integer (negative after 24.8 days, wrapping after
 * 49.7); in the simulator it is the wall clock, which can step backwards.
 * `Time.delta` does the right unsigned subtraction on ESP32; a negative
 * delta (wall clock stepped back) counts as zero.
 */
export interface TickSource {
  readonly ticks: number;
  delta(start: number, end?: number): number;
}

export class MonotonicClock {
  readonly #time: TickSource;
  #lastTicks: number;
  #elapsed = 0;

  constructor(time: TickSource) {
    this.#time = time;
    this.#lastTicks = time.ticks;
  }

  /** Milliseconds since this clock was created; non-decreasing. Read it at least once a day. */
  now(): number {
    const ticks = this.#time.ticks;
    const delta = this.#time.delta(this.#lastTicks, ticks);
    this.#lastTicks = ticks;
    if (delta > 0) this.#elapsed += delta;
    return this.#elapsed;
  }
}
