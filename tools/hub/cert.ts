/**
 * A self-signed development certificate for the hub's TLS listener: ECDSA
 * P-256 with SHA-256 (what the Moddable SDK's TLS client negotiates, e.g.
 * ECDHE-ECDSA-AES128-GCM-SHA256), built with @peculiar/x509 on node:crypto's
 * WebCrypto (no hand-written DER, no OpenSSL binary). For production use a
 * certificate from your own CA.
 *
 * Pins: `certificatePins` gives the SHA-256 of the certificate (DER) and of
 * its SubjectPublicKeyInfo (RFC 7469 §2.4, hex and base64), so firmware can
 * pin either; the SPKI pin survives re-issuing a certificate for the same
 * key. The pinning itself lands with the device library.
 *
 * TLS is optional in Lockstep: every frame is already sealed and
 * authenticated; TLS adds transport privacy of headers and traffic shape.
 */
import 'reflect-metadata';
import { createHash, createPrivateKey, randomBytes, webcrypto, X509Certificate } from 'node:crypto';
import { isIP } from 'node:net';
import * as x509 from '@peculiar/x509';

export interface CertificatePins {
  /** SHA-256 of the certificate's DER, colon-separated upper-case hex (as `openssl x509 -fingerprint -sha256` prints). */
  readonly fingerprint256: string;
  /** SHA-256 of the DER SubjectPublicKeyInfo, lower-case hex. */
  readonly spkiSha256Hex: string;
  /** The same, base64 (the `pin-sha256` form of RFC 7469). */
  readonly spkiSha256Base64: string;
}

export interface DevCertificate extends CertificatePins {
  readonly certPem: string;
  readonly keyPem: string;
}

export interface DevCertificateOptions {
  /** DNS names and IP addresses the certificate is valid for; default localhost and 127.0.0.1. */
  readonly hosts?: readonly string[];
  readonly days?: number;
  readonly commonName?: string;
  readonly now?: Date;
}

/** node:crypto's WebCrypto, as the type @peculiar/x509 asks for. */
type X509Crypto = NonNullable<Parameters<typeof x509.X509CertificateGenerator.createSelfSigned>[1]>;

const ALGORITHM = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;

export async function createDevCertificate(options: DevCertificateOptions = {}): Promise<DevCertificate> {
  const hosts = options.hosts ?? ['localhost', '127.0.0.1'];
  const now = options.now ?? new Date();
  const crypto = webcrypto as unknown as X509Crypto;
  const keys = (await webcrypto.subtle.generateKey(ALGORITHM, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  const serial = randomBytes(16);
  serial[0] = (serial[0] as number) & 0x7f; // a positive INTEGER
  const certificate = await x509.X509CertificateGenerator.createSelfSigned(
    {
      serialNumber: serial.toString('hex'),
      name: [{ CN: [options.commonName ?? 'Lockstep development hub'] }],
      notBefore: new Date(now.getTime() - 60_000),
      notAfter: new Date(now.getTime() + (options.days ?? 365) * 86_400_000),
      keys,
      signingAlgorithm: ALGORITHM,
      extensions: [
        new x509.BasicConstraintsExtension(true, undefined, true), // a self-signed trust anchor
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
        new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
        new x509.SubjectAlternativeNameExtension(hosts.map((host) => ({ type: isIP(host) ? 'ip' : 'dns', value: host }))),
        await x509.SubjectKeyIdentifierExtension.create(keys.publicKey, false, crypto),
      ],
    },
    crypto,
  );
  const certPem = certificate.toString('pem').replace(/\r\n/g, '\n').replace(/\n?$/, '\n');
  const pkcs8 = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey));
  const keyPem = createPrivateKey({ key: pkcs8, format: 'der', type: 'pkcs8' }).export({ type: 'pkcs8', format: 'pem' }) as string;
  pkcs8.fill(0);
  const parsed = new X509Certificate(certPem);
  if (!parsed.verify(parsed.publicKey)) throw new Error('generated certificate does not verify');
  return { certPem, keyPem, ...certificatePins(certPem) };
}

/** The pins of any PEM certificate (the development one or one from a CA). */
export function certificatePins(certPem: string | Buffer): CertificatePins {
  const parsed = new X509Certificate(certPem);
  const spki = parsed.publicKey.export({ type: 'spki', format: 'der' });
  const digest = createHash('sha256').update(spki).digest();
  return { fingerprint256: parsed.fingerprint256, spkiSha256Hex: digest.toString('hex'), spkiSha256Base64: digest.toString('base64') };
}
