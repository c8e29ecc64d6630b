/**
 * Prometheus metrics of one hub (prom-client, its own Registry so several
 * hubs in one process never mix), served at /metrics by the operator API
 * (tools/hub/http/server.ts). Names follow Prometheus conventions
 * (lockstep_ prefix, base units, _total for counters, _seconds for times);
 * labels take values from small fixed sets only — outcome, error code
 * (modules/errors.ts), route pattern — never a device id, so the number of
 * series does not grow with the fleet.
 *
 * Event counters are fed by the hub's typed events as they happen; gauges
 * and the hub's own counters (connections refused, KEK operations, ...) are
 * read when Prometheus scrapes (`collect`), so metrics cost nothing between
 * scrapes beyond a few increments per event.
 */
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { FleetTracker, HubSubscriptions } from './http/fleet';

export interface HubMetrics {
  readonly registry: Registry;
  readonly httpRequests: Counter<'route' | 'method' | 'status'>;
  readonly revocations: Counter;
}

export function createHubMetrics(events: HubSubscriptions, fleet: FleetTracker, staleAfterMs: number): HubMetrics {
  const hub = events.hub;
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const stats = () => hub.stats();

  const handshakes = new Counter({ name: 'lockstep_handshakes_total', help: 'Device handshakes by outcome (ok; rejected: the HELLO did not authenticate; tls_failed: before any frame).', labelNames: ['outcome'], registers: [registry] });
  const handshakeOk = handshakes.labels('ok');
  const handshakeRejected = handshakes.labels('rejected');
  let tlsFailedSeen = 0;
  const rotations = new Counter({ name: 'lockstep_rotations_total', help: 'Key rotations by outcome (started: pending key durable; confirmed: the device proved it holds it; failed: a commit did not apply).', labelNames: ['outcome'], registers: [registry] });
  const rotationStarted = rotations.labels('started');
  const rotationConfirmed = rotations.labels('confirmed');
  const rotationFailed = rotations.labels('failed');
  const latency = new Histogram({
    name: 'lockstep_rotation_latency_seconds',
    help: 'From the pending key being durable (then offered) to the device\'s confirmation.',
    buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800],
    registers: [registry],
    collect() {
      for (const seconds of fleet.latencies.splice(0)) this.observe(seconds);
    },
  });
  void latency;
  const rejected = new Counter({ name: 'lockstep_rejected_frames_total', help: 'Frames and connections refused, by error code (docs/PROTOCOL.md error codes).', labelNames: ['code'], registers: [registry] });
  const commits = new Counter({ name: 'lockstep_commits_total', help: 'Group-commit transactions by outcome.', labelNames: ['outcome'], registers: [registry] });
  const commitOk = commits.labels('ok');
  const commitFailed = commits.labels('failed');
  const commitOps = new Counter({ name: 'lockstep_commit_ops_total', help: 'Key-slot writes committed (store pending, promote).', registers: [registry] });
  const commitLatency = new Histogram({ name: 'lockstep_commit_duration_seconds', help: 'Duration of one group-commit transaction (fsync included).', buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1], registers: [registry] });
  const revocations = new Counter({ name: 'lockstep_revocations_total', help: 'Devices revoked (keys erased, connections closed).', registers: [registry] });
  const rekeyRefused = new Counter({ name: 'lockstep_rekey_refused_total', help: 'Offered keys the device refused (once per episode), by refusal code (docs/PROTOCOL.md §11).', labelNames: ['code'], registers: [registry] });
  const httpRequests = new Counter({ name: 'lockstep_http_requests_total', help: 'Operator API requests by route pattern, method and status class.', labelNames: ['route', 'method', 'status'], registers: [registry] });

  events.on('deviceConnected', () => handshakeOk.inc());
  events.on('rejected', ({ deviceId, code }) => {
    if (deviceId === undefined) handshakeRejected.inc();
    rejected.labels(code).inc();
  });
  events.on('rotationStarted', () => rotationStarted.inc());
  events.on('keyConfirmed', () => rotationConfirmed.inc());
  events.on('storageError', () => rotationFailed.inc());
  events.on('deviceRevoked', () => revocations.inc());
  events.on('rekeyRefused', ({ code }) => rekeyRefused.labels(code).inc());
  events.on('committed', ({ ops, durationMs, ok }) => {
    (ok ? commitOk : commitFailed).inc();
    if (ok) commitOps.inc(ops);
    commitLatency.observe(durationMs / 1000);
  });

  // Read at scrape time.
  new Counter({
    name: 'lockstep_tls_handshake_failures_total',
    help: 'TLS handshakes that failed or timed out (before any protocol frame).',
    registers: [registry],
    collect() {
      const now = stats().tlsHandshakeFailures;
      if (now > tlsFailedSeen) handshakes.labels('tls_failed').inc(now - tlsFailedSeen);
      tlsFailedSeen = now;
      this.reset();
      this.inc(now);
    },
  });
  const fromStats = (name: string, help: string, read: () => number, labels?: Record<string, string>): void => {
    new Counter({
      name,
      help,
      labelNames: labels === undefined ? [] : Object.keys(labels),
      registers: [registry],
      collect() {
        this.reset();
        if (labels === undefined) this.inc(read());
        else this.inc(labels, read());
      },
    });
  };
  fromStats('lockstep_connections_refused_total', 'Connections refused at the connection cap (every open one authenticated).', () => stats().refused);
  fromStats('lockstep_connections_evicted_total', 'Pre-authentication connections evicted for newer ones (docs/HUB.md §5).', () => stats().evicted);
  new Counter({
    name: 'lockstep_connections_dropped_total',
    help: 'Connections dropped by the hub, by reason.',
    labelNames: ['reason'],
    registers: [registry],
    collect() {
      const s = stats();
      this.reset();
      this.inc({ reason: 'slow_reader' }, s.droppedSlowReaders);
      this.inc({ reason: 'input_overflow' }, s.droppedInputOverflow);
    },
  });
  new Counter({
    name: 'lockstep_kek_operations_total',
    help: 'Key-encryption-key operations of this process (wrap, unwrap, unwrap_failed).',
    labelNames: ['operation'],
    registers: [registry],
    collect() {
      const ops = hub.store.kekOperations;
      this.reset();
      this.inc({ operation: 'wrap' }, ops.wrap);
      this.inc({ operation: 'unwrap' }, ops.unwrap);
      this.inc({ operation: 'unwrap_failed' }, ops.unwrapFailed);
    },
  });
  // Issue 14: recovery (docs/HUB.md §14), read from the hub's counters at scrape time; labels from fixed sets only.
  const fromRecord = (name: string, help: string, label: string, values: readonly string[], read: () => Record<string, number>): void => {
    new Counter({
      name,
      help,
      labelNames: [label],
      registers: [registry],
      collect() {
        const counts = read();
        this.reset();
        for (const value of values) this.inc({ [label]: value }, counts[value] ?? 0);
      },
    });
  };
  fromRecord('lockstep_recoveries_total', 'Authenticated recoveries by outcome (accepted, inSync, awaitingApproval, refused, rateLimited, keyIdsExhausted).', 'outcome',
    ['accepted', 'inSync', 'awaitingApproval', 'refused', 'rateLimited', 'keyIdsExhausted'], () => hub.recoveryCounters.decided);
  fromRecord('lockstep_recovery_needed_total', 'Recovery episodes detected (a known device\'s HELLO failed as after a rollback), by reason.', 'reason',
    ['unknownKeyId', 'authFailed', 'unusablePending', 'rekeyRefused'], () => hub.recoveryCounters.needed);
  fromRecord('lockstep_recovery_unauthenticated_total', 'Recovery steps before authentication that failed their check, by stage (init: RECOVER_INIT, finish: RECOVER_FINISH).', 'stage',
    ['init', 'finish'], () => hub.recoveryCounters.unauthenticated);
  fromStats('lockstep_recovery_source_limited_total', 'Connections whose source address had spent its recovery budget (no NO_KEY; docs/HUB.md §14.2).', () => hub.recoveryCounters.sourceLimited);
  new Gauge({
    name: 'lockstep_recovery_requests_pending',
    help: 'Recovery requests awaiting an operator\'s approval (policy approve).',
    registers: [registry],
    async collect() {
      try {
        this.set((await hub.recoveryRequests()).filter((r) => r.approvedAt === undefined).length);
      } catch {
        this.set(0);
      }
    },
  });
  const gauge = (name: string, help: string, read: () => number): void => {
    new Gauge({
      name,
      help,
      registers: [registry],
      collect() {
        this.set(read());
      },
    });
  };
  gauge('lockstep_connections', 'Open device connections (TLS handshakes included).', () => stats().connections);
  gauge('lockstep_connections_unauthenticated', 'Open connections whose HELLO has not authenticated yet.', () => stats().unauthenticated);
  gauge('lockstep_sessions', 'Devices online (an authenticated session).', () => stats().devicesOnline);
  gauge('lockstep_devices', 'Devices the hub serves.', () => hub.deviceIds.length);
  new Gauge({
    name: 'lockstep_devices_pending',
    help: 'Devices with a pending (offered, unconfirmed) key.',
    registers: [registry],
    collect() {
      let pending = 0;
      for (const id of hub.deviceIds) if (fleet.get(id)?.pendingSince !== undefined) pending++;
      this.set(pending);
    },
  });
  new Gauge({
    name: 'lockstep_pending_oldest_age_seconds',
    help: 'Age of the oldest pending key (0 when none).',
    registers: [registry],
    collect() {
      const now = Date.now();
      let oldest = 0;
      let stale = 0;
      for (const id of hub.deviceIds) {
        const since = fleet.get(id)?.pendingSince;
        if (since === undefined) continue;
        oldest = Math.max(oldest, now - since);
        if (now - since > staleAfterMs) stale++;
      }
      this.set(oldest / 1000);
      staleGauge.set(stale);
    },
  });
  const staleGauge = new Gauge({ name: 'lockstep_devices_pending_stale', help: 'Devices whose pending key is older than the API\'s staleAfter (set with lockstep_pending_oldest_age_seconds).', registers: [registry] });
  // Issue 16: an instance of a PostgreSQL tier (docs/HUB.md §13.7): its leases, the writes the fence refused, the database.
  const tier = () => hub.tierFigures;
  if (tier() !== undefined) {
    const figures = () => tier() as NonNullable<ReturnType<typeof tier>>;
    fromStats('lockstep_leases_taken_total', 'Device leases this instance took (a HELLO that authenticated under the database\'s keys, or a recovery request).', () => figures().leasesTaken);
    fromStats('lockstep_leases_lost_total', 'Leases this instance lost (another instance took the device; its connection here was closed).', () => figures().leasesLost);
    fromStats('lockstep_lease_refused_total', 'Connections the lease gate closed before the core (not a HELLO of the session, no such device, HELLO not authenticating, too many leases in flight).', () => figures().leaseRefused);
    fromStats('lockstep_lease_failures_total', 'Leases the database could not give (unreachable, a timeout): the device retries.', () => figures().leaseFailures);
    fromStats('lockstep_writes_fenced_out_total', 'Key-slot writes that did not apply because the fence moved (another instance holds the lease): nothing stale committed.', () => figures().fencedOut);
    fromStats('lockstep_database_errors_total', 'Group-commit transactions that failed (PostgreSQL unreachable, a session terminated, a timeout): the devices involved are dropped and retry.', () => figures().failedTransactions);
    gauge('lockstep_leases_held', 'Devices whose lease this instance holds.', () => figures().leased);
    gauge('lockstep_connections_awaiting_lease', 'Connections whose first HELLO waits for its lease.', () => figures().waitingForLease);
    gauge('lockstep_database_listening', '1 while the LISTEN connection (wake-ups) is up; 0 while it reconnects with backoff (the poll carries on).', () => (figures().listening ? 1 : 0));
    gauge('lockstep_database_backoff_seconds', 'The LISTEN connection\'s reconnect delay while it is down (0 while it is up; 0.1 s doubling to 5 s).', () => figures().listenBackoffMs / 1000);
    new Gauge({
      name: 'lockstep_database_pool_connections',
      help: 'The bounded PostgreSQL pool: connections open, idle, and queries waiting for one.',
      labelNames: ['state'],
      registers: [registry],
      collect() {
        const pool = figures().pool;
        this.set({ state: 'total' }, pool.total);
        this.set({ state: 'idle' }, pool.idle);
        this.set({ state: 'waiting' }, pool.waiting);
      },
    });
  }
  return { registry, httpRequests, revocations };
}
