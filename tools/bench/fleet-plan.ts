/**
 * The arithmetic of the fleet benchmark (`npm run bench -- fleet`,
 * tools/bench/fleet.ts): how many hub instances, device-swarm processes and
 * loopback source addresses N connections need on this machine, and which
 * of each device i uses. Pure, so that tests/bench-limits.test.ts checks it
 * without starting anything.
 *
 * The limits (issue 16, tools/bench/limits.ts):
 * - every connection is one descriptor in its hub instance and one in its
 *   swarm process, and RLIMIT_NOFILE (20,000 here) cannot be raised, so an
 *   instance or a swarm holds at most `openFiles - RESERVED_FDS` connections,
 *   less a headroom for connections that overlap while a device reconnects
 *   and for the ramp's pending handshakes;
 * - a swarm binds each socket to its source address before connecting (Node
 *   binds the address with port 0), so the kernel gives every socket on one
 *   source address a port of its own: at most `ephemeralPorts` connections
 *   per source address in all, whatever their destinations.
 *
 * No balancer: a balancer process would hold two descriptors per connection
 * (2 × 100,000 / 20,000 = 10 balancer processes of their own), so the swarms
 * connect straight to the instances by a deterministic assignment, as DNS
 * round robin or a client-side list of instances would:
 *   instance = i mod k,  swarm = ⌊i / k⌋ mod s,
 *   source   = 127.(1 + ⌊i / (k·s)⌋ mod a).(1 + swarm).(1 + instance)
 * so each source address talks to one instance from one swarm, and the
 * devices of every (swarm, instance) pair are spread over `a` addresses.
 */
import { RESERVED_FDS, type Limits } from './limits';

/** Share of a process's usable descriptors the plan fills (the rest: reconnections overlapping, the ramp's handshakes). */
export const FILL = 0.9;
/** Share of one source address's ports the plan uses. */
export const PORT_FILL = 0.9;
/** Connections per process the default plan aims at (7 instances and 7 swarms for 100,000). */
export const DEFAULT_PER_PROCESS = 15_000;

export interface FleetRequest {
  readonly devices: number;
  /** Hub instances; default ⌈devices / DEFAULT_PER_PROCESS⌉. */
  readonly instances?: number;
  /** Swarm processes; default as many as instances. */
  readonly swarms?: number;
}

export interface FleetPlan {
  readonly devices: number;
  readonly instances: number;
  readonly swarms: number;
  /** Source addresses per (swarm, instance) pair. */
  readonly addressesPerPair: number;
  /** The most connections any one instance / swarm / source address gets. */
  readonly perInstance: number;
  readonly perSwarm: number;
  readonly perSource: number;
  /** Connections one process may hold under this plan (its descriptors less reserve and headroom). */
  readonly processCapacity: number;
  /** Connections one source address may hold under this plan. */
  readonly sourceCapacity: number;
}

export interface Assignment {
  readonly instance: number;
  readonly swarm: number;
  readonly source: string;
}

/** The plan for `request` on a machine with `limits`, or the message to stop with (what does not fit, and what would). */
export function planFleet(request: FleetRequest, limits: Limits, setting = 'LOCKSTEP_BENCH_FLEET_DEVICES'): FleetPlan | string {
  const { devices } = request;
  if (!Number.isInteger(devices) || devices < 1) return `${setting}=${devices}: a positive whole number of devices, please`;
  const processCapacity = Math.floor(Math.max(0, limits.openFiles - RESERVED_FDS) * FILL);
  const sourceCapacity = Math.floor(limits.ephemeralPorts * PORT_FILL);
  if (processCapacity < 1) return `the open-file limit here (${limits.openFiles}) leaves no descriptors for connections`;
  const minimum = Math.ceil(devices / processCapacity);
  const fallback = Math.max(minimum, Math.ceil(devices / DEFAULT_PER_PROCESS));
  const instances = request.instances ?? fallback;
  const swarms = request.swarms ?? Math.max(minimum, request.instances ?? fallback);
  const problems: string[] = [];
  for (const [name, count, variable] of [['hub instances', instances, 'LOCKSTEP_BENCH_FLEET_INSTANCES'], ['swarm processes', swarms, 'LOCKSTEP_BENCH_FLEET_SWARMS']] as const) {
    if (!Number.isInteger(count) || count < 1 || count > 254) problems.push(`${variable}=${count}: between 1 and 254 ${name}`);
    else if (Math.ceil(devices / count) > processCapacity) {
      problems.push(
        `${count} ${name} (${variable}) would hold ${Math.ceil(devices / count).toLocaleString('en')} connections each, and one process holds at most ` +
          `${processCapacity.toLocaleString('en')} here (open-file limit ${limits.openFiles.toLocaleString('en')} per process, less ${RESERVED_FDS} reserved, ` +
          `${Math.round(FILL * 100)} % filled): at least ${minimum} ${name} for ${devices.toLocaleString('en')} devices`,
      );
    }
  }
  if (problems.length > 0) return `${setting}=${devices} does not fit this machine: ${problems.join('; ')}.`;
  const perPair = Math.ceil(devices / (instances * swarms));
  const addressesPerPair = Math.ceil(perPair / sourceCapacity);
  if (addressesPerPair > 254) return `${setting}=${devices} needs ${addressesPerPair} source addresses per (swarm, instance) pair; at most 254`;
  return {
    devices,
    instances,
    swarms,
    addressesPerPair,
    perInstance: Math.ceil(devices / instances),
    perSwarm: Math.ceil(devices / swarms),
    perSource: Math.ceil(perPair / addressesPerPair),
    processCapacity,
    sourceCapacity,
  };
}

/** Which instance, swarm and source address device `index` (0-based) uses. */
export function assign(plan: FleetPlan, index: number): Assignment {
  const instance = index % plan.instances;
  const swarm = Math.floor(index / plan.instances) % plan.swarms;
  const address = Math.floor(index / (plan.instances * plan.swarms)) % plan.addressesPerPair;
  return { instance, swarm, source: `127.${1 + address}.${1 + swarm}.${1 + instance}` };
}

/** Connections per instance, per swarm and per source address when every device of the plan is assigned (the test's check). */
export function tally(plan: FleetPlan, assignment: (plan: FleetPlan, index: number) => Assignment = assign): { instances: number[]; swarms: number[]; sources: Map<string, number> } {
  const instances = new Array<number>(plan.instances).fill(0);
  const swarms = new Array<number>(plan.swarms).fill(0);
  const sources = new Map<string, number>();
  for (let i = 0; i < plan.devices; i++) {
    const a = assignment(plan, i);
    instances[a.instance] = (instances[a.instance] as number) + 1;
    swarms[a.swarm] = (swarms[a.swarm] as number) + 1;
    sources.set(a.source, (sources.get(a.source) ?? 0) + 1);
  }
  return { instances, swarms, sources };
}

/** What a tally breaks of the plan's capacities (empty: every process and every source address within its limit). */
export function overLimits(plan: FleetPlan, counts: ReturnType<typeof tally>): string[] {
  const over: string[] = [];
  counts.instances.forEach((n, i) => n > plan.processCapacity && over.push(`instance ${i}: ${n} connections > ${plan.processCapacity}`));
  counts.swarms.forEach((n, i) => n > plan.processCapacity && over.push(`swarm ${i}: ${n} connections > ${plan.processCapacity}`));
  for (const [source, n] of counts.sources) if (n > plan.sourceCapacity) over.push(`source ${source}: ${n} connections > ${plan.sourceCapacity} ports`);
  return over;
}
