/**
 * backend_esp32.c stops the build with #error when IDF's PSA configuration
 * lacks what the DH rekey mode needs (PSA_WANT_ALG_HKDF,
 * PSA_WANT_ECC_MONTGOMERY_255, PSA_WANT_ALG_ECDH), rather than failing at
 * run time on the chip. Compiled (gcc -fsyntax-only) against the XS test
 * host's ESP32 stand-in headers over Debian's mbedTLS 2.28, once with the full
 * configuration (the control: no error) and once without each symbol.
 */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { ensureMbedtls } from '../hosts/xs-test/build';

const ROOT = join(__dirname, '..');

function compile(defines: string[]): { status: number | null; stderr: string } {
  const result = spawnSync(
    'gcc',
    ['-fsyntax-only', '-std=gnu11', '-Wall', '-Wextra', '-Werror', ...defines, '-Ihosts/xs-test/esp32-stand-in', '-Ihosts/moddable/native', 'hosts/moddable/native/backend_esp32.c'],
    { cwd: ROOT, encoding: 'utf8' },
  );
  return { status: result.status, stderr: result.stderr };
}

beforeAll(() => ensureMbedtls());

test('the full configuration compiles without a diagnostic', () => {
  expect(compile([])).toEqual({ status: 0, stderr: '' });
});

test.each([
  ['LOCKSTEP_STAND_IN_WITHOUT_HKDF', 'lacks PSA_WANT_ALG_HKDF'],
  ['LOCKSTEP_STAND_IN_WITHOUT_MONTGOMERY_255', 'lacks PSA_WANT_ECC_MONTGOMERY_255'],
  ['LOCKSTEP_STAND_IN_WITHOUT_ECDH', 'lacks PSA_WANT_ALG_ECDH'],
])('without %s the build stops with #error', (define, message) => {
  const result = compile([`-D${define}`]);
  expect(result.status).not.toBe(0);
  expect(result.stderr).toContain('#error');
  expect(result.stderr).toContain(message);
});
