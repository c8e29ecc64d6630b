/** The kit's frame-level helpers, shared by the hub and device modes (docs/CONFORMANCE.md). */
export { ConnectionBudget, WirePeer, type WireEvent, type WirePeerOptions, type WireTarget } from './peer';
export { FrameRecording, frameEvidence, DEFAULT_RECORDING_FRAMES, type FrameDirection, type RecordedFrame } from './recording';
export { challengeWire, freshBytes, freshNonce, inspectFrame, openWire, openWithKeys, readChallenge, sealWire, typeName, type Header, type Message, type Opened, type SealArgs } from './sealer';
