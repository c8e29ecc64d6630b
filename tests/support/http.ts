/**
 * The operator API's test helpers, shared by tests/hub-http.test.ts (SQLite)
 * and tests/hub-http-postgres.test.ts (instances of a PostgreSQL tier): a
 * client that records every response (so no response may carry a secret),
 * the route enumeration without a valid token, and the metrics' cardinality
 * checks.
 */
import type parsePrometheus from 'parse-prometheus-text-format';
import type { RunningApi } from '../../tools/hub/http/server';

export interface ApiResponse {
  status: number;
  text: string;
  json: any;
  headers: Headers;
}

export interface CallOptions {
  token?: string;
  body?: unknown;
  raw?: string;
  contentType?: string;
  base?: string;
}

/** A client for `base()` that calls `before()` first (the tests note the keys the hub holds) and keeps every response in `responses`. */
export function apiClient(base: () => string, before: () => void = () => {}): { call: (method: string, path: string, options?: CallOptions) => Promise<ApiResponse>; responses: { what: string; body: string }[] } {
  const responses: { what: string; body: string }[] = [];
  const call = async (method: string, path: string, options: CallOptions = {}): Promise<ApiResponse> => {
    before();
    const headers: Record<string, string> = {};
    if (options.token !== undefined) headers.authorization = `Bearer ${options.token}`;
    let body: string | undefined;
    if (options.raw !== undefined) body = options.raw;
    else if (options.body !== undefined) body = JSON.stringify(options.body);
    if (body !== undefined) headers['content-type'] = options.contentType ?? 'application/json';
    const response = await fetch(`${options.base ?? base()}${path}`, { method, headers, ...(body !== undefined ? { body } : {}), redirect: 'manual' });
    const text = await response.text();
    responses.push({ what: `${method} ${path} → ${response.status}`, body: text });
    let json: any;
    try {
      json = JSON.parse(text);
    } catch {
      json = undefined;
    }
    return { status: response.status, text, json, headers: response.headers };
  };
  return { call, responses };
}

export const DASHBOARD_FILES = ['/', '/dashboard/', '/dashboard/index.html', '/dashboard/app.js', '/dashboard/style.css', '/dashboard/uplot.js', '/dashboard/uplot.css'];

/** Requests every route the server registered without a token, with a wrong one and a truncated one; returns the routes that answered anything but 401. */
export async function routesOpenWithoutToken(
  server: RunningApi,
  at: string,
  call: (method: string, path: string, options?: CallOptions) => Promise<ApiResponse>,
  sampleDevice: string,
  validToken: string,
): Promise<string[]> {
  const open: string[] = [];
  for (const route of server.routes) {
    if (route.scope === 'public' && DASHBOARD_FILES.includes(route.url)) continue; // static files, no data (asserted separately)
    const path = route.url.replace(':id', sampleDevice);
    for (const token of [undefined, 'lst_not-a-token', validToken.slice(0, -1)]) {
      const response = await call(route.method, path, { ...(token !== undefined ? { token } : {}), base: at, ...(route.method === 'POST' ? { body: {} } : {}) });
      if (response.status !== 401 || response.json?.error?.code !== 'UNAUTHORIZED') open.push(`${route.method} ${route.url} (${response.status})`);
    }
  }
  return open;
}

/** Series whose label value looks like a device id or a key (unbounded cardinality). */
export function unboundedSeries(families: ReturnType<typeof parsePrometheus>): string[] {
  const out: string[] = [];
  for (const family of families) {
    for (const sample of family.metrics) {
      for (const [label, value] of Object.entries(sample.labels ?? {})) if (/^[0-9a-fA-F]{16,}$/.test(value)) out.push(`${family.name}{${label}}`);
    }
  }
  return out;
}

export function seriesCount(families: ReturnType<typeof parsePrometheus>): number {
  return families.filter((f) => f.name.startsWith('lockstep_')).reduce((n, f) => n + f.metrics.length, 0);
}

/** The secret forms a response must never contain: hex, upper-case hex, base64 of each. */
export function secretForms(secrets: Iterable<string>): string[] {
  const forms: string[] = [];
  for (const secret of secrets) {
    if (/^[0-9a-f]+$/.test(secret)) forms.push(secret, secret.toUpperCase(), Buffer.from(secret, 'hex').toString('base64'));
    else forms.push(secret);
  }
  return forms;
}
