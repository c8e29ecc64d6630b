/*
 * Lockstep key rotation, modelled for spin (docs/VERIFICATION.md §7).
 * The protocol of docs/PROTOCOL.md §5, §6.1-6.3 and §8 (rules D1-D3,
 * H1-H3) and its dh rekey mode, §11 (rows DK9-DK12, HK8; rules H4, H5,
 * D6, D7), abstracted:
 * - a key is (id, x, y). Classic: x = gen, numbering every key ever
 *   generated, and y = 0. Dh: x = the token of the hub's ephemeral pair
 *   (h, H) and y = the token of the device's (d, D) it was derived from.
 *   So "one id naming two keys" is visible as the same id with other
 *   tokens; a frame sealed under (id, x, y) opens only for a holder of
 *   exactly that key (authenticated encryption). Tokens come from one
 *   counter per side, so every draw is fresh. The derivation's salt (the
 *   key of id - 1) is not a separate token: S2 makes both sides hold the
 *   same key under that id when they derive;
 * - the hub's dh pending record is (id, x): x = its ephemeral pair (0 = it
 *   has lost h). It opens a frame under (id, x, y) only if the frame
 *   carries the device's share D = y (the KEY_SHARE flag, §11.2): it then
 *   derives the key and promotes in one commit that erases h (HK8, H5);
 * - one connection at a time, as two reliable FIFO channels; a cut loses
 *   everything in flight (a suffix of each stream) and the device
 *   reconnects with a new HELLO. Sessions and sequence numbers make frames
 *   of a dead connection unacceptable (checked on the real code by
 *   tools/verify), so here they are simply gone;
 * - every handler that persists is two steps: the persistence point (the
 *   write is durable), then the memory update and the replies. A crash of
 *   either side (losing its memory: the device's d, the hub's unpersisted
 *   state), or a cut, may fall between them; a crashed side restarts at
 *   once from exactly what it persisted. The keystore and the database
 *   are before-or-after (checked on the real code by tools/verify);
 * - app data, PING/PONG, ERROR replies and timers are left out, except the
 *   hub's retry of an unconfirmed offer; faults are bounded (MAXFAULTS) and
 *   the Faults process may stop at any time, so "the link eventually
 *   delivers".
 *
 * Modes (-D switches): none = the classic mode (every device and the hub
 * classic); DH = provisioned in the dh mode; UPGRADE = classic at first,
 * the operator may move the hub to dh at any moment (§11.6), the device
 * moves on the promotion of its first dh-derived key.
 *
 * Broken variants (-D switches of this model, docs/VERIFICATION.md §5):
 *   DEVICE_ACKS_BEFORE_PERSISTING        the device's two steps swapped (both modes)
 *   HUB_OFFERS_BEFORE_PERSISTING         the hub's rotate steps swapped
 *   DEVICE_SEALS_OLD_UNTIL_HUB_USES_NEW  the device seals with its active key while it holds a future one
 *                                        (except the REKEY_ACK, sealed under the key it acknowledges)
 *   HUB_REPLACES_PENDING                 the hub may replace an unconfirmed pending key (same id, new key)
 *   HUB_LAZY_PROMOTION                   the hub's promotion steps swapped
 *   HUB_NO_CONFIRM                       the hub never sends CONFIRM under the new key
 *   DEVICE_FRESH_EPHEMERAL_ON_REPEAT     dh: a repeated REKEY_DH for the stored future key gets a fresh d (not D7)
 *   HUB_EPHEMERAL_NOT_PERSISTED          dh: h stays in memory; after a restart the re-offer draws a fresh one (not H4)
 *   HUB_FORGETS_EPHEMERAL_EARLY          dh: the hub erases h in a commit of its own before the promotion commits (not H5)
 *   DEVICE_HELLO_WITHOUT_SHARE           dh: the HELLO under a dh future key carries no share D (the §11.2 trap)
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

#if defined(DH)
#define INITIAL_DH true
#else
#define INITIAL_DH false
#endif

mtype = { NONE, HELLO, WELCOME, REKEY, REKEY_DH, REKEY_ACK, CONFIRM };

/*
 * type, sealed under (id, x, y), share (the device's D token, 0 = none),
 * argument id, argument x (REKEY: the key's gen; REKEY_DH: the hub's H).
 */
chan toDevice = [CHAN_SIZE] of { mtype, byte, byte, byte, byte, byte, byte };
chan toHub = [CHAN_SIZE] of { mtype, byte, byte, byte, byte, byte, byte };

/* Device: live key slots (id 0 = none) and the keystore's durable ones; its mode. */
byte dA = 1, dAx = 1, dAy = 0, dF = 0, dFx = 0, dFy = 0;
byte kA = 1, kAx = 1, kAy = 0, kF = 0, kFx = 0, kFy = 0;
bool dDh = INITIAL_DH, kDh = INITIAL_DH;
/* Hub: live slots for the device and the database row; pending (id, x, dh?); the device's mode. */
byte hA = 1, hAx = 1, hAy = 0, hP = 0, hPx = 0;
byte bA = 1, bAx = 1, bAy = 0, bP = 0, bPx = 0;
bool hPdh = false, bPdh = false;
bool hDh = INITIAL_DH, bDh = INITIAL_DH;

byte gens = 1;            /* classic keys and hub ephemeral pairs drawn so far */
byte dtoks = 0;           /* device ephemeral pairs drawn so far */
byte rotations = 0;       /* rotations started by the operator */
byte faults = 0;
bool faultsOver = false;
/* Bumped by a device crash, a hub crash, a cut: a handler's second step is void after one. */
byte deviceEpoch = 0, hubEpoch = 0, linkEpoch = 0;
bool needHello = true;    /* the device (re)connects */
bool hubSession = false;  /* the hub authenticated a HELLO on this connection */
bool replaced = false;
bit tick;

#define NEWEST(a, f)  (f != 0 -> f : a)

/*
 * One component of the key the device seals with (rule D3: the newest it
 * holds). Broken variant: the old one until the hub uses the new one —
 * except the REKEY_ACK, which must be sealed under the key it acknowledges.
 */
#ifdef DEVICE_SEALS_OLD_UNTIL_HUB_USES_NEW
#define SEALK(f, av, fv)  (av)
#else
#define SEALK(f, av, fv)  (f != 0 -> fv : av)
#endif
/* The share on a frame sealed under (id, x, y): D when it is a dh future key (§11.2), else none. */
#define SHARE(a, f, y)    ((f != 0 && a == f) -> y : 0)
#define SEAL_ID   SEALK(dF, dA, dF)
#define SEAL_X    SEALK(dF, dAx, dFx)
#define SEAL_Y    SEALK(dF, dAy, dFy)
#ifdef DEVICE_HELLO_WITHOUT_SHARE
#define HELLO_SHARE 0
#else
#define HELLO_SHARE SHARE(SEAL_ID, dF, SEAL_Y)
#endif

/* The device view (a, f) holds the key (i, x, y). */
#define DEV_HOLDS(a, ax, ay, f, fx, fy, i, x, y) \
  ((i == a && x == ax && y == ay) || (f != 0 && i == f && x == fx && y == fy))
/*
 * The hub view (A, P) accepts the key (i, x, y): its active key, or its
 * pending one — classic: exactly (P, gen, 0); dh: any (P, x, D) derived
 * from its h (x, held), given the share D on the frame.
 */
#define HUB_ACCEPTS(A, Ax, Ay, P, Px, Pdh, i, x, y) \
  ((i == A && x == Ax && y == Ay) || (P != 0 && i == P && x == Px && x != 0 && (Pdh -> y != 0 : y == 0)))
/* The live hub opens a frame under (i, x, y) with share s (a dh pending key needs s = y, §11.4 HK8). */
#define HUB_OPENS(i, x, y, s) \
  ((i == hA && x == hAx && y == hAy) || \
   (hP != 0 && i == hP && x == hPx && x != 0 && (hPdh -> (s != 0 && s == y) : y == 0)))

/* S1: the hub side accepts what the device side seals with; S2: the device side holds the hub's sealing key, same tokens. */
#define AGREE(a, ax, ay, f, fx, fy, A, Ax, Ay, P, Px, Pdh) \
  (HUB_ACCEPTS(A, Ax, Ay, P, Px, Pdh, SEALK(f, a, f), SEALK(f, ax, fx), SEALK(f, ay, fy)) && \
   DEV_HOLDS(a, ax, ay, f, fx, fy, A, Ax, Ay))
/* Live and durable views, every pairing (a crash is always one step away). */
#define SAFE \
  (AGREE(dA, dAx, dAy, dF, dFx, dFy, hA, hAx, hAy, hP, hPx, hPdh) && \
   AGREE(kA, kAx, kAy, kF, kFx, kFy, bA, bAx, bAy, bP, bPx, bPdh) && \
   AGREE(dA, dAx, dAy, dF, dFx, dFy, bA, bAx, bAy, bP, bPx, bPdh) && \
   AGREE(kA, kAx, kAy, kF, kFx, kFy, hA, hAx, hAy, hP, hPx, hPdh))
/* One shared key, nothing pending anywhere, every rotation done. */
#define SYNCED \
  (dA == hA && dAx == hAx && dAy == hAy && dF == 0 && hP == 0 && \
   kA == dA && kAx == dAx && kAy == dAy && kF == 0 && \
   bA == hA && bAx == hAx && bAy == hAy && bP == 0 && rotations == MAXROT)

/* Frames in flight stay below CHAN_SIZE in every run (asserted, so a bound too small shows as an error). */
#define send(ch, t, si, sx, sy, sh, id, x) assert(nfull(ch)); ch!t, si, sx, sy, sh, id, x

/* A cut: both streams lose what is in flight; the device will reconnect. */
inline cut() {
  do
  :: toDevice?_, _, _, _, _, _, _
  :: toHub?_, _, _, _, _, _, _
  :: empty(toDevice) && empty(toHub) -> break
  od;
  linkEpoch++;
  needHello = true;
  hubSession = false
}

/* The hub (re)offers its pending key, unchanged (rules H1, H4): REKEY or REKEY_DH under its active key. */
inline offer() {
#ifdef HUB_EPHEMERAL_NOT_PERSISTED
  /* Broken: h did not survive the restart, so a fresh pair is drawn for the same id. */
  if
  :: hPdh && hPx == 0 -> gens++; hPx = gens
  :: else -> skip
  fi;
#endif
  if
  :: hPdh -> send(toDevice, REKEY_DH, hA, hAx, hAy, 0, hP, hPx)
  :: else -> send(toDevice, REKEY, hA, hAx, hAy, 0, hP, hPx)
  fi
}

active proctype Device() {
  mtype t;
  byte sid, sx, sy, sh, id, x, ny, de, le;
  bool promote, store, again, dh;
end_loop:
  do
  :: atomic { needHello ->
       needHello = false;
       send(toHub, HELLO, SEAL_ID, SEAL_X, SEAL_Y, HELLO_SHARE, 0, 0) }
  :: atomic { toDevice?t, sid, sx, sy, sh, id, x ->
       de = deviceEpoch; le = linkEpoch;
       promote = false; store = false; again = false; ny = 0;
       if
       :: !DEV_HOLDS(dA, dAx, dAy, dF, dFx, dFy, sid, sx, sy) -> t = NONE   /* does not authenticate: rejected */
       :: else -> skip
       fi;
       /* Rule D2: a hub frame under the future key: the promotion is persisted first (a dh key moves the mode to dh). */
       if
       :: t != NONE && dF != 0 && sid == dF ->
            promote = true;
            kA = dF; kAx = dFx; kAy = dFy; kF = 0; kFx = 0; kFy = 0;
            kDh = kDh || dFy != 0
       :: else -> skip
       fi;
       dh = dDh || (promote && dFy != 0);
       if
       :: t == REKEY && id == NEWEST(dA, dF) + 1 && (dF == 0 || promote) && !dh ->   /* DK1 (DK12 refuses it in the dh mode) */
            store = true
       :: t == REKEY_DH && id == NEWEST(dA, dF) + 1 && (dF == 0 || promote) ->      /* DK9: draw d, derive, wipe d */
            store = true; dtoks++; ny = dtoks
       :: (t == REKEY || t == REKEY_DH) && dF != 0 && !promote && id == dF && x == dFx &&
          (t == REKEY_DH -> dFy != 0 : dFy == 0) ->                                 /* DK2, DK10: the same offer */
#ifdef DEVICE_FRESH_EPHEMERAL_ON_REPEAT
            /* Broken: a fresh exchange for the repeated REKEY_DH replaces the stored future key. */
            if
            :: t == REKEY_DH -> store = true; dtoks++; ny = dtoks
            :: else -> again = true
            fi
#else
            again = true
#endif
       :: else -> skip          /* DK3, DK4, DK8, DK11, DK12: refused; or nothing to store */
       fi;
       /* Rules D1, D6: the future key (with H and D) is durable before it is acknowledged. */
       if
       :: store ->
#ifndef DEVICE_ACKS_BEFORE_PERSISTING
            kF = id; kFx = x; kFy = ny
#else
            skip
#endif
       :: else -> skip
       fi }
       /* Second step: memory and replies, unless the device crashed or the link died meanwhile. */
       atomic {
         if
         :: de == deviceEpoch ->
              if
              :: promote -> dA = dF; dAx = dFx; dAy = dFy; dF = 0; dFx = 0; dFy = 0; dDh = dDh || dAy != 0
              :: else -> skip
              fi;
              if
              :: store -> dF = id; dFx = x; dFy = ny
              :: else -> skip
              fi;
              if
              :: (store || again) && le == linkEpoch ->   /* sealed under the key it acknowledges, with its share (D7: the stored one) */
                   send(toHub, REKEY_ACK, dF, dFx, dFy, dFy, dF, 0)
              :: else -> skip
              fi
         :: else -> skip
         fi }
#ifdef DEVICE_ACKS_BEFORE_PERSISTING
       /* Broken: the keystore write happens only now. */
       atomic {
         if
         :: store && de == deviceEpoch -> kF = id; kFx = x; kFy = ny
         :: else -> skip
         fi }
#endif
  od
}

active proctype Hub() {
  mtype t;
  byte sid, sx, sy, sh, id, x, he, le;
  bool promote, welcome, confirm;
end_loop:
  do
  :: atomic { toHub?t, sid, sx, sy, sh, id, x ->
       he = hubEpoch; le = linkEpoch;
       promote = false; welcome = false; confirm = false;
       if
       :: !HUB_OPENS(sid, sx, sy, sh) -> t = NONE   /* rejected (dh: no share, or a key its h does not derive) */
       :: else -> skip
       fi;
       if
       :: t == HELLO -> welcome = true; hubSession = true
       :: t == REKEY_ACK && hubSession && id == sid && (id == hA || id == hP) -> confirm = true
       :: else -> skip
       fi;
       /*
        * Rule H2 (HK5; dh: HK8): the first device frame under the pending
        * key: the promotion — the key the frame opened under, so in the dh
        * mode the derived one — is persisted first, erasing h (H5).
        */
       if
       :: (welcome || confirm) && hP != 0 && sid == hP ->
            promote = true;
#if defined(HUB_LAZY_PROMOTION)
            skip
#elif defined(HUB_FORGETS_EPHEMERAL_EARLY)
            bPx = 0   /* Broken: h erased by a commit of its own; the promotion commits in the next step */
#else
            bA = sid; bAx = sx; bAy = sy; bP = 0; bPx = 0; bPdh = false
#endif
       :: else -> skip
       fi }
       /* Second step: memory, then frames under the (new) active key (rule H3). */
       atomic {
         if
         :: he == hubEpoch ->
#ifdef HUB_FORGETS_EPHEMERAL_EARLY
              if
              :: promote -> bA = sid; bAx = sx; bAy = sy; bP = 0; bPx = 0; bPdh = false
              :: else -> skip
              fi;
#endif
              if
              :: promote -> hA = sid; hAx = sx; hAy = sy; hP = 0; hPx = 0; hPdh = false
              :: else -> skip
              fi;
              if
              :: le == linkEpoch && welcome ->
                   send(toDevice, WELCOME, hA, hAx, hAy, 0, 0, 0);
                   if
                   :: hP != 0 -> offer()   /* HK4 */
                   :: else -> skip
                   fi
              :: le == linkEpoch && confirm ->
#ifndef HUB_NO_CONFIRM
                   send(toDevice, CONFIRM, hA, hAx, hAy, 0, 0, 0)
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
         :: promote && he == hubEpoch -> bA = hA; bAx = hAx; bAy = hAy; bP = 0; bPx = 0; bPdh = false
         :: else -> skip
         fi }
#endif
  /* Rule H1: the unchanged offer is repeated (the retry timer fires when nothing is in flight). */
  :: atomic { hubSession && hP != 0 && empty(toDevice) && empty(toHub) -> offer() }
  /* The operator rotates. Rules H1, H4: the pending key (dh: id, h and H) is durable before it is offered. */
  :: atomic { hP == 0 && rotations < MAXROT ->
       he = hubEpoch; le = linkEpoch;
       rotations++;
       gens++;
#ifndef HUB_OFFERS_BEFORE_PERSISTING
       bP = hA + 1; bPdh = hDh;
#ifdef HUB_EPHEMERAL_NOT_PERSISTED
       bPx = (hDh -> 0 : gens)   /* Broken: the record holds the id but not h */
#else
       bPx = gens
#endif
#else
       skip
#endif
     }
     atomic {
       if
       :: he == hubEpoch ->
            hP = hA + 1; hPx = gens; hPdh = hDh;
            if
            :: hubSession && le == linkEpoch -> offer()
            :: else -> skip
            fi
       :: else -> skip
       fi }
#ifdef HUB_OFFERS_BEFORE_PERSISTING
     /* Broken: the database gets the pending key only after it was offered. */
     atomic {
       if
       :: he == hubEpoch && hP != 0 -> bP = hP; bPx = hPx; bPdh = hPdh
       :: else -> skip
       fi }
#endif
#ifdef UPGRADE
  /* The operator moves the device to the dh mode (§11.6: `hub devices set-mode`, one commit); never back. */
  :: atomic { !hDh -> bDh = true; hDh = true }
#endif
#ifdef HUB_REPLACES_PENDING
  /* Broken: an unconfirmed pending key is replaced by a fresh one under the same id. */
  :: atomic { hP != 0 && !replaced ->
       replaced = true;
       gens++;
       bP = hP; bPx = gens; bPdh = hPdh;
       hPx = gens;
       if
       :: hubSession -> offer()
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
       dA = kA; dAx = kAx; dAy = kAy; dF = kF; dFx = kFx; dFy = kFy; dDh = kDh;
       cut() }
  :: atomic { faults < MAXFAULTS ->
       faults++;
       hubEpoch++;
       hA = bA; hAx = bAx; hAy = bAy; hP = bP; hPx = bPx; hPdh = bPdh; hDh = bDh;
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
