/**
 * The "http" section of the `serve` configuration file (tools/hub/config.ts):
 *   "http": {
 *     "host": "127.0.0.1", "port": 7780,
 *     "tls": { "cert": "api-cert.pem", "key": "api-key.pem" },
 *     "tokens": [ { "id": "ops", "scope": "admin", "sha256": "<64 hex>" }, ... ],
 *     "requestsPerMinute": 600, "staleAfter": "60s", "dashboard": true
 *   }
 * Tokens are hashes (`lockstep-hub token` prints a new token and its entry).
 * Paths are relative to the file.
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { parseDuration } from '../duration';
import { checkHttpOptions, checkTokenConfig, type HttpOptions, type TokenConfig } from './options';

export interface HttpConfig {
  host?: string;
  port?: number;
  tls?: { certPath: string; keyPath: string };
  tokens: TokenConfig[];
  requestsPerMinute?: number;
  staleAfterMs?: number;
  dashboard?: boolean;
}

const KNOWN = new Set(['host', 'port', 'tls', 'tokens', 'requestsPerMinute', 'staleAfter', 'dashboard']);

export function parseHttpConfig(file: string, base: string, raw: unknown): HttpConfig {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new Error(`${file}: http must be an object`);
  const value = raw as Record<string, unknown>;
  for (const key of Object.keys(value)) if (!KNOWN.has(key)) throw new Error(`${file}: unknown key "http.${key}"`);
  if (!Array.isArray(value.tokens) || value.tokens.length === 0) throw new Error(`${file}: http.tokens must list at least one token (lockstep-hub token)`);
  const config: HttpConfig = { tokens: value.tokens.map((t) => checkTokenConfig(t)) };
  if (value.host !== undefined) {
    if (typeof value.host !== 'string') throw new Error(`${file}: http.host must be a string`);
    config.host = value.host;
  }
  if (value.port !== undefined) {
    if (typeof value.port !== 'number') throw new Error(`${file}: http.port must be a number`);
    config.port = value.port;
  }
  if (value.tls !== undefined) {
    const tls = value.tls as Record<string, unknown>;
    if (typeof tls !== 'object' || tls === null || typeof tls.cert !== 'string' || typeof tls.key !== 'string') throw new Error(`${file}: http.tls needs "cert" and "key" paths`);
    config.tls = { certPath: resolve(base, tls.cert), keyPath: resolve(base, tls.key) };
  }
  if (value.requestsPerMinute !== undefined) {
    if (typeof value.requestsPerMinute !== 'number') throw new Error(`${file}: http.requestsPerMinute must be a number`);
    config.requestsPerMinute = value.requestsPerMinute;
  }
  if (value.staleAfter !== undefined) config.staleAfterMs = parseDuration(value.staleAfter);
  if (value.dashboard !== undefined) {
    if (typeof value.dashboard !== 'boolean') throw new Error(`${file}: http.dashboard must be true or false`);
    config.dashboard = value.dashboard;
  }
  checkHttpOptions(httpOptionsFrom(config, false));
  return config;
}

/** The library options (reads the TLS files unless `readFiles` is false). */
export function httpOptionsFrom(config: HttpConfig, readFiles = true): HttpOptions {
  return {
    tokens: config.tokens,
    ...(config.host !== undefined ? { host: config.host } : {}),
    ...(config.port !== undefined ? { port: config.port } : {}),
    ...(config.tls !== undefined && readFiles ? { tls: { cert: readFileSync(config.tls.certPath), key: readFileSync(config.tls.keyPath) } } : {}),
    ...(config.requestsPerMinute !== undefined ? { requestsPerMinute: config.requestsPerMinute } : {}),
    ...(config.staleAfterMs !== undefined ? { staleAfterMs: config.staleAfterMs } : {}),
    ...(config.dashboard !== undefined ? { dashboard: config.dashboard } : {}),
  };
}
