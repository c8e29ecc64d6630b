/** Readable names for frames and core events, for traces and fault labels. */
import type { DeviceEvent } from '../../modules/device/actions';
import type { HubEvent } from '../../modules/hub/actions';
import { MessageType } from '../../modules/protocol/constants';
import { decodeHeader } from '../../modules/protocol/header';

const TYPE_NAMES = new Map<number, string>(Object.entries(MessageType).map(([name, value]) => [value as number, name]));

export function typeName(type: number | undefined): string {
  return type === undefined ? 'chunk' : (TYPE_NAMES.get(type) ?? `0x${type.toString(16)}`);
}

/** A length-prefixed frame as "TYPE key K seq S (N B)". */
export function describeFrame(bytes: Uint8Array): string {
  if (bytes.length < 38) return `${bytes.length} bytes`;
  try {
    const header = decodeHeader(bytes.subarray(2));
    return header.type === MessageType.CHALLENGE
      ? `CHALLENGE (${bytes.length} B)`
      : `${typeName(header.type)} key ${header.keyId} seq ${header.sequence} (${bytes.length} B)`;
  } catch {
    return `${bytes.length} unparseable bytes`;
  }
}

export function describeEvent(event: DeviceEvent | HubEvent): string {
  switch (event.type) {
    case 'keyStored':
    case 'keyPromoted':
    case 'keyOffered':
    case 'keyConfirmed':
    case 'rekeyRefused':
      return ` ${event.id}`;
    case 'rejected':
      return `: ${event.error.message}`;
    case 'established':
      return ` under key ${event.keyId}`;
    case 'deviceConnected':
      return ` on link ${event.connection} (key ${event.keyId})`;
    default:
      return '';
  }
}
