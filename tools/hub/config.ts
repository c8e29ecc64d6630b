/**
 * The `serve` configuration: an optional JSON file, overridden by command
 * line flags. File format (every key optional):
 *   {
 *     "database": "lockstep-hub.db" | "postgres://user:password@host/db",
 *     "tcp": { "host": "127.0.0.1", "port": 7700 } | false,
 *     "tls": { "host": "127.0.0.1", "port": 7701, "cert": "hub-cert.pem", "key": "hub-key.pem" },
 *     "rotation": { "every": "1h", "jitter": "5m", "afterMessages": 0 },
 *     "limits": { "maxConnections": 24576, "maxUnauthenticated": 8192, ... },
 *     "timing": { "handshakeTimeout": "10s", "idleTimeout": "45s", "rekeyRetryInitial": "2s", "rekeyRetryMax": "30s" },
 *     "logLevel": "info",
 *     "kekFile": "/etc/lockstep/hub.kek",
 *     "staticKeyFile": "/etc/lockstep/hub.static",
 *     "recovery": { "policy": "auto" | "approve" | "off", "perDevice": 3, "window": "1h", "approvalValidity": "24h",
 *                   "approvalRetry": "60s", "perSource": { "burst": 10, "perMinute": 10, "maxSources": 4096 } }
 *   }
 * Paths in the file are relative to the file. Durations are strings with a
 * unit ("60s", "250ms"); a bare number is refused (tools/hub/duration.ts).
 */
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import type { HubTiming } from '../../modules/hub/hub';
import { parseDuration } from './duration';
import { isLogLevel, type LogLevel } from './log';
import { DEFAULT_LIMITS, type ConnectionLimits, type HubOptions } from './options';
import { httpOptionsFrom, parseHttpConfig, type HttpConfig } from './http/config';
import type { RotationPolicy } from './scheduler';
import { parseRecoveryConfig, type RecoveryPolicy } from './recovery';

export interface ServeConfig {
  database: string;
  tcp: { host?: string; port?: number } | false;
  tls: { host?: string; port?: number; certPath: string; keyPath: string } | undefined;
  rotation: Mutable<Partial<RotationPolicy>>;
  limits: Mutable<Partial<ConnectionLimits>>;
  timing: Mutable<Partial<HubTiming>>;
  logLevel: LogLevel;
  /** The keyring file of key-encryption keys (tools/hub/kek.ts); default: the store's own choice. */
  kekFile?: string;
  /** The operator API (tools/hub/http/config.ts); off when absent. */
  http?: HttpConfig;
  /** Issue 14: the recovery policy and limits (tools/hub/recovery.ts); defaults when absent. */
  recovery?: Partial<RecoveryPolicy>;
  /** The hub's static key file (tools/hub/static-keys.ts); default `<db>.static`. */
  staticKeyFile?: string;
}

type Mutable<T> = { -readonly [K in keyof T]: T[K] };

export const DEFAULT_DATABASE = 'lockstep-hub.db';

export function defaultServeConfig(): ServeConfig {
  return { database: DEFAULT_DATABASE, tcp: {}, tls: undefined, rotation: {}, limits: {}, timing: {}, logLevel: 'info' };
}

export function loadConfigFile(path: string): ServeConfig {
  const base = dirname(resolve(path));
  const raw = JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>;
  const config = defaultServeConfig();
  const known = new Set(['database', 'tcp', 'tls', 'rotation', 'limits', 'timing', 'logLevel', 'kekFile', 'http', 'recovery', 'staticKeyFile']);
  for (const key of Object.keys(raw)) if (!known.has(key)) throw new Error(`${path}: unknown key "${key}"`);
  // A postgres://… URL is kept as it is (docs/HUB.md §10); a SQLite path is relative to the file.
  if (typeof raw.database === 'string') config.database = /^postgres(ql)?:\/\//.test(raw.database) ? raw.database : resolve(base, raw.database);
  if (raw.kekFile !== undefined) {
    if (typeof raw.kekFile !== 'string') throw new Error(`${path}: kekFile must be a path`);
    config.kekFile = resolve(base, raw.kekFile);
  }
  if (raw.http !== undefined) config.http = parseHttpConfig(path, base, raw.http);
  if (raw.recovery !== undefined) config.recovery = parseRecoveryConfig(path, raw.recovery, (key, value) => durationAt(path, key, value));
  if (raw.staticKeyFile !== undefined) {
    if (typeof raw.staticKeyFile !== 'string') throw new Error(`${path}: staticKeyFile must be a path`);
    config.staticKeyFile = resolve(base, raw.staticKeyFile);
  }
  if (raw.tcp === false) config.tcp = false;
  else if (isObject(raw.tcp)) config.tcp = { ...optionalHost(raw.tcp), ...optionalPort(raw.tcp) };
  if (isObject(raw.tls)) {
    if (typeof raw.tls.cert !== 'string' || typeof raw.tls.key !== 'string') throw new Error(`${path}: tls needs "cert" and "key" paths`);
    config.tls = { ...optionalHost(raw.tls), ...optionalPort(raw.tls), certPath: resolve(base, raw.tls.cert), keyPath: resolve(base, raw.tls.key) };
  }
  if (isObject(raw.rotation)) {
    const r = raw.rotation;
    if (r.every !== undefined) config.rotation.intervalMs = durationAt(path, 'rotation.every', r.every);
    if (r.jitter !== undefined) config.rotation.jitterMs = durationAt(path, 'rotation.jitter', r.jitter);
    if (r.afterMessages !== undefined) config.rotation.maxMessages = positiveInteger(r.afterMessages, 'rotation.afterMessages');
  }
  if (isObject(raw.limits)) {
    for (const [key, value] of Object.entries(raw.limits)) {
      if (!(key in DEFAULT_LIMITS)) throw new Error(`${path}: unknown limit "${key}"`);
      (config.limits as Record<string, number>)[key] = key.endsWith('Ms') ? durationAt(path, `limits.${key}`, value) : positiveInteger(value, key);
    }
  }
  if (isObject(raw.timing)) {
    const names: Record<string, keyof HubTiming> = {
      handshakeTimeout: 'handshakeTimeoutMs',
      idleTimeout: 'idleTimeoutMs',
      rekeyRetryInitial: 'rekeyRetryInitialMs',
      rekeyRetryMax: 'rekeyRetryMaxMs',
    };
    for (const [key, value] of Object.entries(raw.timing)) {
      const name = names[key];
      if (name === undefined) throw new Error(`${path}: unknown timing "${key}"`);
      (config.timing as Record<string, number>)[name] = durationAt(path, `timing.${key}`, value);
    }
  }
  if (raw.logLevel !== undefined) {
    if (typeof raw.logLevel !== 'string' || !isLogLevel(raw.logLevel)) throw new Error(`${path}: bad logLevel`);
    config.logLevel = raw.logLevel;
  }
  return config;
}

/** The library options for a config (reads the TLS files). */
export function hubOptionsFrom(config: ServeConfig): Omit<HubOptions, 'logger'> {
  return {
    database: config.database,
    tcp: config.tcp,
    ...(config.tls
      ? {
          tls: {
            ...(config.tls.host !== undefined ? { host: config.tls.host } : {}),
            ...(config.tls.port !== undefined ? { port: config.tls.port } : {}),
            cert: readFileSync(config.tls.certPath),
            key: readFileSync(config.tls.keyPath),
          },
        }
      : {}),
    rotation: config.rotation,
    limits: config.limits,
    timing: config.timing,
    ...(config.http !== undefined ? { http: httpOptionsFrom(config.http) } : {}),
    ...(config.recovery !== undefined ? { recovery: config.recovery } : {}),
    ...(config.staticKeyFile !== undefined ? { staticKeyFile: config.staticKeyFile } : {}),
  };
}

/** A duration in the file: a string with a unit ("60s"); a bare number is refused (tools/hub/duration.ts). */
function durationAt(path: string, key: string, value: unknown): number {
  try {
    return parseDuration(value);
  } catch (error) {
    throw new Error(`${path}: ${key}: ${(error as Error).message}`);
  }
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function optionalHost(value: Record<string, unknown>): { host?: string } {
  if (value.host === undefined) return {};
  if (typeof value.host !== 'string') throw new Error('host must be a string');
  return { host: value.host };
}

function optionalPort(value: Record<string, unknown>): { port?: number } {
  if (value.port === undefined) return {};
  const port = value.port;
  if (typeof port !== 'number' || !Number.isInteger(port) || port < 0 || port > 65535) throw new Error('port must be 0..65535');
  return { port };
}

function positiveInteger(value: unknown, what: string): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0) throw new Error(`${what} must be a non-negative integer`);
  return value;
}
