/** Firmware config parsing (hosts/moddable/config.ts) and app payloads (hosts/moddable/app-messages.ts). */
import { isLockstepError } from '../modules/errors';
import { decodeCommand, encodeAscii, encodeReply, encodeTelemetry, printable, readTelemetryMs } from '../hosts/moddable/app-messages';
import { MonotonicClock } from '../hosts/moddable/clock';
import { join } from 'node:path';
import { checkFirmwareConfig, parseFirmwareConfig } from '../hosts/moddable/config';
import { checkApplicationConfig, mergedConfig } from '../tools/firmware-config/check';

function badKey(raw: Record<string, unknown>): string {
  try {
    parseFirmwareConfig(raw);
  } catch (error) {
    if (!isLockstepError(error, 'LOCAL_BAD_ARGUMENT')) throw error;
    return error.message;
  }
  throw new Error(`accepted ${JSON.stringify(raw)}`);
}

describe('parseFirmwareConfig', () => {
  test('defaults match the reference hub (TCP 7700, TLS 7701)', () => {
    const config = parseFirmwareConfig({});
    expect(config).toMatchObject({ hubHost: 'localhost', hubPort: 7700, tls: false, tlsVerify: true, keystoreBytes: 16384 });
    expect(config.deviceId).toBeUndefined();
    expect(parseFirmwareConfig({ hubTls: 'true' }).hubPort).toBe(7701);
  });

  test('accepts mcconfig command-line strings and manifest JSON types alike', () => {
    const fromCli = parseFirmwareConfig({ hub: '192.168.1.20', port: '9000', hubTls: '1', deviceId: '0102030405060708' });
    const fromManifest = parseFirmwareConfig({ hub: '192.168.1.20', port: 9000, hubTls: true, deviceId: '0102030405060708' });
    expect(fromCli).toEqual(fromManifest);
    expect(fromCli.hubPort).toBe(9000);
    expect([...fromCli.deviceId!]).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
  });

  test('hubCa: a DER certificate as hex, checked for shape; anything else names the key', () => {
    const der = new Uint8Array(300);
    der.set([0x30, 0x82, 0x01, 0x28]);
    const hex = Buffer.from(der).toString('hex');
    expect([...parseFirmwareConfig({ hubCa: hex }).hubCa!]).toEqual([...der]);
    expect(parseFirmwareConfig({}).hubCa).toBeUndefined();
    expect(badKey({ hubCa: hex.slice(0, -2) })).toMatch(/hubCa: not a DER certificate/);
    expect(badKey({ hubCa: 'zz' })).toMatch(/hubCa: expected a DER certificate as hex/);
    expect(badKey({ hubCa: 'ab'.repeat(5000) })).toMatch(/hubCa/);
    expect(badKey({ hubCa: '3082' })).toMatch(/hubCa: not a DER/);
  });

  test('hub=host:port sets the port unless port is given', () => {
    expect(parseFirmwareConfig({ hub: 'hub.local:7800' })).toMatchObject({ hubHost: 'hub.local', hubPort: 7800 });
    expect(parseFirmwareConfig({ hub: 'hub.local:7800', port: '7900' }).hubPort).toBe(7900);
  });

  test('a relative keystore image lives under the file root', () => {
    expect(parseFirmwareConfig({}, '/tmp/').keystoreImage).toBe('/tmp/lockstep-keystore.bin');
    expect(parseFirmwareConfig({ keystoreImage: '/var/ks.bin' }, '/tmp/').keystoreImage).toBe('/var/ks.bin');
  });

  test('key wrapping: partition label, image file under the file root, not required by default', () => {
    expect(parseFirmwareConfig({}, '/tmp/')).toMatchObject({
      keyWrapPartition: 'lskeywrap',
      keyWrapImage: '/tmp/lockstep-keywrap.bin',
      keyWrapRequired: false,
    });
    expect(parseFirmwareConfig({ keyWrapImage: '/var/kw.bin', keyWrapRequired: 'true' }, '/tmp/')).toMatchObject({
      keyWrapImage: '/var/kw.bin',
      keyWrapRequired: true,
    });
  });

  test('empty Wi-Fi settings mean none', () => {
    expect(parseFirmwareConfig({ ssid: '', password: '' })).toMatchObject({ ssid: undefined, password: undefined });
    expect(parseFirmwareConfig({ ssid: 'home', password: 'secret' })).toMatchObject({ ssid: 'home', password: 'secret' });
  });

  test.each([
    [{ hub: '' }, 'hub'],
    [{ hub: 'a b' }, 'hub'],
    [{ hub: 'host:99999' }, 'hub'],
    [{ hub: 'host:' }, 'hub'],
    [{ port: '0' }, 'port'],
    [{ port: '65536' }, 'port'],
    [{ port: '12ab' }, 'port'],
    [{ port: 1.5 }, 'port'],
    [{ hubTls: 'yes' }, 'hubTls'],
    [{ deviceId: '0102' }, 'deviceId'],
    [{ deviceId: 'zz02030405060708' }, 'deviceId'],
    [{ reconnectBaseMs: '5000', reconnectMaxMs: '1000' }, 'reconnectMaxMs'],
    [{ keystoreBytes: '5000' }, 'keystoreBytes'],
    [{ keystoreBytes: '0' }, 'keystoreBytes'],
    [{ hubTSL: 'true' }, 'hubTSL'],
    [{ keystoreSize: 4096 }, 'keystoreSize'],
    [{ keystorePartition: 7 }, 'keystorePartition'],
    [{ keyWrapPartition: '' }, 'keyWrapPartition'],
    [{ keyWrapRequired: 'yes' }, 'keyWrapRequired'],
  ])('refuses %j naming the key', (raw, key) => {
    expect(badKey(raw)).toContain(`config ${key}:`);
  });
});

describe('checkFirmwareConfig: one line per bad key, all in one pass', () => {
  test('every bad key is reported, each once, naming the key and why', () => {
    const check = checkFirmwareConfig({ hub: 'a b', port: '0', hubTls: 'yes', keystoreBytes: '5000', hubTSL: true, reconnectBaseMs: '5000', reconnectMaxMs: '1000' });
    expect(check.ok).toBe(false);
    if (check.ok) return;
    expect(check.problems).toEqual([
      'config hubTSL: unknown key',
      'config hub: not a host name or IPv4 address',
      'config hubTls: expected true or false',
      'config port: expected an integer in [1, 65535]',
      'config reconnectMaxMs: must be at least reconnectBaseMs (5000)',
      'config keystoreBytes: must be a multiple of 4096',
    ]);
    expect(() => parseFirmwareConfig({ hub: 'a b', port: '0' })).toThrow(/config hub: .*; config port: /);
  });

  test("the SDK's and the application's keys are not the library's business", () => {
    expect(checkFirmwareConfig({ file: { root: '/tmp/' }, tls: {}, telemetryMs: 5, periodMs: 'x', sensorPin: 3 })).toMatchObject({ ok: true });
  });
});

describe('app payloads', () => {
  test('telemetryMs: the reference app checks its own setting', () => {
    expect(readTelemetryMs(undefined)).toEqual({ ms: 10_000 });
    expect(readTelemetryMs('0')).toEqual({ ms: 0 });
    expect(readTelemetryMs(5000)).toEqual({ ms: 5000 });
    expect(readTelemetryMs('-1')).toEqual({ problem: expect.stringContaining('config telemetryMs:') });
    expect(readTelemetryMs(10)).toEqual({ problem: expect.stringContaining('config telemetryMs:') });
  });

  const ascii = (text: string): Uint8Array => encodeAscii(text);

  test('commands decode, with length and charset checked first', () => {
    expect(decodeCommand(ascii('ping'))).toEqual({ kind: 'ping' });
    expect(decodeCommand(ascii(' telemetry '))).toEqual({ kind: 'telemetry' });
    expect(decodeCommand(ascii('interval 5000'))).toEqual({ kind: 'interval', ms: 5000 });
    expect(decodeCommand(ascii('interval 0'))).toEqual({ kind: 'interval', ms: 0 });
    expect(decodeCommand(ascii('interval 10'))).toMatchObject({ kind: 'invalid' });
    expect(decodeCommand(ascii('interval 99999999'))).toMatchObject({ kind: 'invalid' });
    expect(decodeCommand(ascii('interval x'))).toMatchObject({ kind: 'invalid' });
    expect(decodeCommand(ascii('ping now'))).toMatchObject({ kind: 'invalid' });
    expect(decodeCommand(ascii('reboot'))).toMatchObject({ kind: 'invalid', reason: 'unknown command' });
    expect(decodeCommand(new Uint8Array(0))).toMatchObject({ kind: 'invalid', reason: 'length' });
    expect(decodeCommand(new Uint8Array(65).fill(0x61))).toMatchObject({ kind: 'invalid', reason: 'length' });
    expect(decodeCommand(new Uint8Array([0x70, 0x00]))).toMatchObject({ kind: 'invalid', reason: 'not printable ASCII' });
  });

  test('telemetry and replies are one line of ASCII JSON', () => {
    const telemetry = encodeTelemetry({ seq: 3, uptimeMs: 1234.9, keyId: 7, sessions: 2, closes: 1, heapBytes: 4096 });
    expect(JSON.parse(Buffer.from(telemetry).toString('ascii'))).toEqual({
      type: 'telemetry',
      seq: 3,
      uptimeMs: 1234,
      keyId: 7,
      sessions: 2,
      closes: 1,
      heapBytes: 4096,
    });
    expect(JSON.parse(Buffer.from(encodeTelemetry({ seq: 1, uptimeMs: 0, keyId: 1, sessions: 0, closes: 0, heapBytes: undefined })).toString())).not.toHaveProperty(
      'heapBytes',
    );
    expect(JSON.parse(Buffer.from(encodeReply('error', 'bad "x"')).toString())).toEqual({ type: 'error', reason: 'bad "x"' });
    expect([...encodeAscii('é\n')]).toEqual([0x3f, 0x3f]);
    expect(printable(new Uint8Array([0x41, 0x00, 0x42]))).toBe('A.B');
  });
});

describe('MonotonicClock', () => {
  test('never decreases: negative deltas (wall clock stepped back) count as zero', () => {
    let ticks = 1000;
    const time = { get ticks() { return ticks; }, delta: (start: number, end = ticks) => end - start };
    const clock = new MonotonicClock(time);
    ticks = 1500;
    expect(clock.now()).toBe(500);
    ticks = 1200;
    expect(clock.now()).toBe(500);
    ticks = 1300;
    expect(clock.now()).toBe(600);
  });

  test("follows an ESP32-style 32-bit counter across its wrap when Time.delta subtracts unsigned", () => {
    let ticks = 0x7fffff00 | 0;
    const time = { get ticks() { return ticks; }, delta: (start: number, end = ticks) => ((end >>> 0) - (start >>> 0)) >>> 0 };
    const clock = new MonotonicClock(time);
    ticks = (0x7fffff00 + 0x200) | 0; // now negative as a signed int
    expect(ticks).toBeLessThan(0);
    expect(clock.now()).toBe(0x200);
  });
});

describe('npm run firmware-config: the boot-time check before mcconfig', () => {
  const root = join(__dirname, '..');

  test.each(['.', 'examples/key-events', 'examples/sensor-telemetry'])('%s: the merged settings pass', (app) => {
    expect(checkApplicationConfig(join(root, app), ['hub=127.0.0.1', 'hubTls=true'])).toEqual([]);
  });

  test('command-line values are checked like mcconfig passes them, one line per bad key', () => {
    expect(checkApplicationConfig(join(root, 'examples/key-events'), ['hub=a:b', 'hubTls=yes', 'keystoreSize=3'])).toEqual([
      'config keystoreSize: unknown key',
      'config hub: expected host or host:port',
      'config hubTls: expected true or false',
    ]);
  });

  test("the library's defaults come first and the application's override them", () => {
    const merged = mergedConfig(join(root, 'manifest.json'));
    expect(merged).toMatchObject({ hub: 'localhost', keystoreBytes: 16384, telemetryMs: 10000 });
  });
});
