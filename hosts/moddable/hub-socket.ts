/**
 * Opens the SDK socket to the hub: `socket` (TCP) or `securesocket` (TLS 1.2,
 * the SDK's own TLS stack). The simulator's socket requires a host name
 * (or a dotted address given as `host`); the ESP32's resolves both.
 *
 * The casts are the SDK boundary: both classes have the legacy callback
 * shape LegacySocket describes, but @moddable/typings declares neither
 * `callback` on SecureSocket nor the no-argument `read()` / `write()` forms.
 */
import SecureSocket from 'securesocket';
import { Socket } from 'socket';
import type { FirmwareConfig } from './config';
import type { LegacySocket } from './socket-transport';

export function openHubSocket(config: FirmwareConfig): LegacySocket {
  if (config.tls) {
    // The SDK checks the chain and the name (host) against its built-in CAs plus `certificate` (hubCa).
    const secure = {
      verify: config.tlsVerify,
      protocolVersion: 0x303,
      ...(config.hubCa === undefined ? {} : { certificate: copyToArrayBuffer(config.hubCa) }),
    };
    return new SecureSocket({ host: config.hubHost, port: config.hubPort, secure }) as unknown as LegacySocket;
  }
  return new Socket({ host: config.hubHost, port: config.hubPort }) as unknown as LegacySocket;
}

/** The SDK wants the certificate as an ArrayBuffer of its own. */
function copyToArrayBuffer(bytes: Uint8Array): ArrayBuffer {
  const out = new ArrayBuffer(bytes.length);
  new Uint8Array(out).set(bytes);
  return out;
}
