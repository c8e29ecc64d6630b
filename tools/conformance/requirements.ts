/**
 * The catalogue of numbered requirements of docs/PROTOCOL.md (protocol 1.1).
 * Every MUST of the spec carries one of these ids, in bold, where it is
 * stated; tests/conformance-catalogue.test.ts checks that this table and the
 * spec name the same ids. The kit (`npm run conformance`), the tests and the
 * code comments cite them.
 *   W-…  the wire (framing, header, AEAD, messages, derivations): both peers
 *   H-…  what a hub MUST do
 *   D-…  what a device MUST do
 */
export type RequirementScope = 'wire' | 'hub' | 'device';

/**
 * The optional features of §15. A requirement without one is in the core
 * profile, which every hub and device implements; a feature's ids are not
 * applicable to a peer that declares the feature absent.
 */
export type RequirementFeature = 'dh' | 'recovery' | 'tls';

export interface Requirement {
  /** Stable id, e.g. `H-KEY-1`; never reused for another rule. */
  readonly id: string;
  /** The section of docs/PROTOCOL.md that states it. */
  readonly section: string;
  /** One line: what a compliant peer does. */
  readonly summary: string;
  /** The optional feature (§15) this id belongs to; absent = the core profile. */
  readonly feature?: RequirementFeature;
}

export const REQUIREMENTS: readonly Requirement[] = [
  // ---- The wire: both peers ----
  { id: 'W-FRAME-1', section: '§2', summary: 'every frame is preceded by its length as a u16 big-endian, and that length is 36…1280 (HEADER_BYTES…MAX_FRAME_BYTES)' },
  { id: 'W-FRAME-2', section: '§2', summary: 'a receiver checks the length prefix before it allocates anything for the frame, and never allocates an out-of-range length' },
  { id: 'W-FRAME-3', section: '§2', summary: 'a frame whose length prefix is out of range (FRAME_TOO_SHORT / FRAME_TOO_LONG) is skipped and counted as rejected, or the connection is closed' },
  { id: 'W-FRAME-4', section: '§2', summary: 'all integers on the wire are unsigned big-endian' },
  { id: 'W-HDR-1', section: '§3', summary: 'a header whose version byte is not 0x01 is rejected (BAD_VERSION)' },
  { id: 'W-HDR-2', section: '§3', summary: 'a header whose type is not a defined message type is rejected (UNKNOWN_TYPE)' },
  { id: 'W-HDR-3', section: '§3', summary: 'the sender sets flag bit 0 (from hub) on every hub → device frame, CHALLENGE included, and clears it on every device → hub frame' },
  { id: 'W-HDR-4', section: '§3', summary: 'a frame whose direction bit says it travels in the receiver\'s own sending direction (a reflected frame) is rejected (BAD_HEADER)' },
  { id: 'W-HDR-5', section: '§3', summary: 'reserved flag bits are sent as zero, and a frame with any of them set is rejected (BAD_HEADER)' },
  { id: 'W-HDR-6', section: '§3', summary: 'the KEY_SHARE flag is set only on device → hub sealed frames; on a hub → device frame, a CHALLENGE or a recovery frame it is BAD_HEADER' },
  { id: 'W-HDR-7', section: '§3', summary: 'key id 0 names no key: it appears only in unsealed frames (CHALLENGE, NO_KEY and the recovery frames)' },
  { id: 'W-AEAD-1', section: '§4', summary: 'sealed frames are A256CBC-HS512 (RFC 7518 §5.2.2): MAC_KEY = K[0..32), ENC_KEY = K[32..64), A = the header (‖ share), 32-byte tag' },
  { id: 'W-AEAD-2', section: '§4', summary: 'every sealed frame has a fresh 16-byte IV from a cryptographically secure random source' },
  { id: 'W-AEAD-3', section: '§4', summary: 'the receiver verifies the tag in constant time before it decrypts or parses anything of the frame' },
  { id: 'W-AEAD-4', section: '§4', summary: 'tag, ciphertext-length and padding failures are one error, AUTH_FAILED, and nothing is sent in answer (no padding oracle)' },
  { id: 'W-AEAD-5', section: '§4', summary: 'a sealed frame under 100 bytes (132 with a share) is FRAME_TOO_SHORT; one whose length − 84 (− 116 with a share) is not a multiple of 16 is AUTH_FAILED' },
  { id: 'W-CHECK-1', section: '§4', summary: 'a received frame goes through the checks of §4 in their order, stopping at the first failure; only a frame that passes all is accepted' },
  { id: 'W-CHECK-2', section: '§4', summary: 'a frame of a type the receiver never accepts from the sender\'s direction, or has no row for in its state, is UNEXPECTED_MESSAGE' },
  { id: 'W-CHECK-3', section: '§4', summary: 'a frame whose device_id is not the session\'s device is rejected (BAD_HEADER)' },
  { id: 'W-CHECK-4', section: '§4', summary: 'a frame whose session_id is not the session\'s hub nonce is rejected (BAD_SESSION)' },
  { id: 'W-CHECK-5', section: '§4', summary: 'a frame whose seq is not exactly the next one expected in its direction is rejected (BAD_SEQUENCE): replays and reordering land here' },
  { id: 'W-CHECK-6', section: '§4', summary: 'a sealed frame under a key id the receiver does not hold for the device is rejected (UNKNOWN_KEY_ID)' },
  { id: 'W-CHECK-7', section: '§4', summary: 'an authenticated body of the wrong length or content for its type is rejected (BAD_PAYLOAD)' },
  { id: 'W-CHECK-8', section: '§4', summary: 'a rejected frame changes no state: keys, session, sequence numbers, outbox, timers' },
  { id: 'W-CHECK-9', section: '§4', summary: 'nothing is sent in answer to a rejected frame (the one exception: NO_KEY for a failing HELLO, H-REC-1)' },
  { id: 'W-MSG-1', section: '§6', summary: 'every message body has exactly the length §6 gives for its type (DATA 12–1036 bytes); any other length is BAD_PAYLOAD' },
  { id: 'W-MSG-2', section: '§6', summary: 'a REKEY_ACK\'s body id equals its header key id (it is sealed under the key it acknowledges), else BAD_PAYLOAD' },
  { id: 'W-MSG-3', section: '§6', summary: 'a CONFIRM\'s body id equals its header key id (it is sealed under the key it confirms), else BAD_PAYLOAD' },
  { id: 'W-MSG-4', section: '§6', summary: 'a WELCOME\'s hub key id equals its header key id, else BAD_PAYLOAD' },
  { id: 'W-SESSION-1', section: '§6.1', summary: 'every frame after CHALLENGE carries session_id = Nh, and seq is exactly one more than the previous frame in its direction (HELLO 0; CHALLENGE 0, WELCOME 1)' },
  { id: 'W-SESSION-2', section: '§6.1', summary: 'a sender whose seq would pass 0xFFFFFFFF closes the connection instead of sending' },
  { id: 'W-KEY-1', section: '§5', summary: 'key ids are u32, strictly increasing per device; a rotation uses active id + 1; an id names one key for the device\'s lifetime' },
  { id: 'W-KEY-2', section: '§5', summary: 'key id 0 is never a key; an initial key id is 1…0xFFFFFFFF' },
  { id: 'W-DH-1', section: '§11.3', summary: 'the dh key is HKDF-SHA-512(salt = K_prev, IKM = X25519 result, info = label ‖ device id ‖ n ‖ H ‖ D, L = 64)', feature: 'dh' },
  { id: 'W-DH-2', section: '§11.3', summary: 'an all-zero X25519 result is refused (BAD_KEY_SHARE), checked in constant time', feature: 'dh' },
  { id: 'W-DH-3', section: '§11.2', summary: 'a frame with KEY_SHARE carries D (32 bytes) right after the header, and A = header ‖ D with AL = 544 bits', feature: 'dh' },
  { id: 'W-ERROR-1', section: '§6.5', summary: 'the receiver of an authenticated ERROR reports it and changes no state, unless a table row says otherwise (HK11, HK12)' },
  { id: 'W-ERROR-2', section: '§6.5', summary: 'an ERROR is never answered with an ERROR' },
  { id: 'W-ERROR-3', section: '§6.5', summary: 'an ERROR with a code the receiver does not know, or one no 1.1 peer sends (1, 4, 6), is reported like any other, not rejected' },
  { id: 'W-PING-1', section: '§6.4', summary: 'the receiver of an accepted PING answers PONG, in either direction (a device answers a hub\'s PING)' },
  { id: 'W-PING-2', section: '§6.4', summary: 'a PONG is not answered and changes nothing but the idle timer' },
  { id: 'W-TIMER-1', section: '§8.4', summary: 'idle timers are reset only by accepted frames, never by raw bytes or rejected frames' },
  { id: 'W-REJECT-1', section: '§9', summary: 'a receiver tolerates 8 consecutive rejected frames and closes the connection at the 9th; an accepted frame resets the count (an accepted CHALLENGE may leave it); the count is per connection' },
  { id: 'W-DATA-1', section: '§7', summary: 'a sender numbers its DATA in a stream: a random 8-byte stream id chosen when it starts, message ids from 1, increasing by 1, never wrapping past 0xFFFFFFFF' },
  { id: 'W-DATA-2', section: '§7', summary: 'a sender keeps unacknowledged messages in a bounded outbox and sends them again, in order, at the start of every new session' },
  { id: 'W-DATA-3', section: '§7', summary: 'a receiver delivers a DATA whose stream is new to it or whose id is above the last delivered of that stream (gaps are not waited for), and no other' },
  { id: 'W-DATA-4', section: '§7', summary: 'every accepted DATA, duplicate or not, is answered with DATA_ACK(stream id, highest id delivered of that stream)' },
  { id: 'W-DATA-5', section: '§7', summary: 'a DATA_ACK acknowledges cumulatively the sent messages of the receiver\'s own stream; one for another stream id acknowledges nothing; neither is an error' },
  { id: 'W-TCP-1', section: '§13', summary: 'a connection is one TCP byte stream carrying exactly one session; a session never continues on another connection' },
  { id: 'W-TLS-1', section: '§13', summary: 'frames inside TLS are the same bytes as over TCP; no check of §4 is skipped because TLS is in use', feature: 'tls' },
  { id: 'W-PROV-1', section: '§14', summary: 'the provisioning record is JSON {deviceId 16 hex, keyId u32 ≥ 1, key 128 hex, mode, devicePublicKey + hubStaticId together or not at all}' },
  { id: 'W-REC-1', section: '§12.2', summary: 'recovery frames are unsealed (key id 0, no share), continue the session\'s seq, and have their exact length, else BAD_PAYLOAD', feature: 'recovery' },
  { id: 'W-REC-2', section: '§12.3', summary: 'recovery values and tags are computed exactly as §12.3 and every tag is compared in constant time before anything else of its message is used', feature: 'recovery' },
  // ---- Hubs ----
  { id: 'H-CHECK-1', section: '§4', summary: 'before a HELLO binds the connection, a frame naming a device id the hub has no record of is UNKNOWN_DEVICE, checked first at step 3 (then HS9 or HS3)' },
  { id: 'H-SESSION-1', section: '§6.1', summary: 'the hub sends CHALLENGE as soon as it accepts a connection: a fresh 16-byte random Nh, key id 0, seq 0, device id zero' },
  { id: 'H-SESSION-2', section: '§6.1', summary: 'the hub answers an authenticated HELLO with WELCOME, seq 1, sealed under its active key, echoing Nd' },
  { id: 'H-SESSION-3', section: '§6.1', summary: 'an authenticated HELLO ties the connection to its device, and the hub closes that device\'s older connection' },
  { id: 'H-HELLO-1', section: '§6.1', summary: 'the hub checks a HELLO body only for its length (24 bytes); it never requires the body\'s active id to equal the header key id, nor rejects on the ids' },
  { id: 'H-HELLO-2', section: '§6.1', summary: 'the hub accepts a HELLO sealed under its active or its pending key for the device (under P: HK5 first)' },
  { id: 'H-KEY-1', section: '§5', summary: 'hub keys are 64 bytes from a cryptographically secure random source' },
  { id: 'H-KEY-2', section: '§5', summary: 'the hub never rotates past key id 0xFFFFFFFF (the device must be re-provisioned)' },
  { id: 'H-KEY-3', section: '§5', summary: 'the hub seals every frame to a device under its active key for that device' },
  { id: 'H-KEY-4', section: '§5', summary: 'a retired key (and a dh private key after its promotion) is erased from the hub\'s storage and wiped from memory' },
  { id: 'H-KEY-5', section: '§8.2', summary: 'a failed database write makes the hub reload the device\'s durable state and close its connections (HK7); it never acts on a state that is not durable' },
  { id: 'H-REKEY-1', section: '§8.2', summary: 'the hub persists a pending key before it offers it (H1, HK1)' },
  { id: 'H-REKEY-2', section: '§8.2', summary: 'the hub re-offers the identical (id, key) until it is confirmed, and never replaces or abandons an offered pending key (H1, HK2)' },
  { id: 'H-REKEY-3', section: '§8.2', summary: 'a pending key made by a rotation has id active + 1 (HK1)' },
  { id: 'H-REKEY-4', section: '§8.2', summary: 'the hub offers its pending key in every new session, right after the WELCOME (HK4)' },
  { id: 'H-RETRY-1', section: '§8.4', summary: 'while a session is established and its pending key unconfirmed, the hub re-offers it at most REKEY_RETRY_MAX_MS (30 s) after the previous offer, or as soon as an outstanding persist is durable (HK3)' },
  { id: 'H-RETRY-2', section: '§8.4', summary: 'the hub does not re-offer the same pending key in one session sooner than REKEY_RETRY_MIN_MS (1 s) after the previous offer' },
  { id: 'H-CONFIRM-1', section: '§8.2', summary: 'the hub promotes its pending key only on a device frame authenticated under it (H2, HK5)' },
  { id: 'H-CONFIRM-2', section: '§8.2', summary: 'the hub persists the promotion (deleting the old active key) before it seals anything under the new key (H2)' },
  { id: 'H-CONFIRM-3', section: '§8.2', summary: 'right after the promotion is durable the hub sends CONFIRM(P) under P, or the WELCOME under P when the frame was a HELLO (H3)' },
  { id: 'H-CONFIRM-4', section: '§8.2', summary: 'a REKEY_ACK(P) that promotes is answered by exactly one CONFIRM; any other promoting frame is then acted on as usual (HK5)' },
  { id: 'H-CONFIRM-5', section: '§8.2', summary: 'a REKEY_ACK(A) under the active key A, in (A) or (A, P), is answered by CONFIRM(A) under A and changes no slot (HK6)' },
  { id: 'H-QUEUE-1', section: '§8.6', summary: 'input arriving while a persist of the device is outstanding is held in order and acted on, and answered, only once the persist is durable' },
  { id: 'H-QUEUE-2', section: '§8.6', summary: 'input held during a persist is bounded; past the bound the connection is closed (BUFFER_FULL)' },
  { id: 'H-DH-1', section: '§11.4', summary: 'in the dh mode the hub draws h from a secure random source and persists (P, h, H) before the first REKEY_DH (H4)', feature: 'dh' },
  { id: 'H-DH-2', section: '§11.4', summary: 'the hub re-offers the identical REKEY_DH(P, H) until the promotion, never a fresh h for P (H4)', feature: 'dh' },
  { id: 'H-DH-3', section: '§11.4', summary: 'the hub erases h only in the commit that promotes P (H5)', feature: 'dh' },
  { id: 'H-DH-4', section: '§11.4', summary: 'a frame under a dh pending id must carry a share (else BAD_HEADER); the hub derives K_P from it, opens the frame, and promotes only if it authenticates (HK8)', feature: 'dh' },
  { id: 'H-DH-5', section: '§11.4', summary: 'a share on a frame under a key the hub already holds is authenticated and ignored', feature: 'dh' },
  { id: 'H-DH-6', section: '§11.6', summary: 'the hub\'s mode for a device moves only from classic to dh, and it never starts a classic rotation for a device it records as dh', feature: 'dh' },
  { id: 'H-DH-7', section: '§12.4', summary: 'a hub that answers REKEY_MODE_MISMATCH for its classic P (HK11) persists the mode and the dh pending P in one commit before its REKEY_DH', feature: 'dh' },
  { id: 'H-TIMER-1', section: '§8.4', summary: 'the hub\'s idle timeout is at least IDLE_TIMEOUT_MIN_MS (45 s = 3 × KEEPALIVE_INTERVAL_MAX_MS)' },
  { id: 'H-TIMER-2', section: '§8.4', summary: 'the hub closes a connection whose HELLO (or next recovery message) has not arrived within its handshake timeout, which is 10…60 s' },
  { id: 'H-REJECT-1', section: '§9', summary: 'before a HELLO authenticates, the hub closes the connection at the first rejected frame (HS3), except for the NO_KEY of HS9' },
  { id: 'H-TLS-1', section: '§13', summary: 'a hub\'s TLS listener offers TLS 1.2 (and MAY offer 1.3) with ECDHE and AEAD suites only, including ECDHE-ECDSA-AES128-GCM-SHA256, and nothing below TLS 1.2', feature: 'tls' },
  { id: 'H-TLS-2', section: '§13', summary: 'a hub\'s TLS certificate is issued by a CA (no lone self-signed certificate) and names, in its subject alternative names, the host name or address devices connect to', feature: 'tls' },
  { id: 'H-TLS-3', section: '§13', summary: 'a hub\'s TLS listener does not require a client certificate (devices present none; the protocol authenticates them)', feature: 'tls' },
  { id: 'H-PROV-1', section: '§14', summary: 'a hub checks every field of a provisioning record and refuses an import with any invalid record (all or nothing)' },
  { id: 'H-PROV-2', section: '§14', summary: 'a record without mode is a classic device; the device\'s first session is under the record\'s key id and key' },
  { id: 'H-PROV-3', section: '§14', summary: 'a record for a device id the hub already holds or has revoked is invalid: the whole import is refused, nothing replaced or merged' },
  { id: 'H-REC-1', section: '§12.4', summary: 'a HELLO (seq 0, this session) failing with UNKNOWN_DEVICE, UNKNOWN_KEY_ID, BAD_HEADER for a dh pending id without a share, or AUTH_FAILED (HS9), recovery on and the source\'s limit allowing, is answered by NO_KEY (seq 1), the same for unknown devices (HS9)', feature: 'recovery' },
  { id: 'H-REC-2', section: '§12.4', summary: 'a hub holding a recovered pending N ≠ A + 1 answers a HELLO under A with NO_KEY, not a session (HS9, unusablePending)', feature: 'recovery' },
  { id: 'H-REC-3', section: '§12.4', summary: 'on a RECOVER_INIT with a valid tag1 the hub chooses N = max(A, P, claimed ids) + 1 and replies, storing and charging nothing (HS10)', feature: 'recovery' },
  { id: 'H-REC-4', section: '§12.4', summary: 'the hub changes no slot, records no request and charges no limit before tag3 verifies (R1)', feature: 'recovery' },
  { id: 'H-REC-5', section: '§12.4', summary: 'when check matches P (a dh P: only via the failing HELLO\'s own share), or A with no pending key or a pending A + 1, the hub answers IN_SYNC and changes nothing (HS12, R4)', feature: 'recovery' },
  { id: 'H-REC-6', section: '§12.4', summary: 'the hub persists the recovered pending (N, K_N) before it sends RECOVER_RESULT ACCEPTED (HK9, R2)', feature: 'recovery' },
  { id: 'H-REC-7', section: '§12.4', summary: 'at the decision (and when applying an acceptance) the hub rechecks that N is above every id it holds, else closes without a RECOVER_RESULT; past 0xFFFFFFFF it answers KEY_IDS_EXHAUSTED (HS12, R3)', feature: 'recovery' },
  { id: 'H-REC-8', section: '§12.4', summary: 'anything else, a failed check or the timeout in a recovery state closes the connection with nothing changed and e_h wiped (HS13)', feature: 'recovery' },
  { id: 'H-REC-9', section: '§12.4', summary: 'a REKEY_ID_NOT_NEXT for a recovered N under A, in a session established before N became pending, closes that session (HK12)', feature: 'recovery' },
  { id: 'H-REC-10', section: '§12.4', summary: 'the hub runs at most one recovery handshake per connection and closes the connection after RECOVER_RESULT (R6, HS12)', feature: 'recovery' },
  { id: 'H-REC-11', section: '§12.7', summary: 'with a device\'s policy off the hub still sends NO_KEY (HS9) and answers REFUSED after tag3; with approve it answers AWAITING_APPROVAL until an operator approves', feature: 'recovery' },
  { id: 'H-RATE-1', section: '§12.7', summary: 'the hub limits accepted recoveries per device per window, counted after authentication, in its database', feature: 'recovery' },
  { id: 'H-RATE-2', section: '§12.7', summary: 'the hub limits NO_KEY answers and RECOVER_INIT checks per source before authentication, in bounded memory', feature: 'recovery' },
  { id: 'H-REVOKE-1', section: '§12.6', summary: 'revocations survive a restore of the hub\'s database', feature: 'recovery' },
  { id: 'H-REVOKE-2', section: '§12.6', summary: 'the hub refuses a recovery and any HELLO of a revoked device', feature: 'recovery' },
  { id: 'H-ENROL-1', section: '§12.6', summary: 'the hub sends ENROL only in a session under a key from a dh rotation promoted after the enrolment was armed, at most once per session (HE1)', feature: 'recovery' },
  { id: 'H-ENROL-2', section: '§12.4', summary: 'ENROL_ACK rows E1–E3, E6: the enrolled credential again → nothing; another one, or enrolment not ready → STATIC_KEY_LOCKED; else S_d persisted and disarmed in one commit before it is relied on', feature: 'recovery' },
  { id: 'H-ENROL-3', section: '§12.4', summary: 'ENROL_ACK rows E4, E5: enrolment ready but no ENROL of this session for that hub static id → UNEXPECTED_MESSAGE; a low-order S_d → BAD_KEY_SHARE; detail = its hub static id; nothing changes', feature: 'recovery' },
  // ---- Devices ----
  { id: 'D-SESSION-1', section: '§6.1', summary: 'the device accepts a CHALLENGE only as 36 bytes, from the hub, key id 0, seq 0, device id zero (else BAD_HEADER)' },
  { id: 'D-SESSION-2', section: '§6.1', summary: 'the device accepts a WELCOME only if it echoes the Nd of its HELLO (else BAD_SESSION)' },
  { id: 'D-HELLO-1', section: '§6.1', summary: 'the device answers CHALLENGE with HELLO: seq 0, session Nh, sealed under its newest key, a fresh random Nd, body (Nd, active id, future id or 0)' },
  { id: 'D-KEY-1', section: '§8.1', summary: 'the device persists a future key before it sends the REKEY_ACK for it (D1, DK1)' },
  { id: 'D-KEY-2', section: '§8.1', summary: 'the device promotes its future key on the first hub frame authenticated under it, and persists the promotion before acting on that frame (D2, DK5)' },
  { id: 'D-KEY-3', section: '§8.1', summary: 'the device seals every frame under the newest key it holds: the future key if any, else the active key (D3, DK6)' },
  { id: 'D-KEY-4', section: '§5', summary: 'the device opens frames under its active or its future key, and no other' },
  { id: 'D-KEY-5', section: '§5', summary: 'a retired key is erased from the device\'s flash and wiped from memory once the promotion is durable' },
  { id: 'D-KEY-6', section: '§8.1', summary: 'a failed keystore write halts the core until the keystore is remounted; nothing is sent on a state that is not durable (DK7)' },
  { id: 'D-REKEY-1', section: '§8.1', summary: 'in (A), a REKEY(A + 1, k) is stored as the future key and answered by REKEY_ACK(A + 1) sealed under it (DK1)' },
  { id: 'D-REKEY-2', section: '§8.1', summary: 'a repeated REKEY(F) with F\'s bytes is answered by REKEY_ACK(F) again and changes nothing (DK2)' },
  { id: 'D-REKEY-3', section: '§8.1', summary: 'a REKEY(F) with other bytes than F\'s gets ERROR REKEY_CONFLICT and changes nothing (DK3)' },
  { id: 'D-REKEY-4', section: '§8.1', summary: 'a REKEY or REKEY_DH with id ≤ active gets ERROR REKEY_ID_NOT_NEWER (detail = the id) and changes nothing (DK4)' },
  { id: 'D-REKEY-5', section: '§8.1', summary: 'a REKEY or REKEY_DH with id > active + 1 gets ERROR REKEY_ID_NOT_NEXT (detail = the id) and changes nothing (DK8)' },
  { id: 'D-DH-1', section: '§11.4', summary: 'on REKEY_DH(A + 1, H) in (A) the device draws d, derives K_n, wipes d, and persists (n, K_n, H, D) before REKEY_ACK(n) with share D (D6, DK9)', feature: 'dh' },
  { id: 'D-DH-2', section: '§11.4', summary: 'a repeated REKEY_DH(F, H) with F\'s stored H is answered by the identical REKEY_ACK with F\'s stored D, never a fresh exchange (D7, DK10)', feature: 'dh' },
  { id: 'D-DH-3', section: '§11.4', summary: 'a REKEY_DH(F) with another H, a REKEY_DH for a classic F, or a REKEY for a dh F gets ERROR REKEY_CONFLICT and changes nothing (DK11)', feature: 'dh' },
  { id: 'D-DH-4', section: '§11.4', summary: 'a device in the dh mode answers a classic REKEY(A + 1) in (A) with ERROR REKEY_MODE_MISMATCH and changes nothing (DK12)', feature: 'dh' },
  { id: 'D-DH-5', section: '§11.4', summary: 'a REKEY_DH whose share gives an all-zero X25519 result gets ERROR BAD_KEY_SHARE and changes nothing (DK13)', feature: 'dh' },
  { id: 'D-DH-6', section: '§11.2', summary: 'the device sets KEY_SHARE with its stored D on every frame sealed under a dh-derived future key (HELLO included), and on no other frame', feature: 'dh' },
  { id: 'D-DH-7', section: '§11.4', summary: 'the promotion of a dh-derived key moves the device to the dh mode for good', feature: 'dh' },
  { id: 'D-QUEUE-1', section: '§8.6', summary: 'input arriving while a keystore write is outstanding is held in order and acted on only once the write is durable' },
  { id: 'D-QUEUE-2', section: '§8.6', summary: 'input held during a keystore write is bounded; past the bound the connection is closed (BUFFER_FULL)' },
  { id: 'D-TIMER-1', section: '§8.4', summary: 'the device sends a frame (PING when nothing else) whenever it has sent nothing for its keep-alive interval, which is at most KEEPALIVE_INTERVAL_MAX_MS (15 s)' },
  { id: 'D-TIMER-2', section: '§8.4', summary: 'the device\'s idle timeout is at least 3 × its keep-alive interval' },
  { id: 'D-TIMER-3', section: '§8.4', summary: 'the device closes a connection that has not delivered an authenticated WELCOME within its handshake timeout (≤ 60 s; a recovery stage: from the NO_KEY)' },
  { id: 'D-RETRY-1', section: '§8.4', summary: 'the device reconnects after every close with an exponential backoff with random jitter, capped, reset by an established session (at once after DK14 or IN_SYNC)' },
  { id: 'D-TLS-1', section: '§13', summary: 'over TLS the device verifies the hub\'s chain to its configured CA, the validity dates and the host name or address, unless verification was explicitly turned off', feature: 'tls' },
  { id: 'D-PROV-1', section: '§14', summary: 'the device image holds the record\'s device id, key id, key and mode, and with a credential s_d, S_h and the hub static id' },
  { id: 'D-REC-1', section: '§12.4', summary: 'on NO_KEY the device reports it and sends RECOVER_INIT only if it holds a credential and its attempt spacing allows; else it closes (DS12)', feature: 'recovery' },
  { id: 'D-REC-2', section: '§12.4', summary: 'the device sends RECOVER_FINISH only for a RECOVER_REPLY with a valid tag2 and an N above every id it holds (DS13)', feature: 'recovery' },
  { id: 'D-REC-3', section: '§12.4', summary: 'a RECOVER_REPLY with a bad tag2 or an N not above every id held closes the connection with nothing changed (DS14, R3)', feature: 'recovery' },
  { id: 'D-REC-4', section: '§12.4', summary: 'on ACCEPTED with a valid tag4 the device persists (N, K_N) as its future key before it seals anything under it, then reconnects (DK14, R2)', feature: 'recovery' },
  { id: 'D-REC-5', section: '§12.4', summary: 'after IN_SYNC the device reconnects at once; after any other status it waits at least "retry after" (capped at 1 h) (DS15)', feature: 'recovery' },
  { id: 'D-REC-6', section: '§12.4', summary: 'in a recovery state anything else, a bad tag or the timeout closes the connection with nothing changed and e_d wiped; nothing changes before tag4 (DS16, R1)', feature: 'recovery' },
  { id: 'D-REC-7', section: '§12.7', summary: 'the device makes at most one recovery attempt per connection and spaces attempts by a backoff counted from each RECOVER_INIT, reset by a WELCOME', feature: 'recovery' },
  { id: 'D-ENROL-1', section: '§12.4', summary: 'on ENROL without a credential the device draws s_d and persists (s_d, S_h, id) before ENROL_ACK(id, S_d) (DK15)', feature: 'recovery' },
  { id: 'D-ENROL-2', section: '§12.4', summary: 'an ENROL for the credential already held is answered by the same ENROL_ACK again (DK16)', feature: 'recovery' },
  { id: 'D-ENROL-3', section: '§12.4', summary: 'an ENROL for another hub static key gets ERROR STATIC_KEY_LOCKED and changes nothing (DK17)', feature: 'recovery' },
  { id: 'D-ENROL-4', section: '§12.4', summary: 'an ENROL whose S_h gives an all-zero X25519 result gets ERROR BAD_KEY_SHARE before anything is stored', feature: 'recovery' },
  { id: 'D-ENROL-5', section: '§12.4', summary: 'a device that cannot keep a credential answers ENROL with ERROR UNEXPECTED_MESSAGE and changes nothing', feature: 'recovery' },
];

const byId = new Map(REQUIREMENTS.map((requirement) => [requirement.id, requirement]));

/** The requirement with this id; throws for an id the catalogue does not name (a typo in the kit). */
export function requirement(id: string): Requirement {
  const found = byId.get(id);
  if (found === undefined) throw new Error(`unknown requirement id ${id} (tools/conformance/requirements.ts)`);
  return found;
}

export function scopeOf(id: string): RequirementScope {
  if (id.startsWith('W-')) return 'wire';
  if (id.startsWith('H-')) return 'hub';
  if (id.startsWith('D-')) return 'device';
  throw new Error(`requirement id ${id} has no W-/H-/D- prefix`);
}
