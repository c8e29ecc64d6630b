/**
 * The firmware's settings, read from `mc/config` (the manifest's `config`
 * section, overridden by `mcconfig ... key=value`).
 *
 * Keys share one namespace with the SDK's own settings (the TLS stack reads
 * `config.tls` as an object of cipher-suite switches), hence `hubTls`, not `tls`.
 *
 * Rule: values given on the mcconfig command line arrive as strings, values
 * from the manifest keep their JSON type; both are accepted. Anything out of
 * range is a LockstepError('LOCAL_BAD_ARGUMENT') naming the key, so a bad
 * build fails loudly at boot instead of running with a surprise value.
 */
import { fromHex } from '../../modules/bytes';
import { LockstepError } from '../../modules/errors';
import { DEVICE_ID_BYTES } from '../../modules/platform/keys';

export interface FirmwareConfig {
  /** Hub host name or dotted IPv4 address (the simulator's socket needs a name or address, never empty). */
  readonly hubHost: string;
  /** `port`, else the port in `hub=host:port`, else 7700 (TCP) / 7701 (`hubTls`). */
  readonly hubPort: number;
  /** `hubTls`: connect through `securesocket` (TLS) instead of `socket`. */
  readonly tls: boolean;
  /** `hubTlsVerify`: verify the hub's certificate chain and name (TLS only). */
  readonly tlsVerify: boolean;
  /**
   * `hubCa`: the DER certificate (hex) the hub's chain must lead to — the
   * development CA `lockstep-hub cert` writes, or your own. Trusted besides
   * the CA certificates built into the app.
   */
  readonly hubCa: Uint8Array | undefined;
  /** If set, the keystore's device id must equal it (guards against flashing the wrong image). */
  readonly deviceId: Uint8Array | undefined;
  readonly reconnectBaseMs: number;
  readonly reconnectMaxMs: number;
  /** Give up on a connection attempt that has not opened after this long. */
  readonly connectTimeoutMs: number;
  /** Period of telemetry messages; 0 turns telemetry off. */
  readonly telemetryMs: number;
  /** ESP32: label of the keystore data partition (partitions.csv). */
  readonly keystorePartition: string;
  /** Simulator: path of the file-backed keystore image. */
  readonly keystoreImage: string;
  /** Simulator: size of that image; a multiple of KEYSTORE_SECTOR_BYTES. */
  readonly keystoreBytes: number;
  /** ESP32: label of the key-wrap partition (flagged `encrypted`; docs/FIRMWARE.md, flash encryption). */
  readonly keyWrapPartition: string;
  /** Simulator: path of the key-wrap image file (provision --key-wrap's keywrap.bin). */
  readonly keyWrapImage: string;
  /** Refuse to run with plain keys: a missing or erased key-wrap partition is UNPROVISIONED. */
  readonly keyWrapRequired: boolean;
  /** ESP32: Wi-Fi credentials; no SSID means the network is already up (simulator). */
  readonly ssid: string | undefined;
  readonly password: string | undefined;
}

export const KEYSTORE_SECTOR_BYTES = 4096;
/** The reference hub's default listeners (tools/hub/options.ts). */
export const DEFAULT_TCP_PORT = 7700;
export const DEFAULT_TLS_PORT = 7701;
const MAX_DELAY_MS = 24 * 60 * 60 * 1000;
const MAX_KEYSTORE_BYTES = 1 << 20;

/** `raw` is the `mc/config` object; `fileRoot` is `config.file.root` (prefix for a relative keystoreImage). */
export function parseFirmwareConfig(raw: Readonly<Record<string, unknown>>, fileRoot = ''): FirmwareConfig {
  const hub = readString(raw, 'hub', 'localhost');
  const { host, port: portInHub } = splitHostPort(hub);
  const tls = readBoolean(raw, 'hubTls', false);
  const defaultPort = portInHub ?? (tls ? DEFAULT_TLS_PORT : DEFAULT_TCP_PORT);
  const hubPort = readInteger(raw, 'port', defaultPort, 1, 65535);
  const reconnectBaseMs = readInteger(raw, 'reconnectBaseMs', 1000, 10, MAX_DELAY_MS);
  const reconnectMaxMs = readInteger(raw, 'reconnectMaxMs', 60_000, 10, MAX_DELAY_MS);
  if (reconnectMaxMs < reconnectBaseMs) throw bad('reconnectMaxMs', 'must be at least reconnectBaseMs');
  const keystoreBytes = readInteger(raw, 'keystoreBytes', 16384, KEYSTORE_SECTOR_BYTES, MAX_KEYSTORE_BYTES);
  if (keystoreBytes % KEYSTORE_SECTOR_BYTES !== 0) throw bad('keystoreBytes', `must be a multiple of ${KEYSTORE_SECTOR_BYTES}`);
  const image = readString(raw, 'keystoreImage', 'lockstep-keystore.bin');
  const keyWrapImage = readString(raw, 'keyWrapImage', 'lockstep-keywrap.bin');
  return {
    hubHost: host,
    hubPort,
    tls,
    tlsVerify: readBoolean(raw, 'hubTlsVerify', true),
    hubCa: readCertificate(raw, 'hubCa'),
    deviceId: readDeviceId(raw),
    reconnectBaseMs,
    reconnectMaxMs,
    connectTimeoutMs: readInteger(raw, 'connectTimeoutMs', 10_000, 100, MAX_DELAY_MS),
    telemetryMs: readInteger(raw, 'telemetryMs', 10_000, 0, MAX_DELAY_MS),
    keystorePartition: readString(raw, 'keystorePartition', 'keystore'),
    keystoreImage: image.startsWith('/') ? image : fileRoot + image,
    keystoreBytes,
    keyWrapPartition: readString(raw, 'keyWrapPartition', 'lskeywrap'),
    keyWrapImage: keyWrapImage.startsWith('/') ? keyWrapImage : fileRoot + keyWrapImage,
    keyWrapRequired: readBoolean(raw, 'keyWrapRequired', false),
    ssid: readOptionalString(raw, 'ssid'),
    password: readOptionalString(raw, 'password'),
  };
}

function bad(key: string, why: string): LockstepError {
  return new LockstepError('LOCAL_BAD_ARGUMENT', `config ${key}: ${why}`);
}

/** Accepts `host`, `host:port` and `[v6]:port`-free IPv4/name forms; the port part must be all digits. */
function splitHostPort(hub: string): { host: string; port: number | undefined } {
  const colon = hub.lastIndexOf(':');
  if (colon < 0) return { host: checkHost(hub), port: undefined };
  const portText = hub.slice(colon + 1);
  if (!/^[0-9]{1,5}$/.test(portText)) throw bad('hub', 'expected host or host:port');
  const port = Number(portText);
  if (port < 1 || port > 65535) throw bad('hub', 'port out of range');
  return { host: checkHost(hub.slice(0, colon)), port };
}

function checkHost(host: string): string {
  if (host.length === 0 || host.length > 253 || !/^[A-Za-z0-9.-]+$/.test(host)) throw bad('hub', 'not a host name or IPv4 address');
  return host;
}

function readString(raw: Readonly<Record<string, unknown>>, key: string, fallback: string): string {
  const value = raw[key];
  if (value === undefined) return fallback;
  if (typeof value !== 'string' || value.length === 0 || value.length > 256) throw bad(key, 'expected a non-empty string');
  return value;
}

function readOptionalString(raw: Readonly<Record<string, unknown>>, key: string): string | undefined {
  const value = raw[key];
  if (value === undefined || value === '') return undefined;
  if (typeof value !== 'string' || value.length > 256) throw bad(key, 'expected a string');
  return value;
}

function readInteger(raw: Readonly<Record<string, unknown>>, key: string, fallback: number, min: number, max: number): number {
  const value = raw[key];
  if (value === undefined) return fallback;
  let n: number;
  if (typeof value === 'number') n = value;
  else if (typeof value === 'string' && /^[0-9]{1,10}$/.test(value)) n = Number(value);
  else throw bad(key, 'expected an integer');
  if (!Number.isInteger(n) || n < min || n > max) throw bad(key, `expected an integer in [${min}, ${max}]`);
  return n;
}

function readBoolean(raw: Readonly<Record<string, unknown>>, key: string, fallback: boolean): boolean {
  const value = raw[key];
  if (value === undefined) return fallback;
  if (value === true || value === 'true' || value === '1') return true;
  if (value === false || value === 'false' || value === '0') return false;
  throw bad(key, 'expected true or false');
}

const MAX_CERTIFICATE_BYTES = 4096;

/** A DER certificate as hex (mcconfig passes settings as strings); checked for shape, not parsed. */
function readCertificate(raw: Readonly<Record<string, unknown>>, key: string): Uint8Array | undefined {
  const value = raw[key];
  if (value === undefined || value === '') return undefined;
  if (typeof value !== 'string' || value.length % 2 !== 0 || value.length > 2 * MAX_CERTIFICATE_BYTES || !/^[0-9a-fA-F]+$/.test(value)) {
    throw bad(key, `expected a DER certificate as hex (at most ${MAX_CERTIFICATE_BYTES} bytes)`);
  }
  const der = fromHex(value);
  // A certificate is a DER SEQUENCE with a two-byte long-form length (0x30 0x82 hi lo) covering the rest.
  if (der.length < 4 || der[0] !== 0x30 || der[1] !== 0x82 || (((der[2] as number) << 8) | (der[3] as number)) + 4 !== der.length) {
    throw bad(key, 'not a DER certificate (expected one SEQUENCE spanning the value)');
  }
  return der;
}

function readDeviceId(raw: Readonly<Record<string, unknown>>): Uint8Array | undefined {
  const value = raw['deviceId'];
  if (value === undefined || value === '') return undefined;
  if (typeof value !== 'string' || value.length !== 2 * DEVICE_ID_BYTES || !/^[0-9a-fA-F]+$/.test(value)) {
    throw bad('deviceId', `expected ${2 * DEVICE_ID_BYTES} hex digits`);
  }
  return fromHex(value);
}
