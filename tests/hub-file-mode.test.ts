/**
 * Finding 4 (issue 12): the hub database is never readable by others, from
 * its first byte. It used to be created by SQLite with mode 0644 and then
 * chmod'ed to 0600: a local user who opened it in between kept a descriptor
 * and read a provisioned key. The test traces the system calls of a process
 * that creates a database (strace, as root or not) with umask 0, so a
 * permissive creation mode would really be world-readable, and requires that
 * every file the store creates (the database, -journal, -wal, -shm) is
 * created owner-only by the very call that creates it, and never chmod'ed to
 * anything wider.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const root = resolve(__dirname, '..');
const tsx = join(root, 'node_modules/tsx/dist/cli.mjs');
let dir: string;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'lockstep-mode-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

interface Creation {
  file: string;
  mode: number;
  exclusive?: boolean;
}

/** Runs `script` under strace; returns every open with O_CREAT of a file under `dir`, in order, and every chmod. */
function trace(script: string): { creations: Creation[]; chmods: Creation[]; files: string[] } {
  const scriptPath = join(dir, 'create.ts');
  writeFileSync(scriptPath, script);
  const log = join(dir, 'strace.log');
  const result = spawnSync('strace', ['-f', '-qq', '-e', 'trace=open,openat,creat,chmod,fchmod,fchmodat', '-o', log, process.execPath, tsx, scriptPath], {
    cwd: dir,
    encoding: 'utf8',
    timeout: 60_000,
  });
  expect(result.stderr).toBe('');
  expect(result.status).toBe(0);
  const creations: Creation[] = [];
  const chmods: Creation[] = [];
  const fds = new Map<string, string>();
  // With -f, a call interrupted by another thread's is split: "PID openat(... <unfinished ...>" then
  // "PID <... openat resumed>) = FD". Both halves are joined here, so no creation is missed.
  const unfinished = new Map<string, { file: string; flags: string; mode: string | undefined }>();
  const opened = (call: { file: string; flags: string; mode: string | undefined }, fd: string): void => {
    if (Number(fd) < 0 || !call.file.startsWith(dir) || !call.flags.includes('O_CREAT')) return;
    creations.push({ file: call.file, mode: parseInt(call.mode ?? '0', 8), exclusive: call.flags.includes('O_EXCL') });
    fds.set(fd, call.file);
  };
  for (const line of readFileSync(log, 'utf8').split('\n')) {
    const pid = /^(\d+) /.exec(line)?.[1] ?? '';
    const open = /open(?:at)?\((?:AT_FDCWD, )?"([^"]+)", ([A-Z_|]+)(?:, (0[0-7]+))?(?:\) = (-?\d+)| <unfinished \.\.\.>)/.exec(line);
    if (open !== null) {
      const call = { file: open[1]!, flags: open[2]!, mode: open[3] };
      if (open[4] !== undefined) opened(call, open[4]);
      else unfinished.set(pid, call);
    }
    const resumed = /<\.\.\. open(?:at)? resumed>.*\) = (-?\d+)/.exec(line);
    const pending = unfinished.get(pid);
    if (resumed !== null && pending !== undefined) {
      unfinished.delete(pid);
      opened(pending, resumed[1]!);
    }
    const chmod = /(?:chmod|fchmodat)\((?:AT_FDCWD, )?"([^"]+)", (0[0-7]+)/.exec(line);
    if (chmod !== null && chmod[1]!.startsWith(dir)) chmods.push({ file: chmod[1]!, mode: parseInt(chmod[2]!, 8) });
    const fchmod = /fchmod\((\d+), (0[0-7]+)\)/.exec(line);
    if (fchmod !== null && fds.has(fchmod[1]!)) chmods.push({ file: fds.get(fchmod[1]!)!, mode: parseInt(fchmod[2]!, 8) });
  }
  return { creations, chmods, files: [...new Set(creations.map((c) => c.file))] };
}

const storeScript = (db: string) => `
process.umask(0);
import { HubStore } from ${JSON.stringify(join(root, 'tools/hub/store'))};
const store = new HubStore(${JSON.stringify(db)});
store.insertDevice({ deviceId: '0123456789abcdef', active: { id: 1, key: new Uint8Array(64).fill(7) }, mode: 'dh' }, Date.now());
store.commit([{ kind: 'storePending', deviceId: '0123456789abcdef', id: 2, key: new Uint8Array(64).fill(8) }], Date.now());
store.commit([{ kind: 'promote', deviceId: '0123456789abcdef', id: 2 }], Date.now());
store.close();
`;

test('a new hub database and its -journal/-wal/-shm are created 0600 by the call that creates them (umask 0)', () => {
  const db = join(dir, 'hub.db');
  const { creations, chmods, files } = trace(storeScript(db));
  // The first O_CREAT open of each file is the one that created it: its mode must be owner-only.
  expect(files).toEqual(expect.arrayContaining([db, `${db}-wal`, `${db}-shm`]));
  // The main database is created by the store's own O_EXCL open (0600) before SQLite opens it (O_CREAT, 0644, on a
  // file that then exists): that exclusive open must be in the trace, owner-only. (Taking "the first O_CREAT open"
  // as the creating one misread a trace once in CI, where SQLite's open was the first line found for hub.db.)
  const mainCreations = creations.filter((c) => c.file === db);
  const exclusive = mainCreations.filter((c) => c.exclusive === true);
  expect(exclusive.length).toBeGreaterThanOrEqual(1);
  for (const creation of exclusive) expect((creation.mode & 0o077).toString(8)).toBe('0');
  for (const file of files.filter((f) => f !== db)) {
    const first = creations.find((c) => c.file === file)!;
    expect({ file, mode: (first.mode & 0o077).toString(8) }).toEqual({ file, mode: '0' });
  }
  for (const chmod of chmods) expect({ file: chmod.file, mode: (chmod.mode & 0o077).toString(8) }).toEqual({ file: chmod.file, mode: '0' });
  expect(statSync(db).mode & 0o777).toBe(0o600);
});

test('an existing database left readable by others is tightened to 0600 on open', () => {
  const db = join(dir, 'hub.db');
  trace(storeScript(db));
  spawnSync('chmod', ['0644', db]);
  trace(`
import { HubStore } from ${JSON.stringify(join(root, 'tools/hub/store'))};
new HubStore(${JSON.stringify(db)}).close();
`);
  expect(statSync(db).mode & 0o777).toBe(0o600);
});
