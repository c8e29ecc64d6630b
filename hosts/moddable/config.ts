/**
 * The firmware's settings, read from `mc/config` (the manifest's `config`
 * section, overridden by `mcconfig ... key=value`).
 *
 * Keys share one namespace with the SDK's own settings (the TLS stack reads
 * `config.tls` as an object of cipher-suite switches), hence `hubTls`, not `tls`.
 *
 * Rule: values given on the mcconfig command line arrive as strings, values
 * from the manifest keep their JSON type; both are accepted. Every bad key
 * (type, range, an unknown key with one of the library's prefixes) is one
 * line naming it, all reported together, so a bad build fails loudly at boot
 * (and in `npm run firmware-config`, before mcconfig: tools/firmware-config) instead of running
 * with a surprise value. The SDK has no build-time hook for this.
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

/**
 * Every key the library reads from `mc/config`. Its manifest
 * (hosts/moddable/lockstep/manifest.json) gives each its default.
 */
export const LOCKSTEP_CONFIG_KEYS = [
  'hub',
  'port',
  'hubTls',
  'hubTlsVerify',
  'hubCa',
  'deviceId',
  'reconnectBaseMs',
  'reconnectMaxMs',
  'connectTimeoutMs',
  'keystorePartition',
  'keystoreImage',
  'keystoreBytes',
  'keyWrapPartition',
  'keyWrapImage',
  'keyWrapRequired',
  'ssid',
  'password',
] as const;

/**
 * `mc/config` is shared with the SDK and the application, so an unknown key
 * is only an error when it looks like one of ours (a typo such as `hubTSL`
 * or `keystoreSize`): these prefixes belong to the library.
 */
const LOCKSTEP_KEY_PREFIXES = ['hub', 'keystore', 'keyWrap', 'reconnect', 'lockstep'];

/** The settings, or one line per bad key (type, range, unknown key): never a silent default for a bad value. */
export type ConfigCheck = { readonly ok: true; readonly config: FirmwareConfig } | { readonly ok: false; readonly problems: readonly string[] };

/**
 * Throws one LockstepError('LOCAL_BAD_ARGUMENT') that lists every problem
 * (each `config <key>: <why>`, separated by "; ").
 */
export function parseFirmwareConfig(raw: Readonly<Record<string, unknown>>, fileRoot = ''): FirmwareConfig {
  const check = checkFirmwareConfig(raw, fileRoot);
  if (!check.ok) throw new LockstepError('LOCAL_BAD_ARGUMENT', check.problems.join('; '));
  return check.config;
}

/** `raw` is the `mc/config` object; `fileRoot` is `config.file.root` (prefix for a relative keystoreImage). */
export function checkFirmwareConfig(raw: Readonly<Record<string, unknown>>, fileRoot = ''): ConfigCheck {
  const problems: string[] = [];
  const r = new Reader(raw, problems);
  const known: readonly string[] = LOCKSTEP_CONFIG_KEYS;
  for (const key of Object.keys(raw)) {
    if (!known.includes(key) && LOCKSTEP_KEY_PREFIXES.some((prefix) => key.startsWith(prefix))) problems.push(`config ${key}: unknown key`);
  }
  const hub = r.string('hub', 'localhost');
  const { host, port: portInHub } = r.hostPort('hub', hub);
  const tls = r.boolean('hubTls', false);
  const defaultPort = portInHub ?? (tls ? DEFAULT_TLS_PORT : DEFAULT_TCP_PORT);
  const hubPort = r.integer('port', defaultPort, 1, 65535);
  const reconnectBaseMs = r.integer('reconnectBaseMs', 1000, 10, MAX_DELAY_MS);
  const reconnectMaxMs = r.integer('reconnectMaxMs', 60_000, 10, MAX_DELAY_MS);
  if (reconnectMaxMs < reconnectBaseMs) problems.push(`config reconnectMaxMs: must be at least reconnectBaseMs (${reconnectBaseMs})`);
  const keystoreBytes = r.integer('keystoreBytes', 16384, KEYSTORE_SECTOR_BYTES, MAX_KEYSTORE_BYTES);
  if (keystoreBytes % KEYSTORE_SECTOR_BYTES !== 0) problems.push(`config keystoreBytes: must be a multiple of ${KEYSTORE_SECTOR_BYTES}`);
  const image = r.string('keystoreImage', 'lockstep-keystore.bin');
  const keyWrapImage = r.string('keyWrapImage', 'lockstep-keywrap.bin');
  const config: FirmwareConfig = {
    hubHost: host,
    hubPort,
    tls,
    tlsVerify: r.boolean('hubTlsVerify', true),
    hubCa: r.certificate('hubCa'),
    deviceId: r.deviceId('deviceId'),
    reconnectBaseMs,
    reconnectMaxMs,
    connectTimeoutMs: r.integer('connectTimeoutMs', 10_000, 100, MAX_DELAY_MS),
    keystorePartition: r.string('keystorePartition', 'keystore'),
    keystoreImage: image.startsWith('/') ? image : fileRoot + image,
    keystoreBytes,
    keyWrapPartition: r.string('keyWrapPartition', 'lskeywrap'),
    keyWrapImage: keyWrapImage.startsWith('/') ? keyWrapImage : fileRoot + keyWrapImage,
    keyWrapRequired: r.boolean('keyWrapRequired', false),
    ssid: r.optionalString('ssid'),
    password: r.optionalString('password'),
  };
  return problems.length === 0 ? { ok: true, config } : { ok: false, problems };
}

/**
 * Reads one key each: a bad value adds one line `<prefix> <key>: <why>` and
 * answers the fallback, so every bad key is reported in one pass. The
 * prefix is `config` for mc/config and `option` for the constructor's options.
 */
export class Reader {
  readonly #raw: Readonly<Record<string, unknown>>;
  readonly #prefix: string;
  readonly problems: string[];

  constructor(raw: Readonly<Record<string, unknown>>, problems: string[], prefix = 'config') {
    this.#raw = raw;
    this.problems = problems;
    this.#prefix = prefix;
  }

  bad(key: string, why: string): void {
    this.problems.push(`${this.#prefix}${this.#prefix.endsWith('.') ? '' : ' '}${key}: ${why}`);
  }

  /** Accepts `host` and `host:port` (IPv4 or a name); the port part must be all digits. */
  hostPort(key: string, hub: string): { host: string; port: number | undefined } {
    const colon = hub.lastIndexOf(':');
    const host = colon < 0 ? hub : hub.slice(0, colon);
    let port: number | undefined;
    if (colon >= 0) {
      const portText = hub.slice(colon + 1);
      if (!/^[0-9]{1,5}$/.test(portText)) this.bad(key, 'expected host or host:port');
      else if (Number(portText) < 1 || Number(portText) > 65535) this.bad(key, 'port out of range');
      else port = Number(portText);
    }
    if (host.length === 0 || host.length > 253 || !/^[A-Za-z0-9.-]+$/.test(host)) {
      this.bad(key, 'not a host name or IPv4 address');
      return { host: 'localhost', port };
    }
    return { host, port };
  }

  string(key: string, fallback: string): string {
    const value = this.#raw[key];
    if (value === undefined) return fallback;
    if (typeof value !== 'string' || value.length === 0 || value.length > 256) {
      this.bad(key, 'expected a non-empty string');
      return fallback;
    }
    return value;
  }

  optionalString(key: string): string | undefined {
    const value = this.#raw[key];
    if (value === undefined || value === '') return undefined;
    if (typeof value !== 'string' || value.length > 256) {
      this.bad(key, 'expected a string');
      return undefined;
    }
    return value;
  }

  integer(key: string, fallback: number, min: number, max: number): number {
    const value = this.#raw[key];
    if (value === undefined) return fallback;
    let n: number;
    if (typeof value === 'number') n = value;
    else if (typeof value === 'string' && /^[0-9]{1,10}$/.test(value)) n = Number(value);
    else {
      this.bad(key, 'expected an integer');
      return fallback;
    }
    if (!Number.isInteger(n) || n < min || n > max) {
      this.bad(key, `expected an integer in [${min}, ${max}]`);
      return fallback;
    }
    return n;
  }

  boolean(key: string, fallback: boolean): boolean {
    const value = this.#raw[key];
    if (value === undefined) return fallback;
    if (value === true || value === 'true' || value === '1') return true;
    if (value === false || value === 'false' || value === '0') return false;
    this.bad(key, 'expected true or false');
    return fallback;
  }

  /** A DER certificate: hex (mcconfig passes settings as strings), or bytes (an option, e.g. from a Resource); checked for shape, not parsed. */
  certificate(key: string): Uint8Array | undefined {
    const value = this.#raw[key];
    if (value === undefined || value === '') return undefined;
    let der: Uint8Array;
    if (value instanceof ArrayBuffer) der = new Uint8Array(value.slice(0));
    else if (value instanceof Uint8Array) der = value.slice();
    else if (typeof value === 'string' && value.length % 2 === 0 && value.length <= 2 * MAX_CERTIFICATE_BYTES && /^[0-9a-fA-F]+$/.test(value)) der = fromHex(value);
    else {
      this.bad(key, `expected a DER certificate as hex (at most ${MAX_CERTIFICATE_BYTES} bytes)`);
      return undefined;
    }
    // A certificate is a DER SEQUENCE with a two-byte long-form length (0x30 0x82 hi lo) covering the rest.
    if (der.length > MAX_CERTIFICATE_BYTES || der.length < 4 || der[0] !== 0x30 || der[1] !== 0x82 || (((der[2] as number) << 8) | (der[3] as number)) + 4 !== der.length) {
      this.bad(key, 'not a DER certificate (expected one SEQUENCE spanning the value)');
      return undefined;
    }
    return der;
  }

  deviceId(key: string): Uint8Array | undefined {
    const value = this.#raw[key];
    if (value === undefined || value === '') return undefined;
    if (typeof value !== 'string' || value.length !== 2 * DEVICE_ID_BYTES || !/^[0-9a-fA-F]+$/.test(value)) {
      this.bad(key, `expected ${2 * DEVICE_ID_BYTES} hex digits`);
      return undefined;
    }
    return fromHex(value);
  }
}

const MAX_CERTIFICATE_BYTES = 4096;
