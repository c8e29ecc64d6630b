/**
 * Provisioning command:
 *   tsx tools/provision/index.ts --out DIR [--force] [--key-wrap] [--mode classic|dh] [--key-id N] [--size BYTES] [--sector-size BYTES]
 *                                [--hub-static-public HEX --hub-static-id N]
 * Writes DIR/keystore.bin (the keystore partition image) and DIR/device.json
 * (the hub record), and prints the record as JSON on stdout. With
 * --key-wrap also DIR/keywrap.bin (the key-wrap partition image, for flash
 * encryption), and keystore.bin holds the key wrapped under it.
 */
import { Command, InvalidArgumentError, Option } from 'commander';
import { isLockstepError, LockstepError } from '../../modules/errors';
import { FLASH_SECTOR_BYTES, KEYSTORE_PARTITION_BYTES } from '../../hosts/node/flash-memory';
import type { RekeyMode } from '../../modules/platform/keys';
import { DEFAULT_REKEY_MODE, parseHubStaticPublic, provisionDevice } from './provision';

function parseU32(value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(n) || n > 0xffffffff) throw new InvalidArgumentError('expected an integer 0..4294967295');
  return n;
}

const program = new Command()
  .name('provision')
  .description('Create a device id and initial key, the keystore partition image, and the hub record.')
  .requiredOption('--out <dir>', 'output directory (keystore.bin, device.json)')
  .option('--force', 'overwrite existing output', false)
  .option('--key-wrap', 'also create a key-wrapping key (keywrap.bin) and store the key wrapped under it (docs/FIRMWARE.md, flash encryption)', false)
  .addOption(new Option('--mode <mode>', 'rekey mode written into the keystore and the hub record (docs/PROTOCOL.md §11)').choices(['classic', 'dh']).default(DEFAULT_REKEY_MODE))
  .option('--key-id <n>', 'initial key id (u32)', parseU32, 1)
  .option('--size <bytes>', 'keystore partition size', parseU32, KEYSTORE_PARTITION_BYTES)
  .option('--sector-size <bytes>', 'flash sector size', parseU32, FLASH_SECTOR_BYTES)
  .option('--hub-static-public <hex>', "the hub's static X25519 public key (64 hex digits): writes the recovery credential (docs/PROTOCOL.md §12.6)")
  .option('--hub-static-id <n>', 'the id of that hub static key (u32)', parseU32)
  .action((options: { out: string; force: boolean; keyWrap: boolean; mode: RekeyMode; keyId: number; size: number; sectorSize: number; hubStaticPublic?: string; hubStaticId?: number }) => {
    try {
      if ((options.hubStaticPublic === undefined) !== (options.hubStaticId === undefined)) {
        throw new LockstepError('LOCAL_BAD_ARGUMENT', '--hub-static-public and --hub-static-id go together');
      }
      const hubStatic = options.hubStaticPublic === undefined ? undefined : parseHubStaticPublic(options.hubStaticPublic, options.hubStaticId as number);
      const result = provisionDevice({
        ...(hubStatic === undefined ? {} : { hubStatic }),
        outDir: options.out,
        force: options.force,
        keyWrap: options.keyWrap,
        mode: options.mode,
        keyId: options.keyId,
        size: options.size,
        sectorSize: options.sectorSize,
      });
      process.stdout.write(`${JSON.stringify(result.record)}\n`);
      process.stderr.write(
        `wrote ${result.imagePath} (flash it at the keystore partition's offset) and ${result.recordPath} (import it into the hub)\n`,
      );
      if (hubStatic === undefined) {
        process.stderr.write('note: no recovery credential (no --hub-static-public/--hub-static-id): this device cannot recover after a rollback until it is enrolled (docs/PROTOCOL.md §12.6)\n');
      }
      if (result.keyWrapPath !== undefined) {
        process.stderr.write(`wrote ${result.keyWrapPath} (flash it at the key-wrap partition's offset, with its keystore.bin)\n`);
      }
    } catch (error) {
      if (!isLockstepError(error)) throw error;
      process.stderr.write(`provision: ${error.message}\n`);
      process.exitCode = 1;
    }
  });

program.parse(process.argv);
