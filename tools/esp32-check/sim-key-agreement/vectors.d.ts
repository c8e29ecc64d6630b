/**
 * For `npm run typecheck:firmware` only: simulator-key-agreement.sh generates
 * this module (vectors.js, with its own vectors.d.ts) from tests/vectors.
 */
declare module 'lockstep-key-agreement-vectors' {
  const vectors: unknown;
  export default vectors;
}
