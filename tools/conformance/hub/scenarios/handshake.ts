/**
 * The handshake (docs/PROTOCOL.md §6.1): CHALLENGE shape and freshness,
 * WELCOME seq 1 echoing Nd and sealed under the active key, the older
 * connection closed by a newer authenticated HELLO.
 */
import { bytesEqual, toHex } from '../../../../modules/bytes';
import { HEADER_BYTES, MessageType } from '../../../../modules/protocol/constants';
import { inspectFrame } from '../../wire/sealer';
import type { HubKitContext, ScenarioRun } from '../context';
import { sealingKey, type KitDevice } from '../kit-devices';
import { describeReceived, type KitSession } from '../session';
import type { Scenario } from './scenario';

/** HELLO under the sealing key, then the WELCOME checked field by field; the session when established. */
export async function establish(context: HubKitContext, run: ScenarioRun, device: KitDevice, options: { check?: boolean } = {}): Promise<KitSession | undefined> {
  const opened = await context.open(device, run);
  if (opened.session === undefined) {
    run.fail('H-SESSION-1', opened.note ?? 'no CHALLENGE');
    return undefined;
  }
  const session = opened.session;
  // The hub seals the WELCOME under its active key, which is the device's newest once a HELLO under its future key promoted it.
  const expectedKey = sealingKey(device).id;
  const { nonce } = session.hello();
  const welcome = await session.receive(context.timeouts.frameMs);
  if (welcome.kind !== 'opened' || welcome.message.type !== MessageType.WELCOME) {
    run.fail('H-SESSION-2', `HELLO under key ${device.active.id} (the device's newest is ${device.future?.id ?? device.active.id}): ${describeReceived(welcome)}, not a WELCOME`);
    session.destroy();
    return undefined;
  }
  if (options.check !== false) {
    run.check('H-SESSION-2', welcome.header.sequence === 1 && bytesEqual(welcome.message.deviceNonce, nonce), `WELCOME seq ${welcome.header.sequence}, echoes ${toHex(welcome.message.deviceNonce)} for Nd ${toHex(nonce)}`);
    run.check('W-MSG-4', welcome.message.hubKeyId === welcome.header.keyId, `WELCOME body names key ${welcome.message.hubKeyId}, header key ${welcome.header.keyId}`);
    run.check('H-KEY-3', welcome.header.keyId === expectedKey, `WELCOME sealed under key ${welcome.header.keyId}, not the hub's active key ${expectedKey}`);
  }
  return session;
}

export const handshakeScenario: Scenario = {
  name: 'handshake',
  description: 'CHALLENGE shape and fresh Nh, WELCOME seq 1 echoing Nd under the active key, a newer HELLO closes the older connection',
  covers: ['H-SESSION-1', 'W-HDR-3', 'W-HDR-6', 'W-FRAME-1', 'W-HDR-7', 'W-PROV-1', 'H-SESSION-2', 'W-MSG-4', 'W-SESSION-1', 'W-AEAD-1', 'W-AEAD-2', 'H-KEY-3', 'H-PROV-2', 'H-HELLO-2', 'H-SESSION-3'],
  async run(context, run) {
    const device = context.claim();
    if (device === undefined) return;
    try {
      // Two CHALLENGEs: shape (§6.1) and freshness of Nh.
      const nonces: Uint8Array[] = [];
      for (let i = 0; i < 2; i++) {
        const opened = await context.open(device, run);
        if (opened.session === undefined) {
          run.fail('H-SESSION-1', opened.note ?? 'no CHALLENGE');
          return;
        }
        const challenge = opened.session.challenge as Uint8Array;
        const inspected = inspectFrame(challenge);
        const fromHub = 'header' in inspected && inspected.header.fromHub;
        run.check('W-HDR-3', fromHub, 'the CHALLENGE has its direction bit (from hub) clear');
        run.check('H-SESSION-1', challenge.length === HEADER_BYTES, `CHALLENGE of ${challenge.length} bytes`);
        nonces.push(opened.session.nh);
        opened.session.destroy();
      }
      run.check('H-SESSION-1', !bytesEqual(nonces[0] as Uint8Array, nonces[1] as Uint8Array), `two connections got the same Nh ${toHex(nonces[0] as Uint8Array)}`);

      const first = await establish(context, run, device);
      if (first === undefined) return;
      run.pass('H-HELLO-2');
      // Every hub frame so far came with a length prefix in 36…1280 (the kit's reader refuses others), key id 0 only on the CHALLENGE.
      run.pass('W-FRAME-1');
      run.pass('W-HDR-7');
      run.pass('W-HDR-6'); // no hub frame carried a KEY_SHARE (the kit refuses one)
      run.pass('W-AEAD-1');
      run.pass('W-SESSION-1');
      run.pass('W-HDR-3');
      if (device.active.id === 1 && device.future === undefined) {
        // The hub took the kit's records, in the spec's format, and serves the device under the record's key.
        run.pass('H-PROV-2');
        run.pass('W-PROV-1');
      }
      // Frames of one session: the IVs differ (fresh per frame).
      first.send({ type: MessageType.PING });
      const pong = await first.receive(context.timeouts.frameMs);
      if (pong.kind === 'opened') {
        const ivOf = (frame: Uint8Array): string => toHex(frame.subarray(HEADER_BYTES, HEADER_BYTES + 16));
        const welcomeFrame = run.recording.frames.filter((f) => f.direction === 'received').at(-2)?.bytes.subarray(2);
        run.check('W-AEAD-2', welcomeFrame === undefined || ivOf(welcomeFrame) !== ivOf(pong.frame), 'two hub frames of one session have the same IV');
        run.check('W-PING-1', pong.message.type === MessageType.PONG, `PING answered with ${describeReceived(pong)}`);
      } else {
        run.fail('W-PING-1', `PING answered with ${describeReceived(pong)}`);
      }
      // A newer authenticated HELLO closes the older connection (§6.1).
      const second = await establish(context, run, device, { check: false });
      if (second === undefined) return;
      const older = await first.peer.waitClosed(context.timeouts.frameMs);
      run.check('H-SESSION-3', older.closed, `the older connection stayed open ${context.timeouts.frameMs} ms after the same device's newer HELLO authenticated`);
      second.close();
      first.destroy();
    } finally {
      context.release(device);
    }
  },
};
