/**
 * The attacker as a program (`npx tsx tools/attack/cli.ts`): a leaked copy
 * and a saved transcript in, one line per frame out (JSON lines), then a
 * summary per key id on stderr. Nothing in it is shared with the project's
 * own code (tools/attack/attacker.ts and its readers).
 *
 *   --hub-db hub.db --kek hub.db.kek        the hub's database (+ hub.db-wal next to it) and keyring file
 *   --keystore keystore.bin [--keywrap keywrap.bin]   a device's flash dump
 *   --transcript t.jsonl                    as written by transcriptToJsonLines
 *   --from <ms>                             the leak's time (frames completed before it are ignored); default 0
 *   --device <16 hex>                       only this device's frames
 */
import { readFileSync } from 'node:fs';
import { Command } from 'commander';
import { attack, tally } from './attacker';
import type { Body } from './wire';
import { readDeviceLeak } from './device-leak';
import { readHubLeak } from './hub-leak';
import { transcriptFromJsonLines } from './recording-proxy';

const program = new Command()
  .name('lockstep-attack')
  .description('a passive attacker with one side\'s durable state and a recorded link (docs/PROTOCOL.md §11.1)')
  .option('--hub-db <file>', 'copy of the hub database (its -wal next to it is read too)')
  .option('--kek <file>', 'the hub\'s keyring file')
  .option('--keystore <file>', 'a device\'s keystore partition image')
  .option('--keywrap <file>', 'the device\'s key-wrap partition image')
  .requiredOption('--transcript <file>', 'recorded transcript (JSON lines)')
  .option('--from <ms>', 'time of the leak', (v) => Number(v), 0)
  .option('--device <id>', 'only frames of this device')
  .action((flags: { hubDb?: string; kek?: string; keystore?: string; keywrap?: string; transcript: string; from: number; device?: string }) => {
    if (!Number.isFinite(flags.from)) throw new Error('--from is a time in milliseconds (the recorder\'s clock)');
    const hub = flags.hubDb !== undefined;
    if (hub === (flags.keystore !== undefined) || (hub && flags.kek === undefined)) {
      throw new Error('give either --hub-db with --kek, or --keystore [--keywrap]');
    }
    const leak = hub
      ? readHubLeak({ database: flags.hubDb as string, keyringFile: flags.kek as string })
      : readDeviceLeak({ keystore: readFileSync(flags.keystore as string), ...(flags.keywrap ? { keyWrap: readFileSync(flags.keywrap) } : {}) });
    const report = attack({ leak, transcript: transcriptFromJsonLines(readFileSync(flags.transcript, 'utf8')), from: flags.from, ...(flags.device ? { deviceId: flags.device.toLowerCase() } : {}) });
    for (const v of report.frames) {
      process.stdout.write(`${JSON.stringify({ at: v.frame.at, connection: v.frame.connection, direction: v.frame.direction, type: v.frame.typeName, deviceId: v.frame.deviceId, keyId: v.frame.keyId, decrypted: v.decrypted, learned: v.learned, body: printable(v.body) })}\n`);
    }
    for (const note of report.notes) process.stderr.write(`note: ${note}\n`);
    for (const [keyId, count] of tally(report)) process.stderr.write(`key ${keyId}: ${count.decrypted}/${count.frames} frames decrypted\n`);
  });

/** A body for a JSON line: payloads as text, key bytes and shares left out (the key id says what was learned). */
function printable(body: Body | undefined): unknown {
  if (body === undefined) return undefined;
  if (body.kind === 'DATA') return { kind: body.kind, streamId: body.streamId, messageId: body.messageId, payload: Buffer.from(body.payload).toString('utf8') };
  if (body.kind === 'REKEY' || body.kind === 'REKEY_DH') return { kind: body.kind, keyId: body.keyId };
  return body;
}

try {
  program.parse(process.argv);
} catch (error) {
  process.stderr.write(`${(error as Error).message}\n`);
  process.exit(1);
}
