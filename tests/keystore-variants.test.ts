/**
 * Broken variants of the format v2 keystore, each refuted by the test that
 * targets what it breaks (docs/KEYSTORE.md §6.1). The real modules are
 * loaded fresh with one function replaced (jest.doMock in an isolated
 * registry); the oracle (modules/platform/keys.ts: keysPromoted,
 * keysEqual) is not touched.
 *
 * 1. The promotion forgets to carry the mode (a dh-derived key becomes
 *    active, the in-memory mode stays classic, and the next compaction's
 *    snapshot says classic): the power-cut exploration fails.
 * 2. The compaction forgets the shares (its 'F' record is written without
 *    them): the power-cut exploration fails.
 * 3. The shares are outside the record's CRC: power cuts alone never show
 *    it (the body is complete and read back before its commit CRC is
 *    programmed, so the exploration passes — asserted, to say which test is
 *    the guard), and a bit flipped in a stored share then mounts a share
 *    that was never written: the corruption test fails.
 */
type Harness = typeof import('../tools/testing/cut-harness');
type KeystoreModule = typeof import('../modules/keystore/keystore');

const MOCKABLE = ['../modules/keystore/journal', '../modules/keystore/layout', '../modules/keystore/crc32'];

function isolated<T>(mock: () => void, run: (harness: Harness, keystore: KeystoreModule) => T): T {
  let result: T | undefined;
  try {
    jest.isolateModules(() => {
      mock();
      result = run(require('../tools/testing/cut-harness') as Harness, require('../modules/keystore/keystore') as KeystoreModule);
    });
  } finally {
    for (const path of MOCKABLE) jest.dontMock(path); // a doMock outlives the isolated registry otherwise
  }
  return result as T;
}

/** The message of what `run` throws (it must throw). */
function failure(run: () => unknown): string {
  try {
    run();
  } catch (error) {
    return String(error);
  }
  throw new Error('the variant was not refuted');
}

const small = { geometry: { sectorSize: 512, sectors: 4 }, rotations: 6, bitPatterns: 2, seed: 20240601 } as const;

test('the real code passes the same checks (so each failure below is the variant\'s)', () => {
  const report = isolated(() => {}, (harness) => harness.exploreCuts(small));
  expect(report.dhPromotions).toBeGreaterThan(0);
  expect(corruptionFinds(() => {})).toBe(false);
});

test('variant 1, the promotion forgets to carry the mode: refuted by the power-cut exploration', () => {
  const mock = () =>
    jest.doMock('../modules/keystore/journal', () => {
      const actual = jest.requireActual('../modules/keystore/journal');
      return { ...actual, promotedState: (state: { mode: unknown }, future: unknown) => ({ ...actual.promotedState(state, future), mode: state.mode }) };
    });
  const message = failure(() => isolated(mock, (harness) => harness.exploreCuts(small)));
  console.log(`variant 1: ${message}`);
  expect(message).toMatch(/in memory classic .*expected dh|mounted classic .*expected dh/);
});

test('variant 2, the compaction forgets the shares: refuted by the power-cut exploration', () => {
  const mock = () =>
    jest.doMock('../modules/keystore/layout', () => {
      const actual = jest.requireActual('../modules/keystore/layout');
      return {
        ...actual,
        encodeRecord: (out: Uint8Array, at: number, record: { shares?: unknown }, sequence: number, slot: number, committed: boolean) =>
          actual.encodeRecord(out, at, committed ? { ...record, shares: undefined } : record, sequence, slot, committed),
      };
    });
  const message = failure(() => isolated(mock, (harness) => harness.exploreCuts(small)));
  console.log(`variant 2: ${message}`);
  expect(message).toMatch(/(mounted|in memory) .*future \d+:[0-9a-f]+, expected .*future \d+:[0-9a-f]+ \(dh\)/);
});

/** Shares outside the CRC: the record's commit CRC (over 136 bytes) covers only bytes 0..71. */
const sharesOutsideCrc = () =>
  jest.doMock('../modules/keystore/crc32', () => {
    const actual = jest.requireActual('../modules/keystore/crc32');
    return { ...actual, crc32Update: (crc: number, bytes: Uint8Array, from = 0, to = bytes.length) => actual.crc32Update(crc, bytes, from, to - from === 136 ? from + 72 : to) };
  });

test('variant 3, the shares outside the CRC: power cuts alone pass it; the corruption test refutes it', () => {
  const report = isolated(sharesOutsideCrc, (harness) => harness.exploreCuts(small));
  expect(report.mountedBefore + report.mountedAfter).toBe(report.cutPoints);
  expect(corruptionFinds(sharesOutsideCrc)).toBe(true);
});

/**
 * The corruption check of tests/keystore-garbage.test.ts in small: a bit
 * flipped in each byte of a pending dh future's shares; true if some mount
 * returns a future whose shares were never written.
 */
function corruptionFinds(mock: () => void): boolean {
  return isolated(mock, (_harness, { Keystore }) => {
    const { NorFlash } = require('../modules/flash/nor-flash') as typeof import('../modules/flash/nor-flash');
    const flash = new NorFlash({ sectorSize: 512, sectors: 4 });
    const keystore = new Keystore(flash);
    keystore.format(new Uint8Array(8).fill(1), { id: 1, key: new Uint8Array(64).fill(1) }, 'classic');
    const shares = { hub: new Uint8Array(32).fill(0x11), device: new Uint8Array(32).fill(0x22) };
    keystore.storeFuture(2, new Uint8Array(64).fill(2), shares);
    const image = flash.image();
    const at = 32 + 144; // slot 1
    for (let byte = 72; byte < 136; byte++) {
      const damaged = image.slice();
      damaged[at + byte] = (damaged[at + byte] as number) ^ 1;
      const result = new Keystore(new NorFlash({ sectorSize: 512, sectors: 4, image: damaged })).mount();
      const got = result.provisioned ? result.keys.future?.shares : undefined;
      if (got !== undefined && !(Buffer.from(got.hub).equals(Buffer.from(shares.hub)) && Buffer.from(got.device).equals(Buffer.from(shares.device)))) return true;
    }
    return false;
  });
}
