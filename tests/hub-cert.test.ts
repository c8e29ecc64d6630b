/**
 * Finding 11 (issue 12): the development certificates come from a
 * well-kept library (@peculiar/x509 on node:crypto's WebCrypto), not from a
 * hand-written DER writer: a development CA (the trust anchor devices get as
 * `hubCa`) and the hub certificate it issues (ECDSA P-256 with SHA-256,
 * serverAuth, SANs), served as a chain — the Moddable SDK's TLS client
 * accepts no lone self-signed certificate. Pins (SHA-256 of the certificate
 * and of its SubjectPublicKeyInfo) are stored next to them.
 */
import { spawnSync } from 'node:child_process';
import { createHash, X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { connect, createServer } from 'node:tls';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { certificatePins, createDevCertificate } from '../tools/hub/cert';

const root = resolve(__dirname, '..');

test('cert.ts builds no DER itself: it uses @peculiar/x509', () => {
  const source = readFileSync(join(root, 'tools/hub/cert.ts'), 'utf8');
  expect(source).toMatch(/from '@peculiar\/x509'/);
  // The old writer's tell-tales: tag/length encoders and raw OIDs.
  expect(source).not.toMatch(/function (length|tagged|sequence|oid)\(/);
  expect(source).not.toMatch(/0x30|1\.2\.840\.10045/);
});

test('ECDSA P-256 / SHA-256, serverAuth, SANs, key ids, issued by a CA:true anchor; the pins match an independent computation', async () => {
  const cert = await createDevCertificate({ hosts: ['localhost', '127.0.0.1', 'hub.example'] });
  const parsed = new X509Certificate(cert.certPem); // the first certificate of the chain: the hub's
  const ca = new X509Certificate(cert.caPem);
  expect(parsed.publicKey.asymmetricKeyDetails).toMatchObject({ namedCurve: 'prime256v1' });
  expect(parsed.ca).toBe(false);
  expect(ca.ca).toBe(true);
  expect(parsed.checkHost('hub.example')).toBe('hub.example');
  expect(parsed.checkIP('127.0.0.1')).toBe('127.0.0.1');
  expect(parsed.keyUsage).toEqual(['1.3.6.1.5.5.7.3.1']);
  expect(parsed.checkIssued(ca)).toBe(true);
  expect(parsed.verify(ca.publicKey)).toBe(true);
  expect(ca.verify(ca.publicKey)).toBe(true);
  expect(cert.certPem.endsWith(cert.caPem)).toBe(true); // the chain the listener serves
  expect(Buffer.from(cert.caDerHex, 'hex')).toEqual(ca.raw);
  const caText = spawnSync('openssl', ['x509', '-noout', '-text'], { input: cert.caPem, encoding: 'utf8' }).stdout;
  expect(caText).toMatch(/X509v3 Authority Key Identifier/); // the SDK's client finds the anchor by it
  expect(caText).toMatch(/Certificate Sign/);
  const text = spawnSync('openssl', ['x509', '-noout', '-text'], { input: cert.certPem, encoding: 'utf8' }).stdout;
  expect(text).toMatch(/Signature Algorithm: ecdsa-with-SHA256/);
  expect(text).toMatch(/X509v3 Subject Key Identifier/);
  // Pins, computed here without the module: certificate DER and SPKI DER.
  expect(cert.fingerprint256).toBe(createHash('sha256').update(parsed.raw).digest('hex').toUpperCase().match(/../g)!.join(':'));
  const spki = parsed.publicKey.export({ type: 'spki', format: 'der' });
  expect(cert.spkiSha256Hex).toBe(createHash('sha256').update(spki).digest('hex'));
  expect(cert.spkiSha256Base64).toBe(createHash('sha256').update(spki).digest('base64'));
  expect(certificatePins(cert.certPem)).toEqual({ fingerprint256: cert.fingerprint256, spkiSha256Hex: cert.spkiSha256Hex, spkiSha256Base64: cert.spkiSha256Base64 });
});

test('a TLS 1.2 client offering only ECDHE-ECDSA-AES128-GCM-SHA256 (as the Moddable SDK does) connects and can pin the SPKI', async () => {
  const cert = await createDevCertificate();
  const server = createServer({ cert: cert.certPem, key: cert.keyPem }, (socket) => socket.end('ok'));
  await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
  const port = (server.address() as AddressInfo).port;
  try {
    const pin = await new Promise<string>((done, fail) => {
      const socket = connect({ host: '127.0.0.1', port, ca: cert.caPem, maxVersion: 'TLSv1.2', ciphers: 'ECDHE-ECDSA-AES128-GCM-SHA256' }, () => {
        const peer = socket.getPeerX509Certificate()!;
        done(createHash('sha256').update(peer.publicKey.export({ type: 'spki', format: 'der' })).digest('hex'));
        socket.end();
      });
      socket.on('error', fail);
    });
    expect(pin).toBe(cert.spkiSha256Hex);
  } finally {
    server.close();
  }
});

test('`hub cert` writes the chain, an owner-only key, the CA and the pins file (with the firmware\'s hubCa), and prints them', () => {
  const dir = mkdtempSync(join(tmpdir(), 'lockstep-cert-'));
  try {
    const result = spawnSync(process.execPath, [join(root, 'node_modules/tsx/dist/cli.mjs'), join(root, 'tools/hub/cli.ts'), 'cert', '--out', dir, '--force'], { encoding: 'utf8', timeout: 30_000 });
    expect(result.status).toBe(0);
    const printed = JSON.parse(result.stdout) as Record<string, string>;
    const pins = JSON.parse(readFileSync(join(dir, 'hub-cert-pins.json'), 'utf8')) as Record<string, string>;
    const actual = certificatePins(readFileSync(join(dir, 'hub-cert.pem')));
    const ca = new X509Certificate(readFileSync(join(dir, 'hub-ca.pem')));
    const caPins = certificatePins(ca.toString());
    expect(pins).toEqual({
      sha256: actual.fingerprint256,
      spkiSha256: actual.spkiSha256Hex,
      spkiSha256Base64: actual.spkiSha256Base64,
      ca: { sha256: caPins.fingerprint256, spkiSha256: caPins.spkiSha256Hex, spkiSha256Base64: caPins.spkiSha256Base64 },
      hubCa: ca.raw.toString('hex'),
    });
    expect(printed).toMatchObject(pins);
    expect(statSync(join(dir, 'hub-key.pem')).mode & 0o777).toBe(0o600);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
