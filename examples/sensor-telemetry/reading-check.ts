/** Type-check only (examples/tsconfig.json, never in the manifest): both sensor modules match reading.d.ts. */
import type * as Declared from './reading';
import type * as Esp32 from './reading-esp32';
import type * as Sim from './reading-sim';

export const checks: [typeof Esp32 extends typeof Declared ? true : never, typeof Sim extends typeof Declared ? true : never] = [true, true];
