/**
 * The hub as a library (docs/HUB.md):
 *   const hub = await LockstepHub.start({ database: 'hub.db', tcp: { port: 7700 }, rotation: { intervalMs: 3_600_000 } });
 *   hub.on('data', ({ deviceId, payload }) => ...);
 *   hub.send(deviceId, payload); hub.rotate(deviceId); hub.deviceState(deviceId);
 *   await hub.revoke(deviceId, 'ops', 'stolen'); hub.store.readAudit({ deviceId });
 *   // operator API + metrics + dashboard: LockstepHub.start({ ..., http: { port: 7780, tokens: [newToken('ops', 'admin').config] } })
 *   await hub.close();
 * Many instances on PostgreSQL (docs/HUB.md §10):
 *   const hub = await startHub({ database: 'postgres://…', store: { kekFile }, tcp: { port: 7700 } });
 */
export { LockstepHub, type HubEvents, type HubStats, type DeviceView, type RotateResult } from './server';
export type { HubOptions, ConnectionLimits, ListenOptions, TlsListenOptions } from './options';
export { DEFAULT_LIMITS, DEFAULT_HOST, DEFAULT_TCP_PORT, DEFAULT_TLS_PORT } from './options';
export type { RotationPolicy } from './scheduler';
export { HubStore, type StoredDevice } from './store';
export { SCHEMA_VERSION } from './migrations';
export { newDeviceRecord, parseHubRecord, parseHubRecords, toHubRecordJson, type DeviceRecord, type HubRecordJson } from './records';
export { certificatePins, createDevCertificate, type CertificatePins, type DevCertificate } from './cert';
export { jsonLogger, silentLogger, type Logger, type LogLevel } from './log';
export { openStorage, startHub, type AnyHub, type Backend, type HubStorage } from './storage';
export { PgLockstepHub, type PgHubOptions, type PgHubStats } from './postgres/hub';
export { PgHubStore, type Fence, type PgStoreOptions } from './postgres/store';
export type { HttpOptions, TokenConfig, Scope, OperatorApi } from './http/options';
export { newToken, hashToken, DEFAULT_HTTP_PORT } from './http/options';
export type { AuditEntry, AuditEntryInput, AuditQuery, Revocation } from './audit';
