/**
 * The development certificates for the hub's TLS listener, built with
 * @peculiar/x509 on node:crypto's WebCrypto (no hand-written DER, no OpenSSL
 * binary): a development CA (self-signed, ECDSA P-256/SHA-256, allowed to
 * sign certificates only) and the hub's certificate issued by it (ECDSA
 * P-256/SHA-256, serverAuth, the hub's names and addresses). The hub serves
 * both (its certificate, then the CA); a device trusts the CA — the
 * firmware's `hubCa` setting — and so checks the chain and the hub's name
 * with `hubTlsVerify` on. The Moddable SDK's TLS client needs that chain: it
 * accepts a server certificate only when it is signed by a certificate it
 * trusts (modules/crypt/ssl/ssl_cert.js), and never a lone self-signed one.
 * For production use certificates from your own CA the same way.
 *
 * Pins: `certificatePins` gives the SHA-256 of a certificate (DER) and of
 * its SubjectPublicKeyInfo (RFC 7469 §2.4, hex and base64).
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
  /** The hub's certificate followed by the CA's: what the TLS listener serves (`--cert`). */
  readonly certPem: string;
  /** The hub certificate's private key (`--key`). */
  readonly keyPem: string;
  /** The development CA: what devices trust. */
  readonly caPem: string;
  /** The CA's DER as hex: the firmware's `hubCa` setting. */
  readonly caDerHex: string;
  /** Pins of the CA certificate (the trust anchor). */
  readonly caPins: CertificatePins;
}

export interface DevCertificateOptions {
  /** DNS names and IP addresses the hub's certificate is valid for; default localhost and 127.0.0.1. */
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
  const notBefore = new Date(now.getTime() - 60_000);
  const notAfter = new Date(now.getTime() + (options.days ?? 365) * 86_400_000);
  const crypto = webcrypto as unknown as X509Crypto;
  const generate = async () => (await webcrypto.subtle.generateKey(ALGORITHM, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  const caKeys = await generate();
  const hubKeys = await generate();
  const caName = `CN=${options.commonName ?? 'Lockstep development hub'} CA`;
  const caKeyId = await x509.SubjectKeyIdentifierExtension.create(caKeys.publicKey, false, crypto);
  const ca = await x509.X509CertificateGenerator.createSelfSigned(
    {
      serialNumber: serialNumber(),
      name: caName,
      notBefore,
      notAfter,
      keys: caKeys,
      signingAlgorithm: ALGORITHM,
      extensions: [
        new x509.BasicConstraintsExtension(true, 0, true), // a CA that issues end-entity certificates only
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
        caKeyId,
        // The SDK's client looks the issuer of the top certificate up by its authority key id.
        await x509.AuthorityKeyIdentifierExtension.create(caKeys.publicKey, false, crypto),
      ],
    },
    crypto,
  );
  const hub = await x509.X509CertificateGenerator.create(
    {
      serialNumber: serialNumber(),
      subject: `CN=${options.commonName ?? 'Lockstep development hub'}`,
      issuer: ca.subject,
      notBefore,
      notAfter,
      publicKey: hubKeys.publicKey,
      signingKey: caKeys.privateKey,
      signingAlgorithm: ALGORITHM,
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
        new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
        new x509.SubjectAlternativeNameExtension(hosts.map((host) => ({ type: isIP(host) ? 'ip' : 'dns', value: host }))),
        await x509.SubjectKeyIdentifierExtension.create(hubKeys.publicKey, false, crypto),
        await x509.AuthorityKeyIdentifierExtension.create(caKeys.publicKey, false, crypto),
      ],
    },
    crypto,
  );
  const pem = (certificate: x509.X509Certificate) => certificate.toString('pem').replace(/\r\n/g, '\n').replace(/\n?$/, '\n');
  const caPem = pem(ca);
  const certPem = pem(hub) + caPem;
  const pkcs8 = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', hubKeys.privateKey));
  const keyPem = createPrivateKey({ key: pkcs8, format: 'der', type: 'pkcs8' }).export({ type: 'pkcs8', format: 'pem' }) as string;
  pkcs8.fill(0);
  // The CA's private key is dropped here: a development CA issues this one certificate.
  const parsedCa = new X509Certificate(caPem);
  const parsedHub = new X509Certificate(pem(hub));
  if (!parsedCa.verify(parsedCa.publicKey) || !parsedHub.verify(parsedCa.publicKey) || !parsedHub.checkIssued(parsedCa)) {
    throw new Error('generated certificates do not verify');
  }
  return { certPem, keyPem, caPem, caDerHex: Buffer.from(ca.rawData).toString('hex'), caPins: certificatePins(caPem), ...certificatePins(pem(hub)) };
}

function serialNumber(): string {
  const serial = randomBytes(16);
  serial[0] = (serial[0] as number) & 0x7f; // a positive INTEGER
  return serial.toString('hex');
}

/** The pins of any PEM certificate (the development one or one from a CA); for a chain, of its first certificate. */
export function certificatePins(certPem: string | Buffer): CertificatePins {
  const parsed = new X509Certificate(certPem);
  const spki = parsed.publicKey.export({ type: 'spki', format: 'der' });
  const digest = createHash('sha256').update(spki).digest();
  return { fingerprint256: parsed.fingerprint256, spkiSha256Hex: digest.toString('hex'), spkiSha256Base64: digest.toString('base64') };
}
