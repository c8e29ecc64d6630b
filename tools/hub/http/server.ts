/**
 * The operator API (docs/HUB.md §12): fastify on its own listener (HTTP or
 * HTTPS), off unless HubOptions.http is given.
 *
 * Rules:
 * - Every route needs a bearer token (checked in preParsing: after the
 *   rate limit, before a body is read) (tools/hub/http/auth.ts) of the scope
 *   its `config.scope` names; a route that names none needs `admin` (deny
 *   by default). Only the dashboard's static files are `public` (they hold
 *   no data: the page calls the API with the token it was given). Unknown
 *   paths answer 401 without a token, 404 with one.
 * - Bodies and query strings are validated against the schemas
 *   (tools/hub/http/schemas.ts); every error is `{ error: { code, message } }`
 *   with a stable code. Responses go through their schemas, so nothing a
 *   schema does not list (a key) can be serialised.
 * - Rate limit per client address, before authentication (so guessing
 *   tokens is bounded too); mutations get a fifth of the budget.
 * - Administrative actions are written to the audit trail (who: the token
 *   id) before the response; a refused one is recorded too.
 */
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest, type RouteOptions } from 'fastify';
import rateLimit from '@fastify/rate-limit';
import swagger from '@fastify/swagger';
import { isLockstepError } from '../../../modules/errors';
import type { Logger } from '../log';
import { createHubMetrics, type HubMetrics } from '../metrics';
import { newDeviceRecord, parseHubRecord, toHubRecordJson, type DeviceRecord } from '../records';
import type { OperatorHub } from './operator-hub';
import { allows, TokenVerifier, type Principal } from './auth';
import { FleetTracker, HubSubscriptions, type FleetEntry } from './fleet';
import { checkHttpOptions, DEFAULT_HTTP_PORT, type HttpOptions, type OperatorApi, type Scope } from './options';
import * as S from './schemas';

export interface RunningApi extends OperatorApi {
  readonly metrics: HubMetrics;
}

/** Test seam: extra routes registered like the real ones (the auth test's broken variant). */
export interface ApiExtensions {
  readonly register?: (app: FastifyInstance) => void;
}

declare module 'fastify' {
  interface FastifyContextConfig {
    scope?: Scope | 'public';
  }
  interface FastifyRequest {
    principal?: Principal;
  }
}

class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: S.ApiErrorCode,
    message: string,
  ) {
    super(message);
  }
}

const MAX_BODY_BYTES = 1024 * 1024;

export async function startOperatorApi(hub: OperatorHub, options: HttpOptions, log: Logger, extensions: ApiExtensions = {}): Promise<RunningApi> {
  checkHttpOptions(options);
  const verifier = new TokenVerifier(options.tokens);
  const staleAfterMs = options.staleAfterMs ?? 60_000;
  const events = new HubSubscriptions(hub);
  const fleet = await FleetTracker.load(events);
  const metrics = createHubMetrics(events, fleet, staleAfterMs);
  const started = Date.now();
  const requestsPerMinute = options.requestsPerMinute ?? 600;
  const tls = options.tls !== undefined;
  const app = Fastify({
    logger: false,
    bodyLimit: MAX_BODY_BYTES,
    ...(options.tls !== undefined ? { https: { cert: options.tls.cert, key: options.tls.key, minVersion: 'TLSv1.2' as const } } : {}),
    ajv: { customOptions: { removeAdditional: false, coerceTypes: true, allErrors: false } },
    return503OnClosing: true,
  }) as unknown as FastifyInstance;

  const routes: { method: string; url: string; scope: Scope | 'public' }[] = [];
  app.addHook('onRoute', (route: RouteOptions) => {
    const scope = route.config?.scope ?? 'admin';
    for (const method of [route.method].flat()) if (method !== 'HEAD') routes.push({ method, url: route.url, scope });
    if (scope === 'public') return;
    // preParsing: after the rate limiter (onRequest), before any body is read.
    const existing = route.preParsing === undefined ? [] : [route.preParsing].flat();
    route.preParsing = [async (request: FastifyRequest) => authenticate(request, scope), ...existing];
  });

  const authenticate = (request: FastifyRequest, scope: Scope): void => {
    const principal = verifier.verify(request.headers.authorization);
    if (principal === undefined) throw new ApiError(401, 'UNAUTHORIZED', 'a bearer token is required (Authorization: Bearer <token>)');
    if (!allows(principal.scope, scope)) throw new ApiError(403, 'FORBIDDEN', `this needs a token of scope ${scope}`);
    request.principal = principal;
  };

  await app.register(rateLimit, {
    global: true,
    max: requestsPerMinute,
    timeWindow: 60_000,
    hook: 'onRequest',
    keyGenerator: (request) => request.ip,
    errorResponseBuilder: (_request, context) => ({ statusCode: 429, error: { code: 'RATE_LIMITED', message: `rate limit: ${context.max} requests per minute; retry in ${context.after}` } }),
  });
  await app.register(swagger, {
    openapi: {
      openapi: '3.0.3',
      info: { title: 'Lockstep hub operator API', version: '1', description: 'Devices, rotation, revocation, audit trail and metrics of a Lockstep hub (docs/HUB.md §12). Never key material, except the one provision response.' },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
      security: [{ bearer: [] }],
    },
  });
  app.removeContentTypeParser('text/plain'); // JSON bodies only
  for (const schema of [S.errorSchema, S.deviceSchema, S.auditEntrySchema, S.revocationSchema]) app.addSchema(schema);

  app.setErrorHandler((error: Error & { statusCode?: number; code?: string; validation?: unknown }, _request, reply) => {
    if (error instanceof ApiError) return sendError(reply, error.status, error.code, error.message);
    if (error.validation !== undefined) return sendError(reply, 400, 'BAD_REQUEST', error.message);
    if (error.statusCode === 429) return sendError(reply, 429, 'RATE_LIMITED', error.message);
    if (error.code === 'FST_ERR_CTP_BODY_TOO_LARGE') return sendError(reply, 413, 'PAYLOAD_TOO_LARGE', `bodies are at most ${MAX_BODY_BYTES} bytes`);
    if (error.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') return sendError(reply, 415, 'UNSUPPORTED_MEDIA_TYPE', 'bodies are application/json');
    if (error.statusCode !== undefined && error.statusCode >= 400 && error.statusCode < 500) return sendError(reply, 400, 'BAD_REQUEST', error.message);
    log.error('apiFailed', { message: error.message });
    return sendError(reply, 500, 'INTERNAL', 'internal error');
  });
  app.setNotFoundHandler((request, reply) => {
    authenticate(request, 'read');
    return sendError(reply, 404, 'NOT_FOUND', 'no such route');
  });
  app.addHook('onSend', async (request, reply) => {
    if (!request.url.startsWith('/dashboard/')) reply.header('cache-control', 'no-store');
    reply.header('x-content-type-options', 'nosniff');
  });
  app.addHook('onResponse', async (request, reply) => {
    metrics.httpRequests.labels(request.routeOptions.url ?? 'unmatched', request.method, `${Math.floor(reply.statusCode / 100)}xx`).inc();
  });

  const view = (id: string) => deviceView(hub, fleet, id, staleAfterMs);

  const actor = (request: FastifyRequest): string => request.principal?.tokenId ?? '?';

  // ---- Health ----
  app.get('/api/v1/health', { config: { scope: 'read' }, schema: S.healthSchema }, async () => ({ status: 'ok', uptimeSeconds: (Date.now() - started) / 1000 }));
  app.get('/api/v1/ready', { config: { scope: 'read' }, schema: S.readySchema }, async (_request, reply) => {
    if (hub.addresses.length === 0) return sendError(reply, 503, 'NOT_READY', 'no device listener is open');
    await hub.store.ping(); // the database answers
    return { ready: true, listeners: hub.addresses.length, devices: hub.deviceIds.length };
  });
  app.get('/api/v1/session', { config: { scope: 'read' }, schema: S.sessionSchema }, async (request) => ({ tokenId: actor(request), scope: request.principal?.scope ?? 'read' }));
  app.get('/api/v1/stats', { config: { scope: 'read' }, schema: S.statsSchema }, async () => ({ ...hub.stats(), devices: hub.deviceIds.length }));
  app.get('/api/v1/rotations/rate', { config: { scope: 'read' }, schema: S.rateSchema }, async () => fleet.rate());

  // ---- Devices ----
  app.get('/api/v1/devices', { config: { scope: 'read' }, schema: S.listDevicesSchema }, async (request) => {
    const query = request.query as { offset: number; limit: number; filter: S.Filter; pendingOlderThanMs?: number; q?: string; mode?: string };
    const prefix = query.q?.toLowerCase() ?? '';
    const now = Date.now();
    const fleetCounts = { devices: 0, online: 0, offline: 0, pending: 0, outOfSync: 0 };
    const page: ReturnType<typeof view>[] = [];
    let total = 0;
    // Counts and filters from the tracker's entries (no allocation per device: 10,000 cost a few ms); the page's rows from the core.
    for (const [id, entry] of fleet.entries()) {
      const status = statusOf(entry, now, staleAfterMs);
      fleetCounts.devices++;
      if (entry.connected) fleetCounts.online++;
      else fleetCounts.offline++;
      if (entry.pending) fleetCounts.pending++;
      if (status === 'outOfSync') fleetCounts.outOfSync++;
      if (prefix !== '' && !id.startsWith(prefix)) continue;
      if (!matchesEntry(entry, status, query.filter)) continue;
      if (query.pendingOlderThanMs !== undefined && (!entry.pending || entry.pendingSince === undefined || now - entry.pendingSince < query.pendingOlderThanMs)) continue;
      if (query.mode !== undefined && hub.deviceState(id).mode !== query.mode) continue;
      if (total >= query.offset && page.length < query.limit && hub.hasDevice(id)) page.push(view(id));
      total++;
    }
    return { total, offset: query.offset, limit: query.limit, devices: page, fleet: fleetCounts };
  });
  app.get('/api/v1/devices/:id', { config: { scope: 'read' }, schema: S.getDeviceSchema }, async (request) => {
    const id = (request.params as { id: string }).id.toLowerCase();
    await requireDevice(hub, id);
    return { device: view(id), history: await hub.store.readAudit({ deviceId: id, limit: 50 }) };
  });
  const mutation = { rateLimit: { max: Math.max(1, Math.floor(requestsPerMinute / 5)), timeWindow: 60_000 } };
  app.post('/api/v1/devices/:id/rotate', { config: { scope: 'admin', ...mutation }, schema: S.rotateOneSchema }, async (request) => {
    const id = (request.params as { id: string }).id.toLowerCase();
    await requireDevice(hub, id);
    const result = await rotateOne(hub, id);
    await hub.audit({ actor: actor(request), action: 'device.rotate', deviceId: id, outcome: result.outcome, ...(result.code ? { detail: { code: result.code } } : {}) });
    if (result.outcome === 'refused') throw new ApiError(409, 'KEY_IDS_EXHAUSTED', `device ${id} has used its last key id: re-provision it`);
    return result;
  });
  app.post('/api/v1/rotations', { config: { scope: 'admin', ...mutation }, schema: S.rotateManySchema }, async (request) => {
    const body = request.body as { deviceIds?: string[]; filter?: S.Filter };
    const now = Date.now();
    const ids =
      body.deviceIds !== undefined
        ? body.deviceIds.map((d) => d.toLowerCase())
        : [...fleet.entries()].filter(([, entry]) => matchesEntry(entry, statusOf(entry, now, staleAfterMs), body.filter ?? 'all')).map(([id]) => id);
    const results = await Promise.all(ids.map((id) => (hub.hasDevice(id) ? rotateOne(hub, id) : { deviceId: id, outcome: 'refused' as const, code: 'UNKNOWN_DEVICE' })));
    await hub.audit(results.map((r) => ({ actor: actor(request), action: 'device.rotate', deviceId: r.deviceId, outcome: r.outcome, ...(r.code ? { detail: { code: r.code } } : {}) })));
    return { results };
  });
  app.post('/api/v1/devices/:id/revoke', { config: { scope: 'admin', ...mutation }, schema: S.revokeSchema }, async (request) => {
    const id = (request.params as { id: string }).id.toLowerCase();
    const reason = (request.body as { reason?: string } | null | undefined)?.reason;
    const revocation = await hub.revoke(id, actor(request), reason);
    if (revocation === undefined) {
      const earlier = await hub.store.revocation(id);
      await hub.audit({ actor: actor(request), action: 'device.revoke', deviceId: id, outcome: earlier ? 'alreadyRevoked' : 'unknownDevice' });
      if (earlier !== undefined) throw new ApiError(409, 'DEVICE_REVOKED', `device ${id} was revoked already`);
      throw new ApiError(404, 'UNKNOWN_DEVICE', `no device ${id}`);
    }
    return revocation;
  });
  app.post('/api/v1/devices/provision', { config: { scope: 'admin', ...mutation }, schema: S.provisionSchema }, async (request, reply) => {
    const { count, mode } = request.body as { count: number; mode?: 'classic' | 'dh' };
    const records = Array.from({ length: count }, () => newDeviceRecord(1, mode ?? 'classic'));
    await hub.store.insertDevices(records, Date.now());
    await hub.audit(records.map((r) => ({ actor: actor(request), action: 'device.provision', deviceId: r.deviceId, outcome: 'ok', detail: { keyId: r.active.id, mode: r.mode } })));
    reply.code(201).header('cache-control', 'no-store');
    return { records: records.map(toHubRecordJson) };
  });
  app.post('/api/v1/devices/import', { config: { scope: 'admin', ...mutation }, schema: S.importSchema }, async (request, reply) => {
    const records: DeviceRecord[] = (request.body as { records: unknown[] }).records.map((r) => parseHubRecord(r));
    const ids = new Set<string>();
    for (const record of records) {
      const refusal = ids.has(record.deviceId) ? 'twice in the request' : (await hub.store.revocation(record.deviceId)) ? 'revoked' : (await hub.store.getSummary(record.deviceId)) ? 'already provisioned' : undefined;
      ids.add(record.deviceId);
      if (refusal !== undefined) {
        for (const r of records) r.active.key.fill(0);
        await hub.audit({ actor: actor(request), action: 'device.import', deviceId: record.deviceId, outcome: 'refused', detail: { reason: refusal } });
        throw new ApiError(409, refusal === 'revoked' ? 'DEVICE_REVOKED' : 'ALREADY_PROVISIONED', `device ${record.deviceId}: ${refusal}; nothing imported`);
      }
    }
    await hub.store.insertDevices(records, Date.now());
    await hub.audit(records.map((r) => ({ actor: actor(request), action: 'device.import', deviceId: r.deviceId, outcome: 'ok', detail: { keyId: r.active.id } })));
    for (const r of records) r.active.key.fill(0);
    reply.code(201);
    return { imported: [...ids] };
  });
  app.get('/api/v1/revocations', { config: { scope: 'read' }, schema: S.revocationsSchema }, async (request) => ({ revocations: await hub.store.revocationsAfter((request.query as { after: number }).after) }));
  // ---- Recovery (issue 14, docs/HUB.md §14) ----
  app.get('/api/v1/recovery', { config: { scope: 'read' }, schema: S.recoverySchema }, async (request) => {
    const { limit } = request.query as { limit: number };
    const policy = hub.recoveryPolicy;
    return {
      policy: { mode: policy.mode, perDeviceLimit: policy.perDeviceLimit, windowSeconds: policy.windowMs / 1000, hubStaticId: hub.staticKeyIds?.current ?? null },
      requests: (await hub.recoveryRequests()).slice(0, limit).map((r) => ({ ...r, approvedAt: r.approvedAt ?? null, approvedBy: r.approvedBy ?? null })),
      recent: await hub.recentRecoveries(limit),
    };
  });
  app.post('/api/v1/devices/:id/recovery/approve', { config: { scope: 'admin', ...mutation }, schema: S.approveRecoverySchema }, async (request) => {
    const id = (request.params as { id: string }).id.toLowerCase();
    const outcome = await hub.approveRecovery(id, actor(request)); // audited as recovery.approve in the same transaction
    if (outcome === 'missing') {
      await requireDevice(hub, id); // DEVICE_REVOKED when it was revoked
      throw new ApiError(404, 'UNKNOWN_DEVICE', `no device ${id}`);
    }
    if (outcome === 'none') {
      await hub.audit({ actor: actor(request), action: 'recovery.approve', deviceId: id, outcome: 'noRequest' });
      throw new ApiError(409, 'NO_RECOVERY_REQUEST', `no recovery request recorded for ${id} (the device asks first)`);
    }
    return { deviceId: id, outcome };
  });

  // ---- Audit, metrics, OpenAPI ----
  app.get('/api/v1/audit', { config: { scope: 'read' }, schema: S.auditSchema }, async (request) => ({ entries: await hub.store.readAudit(request.query as Parameters<typeof hub.store.readAudit>[0]) }));
  app.get('/metrics', { config: { scope: 'read' }, schema: { summary: 'Prometheus metrics (text format 0.0.4)', hide: true } as object }, async (_request, reply) => {
    reply.header('content-type', metrics.registry.contentType);
    return metrics.registry.metrics();
  });
  app.get('/api/v1/openapi.json', { config: { scope: 'read' }, schema: { hide: true } as object }, async () => app.swagger());

  // ---- Dashboard (static, public: no data in these files) ----
  if (options.dashboard !== false) {
    const files = dashboardFiles();
    app.get('/', { config: { scope: 'public' }, schema: { hide: true } as object }, async (_request, reply) => reply.redirect('/dashboard/'));
    for (const [name, file] of files) {
      app.get(`/dashboard/${name}`, { config: { scope: 'public' }, schema: { hide: true } as object }, async (_request, reply) => {
        reply.header('content-type', file.type);
        reply.header('cache-control', 'no-cache');
        reply.header('content-security-policy', "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'");
        reply.header('referrer-policy', 'no-referrer');
        return file.body;
      });
    }
  }
  extensions.register?.(app);

  await app.listen({ host: options.host ?? '127.0.0.1', port: options.port ?? DEFAULT_HTTP_PORT });
  const info = app.server.address() as { address: string; port: number };
  const address = { host: info.address, port: info.port, tls };
  log.info('apiListening', { host: address.host, port: address.port, tls });
  return {
    address,
    routes,
    metrics,
    close: async () => {
      await app.close();
      events.dispose();
    },
  };
}

function sendError(reply: FastifyReply, status: number, code: S.ApiErrorCode, message: string): FastifyReply {
  return reply.code(status).header('content-type', 'application/json; charset=utf-8').send(JSON.stringify({ error: { code, message } }));
}

async function requireDevice(hub: OperatorHub, id: string): Promise<void> {
  if (hub.hasDevice(id)) return;
  if ((await hub.store.revocation(id)) !== undefined) throw new ApiError(404, 'DEVICE_REVOKED', `device ${id} was revoked`);
  throw new ApiError(404, 'UNKNOWN_DEVICE', `no device ${id}`);
}

async function rotateOne(hub: OperatorHub, id: string): Promise<{ deviceId: string; outcome: 'started' | 'queued' | 'refused'; code?: string }> {
  try {
    return { deviceId: id, outcome: await hub.rotate(id) };
  } catch (error) {
    if (isLockstepError(error)) return { deviceId: id, outcome: 'refused', code: error.code };
    throw error;
  }
}

export interface DeviceViewJson {
  deviceId: string;
  mode: string;
  activeKeyId: number;
  pendingKeyId: number | null;
  pendingSince: number | null;
  connection: 'online' | 'offline';
  persisting: boolean;
  rotationQueued: boolean;
  lastSeenAt: number | null;
  activeSince: number;
  createdAt: number | null;
  rotations: number;
  lastRejection: { code: string; at: number } | null;
  status: 'ok' | 'pending' | 'outOfSync' | 'offline';
}

/**
 * Out of sync, as far as the hub can tell: a pending key older than
 * `staleAfterMs` (offered, never confirmed), or a frame of the device
 * rejected after its last good handshake.
 */
export function deviceView(hub: OperatorHub, fleet: FleetTracker, id: string, staleAfterMs: number): DeviceViewJson {
  const state = hub.deviceState(id);
  const entry = fleet.get(id);
  const pendingSince = state.pendingKeyId === undefined ? null : (entry?.pendingSince ?? null);
  const rejectedSinceConnect = entry?.lastRejection !== undefined && (entry.lastConnectedAt === undefined || entry.lastRejection.at >= entry.lastConnectedAt);
  const stale = pendingSince !== null && Date.now() - pendingSince > staleAfterMs;
  const status = stale || rejectedSinceConnect ? 'outOfSync' : state.pendingKeyId !== undefined ? 'pending' : state.connected ? 'ok' : 'offline';
  return {
    deviceId: state.deviceId,
    mode: state.mode,
    activeKeyId: state.activeKeyId,
    pendingKeyId: state.pendingKeyId ?? null,
    pendingSince,
    connection: state.connected ? 'online' : 'offline',
    persisting: state.persisting,
    rotationQueued: state.rotationQueued,
    lastSeenAt: state.lastSeenAt ?? null,
    activeSince: state.activeSince,
    createdAt: entry?.createdAt ?? null,
    rotations: entry?.rotations ?? 0,
    lastRejection: entry?.lastRejection ?? null,
    status,
  };
}

/** A device's status from what the tracker knows (see deviceView). */
function statusOf(entry: FleetEntry, now: number, staleAfterMs: number): DeviceViewJson['status'] {
  const rejectedSinceConnect = entry.lastRejection !== undefined && (entry.lastConnectedAt === undefined || entry.lastRejection.at >= entry.lastConnectedAt);
  const stale = entry.pending && entry.pendingSince !== undefined && now - entry.pendingSince > staleAfterMs;
  return stale || rejectedSinceConnect ? 'outOfSync' : entry.pending ? 'pending' : entry.connected ? 'ok' : 'offline';
}

function matchesEntry(entry: FleetEntry, status: DeviceViewJson['status'], filter: S.Filter): boolean {
  switch (filter) {
    case 'all':
      return true;
    case 'online':
      return entry.connected;
    case 'offline':
      return !entry.connected;
    case 'pending':
      return entry.pending;
    case 'outOfSync':
      return status === 'outOfSync';
  }
}

const CONTENT_TYPES: Record<string, string> = {
  html: 'text/html; charset=utf-8',
  js: 'text/javascript; charset=utf-8',
  css: 'text/css; charset=utf-8',
};

/** The dashboard's files, read once: tools/hub/dashboard/ of this checkout, and uPlot from node_modules. */
function dashboardFiles(): Map<string, { type: string; body: Buffer }> {
  const dir = dashboardDir();
  const require = createRequire(join(process.cwd(), 'noop.js'));
  const uplot = dirname(require.resolve('uplot/dist/uPlot.iife.min.js'));
  const sources: [string, string][] = [
    ['', join(dir, 'index.html')],
    ['index.html', join(dir, 'index.html')],
    ['app.js', join(dir, 'app.js')],
    ['style.css', join(dir, 'style.css')],
    ['uplot.js', join(uplot, 'uPlot.iife.min.js')],
    ['uplot.css', join(uplot, 'uPlot.min.css')],
  ];
  return new Map(sources.map(([name, path]) => [name, { type: CONTENT_TYPES[path.slice(path.lastIndexOf('.') + 1)] as string, body: readFileSync(path) }]));
}

function dashboardDir(): string {
  for (let dir = resolve(process.cwd()); ; dir = dirname(dir)) {
    const candidate = join(dir, 'tools', 'hub', 'dashboard');
    if (existsSync(join(candidate, 'index.html'))) return candidate;
    if (dirname(dir) === dir) throw new Error('the dashboard files (tools/hub/dashboard/) are not found from the working directory; set http.dashboard to false');
  }
}
