/*
 * Lockstep key rotation, modelled for spin (docs/VERIFICATION.md §7).
 * The protocol of docs/PROTOCOL.md §5, §6.1-6.3 and §8 (rules D1-D3,
 * H1-H3), abstracted:
 * - a key is (id, gen): `gen` numbers every key ever generated, so "one id
 *   naming two keys" is visible; a frame sealed under (id, gen) opens only
 *   for a holder of exactly that key (authenticated encryption);
 * - one connection at a time, as two reliable FIFO channels; a cut loses
 *   everything in flight (a suffix of each stream) and the device
 *   reconnects with a new HELLO. Sessions and sequence numbers make frames
 *   of a dead connection unacceptable (checked on the real code by
 *   tools/verify), so here they are simply gone;
 * - every handler that persists is two steps: the persistence point (the
 *   write is durable), then the memory update and the replies. A crash of
 *   either side, or a cut, may fall between them; a crashed side restarts
 *   at once from exactly what it persisted. The keystore and the database
 *   are before-or-after (checked on the real code by tools/verify);
 * - app data, PING/PONG and timers are left out, except the hub's retry of
 *   an unconfirmed offer; faults are bounded (MAXFAULTS) and the Faults
 *   process may stop at any time, so "the link eventually delivers".
 *
 * Broken variants (-D switches of this model, docs/VERIFICATION.md §5):
 *   DEVICE_ACKS_BEFORE_PERSISTING        the device's two steps swapped
 *   HUB_OFFERS_BEFORE_PERSISTING         the hub's rotate steps swapped
 *   DEVICE_SEALS_OLD_UNTIL_HUB_USES_NEW  the device seals with its active key while it holds a future one
 *                                        (except the REKEY_ACK, sealed under the key it acknowledges)
 *   HUB_REPLACES_PENDING                 the hub may replace an unconfirmed pending key (same id, new key)
 *   HUB_LAZY_PROMOTION                   the hub's promotion steps swapped
 *   HUB_NO_CONFIRM                       the hub never sends CONFIRM under the new key
 * Checks (tools/verify/spin.ts): safety — the Monitor's assertion in every
 * reachable state, every terminal state in sync, no invalid end states;
 * liveness (-DLIVENESS, without the Monitor) — ltl `converges` under weak
 * fairness (pan -a -f).
 */

#ifndef MAXROT
#define MAXROT 3        /* rotations the operator asks for */
#endif
#ifndef MAXFAULTS
#define MAXFAULTS 3     /* cuts and crashes, in total */
#endif
#define CHAN_SIZE 6     /* more than the frames ever in flight per direction (asserted) */

mtype = { NONE, HELLO, WELCOME, REKEY, REKEY_ACK, CONFIRM };

/* type, sealed under (id, gen), argument key (id, gen) */
chan toDevice = [CHAN_SIZE] of { mtype, byte, byte, byte, byte };
chan toHub = [CHAN_SIZE] of { mtype, byte, byte, byte, byte };

/* Device: live key slots (id 0 = none) and the keystore's durable ones. */
byte dA = 1, dAg = 1, dF = 0, dFg = 0;
byte kA = 1, kAg = 1, kF = 0, kFg = 0;
/* Hub: live slots for the device and the database row. */
byte hA = 1, hAg = 1, hP = 0, hPg = 0;
byte bA = 1, bAg = 1, bP = 0, bPg = 0;

byte gens = 1;            /* keys generated so far */
byte rotations = 0;       /* rotations started by the operator */
byte faults = 0;
bool faultsOver = false;
/* Bumped by a device crash, a hub crash, a cut: a handler's second step is void after one. */
byte deviceEpoch = 0, hubEpoch = 0, linkEpoch = 0;
bool needHello = true;    /* the device (re)connects */
bool hubSession = false;  /* the hub authenticated a HELLO on this connection */
bool replaced = false;
bit tick;

#define HOLDS(a, ag, f, fg, id, g)   ((id == a && g == ag) || (f != 0 && id == f && g == fg))
#define NEWEST(a, f)                 (f != 0 -> f : a)
#define NEWEST_GEN(ag, f, fg)        (f != 0 -> fg : ag)

/*
 * The key the device seals with (rule D3: the newest it holds). Broken
 * variant: the old one until the hub uses the new one — except the
 * REKEY_ACK, which must be sealed under the key it acknowledges.
 */
#ifdef DEVICE_SEALS_OLD_UNTIL_HUB_USES_NEW
#define DEVICE_SEAL(a, f)          a
#define DEVICE_SEAL_GEN(ag, f, fg) ag
#else
#define DEVICE_SEAL(a, f)          NEWEST(a, f)
#define DEVICE_SEAL_GEN(ag, f, fg) NEWEST_GEN(ag, f, fg)
#endif
#define SEAL_ID  DEVICE_SEAL(dA, dF)
#define SEAL_GEN DEVICE_SEAL_GEN(dAg, dF, dFg)

/* S1: the hub side (A,P) accepts what the device side (a,f) seals with; S2: the device side holds the hub's sealing key. */
#define AGREE(a, ag, f, fg, A, Ag, P, Pg) \
  (HOLDS(A, Ag, P, Pg, DEVICE_SEAL(a, f), DEVICE_SEAL_GEN(ag, f, fg)) && HOLDS(a, ag, f, fg, A, Ag))
/* Live and durable views, every pairing (a crash is always one step away). */
#define SAFE \
  (AGREE(dA, dAg, dF, dFg, hA, hAg, hP, hPg) && AGREE(kA, kAg, kF, kFg, bA, bAg, bP, bPg) && \
   AGREE(dA, dAg, dF, dFg, bA, bAg, bP, bPg) && AGREE(kA, kAg, kF, kFg, hA, hAg, hP, hPg))
/* One shared key, nothing pending anywhere, every rotation done. */
#define SYNCED \
  (dA == hA && dAg == hAg && dF == 0 && hP == 0 && kA == dA && kAg == dAg && kF == 0 && \
   bA == hA && bAg == hAg && bP == 0 && rotations == MAXROT)

/* Frames in flight stay below CHAN_SIZE in every run (asserted, so a bound too small shows as an error). */
#define send(ch, t, sid, sg, id, g) assert(nfull(ch)); ch!t, sid, sg, id, g

/* A cut: both streams lose what is in flight; the device will reconnect. */
inline cut() {
  do
  :: toDevice?_, _, _, _, _
  :: toHub?_, _, _, _, _
  :: empty(toDevice) && empty(toHub) -> break
  od;
  linkEpoch++;
  needHello = true;
  hubSession = false
}

active proctype Device() {
  mtype t;
  byte sid, sg, id, g, de, le;
  bool promote, store, again;
end_loop:
  do
  :: atomic { needHello ->
       needHello = false;
       send(toHub, HELLO, SEAL_ID, SEAL_GEN, 0, 0) }
  :: atomic { toDevice?t, sid, sg, id, g ->
       de = deviceEpoch; le = linkEpoch;
       promote = false; store = false; again = false;
       if
       :: !HOLDS(dA, dAg, dF, dFg, sid, sg) -> t = NONE   /* does not authenticate: rejected */
       :: else -> skip
       fi;
       /* Rule D2: a hub frame under the future key: the promotion is persisted first. */
       if
       :: t != NONE && dF != 0 && sid == dF ->
            promote = true;
            kA = dF; kAg = dFg; kF = 0; kFg = 0
       :: else -> skip
       fi;
       if
       :: t == REKEY && id == NEWEST(dA, dF) + 1 && (dF == 0 || promote) ->   /* DK1: exactly the next id (DK4, DK8 refuse others) */
            /* Rule D1: the future key is durable before it is acknowledged. */
            store = true;
#ifndef DEVICE_ACKS_BEFORE_PERSISTING
            kF = id; kFg = g
#else
            skip
#endif
       :: t == REKEY && dF != 0 && !promote && id == dF && g == dFg -> again = true   /* the same offer: ack again */
       :: else -> skip                                                                /* refused, or nothing to store */
       fi }
       /* Second step: memory and replies, unless the device crashed or the link died meanwhile. */
       atomic {
         if
         :: de == deviceEpoch ->
              if
              :: promote -> dA = dF; dAg = dFg; dF = 0; dFg = 0
              :: else -> skip
              fi;
              if
              :: store -> dF = id; dFg = g
              :: else -> skip
              fi;
              if
              :: (store || again) && le == linkEpoch -> send(toHub, REKEY_ACK, id, g, id, g)   /* sealed under the key it acknowledges */
              :: else -> skip
              fi
         :: else -> skip
         fi }
#ifdef DEVICE_ACKS_BEFORE_PERSISTING
       /* Broken: the keystore write happens only now. */
       atomic {
         if
         :: store && de == deviceEpoch -> kF = id; kFg = g
         :: else -> skip
         fi }
#endif
  od
}

active proctype Hub() {
  mtype t;
  byte sid, sg, id, g, he, le;
  bool promote, welcome, confirm;
end_loop:
  do
  :: atomic { toHub?t, sid, sg, id, g ->
       he = hubEpoch; le = linkEpoch;
       promote = false; welcome = false; confirm = false;
       if
       :: !HOLDS(hA, hAg, hP, hPg, sid, sg) -> t = NONE   /* rejected */
       :: else -> skip
       fi;
       if
       :: t == HELLO -> welcome = true; hubSession = true
       :: t == REKEY_ACK && hubSession && id == sid && (id == hA || id == hP) -> confirm = true
       :: else -> skip
       fi;
       /* Rule H2: the first device frame under the pending key: the promotion is persisted first. */
       if
       :: (welcome || confirm) && hP != 0 && sid == hP && sg == hPg ->
            promote = true;
#ifndef HUB_LAZY_PROMOTION
            bA = hP; bAg = hPg; bP = 0; bPg = 0
#else
            skip
#endif
       :: else -> skip
       fi }
       /* Second step: memory, then frames under the (new) active key (rule H3). */
       atomic {
         if
         :: he == hubEpoch ->
              if
              :: promote -> hA = hP; hAg = hPg; hP = 0; hPg = 0
              :: else -> skip
              fi;
              if
              :: le == linkEpoch && welcome ->
                   send(toDevice, WELCOME, hA, hAg, 0, 0);
                   if
                   :: hP != 0 -> send(toDevice, REKEY, hA, hAg, hP, hPg)   /* re-offer, unchanged (rule H1) */
                   :: else -> skip
                   fi
              :: le == linkEpoch && confirm ->
#ifndef HUB_NO_CONFIRM
                   send(toDevice, CONFIRM, hA, hAg, hA, hAg)
#else
                   skip
#endif
              :: else -> skip
              fi
         :: else -> skip
         fi }
#ifdef HUB_LAZY_PROMOTION
       /* Broken: the database learns of the promotion only now. */
       atomic {
         if
         :: promote && he == hubEpoch -> bA = hA; bAg = hAg; bP = 0; bPg = 0
         :: else -> skip
         fi }
#endif
  /* Rule H1: the unchanged offer is repeated (the retry timer fires when nothing is in flight). */
  :: atomic { hubSession && hP != 0 && empty(toDevice) && empty(toHub) ->
       send(toDevice, REKEY, hA, hAg, hP, hPg) }
  /* The operator rotates. Rule H1: the pending key is durable before it is offered. */
  :: atomic { hP == 0 && rotations < MAXROT ->
       he = hubEpoch; le = linkEpoch;
       rotations++;
       gens++;
#ifndef HUB_OFFERS_BEFORE_PERSISTING
       bP = hA + 1; bPg = gens
#else
       skip
#endif
     }
     atomic {
       if
       :: he == hubEpoch ->
            hP = hA + 1; hPg = gens;
            if
            :: hubSession && le == linkEpoch -> send(toDevice, REKEY, hA, hAg, hP, hPg)
            :: else -> skip
            fi
       :: else -> skip
       fi }
#ifdef HUB_OFFERS_BEFORE_PERSISTING
     /* Broken: the database gets the pending key only after it was offered. */
     atomic {
       if
       :: he == hubEpoch && hP != 0 -> bP = hP; bPg = hPg
       :: else -> skip
       fi }
#endif
#ifdef HUB_REPLACES_PENDING
  /* Broken: an unconfirmed pending key is replaced by a fresh one under the same id. */
  :: atomic { hP != 0 && !replaced ->
       replaced = true;
       gens++;
       bP = hP; bPg = gens;
       hPg = gens;
       if
       :: hubSession -> send(toDevice, REKEY, hA, hAg, hP, hPg)
       :: else -> skip
       fi }
#endif
  od
}

/* Cuts and crashes, at most MAXFAULTS; a crashed side restarts from what it persisted. */
active proctype Faults() {
end_loop:
  do
  :: atomic { faults < MAXFAULTS -> faults++; cut() }
  :: atomic { faults < MAXFAULTS ->
       faults++;
       deviceEpoch++;
       dA = kA; dAg = kAg; dF = kF; dFg = kFg;
       cut() }
  :: atomic { faults < MAXFAULTS ->
       faults++;
       hubEpoch++;
       hA = bA; hAg = bAg; hP = bP; hPg = bPg;
       cut() }
  :: atomic { !faultsOver -> faultsOver = true; break }   /* the link is reliable from now on */
  od
}

#ifndef LIVENESS
/*
 * Safety run: SAFE in every reachable state; and when nothing can happen
 * any more (faults over, nothing in flight, nobody with anything to do),
 * device and hub are in sync — no deadlock short of agreement — with every
 * process at a valid end state.
 */
active proctype Monitor() {
end_loop:
  do
  :: atomic { !SAFE -> assert(SAFE) }
  :: timeout -> assert(SYNCED)
  od
}
#endif

#ifdef LIVENESS
/*
 * Time passes even when nobody has anything to do. Without it a run that
 * stops out of sync would end in a deadlock, and spin's weak-fairness search
 * does not report a liveness violation at a deadlock; with it, "stuck out
 * of sync" is an infinite fair run that violates `converges`.
 */
active proctype Time() {
end_loop:
  do
  :: tick = 1 - tick
  od
}
#endif

/* Liveness: once faults stop, device and hub end in sync for good. */
ltl converges { <> [] SYNCED }
