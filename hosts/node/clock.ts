/** The monotonic millisecond clock the cores want on Node (never Date.now(): it can jump). */
export function monotonicNow(): number {
  return Math.floor(performance.now());
}
