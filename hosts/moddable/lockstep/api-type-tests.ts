/**
 * Type tests of the application API (lockstep.d.ts) as an application
 * sees it, compiled against @moddable/typings by `npm run
 * typecheck:firmware` (hosts/moddable/tsconfig.json); never in a manifest.
 * Each `@ts-expect-error` must stay an error: if the API ever accepted the
 * line, tsc would report the unused directive.
 */
import { Lockstep, LockstepError, type LockstepState, type WriteError } from 'lockstep';

export function typeTests(): void {
  const channel = new Lockstep({
    hub: 'hub.local:7701',
    tls: { ca: '3082', verify: true },
    outboxMessages: 4,
    maxMessageBytes: 256,
    inboxMessages: 2,
    onReadable(count: number) {
      const message: Uint8Array | undefined = this.read();
      void message;
      void count;
    },
    onKeyPromoted(keyId: number) {
      const self: Lockstep = this;
      void self;
      void keyId;
    },
    onError(error) {
      const code: LockstepError['code'] = error.code;
      void code;
    },
  });
  const sent = channel.write(new Uint8Array(4));
  if (typeof sent === 'number') {
    const id: number = sent;
    void id;
  } else {
    const error: WriteError = sent;
    const code: 'LOCAL_OUTBOX_FULL' | 'LOCAL_PAYLOAD_TOO_LARGE' | 'LOCAL_NOT_READY' = error.code;
    void code;
  }
  channel.write(new ArrayBuffer(2));
  channel.write(new DataView(new ArrayBuffer(2)));
  const state: LockstepState = channel.state;
  void state;
  new Lockstep();
  new Lockstep({ tls: true });

  // @ts-expect-error payloads are bytes, not strings
  channel.write('hello');
  // @ts-expect-error write answers an id or an error; it is not just a number
  const onlyNumber: number = channel.write(new Uint8Array(1));
  void onlyNumber;
  // @ts-expect-error unknown option
  new Lockstep({ hubb: 'x' });
  // @ts-expect-error the port is a number
  new Lockstep({ port: '7700' });
  // @ts-expect-error tls trust options are verify and ca only
  new Lockstep({ tls: { insecure: true } });
  // @ts-expect-error onKeyPromoted gets the key id
  new Lockstep({ onKeyPromoted: (keyId: string) => void keyId });
  // @ts-expect-error there is no such state
  const wrong: LockstepState = 'open';
  void wrong;
  // @ts-expect-error read() answers one message or undefined
  const text: string = channel.read();
  void text;
  // @ts-expect-error the bounds are read-only
  channel.outboxMessages = 3;
}
