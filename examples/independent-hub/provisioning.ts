// The provisioning record of §14 (W-PROV-1, H-PROV-1, H-PROV-2): parse and check every record of an
// import before anything is created; refuse the import as a whole if any record is invalid.
import type { DeviceRecord, Mode } from './store';

export class ProvisioningError extends Error {}

const HEX = /^[0-9a-fA-F]*$/;

function hex(value: unknown, digits: number, field: string, where: string): string {
  if (typeof value !== 'string' || value.length !== digits || !HEX.test(value)) {
    throw new ProvisioningError(`${where}: ${field} must be ${digits} hex digits`);
  }
  return value.toLowerCase();
}

function u32NonZero(value: unknown, field: string, where: string): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > 0xffffffff) {
    throw new ProvisioningError(`${where}: ${field} must be an integer in 1…4294967295`);
  }
  return value;
}

/** A file may hold one object, an array of them, or one object per line (§14). */
export function parseRecordsText(text: string): unknown[] {
  const trimmed = text.trim();
  if (trimmed === '') throw new ProvisioningError('import: the file holds no record');
  try {
    const parsed: unknown = JSON.parse(trimmed);
    return Array.isArray(parsed) ? parsed : [parsed];
  } catch {
    const lines = trimmed.split(/\r?\n/).filter((line) => line.trim() !== '');
    return lines.map((line, index) => {
      try {
        return JSON.parse(line) as unknown;
      } catch {
        throw new ProvisioningError(`import: line ${index + 1} is not JSON`);
      }
    });
  }
}

export function checkRecord(raw: unknown, where: string): DeviceRecord {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new ProvisioningError(`${where}: not a JSON object`);
  const r = raw as Record<string, unknown>;
  const deviceId = hex(r.deviceId, 16, 'deviceId', where);
  const keyId = u32NonZero(r.keyId, 'keyId', where);
  const key = hex(r.key, 128, 'key', where);
  let mode: Mode = 'classic';
  if (r.mode !== undefined) {
    if (r.mode !== 'dh' && r.mode !== 'classic') throw new ProvisioningError(`${where}: mode must be "dh" or "classic"`);
    mode = r.mode;
  }
  const hasPublic = r.devicePublicKey !== undefined;
  const hasStaticId = r.hubStaticId !== undefined;
  if (hasPublic !== hasStaticId) throw new ProvisioningError(`${where}: devicePublicKey and hubStaticId come together or not at all`);
  const record: DeviceRecord = { deviceId, mode, active: { id: keyId, key } };
  if (hasPublic) {
    record.devicePublicKey = hex(r.devicePublicKey, 64, 'devicePublicKey', where);
    record.hubStaticId = u32NonZero(r.hubStaticId, 'hubStaticId', where);
  }
  return record;
}

/** Checks a whole import; throws on the first invalid record, a duplicate, or a device already held. */
export function checkImport(text: string, existing: ReadonlySet<string>): DeviceRecord[] {
  const raws = parseRecordsText(text);
  const seen = new Set<string>();
  return raws.map((raw, index) => {
    const record = checkRecord(raw, `record ${index + 1}`);
    if (seen.has(record.deviceId)) throw new ProvisioningError(`record ${index + 1}: device ${record.deviceId} appears twice`);
    if (existing.has(record.deviceId)) throw new ProvisioningError(`record ${index + 1}: device ${record.deviceId} is already provisioned`);
    seen.add(record.deviceId);
    return record;
  });
}
