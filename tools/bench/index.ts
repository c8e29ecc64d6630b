/**
 * `npm run bench`: prints every benchmark's figures, each measured against
 * its baseline in the same run. Figures, never pass/fail timings.
 * Select sections with arguments, e.g. `npm run bench -- aead wear`.
 */
import { run as aead } from './aead';
import { run as dh } from './dh';
import { run as dhPrimitives } from './dh-primitives';
import { run as fleet } from './fleet';
import { run as hubSqlite } from './hub';
import { run as hubPostgres } from './hub-postgres';
import { run as operator } from './operator';
import { run as recovery } from './recovery';
import { run as recoveryFleet } from './recovery-fleet';
import { run as wear } from './wear';
import { run as xs } from './xs';

/** `hub`: the one-process figures, then the same hub on PostgreSQL against its SQLite baseline (tools/bench/hub-postgres.ts). */
const hub = async (): Promise<void> => {
  await hubSqlite();
  if (process.exitCode === undefined || process.exitCode === 0) await hubPostgres();
};

const sections: Record<string, () => Promise<void>> = { aead, wear, xs, hub, dh, 'dh-primitives': dhPrimitives, operator, 'hub-postgres': hubPostgres, recovery, 'recovery-fleet': recoveryFleet, fleet };

const wanted = process.argv.slice(2);
for (const name of wanted) if (!(name in sections)) throw new Error(`unknown bench section ${name}; have ${Object.keys(sections).join(', ')}`);
for (const [name, run] of Object.entries(sections)) {
  if (wanted.length === 0 || wanted.includes(name)) await run();
}
