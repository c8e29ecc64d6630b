/**
 * Bearer-token authentication for the operator API: the presented token's
 * SHA-256 is compared, in constant time, with every configured hash (no
 * early exit, so timing does not tell which entry came close). The caller
 * gets the token's id and scope, or nothing.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { Scope, TokenConfig } from './options';

export interface Principal {
  readonly tokenId: string;
  readonly scope: Scope;
}

/** Longer headers are refused before hashing (bounded work per request). */
const MAX_HEADER = 256;

export class TokenVerifier {
  readonly #tokens: { id: string; scope: Scope; digest: Buffer }[];

  constructor(tokens: readonly TokenConfig[]) {
    this.#tokens = tokens.map((t) => ({ id: t.id, scope: t.scope, digest: Buffer.from(t.sha256, 'hex') }));
  }

  verify(authorization: string | undefined): Principal | undefined {
    if (authorization === undefined || authorization.length > MAX_HEADER) return undefined;
    const match = /^Bearer ([\x21-\x7e]+)$/.exec(authorization);
    if (match === null) return undefined;
    const digest = createHash('sha256').update(match[1] as string, 'utf8').digest();
    let found: Principal | undefined;
    for (const token of this.#tokens) {
      if (timingSafeEqual(digest, token.digest) && found === undefined) found = { tokenId: token.id, scope: token.scope };
    }
    return found;
  }
}

export function allows(granted: Scope, needed: Scope): boolean {
  return granted === 'admin' || needed === 'read';
}
