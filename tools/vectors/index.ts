/**
 * `npm run vectors`: writes docs/vectors/protocol-vectors.json,
 * recovery-vectors.json, negative-vectors.json and transcripts.json, and the
 * generated block of docs/PROTOCOL.md Appendix A (between its markers).
 * The test suite checks all of them against a fresh generation.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { generatedVectors } from './generate';

export { BEGIN_MARKER, END_MARKER } from './generate';

const root = fileURLToPath(new URL('../..', import.meta.url));
const generated = generatedVectors();
for (const [name, content] of Object.entries(generated.files)) writeFileSync(join(root, 'docs', 'vectors', name), content);
const specPath = join(root, 'docs', 'PROTOCOL.md');
writeFileSync(specPath, generated.spliceInto(readFileSync(specPath, 'utf8')));
console.log(generated.summary);
