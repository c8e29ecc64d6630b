/**
 * Issue "Hardening", finding 6: the hub's TLS 1.2 listener offers ECDHE +
 * AEAD suites only. Before, it accepted CBC-SHA1, CCM8 and ARIA suites. The
 * suite the Moddable SDK's TLS client negotiates with the hub's ECDSA
 * certificate (ECDHE-ECDSA-AES128-GCM-SHA256, modules/crypt/ssl in the SDK)
 * must stay: a real simulator run over TLS is in docs/FIRMWARE.md.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from 'node:tls';
import { createDevCertificate } from '../tools/hub/cert';
import { LockstepHub } from '../tools/hub/server';

let dir: string;
let hub: LockstepHub;
let port: number;
let ca: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'lockstep-tls-'));
  const cert = await Promise.resolve(createDevCertificate());
  ca = cert.certPem;
  hub = await LockstepHub.start({ database: join(dir, 'hub.db'), tcp: false, tls: { port: 0, cert: cert.certPem, key: cert.keyPem } });
  port = hub.addresses[0]?.port as number;
});
afterAll(async () => {
  await hub.close();
  rmSync(dir, { recursive: true, force: true });
});

/** The suite a TLS 1.2 client offering only `cipher` ends up with, or the handshake error. */
function handshake(cipher: string): Promise<string> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port, ca, servername: 'localhost', maxVersion: 'TLSv1.2', ciphers: cipher });
    socket.once('secureConnect', () => {
      resolve(socket.getCipher().standardName);
      socket.destroy();
    });
    socket.once('error', (error: NodeJS.ErrnoException) => resolve(`refused: ${error.code ?? error.message}`));
  });
}

test("the Moddable client's suite is negotiated", async () => {
  expect(await handshake('ECDHE-ECDSA-AES128-GCM-SHA256')).toBe('TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256');
});

test.each([
  ['ECDHE-ECDSA-AES128-SHA'], // CBC with SHA-1
  ['ECDHE-ECDSA-AES256-SHA'],
  ['ECDHE-ECDSA-AES128-SHA256'], // CBC
  ['ECDHE-ECDSA-AES128-CCM8'],
  ['ECDHE-ECDSA-ARIA128-GCM-SHA256'],
  ['ECDHE-ECDSA-AES128-CCM'],
])('TLS 1.2 with %s only is refused', async (cipher) => {
  expect(await handshake(cipher)).toMatch(/^refused: /);
});

test('TLS 1.3 still works', async () => {
  const suite = await new Promise<string>((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port, ca, servername: 'localhost', minVersion: 'TLSv1.3' }, () => {
      resolve(socket.getProtocol() ?? '');
      socket.destroy();
    });
    socket.once('error', reject);
  });
  expect(suite).toBe('TLSv1.3');
});
