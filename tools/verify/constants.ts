/**
 * The simulated environment's timing, and the liveness bound derived from
 * it (docs/VERIFICATION.md §4). The cores run with their production timers
 * (modules/protocol/constants.ts); only the environment is chosen here.
 */
import { HANDSHAKE_TIMEOUT_MS, IDLE_TIMEOUT_MS } from '../../modules/protocol/constants';

/** The simulated clock starts at a realistic epoch (never at 0). */
export const SIM_EPOCH_MS = 1_700_000_000_000;

/** One-way network latency once faults have stopped (the "calm" network). */
export const CALM_ONE_WAY_MS = 25;
export const CALM_ROUND_TRIP_MS = 2 * CALM_ONE_WAY_MS;
/** Random mode: one-way latency while faults happen, drawn from [min, max]. */
export const CHAOS_ONE_WAY_MIN_MS = 1;
export const CHAOS_ONE_WAY_MAX_MS = 400;

/** Hub database: a commit is durable this long after the write starts. */
export const DB_COMMIT_MS = 4;
/** Hub host: restart this long after a crash. */
export const HUB_RESTART_MS = 1_500;
/** Device: boot this long after power returns (power returns at once). */
export const DEVICE_BOOT_MS = 300;
/** Device host: reconnect backoff, doubling from the initial delay up to the cap (no jitter: the seed drives everything). */
export const RECONNECT_INITIAL_MS = 250;
export const RECONNECT_MAX_MS = 4_000;
/** Network: how long a peer takes to notice a reset connection (RST). */
export const RESET_NOTICE_MS = CALM_ONE_WAY_MS;

/** Hub instances: input a connection may send before its lease is taken (the hub's maxQueuedInputBytes). */
export const LEASE_HELD_BYTES = 128 * 1024;
/**
 * Hub instances: how long an injected pause (SIGSTOP … SIGCONT) lasts — a
 * stall, and one past the device's idle timeout and its reconnect, so that
 * the device moves to the other instance and rotates there meanwhile.
 */
export const INJECTED_PAUSES_MS = [2_000, IDLE_TIMEOUT_MS + 15_000] as const;

/** Exhaustive mode: the delays injected at a delivery (past the handshake timeout, past the idle timeout). */
export const INJECTED_DELAYS_MS = [HANDSHAKE_TIMEOUT_MS + 1_000, IDLE_TIMEOUT_MS + 1_000] as const;

/**
 * Liveness bound (docs/VERIFICATION.md §4). After the last fault at time F:
 * - a dead, half-open or poisoned session is noticed by the device within
 *   IDLE_TIMEOUT_MS (it hears nothing it can authenticate);
 * - the hub is back within HUB_RESTART_MS;
 * - the device connects within RECONNECT_MAX_MS, and one more reconnect may
 *   be needed if the hub refused the first HELLO while a persist of the same
 *   device was still outstanding (DEVICE_BUSY);
 * - on the connection that succeeds, device and hub converge (one active
 *   key, no future/pending key, both outboxes empty) within
 *   CONVERGENCE_ROUND_TRIPS round trips plus two database commits:
 *   CHALLENGE → HELLO → WELCOME+REKEY → REKEY_ACK → CONFIRM is 2.5 round
 *   trips, and the last DATA needs its DATA_ACK (one more).
 */
export const CONVERGENCE_ROUND_TRIPS = 4;
export const CONNECTED_BOUND_MS = CONVERGENCE_ROUND_TRIPS * CALM_ROUND_TRIP_MS + 2 * DB_COMMIT_MS;
export const LIVENESS_BOUND_MS =
  IDLE_TIMEOUT_MS + HUB_RESTART_MS + 2 * RECONNECT_MAX_MS + CONVERGENCE_ROUND_TRIPS * CALM_ROUND_TRIP_MS + 2 * DB_COMMIT_MS;
/**
 * A fault-free round (app message both ways + one rotation, issued while in
 * sync on an established session) converges within this many round trips:
 * REKEY → REKEY_ACK → CONFIRM is 1.5, the DATA/DATA_ACK pairs overlap.
 */
export const ROUND_ROUND_TRIPS = 2;
export const ROUND_BOUND_MS = ROUND_ROUND_TRIPS * CALM_ROUND_TRIP_MS + 2 * DB_COMMIT_MS;
