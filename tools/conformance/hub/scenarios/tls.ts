/**
 * The TLS listener (docs/PROTOCOL.md §13), when the target is TLS: the
 * version negotiated (1.2 or 1.3, nothing below: a client offering at most
 * TLS 1.1 is refused), an ECDHE AEAD suite, and a certificate issued by a CA
 * (not a lone self-signed one) naming the host the devices connect to. The
 * frames inside are the same bytes as over TCP: the other scenarios run
 * through the same TLS connections (W-TLS-1).
 */
import { checkServerIdentity, connect, type PeerCertificate, type TLSSocket } from 'node:tls';
import type { Scenario } from './scenario';

function tlsConnect(host: string, port: number, options: { ca: string | Buffer; servername?: string; maxVersion?: 'TLSv1.1' | 'TLSv1.3' }, timeoutMs: number): Promise<{ socket: TLSSocket } | { error: string }> {
  return new Promise((resolve) => {
    const socket = connect({ host, port, ca: options.ca, ...(options.servername === undefined ? {} : { servername: options.servername }), ...(options.maxVersion === undefined ? {} : { maxVersion: options.maxVersion, minVersion: 'TLSv1' }), rejectUnauthorized: options.maxVersion === undefined });
    const timer = setTimeout(() => {
      socket.destroy();
      resolve({ error: `no TLS handshake within ${timeoutMs} ms` });
    }, timeoutMs);
    socket.once('secureConnect', () => {
      clearTimeout(timer);
      resolve({ socket });
    });
    socket.once('error', (error) => {
      clearTimeout(timer);
      socket.destroy();
      resolve({ error: error.message });
    });
  });
}

export const tlsScenario: Scenario = {
  name: 'tls',
  description: 'with --tls: TLS 1.2/1.3 only, an ECDHE AEAD suite, a CA-issued certificate naming the host',
  covers: ['H-TLS-1', 'H-TLS-2', 'H-TLS-3', 'W-TLS-1'],
  unavailable: (context) => (context.target.tls === undefined ? 'the target is plain TCP (give --tls --ca FILE)' : undefined),
  async run(context, run) {
    const tls = context.target.tls;
    if (tls === undefined) return;
    const release = await context.link.budget.acquire();
    try {
      const servername = tls.servername ?? context.target.host;
      const connected = await tlsConnect(context.target.host, context.target.port, { ca: tls.ca, servername }, context.timeouts.connectMs);
      if ('error' in connected) {
        run.fail('H-TLS-1', `a TLS client trusting --ca could not connect: ${connected.error}`);
        return;
      }
      const socket = connected.socket;
      // The kit presents no client certificate, as devices do not (H-TLS-3): the handshake completing shows none is required.
      run.pass('H-TLS-3');
      const protocol = socket.getProtocol() ?? 'none';
      const cipher = socket.getCipher();
      run.check('H-TLS-1', protocol === 'TLSv1.2' || protocol === 'TLSv1.3', `negotiated ${protocol}`);
      const aead = /GCM|CHACHA20|CCM/i.test(cipher.name) && (protocol === 'TLSv1.3' || /^ECDHE/.test(cipher.standardName ?? cipher.name) || /^ECDHE/.test(cipher.name));
      run.check('H-TLS-1', aead, `negotiated suite ${cipher.standardName ?? cipher.name} (${cipher.version}): not ECDHE with an AEAD`);
      const certificate = socket.getPeerCertificate(false) as PeerCertificate;
      const selfSigned = certificate.fingerprint256 !== undefined && JSON.stringify(certificate.subject) === JSON.stringify(certificate.issuer);
      run.check('H-TLS-2', !selfSigned, `the hub's certificate is self-signed (subject ${JSON.stringify(certificate.subject)})`);
      const identity = checkServerIdentity(servername, certificate);
      run.check('H-TLS-2', identity === undefined, `the certificate does not name ${servername}: ${identity?.message ?? ''}`);
      socket.destroy();
      // Nothing below TLS 1.2: a client that offers at most TLS 1.1 must be refused.
      const old = await tlsConnect(context.target.host, context.target.port, { ca: tls.ca, servername, maxVersion: 'TLSv1.1' }, context.timeouts.connectMs);
      run.check('H-TLS-1', 'error' in old, `a client offering at most TLS 1.1 got ${'socket' in old ? old.socket.getProtocol() : ''}`);
      if ('socket' in old) old.socket.destroy();
      run.pass('W-TLS-1');
    } finally {
      release();
    }
  },
};
