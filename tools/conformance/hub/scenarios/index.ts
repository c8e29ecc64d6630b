/** Every hub-mode scenario, in run order (docs/CONFORMANCE.md lists them). */
import { handshakeScenario } from './handshake';
import { messagesScenario } from './messages';
import { negativeScenario } from './negative';
import { replayScenario } from './replay';
import { rotationClassicScenario, rotationDhScenario } from './rotation';
import type { Scenario } from './scenario';

export const SCENARIOS: readonly Scenario[] = [handshakeScenario, messagesScenario, replayScenario, negativeScenario, rotationClassicScenario, rotationDhScenario];
