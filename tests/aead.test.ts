import { nodeAead } from '../hosts/node/crypto';
import { nobleAead } from '../hosts/noble/primitives';
import { aeadConformanceSuite } from './support/aead-suite';

describe('A256CBC-HS512 over node:crypto', () => aeadConformanceSuite(() => nodeAead));
describe('A256CBC-HS512 over @noble', () => aeadConformanceSuite(() => nobleAead));
