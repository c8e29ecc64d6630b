/**
 * Every fault point of a run, from the profile of its steps
 * (docs/VERIFICATION.md §2): for each step after `afterStep`
 * - a delivery: the link reset just before it and just after it (both
 *   ends told), silently cut before it, and — for REKEY and REKEY_ACK
 *   frames — cut after every byte inside the frame; the stream delayed
 *   past the handshake timeout and past the idle timeout;
 * - a step that feeds the device core: device power cut before it; a step
 *   that feeds the hub core: hub crash (process, and silent machine loss)
 *   before it;
 * - between any two actions a core returned in the step: power cut/crash;
 * - every flash program of the step, torn after every byte (with some bits
 *   of the byte in flight cleared), or completed and then cut; every erase
 *   torn three ways;
 * - a database commit: the write fails before, or after, it became durable.
 * With hub instances (docs/VERIFICATION.md §5a) a hub fault strikes the
 * instance the step feeds, and two more kinds:
 * - a connection opened: it goes to the other instance than the balancer's
 *   round robin would pick;
 * - a step that feeds an instance: that instance paused before it, for
 *   each of INJECTED_PAUSES_MS.
 */
import { MessageType } from '../../modules/protocol/constants';
import { INJECTED_DELAYS_MS, INJECTED_PAUSES_MS } from './constants';
import { typeName } from './describe';
import type { FaultPoint, StepFaults, StepProfile } from './faults';

export type PointKind =
  | 'link reset at a frame boundary'
  | 'link cut inside REKEY/REKEY_ACK'
  | 'link silent cut'
  | 'delay'
  | 'device power cut'
  | 'device power cut between actions'
  | 'torn flash write'
  | 'hub crash'
  | 'hub silent crash'
  | 'hub crash between actions'
  | 'db write failure'
  | 'connect to another instance'
  | 'instance paused';

export interface EnumeratedPoint extends FaultPoint {
  readonly kind: PointKind;
  /** Inside a frame or a flash program (not at a boundary). */
  readonly interior: boolean;
}

const BYTE_LEVEL_TYPES: ReadonlySet<number> = new Set([MessageType.REKEY, MessageType.REKEY_ACK]);
/** Bits of the in-flight byte that did clear when a program is torn inside a byte. */
const IN_FLIGHT_BITS = 0x5a;

export function faultPoints(profiles: readonly StepProfile[], afterStep: number, instances = 1): EnumeratedPoint[] {
  const points: EnumeratedPoint[] = [];
  const add = (step: number, kind: PointKind, label: string, faults: StepFaults, interior = false): void => {
    points.push({ step, kind, label: `step ${step}: ${label}`, cls: kind, faults, interior });
  };
  for (const profile of profiles) {
    const step = profile.step;
    if (step <= afterStep) continue;
    const delivery = profile.delivery;
    if (delivery !== undefined) {
      const what = delivery.fin ? `${delivery.direction} FIN` : `${delivery.direction} ${typeName(delivery.frameType)}`;
      add(step, 'link reset at a frame boundary', `reset before ${what}`, { cutAtByte: 0 });
      add(step, 'link silent cut', `silent cut before ${what}`, { before: [{ kind: 'reset', silent: true }] });
      if (!delivery.fin) {
        add(step, 'link reset at a frame boundary', `reset after ${what}`, { cutAtByte: delivery.length });
        if (delivery.frameType !== undefined && BYTE_LEVEL_TYPES.has(delivery.frameType)) {
          for (let b = 1; b < delivery.length; b++) add(step, 'link cut inside REKEY/REKEY_ACK', `cut after byte ${b}/${delivery.length} of ${what}`, { cutAtByte: b }, true);
        }
        for (const ms of INJECTED_DELAYS_MS) add(step, 'delay', `${what} delayed ${ms} ms`, { before: [{ kind: 'delay', direction: delivery.direction, ms }] });
      }
    }
    if (profile.deviceInput) add(step, 'device power cut', `device power cut before ${profile.event}`, { before: [{ kind: 'devicePowerCut' }] });
    if (profile.hubInput) {
      if (instances === 1) {
        add(step, 'hub crash', `hub crash before ${profile.event}`, { before: [{ kind: 'hubCrash', silent: false }] });
        add(step, 'hub silent crash', `hub machine lost before ${profile.event}`, { before: [{ kind: 'hubCrash', silent: true }] });
      } else {
        const instance = profile.hubInstance ?? 0;
        add(step, 'hub crash', `instance ${instance} crashes before ${profile.event}`, { before: [{ kind: 'hubCrash', silent: false, instance }] });
        add(step, 'hub silent crash', `instance ${instance}'s machine lost before ${profile.event}`, { before: [{ kind: 'hubCrash', silent: true, instance }] });
        for (const ms of INJECTED_PAUSES_MS) add(step, 'instance paused', `instance ${instance} paused ${ms} ms before ${profile.event}`, { before: [{ kind: 'pause', instance, ms }] });
        if (profile.event === 'reconnect') {
          const other = (instance + 1) % instances;
          add(step, 'connect to another instance', `the connection goes to instance ${other} instead of ${instance}`, { connectTo: other });
        }
      }
    }
    for (let i = 1; i < profile.deviceActions; i++) add(step, 'device power cut between actions', `device power cut after action ${i}/${profile.deviceActions}`, { deviceCrashAfterAction: i });
    for (let i = 1; i < profile.hubActions; i++) add(step, 'hub crash between actions', `${instances === 1 ? 'hub' : `instance ${profile.hubInstance ?? 0}`} crash after action ${i}/${profile.hubActions}`, { hubCrashAfterAction: i });
    profile.flashOps.forEach((op, operation) => {
      if (op.kind === 'erase') {
        for (const erase of ['unchanged', 'half', 'erased'] as const) {
          add(step, 'torn flash write', `erase ${operation} torn (${erase})`, { tornWrite: { operation, bytes: 0, inFlightBits: 0, erase } });
        }
        return;
      }
      add(step, 'torn flash write', `program ${operation} (${op.length} B) cut before its first bit`, { tornWrite: { operation, bytes: 0, inFlightBits: 0, erase: 'unchanged' } });
      for (let b = 0; b < op.length; b++) {
        add(step, 'torn flash write', `program ${operation} (${op.length} B) torn in byte ${b}`, { tornWrite: { operation, bytes: b, inFlightBits: IN_FLIGHT_BITS, erase: 'unchanged' } }, true);
      }
      add(step, 'torn flash write', `program ${operation} (${op.length} B) done, power cut right after`, { tornWrite: { operation, bytes: op.length, inFlightBits: 0, erase: 'unchanged' } });
    });
    if (profile.event === 'dbCommit') {
      add(step, 'db write failure', 'db write fails before the commit', { dbFailure: 'beforeCommit' });
      add(step, 'db write failure', 'db write fails after the commit', { dbFailure: 'afterCommit' });
    }
  }
  return points;
}
