/**
 * The limits a load benchmark needs, checked before it starts (issue 16):
 * every device connection costs one descriptor in the hub process and one in
 * the swarm process, and one source port from the swarm's source address
 * towards the hub's address. Past either limit the swarm dies with an
 * uncaught EMFILE / EADDRNOTAVAIL and the figures are nonsense, so the bench
 * stops with a message that says what to change instead.
 */
import { readFileSync } from 'node:fs';

/** Descriptors a process keeps besides its connections (stdio, the database, listeners, the event loop). */
export const RESERVED_FDS = 200;

export interface Limits {
  /** Soft RLIMIT_NOFILE of this process (children inherit it). */
  readonly openFiles: number;
  /** Ephemeral ports per (source address, destination address:port). */
  readonly ephemeralPorts: number;
}

export function readLimits(): Limits {
  const limits = readFileSync('/proc/self/limits', 'utf8');
  const match = /^Max open files\s+(\d+|unlimited)/m.exec(limits);
  const openFiles = match === null || match[1] === 'unlimited' ? Number.POSITIVE_INFINITY : Number(match[1]);
  let ephemeralPorts = 28_232;
  try {
    const [low, high] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number);
    if (low !== undefined && high !== undefined && high >= low) ephemeralPorts = high - low + 1;
  } catch {
    // not Linux: keep the Linux default
  }
  return { openFiles, ephemeralPorts };
}

/**
 * Devices one hub process and one swarm process can hold on one source
 * address. Returns undefined when `devices` fits, else the message to stop with.
 */
export function checkLoadLimits(devices: number, setting: string, limits: Limits = readLimits()): string | undefined {
  const perProcess = Math.max(0, limits.openFiles - RESERVED_FDS);
  const fits = Math.min(perProcess, limits.ephemeralPorts);
  if (devices <= fits) return undefined;
  const reasons: string[] = [];
  if (devices > perProcess) {
    reasons.push(
      `${devices.toLocaleString('en')} connections need ${(devices + RESERVED_FDS).toLocaleString('en')} open files in the hub process and again in the device swarm, ` +
        `and the limit here is ${limits.openFiles.toLocaleString('en')} per process (ulimit -n; it may not be raisable)`,
    );
  }
  if (devices > limits.ephemeralPorts) {
    reasons.push(
      `one source address (127.0.0.1) gives ${limits.ephemeralPorts.toLocaleString('en')} ports towards one hub address (net.ipv4.ip_local_port_range)`,
    );
  }
  return (
    `${setting}=${devices} does not fit this machine: ${reasons.join('; ')}. ` +
    `This bench runs one hub process and one swarm on one address: at most ${fits.toLocaleString('en')} devices here. ` +
    'More devices take several hub instances, several swarm processes and several 127.x source addresses: `npm run bench -- fleet` (docs/HUB.md §13.8).'
  );
}
