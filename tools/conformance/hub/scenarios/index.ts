/** Every hub-mode scenario, in run order (docs/CONFORMANCE.md lists them). */
import { crashScenario } from './crash';
import { cutsClassicScenario, cutsDhScenario } from './cuts';
import { faultsScenario } from './faults';
import { handshakeScenario } from './handshake';
import { keepaliveScenario } from './keepalive';
import { messagesScenario } from './messages';
import { negativeScenario } from './negative';
import { recoveryScenario } from './recovery';
import { replayScenario } from './replay';
import { modeMismatchScenario, rotationClassicScenario, rotationDhScenario } from './rotation';
import { tlsScenario } from './tls';
import type { Scenario } from './scenario';

export const SCENARIOS: readonly Scenario[] = [
  keepaliveScenario,
  handshakeScenario,
  tlsScenario,
  messagesScenario,
  replayScenario,
  negativeScenario,
  rotationClassicScenario,
  rotationDhScenario,
  modeMismatchScenario,
  cutsClassicScenario,
  cutsDhScenario,
  recoveryScenario,
  crashScenario,
  faultsScenario,
];

export type { Scenario } from './scenario';
