/**
 * A small test runner for programs running inside the XS test host, where
 * there is no console, no timers and no jest. Tests register under a group;
 * `runRegistered(groups)` runs the selected ones in registration order, prints
 * each failure, ends with "N passed, N failed" and sets the exit code.
 */
export type TestBody = () => void | Promise<void>;

interface RegisteredTest {
  group: string;
  name: string;
  body: TestBody;
}

const registered: RegisteredTest[] = [];

export function test(group: string, name: string, body: TestBody): void {
  registered.push({ group, name, body });
}

export function describeError(error: unknown): string {
  if (error instanceof Error) {
    const code = (error as { code?: unknown }).code;
    return `${error.name}${code === undefined ? '' : `(${String(code)})`}: ${error.message}`;
  }
  return String(error);
}

export async function runRegistered(groups: readonly string[]): Promise<{ passed: number; failed: number }> {
  let passed = 0;
  let failed = 0;
  for (const entry of registered) {
    if (groups.length > 0 && !groups.includes(entry.group)) continue;
    try {
      await entry.body();
      passed++;
    } catch (error) {
      failed++;
      print(`FAIL [${entry.group}] ${entry.name}: ${describeError(error)}`);
    }
  }
  print(`${passed} passed, ${failed} failed`);
  xsTest.setExitCode(failed === 0 && passed > 0 ? 0 : 1);
  return { passed, failed };
}

export class AssertionError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'AssertionError';
  }
}

export function assert(condition: unknown, message: string): asserts condition {
  if (!condition) throw new AssertionError(message);
}

export function assertEqual<T>(actual: T, expected: T, message: string): void {
  if (actual !== expected) throw new AssertionError(`${message}: expected ${String(expected)}, got ${String(actual)}`);
}

export function assertBytes(actual: Uint8Array | undefined, expected: Uint8Array, message: string): void {
  if (!(actual instanceof Uint8Array)) throw new AssertionError(`${message}: not a Uint8Array`);
  if (actual.length !== expected.length) {
    throw new AssertionError(`${message}: length ${actual.length}, expected ${expected.length}`);
  }
  for (let i = 0; i < actual.length; i++) {
    if (actual[i] !== expected[i]) throw new AssertionError(`${message}: differs at byte ${i}`);
  }
}

/** Asserts `body` throws an error accepted by `accept`; returns it. */
export function assertThrows(body: () => unknown, accept: (error: unknown) => boolean, message: string): unknown {
  let result: unknown;
  try {
    result = body();
  } catch (error) {
    if (!accept(error)) throw new AssertionError(`${message}: unexpected ${describeError(error)}`);
    return error;
  }
  throw new AssertionError(`${message}: did not throw (returned ${String(result)})`);
}
