/**
 * The Lockstep application API (hosts/moddable/lockstep/channel.ts) on XS,
 * over the channel rig's SDK fakes with the native AEAD: the scenarios of
 * tools/testing/channel-scenarios.ts, the same jest runs on Node.
 */
import { nativeAead } from '../../../hosts/moddable/native/native-aead';
import { CHANNEL_SCENARIOS } from '../../../tools/testing/channel-scenarios';
import { test } from '../harness';

for (const scenario of CHANNEL_SCENARIOS) test('api', scenario.name, () => scenario.run(nativeAead));
