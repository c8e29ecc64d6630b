/**
 * Frames a test seals itself under a device's active key, for one session
 * (the CHALLENGE's session id), as a raw-socket peer holding the key sends
 * them (tests/hostile.test.ts, tests/flood.test.ts).
 */
import { randomBytes } from 'node:crypto';
import { fromHex } from '../../modules/bytes';
import { sealFrame } from '../../modules/protocol/frame';
import { withLengthPrefix } from '../../modules/protocol/framing';
import { nodeAead } from '../../hosts/node/crypto';
import type { DeviceRecord } from '../../tools/hub/records';

export type SessionMessage = Parameters<typeof sealFrame>[0]['message'];

export function sessionFrames(record: DeviceRecord, sessionId: Uint8Array): (sequence: number, message: SessionMessage) => Uint8Array {
  return (sequence, message) =>
    withLengthPrefix(
      sealFrame({
        aead: nodeAead,
        key: record.active.key,
        iv: randomBytes(16),
        header: { fromHub: false, deviceId: fromHex(record.deviceId), keyId: record.active.id, sequence, sessionId },
        message,
      }),
    );
}
