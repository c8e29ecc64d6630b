/**
 * The operator API's configuration (HubOptions.http; `serve --config`'s
 * "http" section; docs/HUB.md §12). Off unless given. Tokens are stored as
 * SHA-256 hashes only: the configuration never holds a secret that opens
 * the API, and a token is shown once, when `lockstep-hub token` creates it.
 */
import { createHash, randomBytes } from 'node:crypto';

export type Scope = 'read' | 'admin';

export interface TokenConfig {
  /** Names the holder in the audit trail (e.g. "ops-alice", "prometheus"). */
  readonly id: string;
  readonly scope: Scope;
  /** SHA-256 of the token, 64 hex digits. */
  readonly sha256: string;
}

export interface HttpOptions {
  readonly host?: string;
  /** 0 picks a free port (see LockstepHub.apiAddress). Default 7780. */
  readonly port?: number;
  /** PEM certificate chain and key: the listener speaks HTTPS only. */
  readonly tls?: { readonly cert: string | Buffer; readonly key: string | Buffer };
  readonly tokens: readonly TokenConfig[];
  /** Requests per client address per minute (all routes); mutations have a fifth of it. Default 600. */
  readonly requestsPerMinute?: number;
  /** A pending key older than this counts as out of sync (dashboard, filters, metrics). Default 60 s. */
  readonly staleAfterMs?: number;
  /** Serve the dashboard's static files under /dashboard/; default true. */
  readonly dashboard?: boolean;
}

/** A running operator API (tools/hub/http/server.ts). */
export interface OperatorApi {
  readonly address: { host: string; port: number; tls: boolean };
  /** Every route the server registered (method, url, scope): what the auth test enumerates. */
  readonly routes: readonly { method: string; url: string; scope: Scope | 'public' }[];
  close(): Promise<void>;
}

export const DEFAULT_HTTP_PORT = 7780;
export const TOKEN_PREFIX = 'lst_';

const TOKEN_ID = /^[A-Za-z0-9._-]{1,48}$/;

export function hashToken(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}

/** A fresh token (256 random bits) and its configuration entry. */
export function newToken(id: string, scope: Scope): { token: string; config: TokenConfig } {
  const token = `${TOKEN_PREFIX}${randomBytes(32).toString('base64url')}`;
  return { token, config: checkTokenConfig({ id, scope, sha256: hashToken(token) }) };
}

export function checkTokenConfig(value: unknown): TokenConfig {
  if (typeof value !== 'object' || value === null) throw new Error('http token: an object { id, scope, sha256 }');
  const { id, scope, sha256 } = value as Record<string, unknown>;
  if (typeof id !== 'string' || !TOKEN_ID.test(id)) throw new Error('http token id: 1-48 of A-Z a-z 0-9 . _ -');
  if (scope !== 'read' && scope !== 'admin') throw new Error(`http token ${id}: scope must be "read" or "admin"`);
  if (typeof sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(sha256)) throw new Error(`http token ${id}: sha256 must be 64 lowercase hex digits`);
  return { id, scope, sha256 };
}

export function checkHttpOptions(options: HttpOptions): void {
  const ids = new Set<string>();
  for (const token of options.tokens) {
    checkTokenConfig(token);
    if (ids.has(token.id)) throw new Error(`http token id ${token.id} appears twice`);
    ids.add(token.id);
  }
  const port = options.port ?? DEFAULT_HTTP_PORT;
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error('http port must be 0..65535');
  const rpm = options.requestsPerMinute ?? 600;
  if (!Number.isInteger(rpm) || rpm < 5) throw new Error('http requestsPerMinute must be an integer >= 5');
}
