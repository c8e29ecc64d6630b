/**
 * `npm start`: a hub with ~20 simulated devices rotating keys every few
 * seconds while faults are injected (connections cut at random bytes,
 * device power cuts mid flash write, hub SIGKILL + restart from its
 * database, and — issue 14 — the hub restored from a backup taken T seconds
 * ago and devices re-flashed with their provisioning images, both healed by
 * recovery). Prints a live status line and a summary; exits 1 if any device
 * ever lost sync or application data was lost or duplicated.
 *
 *   npm start -- --devices 20 --duration 60s --rotate-every 3s --chaos medium --tls
 *   npm start -- --postgres [postgres://…] --instances 3   (a tier of instances, docs/HUB.md §13)
 */
import { Command, InvalidArgumentError, Option } from 'commander';
import type { ChaosSettings } from './demo/fleet';
import { runPostgresSimulation } from './demo/postgres-simulation';
import { runSimulation, type SimulationStatus, type SimulationSummary } from './demo/simulation';
import { parseDuration } from './hub/duration';
import { newToken } from './hub/http/options';
import { freePort } from './demo/free-port';

interface ChaosLevel {
  readonly settings: ChaosSettings;
  readonly hubKillEveryMs: readonly [number, number] | undefined;
  readonly powerCycleEveryMs: number;
  /** Issue 14: hub restores from a backup every [min, max] ms; a device re-flash every this many ms. */
  readonly restoreEveryMs: readonly [number, number];
  readonly reflashEveryMs: number;
}

const CHAOS_LEVELS: Record<string, ChaosLevel | undefined> = {
  off: undefined,
  low: { settings: { cutProbability: 0.3, cutMaxBytes: 20_000, powerCutProbability: 0.03 }, hubKillEveryMs: [20_000, 40_000], powerCycleEveryMs: 10_000, restoreEveryMs: [40_000, 60_000], reflashEveryMs: 30_000 },
  medium: { settings: { cutProbability: 0.6, cutMaxBytes: 6_000, powerCutProbability: 0.08 }, hubKillEveryMs: [8_000, 15_000], powerCycleEveryMs: 4_000, restoreEveryMs: [20_000, 30_000], reflashEveryMs: 12_000 },
  high: { settings: { cutProbability: 0.9, cutMaxBytes: 2_000, powerCutProbability: 0.2 }, hubKillEveryMs: [3_000, 6_000], powerCycleEveryMs: 1_000, restoreEveryMs: [10_000, 15_000], reflashEveryMs: 6_000 },
};

const duration = (value: string): number => {
  try {
    return parseDuration(value);
  } catch (error) {
    throw new InvalidArgumentError((error as Error).message);
  }
};

const program = new Command()
  .name('npm start --')
  .description('Lockstep: a hub and simulated devices rotating keys under injected faults')
  .option('--devices <n>', 'number of simulated devices', (v) => positive(v), 20)
  .option('--duration <duration>', 'how long faults are injected before the run settles', duration, 60_000)
  .option('--rotate-every <duration>', 'each device rotates its key about this often', duration, 3_000)
  .addOption(new Option('--chaos [level]', 'fault injection: off, low, medium, high').choices(['off', 'low', 'medium', 'high']).default('medium').preset('medium'))
  .option('--no-chaos', 'no fault injection')
  .option('--tls', 'devices connect over TLS (a development certificate is generated)', false)
  .option('--dir <path>', 'keep the run\'s files (hub database, flash images, ledger) in this directory')
  .option('--dashboard-port <port>', 'port of the hub\'s dashboard and operator API (default 7780, or any free one)', (v) => positive(v))
  .option('--no-dashboard', 'no operator API or dashboard')
  .option('--postgres [url]', 'several hub instances on PostgreSQL behind a balancer (a throwaway cluster when no URL is given)')
  .option('--instances <n>', 'with --postgres: hub instances', (v) => positive(v), 3)
  .option('--restore-every <duration>', 'with chaos: restore the hub from a backup about this often (default per chaos level; 0 = never)', durationOrZero)
  .option('--backup-age <duration>', 'with chaos: the restored backup was taken this long before the restore', duration, 5_000)
  .option('--reflash-every <duration>', 'with chaos: re-flash a random device with its provisioning image this often (default per chaos level; 0 = never)', durationOrZero)
  .action(async (flags: { devices: number; duration: number; rotateEvery: number; chaos: string | boolean; tls: boolean; dir?: string; dashboard: boolean; dashboardPort?: number; postgres?: string | boolean; instances: number; restoreEvery?: number; backupAge: number; reflashEvery?: number }) => {
    const levelName = flags.chaos === false ? 'off' : flags.chaos === true ? 'medium' : flags.chaos;
    const level = CHAOS_LEVELS[levelName];
    const tty = process.stdout.isTTY === true;
    let lastPrinted = 0;
    const onStatus = (status: SimulationStatus): void => {
      if (tty) {
        process.stdout.write(`\r\x1b[2K${statusLine(status)}`);
      } else if (status.elapsedMs - lastPrinted >= 5000) {
        lastPrinted = status.elapsedMs;
        process.stdout.write(`${statusLine(status)}\n`);
      }
    };
    if (flags.postgres !== undefined && flags.postgres !== false) {
      if (flags.tls) throw new InvalidArgumentError('--postgres runs over TCP (the balancer forwards bytes; TLS ends at the instances)');
      process.stdout.write(
        `Lockstep on PostgreSQL: ${flags.instances} hub instances behind a random balancer, ${flags.devices} devices, ${flags.duration / 1000} s, ` +
          `rotation every ~${flags.rotateEvery / 1000} s, chaos ${levelName} (cuts, power cuts, instance SIGKILL/SIGSTOP, terminated sessions)\n`,
      );
      const summary = await runPostgresSimulation({
        devices: flags.devices,
        instances: flags.instances,
        durationMs: flags.duration,
        rotateEveryMs: flags.rotateEvery,
        ...(typeof flags.postgres === 'string' ? { url: flags.postgres } : {}),
        ...(level ? { chaosSettings: level.settings, instanceKillEveryMs: level.hubKillEveryMs } : {}),
        onStatus,
        log: (line) => process.stdout.write(line),
      });
      if (tty) process.stdout.write(`\r\x1b[2K${statusLine(summary)}\n`);
      process.stdout.write(summaryText(summary).replace('hub crashes             ', 'instance crashes        ').replace('(SIGKILL, restarted from its database)', '(SIGKILL, replaced; plus SIGSTOP/SIGCONT and terminated sessions)'));
      process.exitCode = summary.ok ? 0 : 1;
      return;
    }
    process.stdout.write(
      `Lockstep: ${flags.devices} devices, ${flags.duration / 1000} s, key rotation every ~${flags.rotateEvery / 1000} s, ` +
        `chaos ${levelName}, ${flags.tls ? 'TLS' : 'TCP'} on 127.0.0.1\n`,
    );
    // A read-only token made for this run only: it can watch, never rotate or revoke (docs/HUB.md §12).
    const viewer = newToken('npm-start-viewer', 'read');
    const httpPort = flags.dashboard ? await freePort(flags.dashboardPort ?? 7780) : undefined;
    if (httpPort !== undefined) {
      process.stdout.write(`Dashboard (read-only token for this run): http://127.0.0.1:${httpPort}/dashboard/#token=${viewer.token}\n`);
    }
    const summary = await runSimulation({
      ...(httpPort !== undefined ? { http: { port: httpPort, tokens: [viewer.config] } } : {}),
      devices: flags.devices,
      durationMs: flags.duration,
      rotateEveryMs: flags.rotateEvery,
      chaos: level !== undefined,
      tls: flags.tls,
      ...(flags.dir !== undefined ? { dir: flags.dir } : {}),
      ...(level ? { chaosSettings: level.settings, hubKillEveryMs: level.hubKillEveryMs, powerCycleEveryMs: level.powerCycleEveryMs } : {}),
      // Issue 14: restores from a backup and re-flashes (chaos only).
      ...(level
        ? {
            restoreEveryMs: flags.restoreEvery === 0 ? undefined : flags.restoreEvery !== undefined ? ([flags.restoreEvery, flags.restoreEvery * 1.5] as const) : level.restoreEveryMs,
            reflashEveryMs: flags.reflashEvery ?? level.reflashEveryMs,
            backupAgeMs: flags.backupAge,
          }
        : {}),
      statusEveryMs: 250,
      onStatus: (status) => {
        if (tty) {
          process.stdout.write(`\r\x1b[2K${statusLine(status)}`);
        } else if (status.elapsedMs - lastPrinted >= 5000) {
          lastPrinted = status.elapsedMs;
          process.stdout.write(`${statusLine(status)}\n`);
        }
      },
    });
    if (tty) process.stdout.write(`\r\x1b[2K${statusLine(summary)}\n`);
    process.stdout.write(summaryText(summary));
    process.exitCode = summary.ok ? 0 : 1;
  });

function durationOrZero(value: string): number {
  return value === '0' ? 0 : duration(value);
}

function positive(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError('a positive integer');
  return n;
}

function statusLine(s: SimulationStatus): string {
  const seconds = String(Math.round(s.elapsedMs / 1000)).padStart(3);
  return (
    `[${seconds}s ${s.phase.padEnd(8)}] online ${s.online}/${s.devices} | rotations ${s.rotations} | cuts ${s.cuts} | ` +
    `power cuts ${s.powerCutsDuringWrite} mid-write + ${s.powerCycles} | hub kills ${s.hubKills} | ` +
    (s.hubRestores !== undefined ? `restores ${s.hubRestores} re-flashes ${s.reflashes ?? 0} recovering ${s.recovering ?? 0} | ` : '') +
    `up ${s.up.delivered}/${s.up.sent} down ${s.down.delivered}/${s.down.sent} | out of sync ${s.outOfSync}`
  );
}

function summaryText(s: SimulationSummary): string {
  const up = s.upVerdict;
  const down = s.downVerdict;
  const lines = [
    '',
    'Summary',
    `  devices                 ${s.devices}`,
    `  rotations confirmed     ${s.rotations} (${(s.rotations / s.devices).toFixed(1)} per device; key ids now ${s.keyIds.min}..${s.keyIds.max})`,
    `  connections cut         ${s.cuts} at random byte positions`,
    `  device power cuts       ${s.powerCutsDuringWrite} in the middle of a flash write, ${s.powerCycles} between writes (each rebooted from its flash image)`,
    `  hub crashes             ${s.hubKills} (SIGKILL, restarted from its database)`,
    ...(s.hubRestores !== undefined
      ? [
          `  hub restores            ${s.hubRestores} (SIGKILL, then restarted from a backup taken ${((s.backupAgeMs ?? 0) / 1000).toFixed(0)}+ s earlier)`,
          `  device re-flashes       ${s.reflashes ?? 0} (rebooted from the provisioning image)`,
          `  recoveries              ${s.recoveriesAccepted ?? 0} accepted by the hub; ${s.recoveredEpisodes ?? 0} device episodes back in sync after a restore or re-flash` +
            (s.recoveryLimits ? ` (limits: ${s.recoveryLimits.perDeviceLimit} per device per ${s.recoveryLimits.windowMs / 60_000} min, per source a bucket of ${s.recoveryLimits.perSource.burst} at ${s.recoveryLimits.perSource.perMinute}/min)` : ''),
        ]
      : []),
    `  app messages up         ${up.sent} sent, ${up.delivered} delivered; ${up.redeliveredAfterCrash} delivered again after a hub crash, ${up.droppedBySenderCrash} dropped by a device power cut`,
    `  app messages down       ${down.sent} sent, ${down.delivered} delivered; ${down.redeliveredAfterCrash} delivered again after a device power cut, ${down.droppedBySenderCrash} dropped by a hub crash`,
    `  lost / duplicated       ${up.lost + down.lost} / ${up.duplicates + down.duplicates}`,
    `  sync checks             ${s.syncChecks} (every device against the hub database, every second); devices ever out of sync: ${s.everOutOfSync}`,
    `  settled                 ${s.settled ? 'yes: every device shares exactly one key with the hub' : 'NO'}`,
  ];
  if (s.problems.length > 0) {
    lines.push('', 'Problems:');
    for (const problem of s.problems.slice(0, 30)) lines.push(`  - ${problem}`);
  }
  lines.push('', s.ok ? 'RESULT: OK — no device lost sync, no application data lost or duplicated' : 'RESULT: FAILED', '');
  return lines.join('\n');
}

program.parseAsync(process.argv).catch((error: unknown) => {
  process.stderr.write(`demo: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exitCode = 1;
});
