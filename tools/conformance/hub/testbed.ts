/**
 * A hub under test with its devices, ready for the kit (tests and
 * docs/CONFORMANCE.md's worked example): a fresh SQLite database, its hub
 * static key, kit device records written and imported, and the hub (the
 * reference hub or an excluded design) running as a crashable child process.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { HubStore } from '../../hub/store';
import { defaultStaticKeyPath, readStaticKeyFile } from '../../hub/static-keys';
import { createDevCertificate } from '../../hub/cert';
import type { BrokenHubConfig, BrokenHubDesign } from './broken-hub';
import { SCENARIO_DEVICES } from './command';
import { HubUnderTest } from './hub-under-test';
import { newKitDevices, writeKitRecords, type HubStaticPublic, type KitDevice } from './kit-devices';

export interface Testbed {
  readonly dir: string;
  readonly database: string;
  readonly records: string;
  readonly devices: KitDevice[];
  readonly hubStatic: HubStaticPublic;
  readonly hub: HubUnderTest;
  readonly port: number;
  /** With `tls`: the CA the kit trusts. */
  readonly caPem?: string;
  close(): Promise<void>;
}

export async function startTestbed(options: { design?: BrokenHubDesign | 'none'; faultDevices?: number; tls?: boolean; recoveryPerSource?: BrokenHubConfig['recoveryPerSource'] } = {}): Promise<Testbed> {
  const dir = mkdtempSync(join(tmpdir(), 'lockstep-conformance-'));
  const database = join(dir, 'hub.db');
  new HubStore(database).close();
  const keys = readStaticKeyFile(defaultStaticKeyPath(database));
  const current = keys.keys.find((key) => key.id === keys.current);
  if (current === undefined) throw new Error('the new database has no current static key');
  const hubStatic = { id: current.id, publicKey: current.publicKey.slice() };
  const faults = options.faultDevices ?? 2;
  const devices = newKitDevices({ classic: SCENARIO_DEVICES.classic + Math.ceil(faults / 2), dh: SCENARIO_DEVICES.dh + Math.floor(faults / 2) }, hubStatic);
  const records = join(dir, 'records.jsonl');
  writeKitRecords(records, devices);
  let tls: { cert: string; key: string } | undefined;
  let caPem: string | undefined;
  if (options.tls === true) {
    const certificate = await createDevCertificate();
    tls = { cert: join(dir, 'hub-cert.pem'), key: join(dir, 'hub-key.pem') };
    writeFileSync(tls.cert, certificate.certPem);
    writeFileSync(tls.key, certificate.keyPem, { mode: 0o600 });
    caPem = certificate.caPem;
  }
  const hub = new HubUnderTest({ design: options.design ?? 'none', database, port: 0, importRecords: records, ...(tls === undefined ? {} : { tls }), ...(options.recoveryPerSource === undefined ? {} : { recoveryPerSource: options.recoveryPerSource }) });
  const port = await hub.start();
  return {
    dir,
    database,
    records,
    devices,
    hubStatic,
    hub,
    port,
    ...(caPem === undefined ? {} : { caPem }),
    async close() {
      await hub.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
