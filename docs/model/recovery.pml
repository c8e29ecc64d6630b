/*
 * Recovery after a rollback (docs/PROTOCOL.md §12), modelled for spin
 * (docs/VERIFICATION.md §7.2). A separate model from lockstep.pml: the
 * classic rotation of §8 (rules D1-D3, H1-H3) plus
 * - rollbacks: the hub's database replaced by an earlier durable snapshot
 *   (a backup may be taken at any moment, so any earlier durable state can
 *   be the one restored), the device's keystore replaced by its
 *   provisioning image or by an earlier image (taken at any moment), and,
 *   in the `both` mode, both at once or one after the other;
 * - the recovery handshake of §12.2-12.4 (NO_KEY, RECOVER_INIT,
 *   RECOVER_REPLY, RECOVER_FINISH, RECOVER_RESULT) over the same lossy
 *   connection: rows DS12-DS16, DK14, HS9-HS13, HK9, HK10, rules R1-R6;
 * - an attacker that holds everything in the hub's database (every key,
 *   old ones too) but neither static private key s_h nor s_d. It corrupts
 *   a HELLO in flight, forges NO_KEY (anyone can), replays any recorded
 *   recovery message into the current connection, and forges the others
 *   with its own ephemerals (a tag it cannot compute is a bad tag).
 *
 * Abstractions, each argued in docs/VERIFICATION.md §7.2:
 * - a key is (id, g): g is a token drawn once per key ever made, so one id
 *   naming two keys is the same id with another token. A recovered key's
 *   token is the hub's draw for its RECOVER_REPLY (K_N is derived from the
 *   transcript, which that draw makes unique); a key from a handshake
 *   whose other ephemeral was the attacker's carries the EVIL bit;
 * - a recovery message carries who made it (the honest peer, the
 *   attacker, or a replay from another connection: bound to another Nh)
 *   and whose ephemerals it is bound to (E_d: the device's or the
 *   attacker's; E_h: the hub's or the attacker's). A tag verifies exactly
 *   when its maker holds the keys the derivation needs and the message is
 *   bound to this connection's Nh and this handshake's ephemerals:
 *   tag1 needs ss (s_d or s_h), tag2 es (s_h), tag3 and tag4 the MAC key
 *   m (es and ss, so s_h and s_d, and both ephemerals);
 * - `check` in RECOVER_INIT is the device's newest key (id, g), which the
 *   hub compares with its slots (a PRF of that key: it matches exactly
 *   when the key is the same);
 * - one connection at a time as two FIFO channels; a cut (or a close)
 *   loses what is in flight and the device reconnects with a new HELLO; a
 *   close after a last frame (the hub after RECOVER_RESULT) delivers it;
 * - every handler that persists is two steps (durable, then memory and
 *   replies); a crash or a cut may fall between them; a crashed side
 *   restarts from exactly what it persisted;
 * - the hub's per-device limit: at most MAXREC accepted recoveries per
 *   window, counted in its database in the commit of HK9 (so only after
 *   tag3); a Window process ends the window at any moment. The device's
 *   limit is a delay (one attempt per connection, spaced by a backoff):
 *   the model lets the device reconnect at any later moment.
 *
 * Rollback modes (-D): HUB_ROLLBACK, DEVICE_ROLLBACK, BOTH_ROLLBACK (each
 * side's rollbacks, and both at once).
 *
 * Checked (tools/verify/spin-recovery.ts):
 * - AGREE: nothing but a rollback breaks agreement. A ghost `needRecovery`
 *   is set by every rollback and cleared when S1 and S2 hold again (every
 *   pairing of live and durable views) or when the device accepts a
 *   recovery (DK14) with no rollback since. While it is clear, S1 holds
 *   between every pairing, and whatever the hub seals (WELCOME, REKEY,
 *   CONFIRM) is under a key the device holds in both its views (S2 where it
 *   matters: between a recovery and the promotion of N the hub's active key
 *   may be one the device never had, and it seals nothing under it).
 * - OFFERS: the device never refuses an authenticated REKEY (DK3, DK4,
 *   DK8): §12.4 says compliant peers never produce one, even after
 *   rollbacks (finding F4: not so after two).
 * - IDS: the device never stores an id it holds (within one life); and,
 *   in the HUB_ROLLBACK and DEVICE_ROLLBACK modes, never an id it held in
 *   an earlier life with other bytes (ghost devSeen). The hub never makes
 *   a key under an id not above every id it holds (§5).
 * - AUTH: no side ever holds a key from a handshake with the attacker.
 * - end states: every terminal state in sync; no invalid end states.
 * - liveness (-DLIVENESS): ltl `converges` (<>[] in sync) under weak
 *   fairness, once faults, rollbacks and attacks stop.
 *
 * Broken variants (-D), docs/VERIFICATION.md §7.2:
 *   RECOVERY_REUSES_CURRENT_ID      N = the device's newest id, accepted by the device (R3)
 *   RECOVERY_ID_FROM_DEVICE_ONLY    N = the device's reported id + 1, the hub's own ids ignored (R3)
 *   DEVICE_SKIPS_HUB_STATIC_CHECK   the device verifies tag2/tag4 without the hub's static key (es, ss)
 *   HUB_SKIPS_DEVICE_STATIC_CHECK   the hub verifies tag1/tag3 without the device's static key: it completes on a claim it cannot verify
 *   DEVICE_USES_RESULT_BEFORE_PERSISTING  DK14's steps swapped (R2)
 *   HUB_ANSWERS_BEFORE_PERSISTING   HK9's steps swapped: RESULT ACCEPTED before the pending N is durable (R2)
 *   DEVICE_STORES_ON_REPLY          the device stores N on RECOVER_REPLY, before tag4 (R1)
 *   HUB_STORES_ON_INIT              the hub stores N on RECOVER_INIT, before tag3 (R1; refuted with INIT_FORGER)
 *   HUB_IGNORES_CHECK               the hub never answers IN_SYNC (R4)
 * Attacker capability: INIT_FORGER — it also holds s_h, and uses it only to
 * forge RECOVER_INIT to the hub (the threat R1's "nothing before tag3"
 * exists for; with s_h it could impersonate the hub to devices anyway).
 */

#ifndef MAXROT
#define MAXROT 1        /* rotations the operator asks for */
#endif
#ifndef MAXFAULTS
#define MAXFAULTS 2     /* cuts and crashes (no rollback) */
#endif
#ifndef MAXRB
#define MAXRB 1         /* rollbacks */
#endif
#ifndef MAXATT
#define MAXATT 1        /* attacker actions */
#endif
#ifndef MAXREC
#define MAXREC 1        /* accepted recoveries per window, per device, on the hub */
#endif
#define MAXID 9         /* ids stay at or below (asserted: a bound too small shows as an error) */
#define CHAN_SIZE 4
#define EVIL 128        /* token bit: the key comes from a handshake with the attacker */

#if !defined(HUB_ROLLBACK) && !defined(DEVICE_ROLLBACK) && !defined(BOTH_ROLLBACK)
#define HUB_ROLLBACK
#endif
#if defined(BOTH_ROLLBACK)
#define HUB_RB 1
#define DEV_RB 1
#elif defined(HUB_ROLLBACK)
#define HUB_RB 1
#define DEV_RB 0
#define CROSS_LIFE_IDS 1
#else
#define HUB_RB 0
#define DEV_RB 1
#define CROSS_LIFE_IDS 1
#endif
/* Forced on (-DCROSS_LIFE_IDS_ANYWAY) in the both mode: §12.5 says it fails there. */
#ifdef CROSS_LIFE_IDS_ANYWAY
#define CROSS_LIFE_IDS 1
#endif

mtype = { HELLO, WELCOME, REKEY, REKEY_ACK, CONFIRM, NO_KEY, INIT, REPLY, FINISH, RESULT };

/*
 * Fields after the type, a b c d e:
 *   HELLO, WELCOME, REKEY_ACK, CONFIRM  a b = the key sealed under (a = 0: garbage)
 *   REKEY      a b sealed under, c d the new key
 *   INIT       a b the check (the device's newest key), e maker
 *   REPLY      a E_d's owner, c N, d the key token, e maker (= E_h's owner)
 *   FINISH     a E_d's owner, b E_h's owner, e maker
 *   RESULT     a E_d's owner, b E_h's owner, c status, e maker
 */
chan toDevice = [CHAN_SIZE] of { mtype, byte, byte, byte, byte, byte };
chan toHub = [CHAN_SIZE] of { mtype, byte, byte, byte, byte, byte };

/* makers, owners */
#define HONEST 0
#define ATTACKER 1
#define REPLAYED 2      /* recorded in another connection: bound to another Nh */
/* RECOVER_RESULT status */
#define ACCEPTED 0
#define IN_SYNC 1
#define RATE_LIMITED 4
/* connection states */
#define D_OFFLINE 0
#define D_AWAIT_WELCOME 1
#define D_ESTABLISHED 2
#define D_REC_SENT 3
#define D_REC_FINISHED 4
#define H_AWAIT_HELLO 0
#define H_ESTABLISHED 1
#define H_AWAIT_INIT 2
#define H_AWAIT_FINISH 3
#define H_CLOSED 4

/* Device: live slots, keystore, its earlier image; the handshake's RECOVER_REPLY. */
byte dA = 1, dAg = 1, dF = 0, dFg = 0;
byte kA = 1, kAg = 1, kF = 0, kFg = 0;
byte iA = 1, iAg = 1, iF = 0, iFg = 0;
byte dConn = D_OFFLINE;
byte dRN = 0, dRg = 0, dReh = 0;
/* Hub: live slots, database, backup; the handshake: N, token, E_d's owner, check matched; the count. */
byte hA = 1, hAg = 1, hP = 0, hPg = 0;
byte bA = 1, bAg = 1, bP = 0, bPg = 0;
byte sA = 1, sAg = 1, sP = 0, sPg = 0;
byte hConn = H_AWAIT_HELLO;
byte hRN = 0, hRg = 0, hRed = 0;
bool hRsync = false;
byte bCount = 0;

byte gens = 1;            /* key tokens drawn */
byte rotations = 0, faults = 0, rollbacks = 0, attacks = 0;
bool faultsOver = false, attackOver = false;
/*
 * A handler's second step is void after a crash of its side (dOk, hOk) or
 * a cut (dLink, hLink): set by its first step, cleared by the fault and
 * at its end (flags, not counters, so the state space stays finite).
 */
bool dOk = false, dLink = false, hOk = false, hLink = false;
/* The key of this connection's handshake, named (a fresh token) where it first lands; 0 = not yet. */
byte hsTok = 0;
#ifdef DEVICE_USES_RESULT_BEFORE_PERSISTING
bool lazyWrite = false;
byte lazyN = 0, lazyG = 0;
#endif
bool needHello = true;
bit tick;
/* Ghosts: a rollback is not yet repaired; the token the device ever held under each id. */
bool needRecovery = false;
byte devSeen[MAXID + 1];
bool offerRefused = false;
bool hBusy = false;       /* the hub is between the two steps of a handler */

/* S2 where it matters: the hub seals only under a key the device holds (every view), unless a rollback is unrepaired. */
#define HUB_SEALS(a, ag) \
  assert(needRecovery || (DEV_HOLDS(dA, dAg, dF, dFg, a, ag) && DEV_HOLDS(kA, kAg, kF, kFg, a, ag)))

#define MAX2(x, y) (x > y -> x : y)
#define NEWEST_ID  (dF != 0 -> dF : dA)
#define NEWEST_G   (dF != 0 -> dFg : dAg)

#define DEV_HOLDS(a, ag, f, fg, i, g) ((i == a && g == ag) || (f != 0 && i == f && g == fg))
#define HUB_ACCEPTS(A, Ag, P, Pg, i, g) ((i == A && g == Ag) || (P != 0 && i == P && g == Pg))
#define S1(a, ag, f, fg, A, Ag, P, Pg) HUB_ACCEPTS(A, Ag, P, Pg, (f != 0 -> f : a), (f != 0 -> fg : ag))
#define S2(a, ag, f, fg, A, Ag) DEV_HOLDS(a, ag, f, fg, A, Ag)
#define S1ALL \
  (S1(dA, dAg, dF, dFg, hA, hAg, hP, hPg) && S1(kA, kAg, kF, kFg, bA, bAg, bP, bPg) && \
   S1(dA, dAg, dF, dFg, bA, bAg, bP, bPg) && S1(kA, kAg, kF, kFg, hA, hAg, hP, hPg))
#define S2ALL \
  (S2(dA, dAg, dF, dFg, hA, hAg) && S2(kA, kAg, kF, kFg, bA, bAg) && \
   S2(dA, dAg, dF, dFg, bA, bAg) && S2(kA, kAg, kF, kFg, hA, hAg))
#define EVIL_HELD \
  ((dAg & EVIL) || (dFg & EVIL) || (kAg & EVIL) || (kFg & EVIL) || \
   (hAg & EVIL) || (hPg & EVIL) || (bAg & EVIL) || (bPg & EVIL))
#define SYNCED \
  (dA == hA && dAg == hAg && dF == 0 && hP == 0 && kA == dA && kAg == dAg && kF == 0 && \
   bA == hA && bAg == hAg && bP == 0 && rotations == MAXROT)

#define send(ch, t, a, b, c, d, e) assert(nfull(ch)); ch!t, a, b, c, d, e

/* The device stores (i, g) in its keystore: the id rules it must never break. */
inline deviceStores(i, g) {
  assert(i > NEWEST_ID && i <= MAXID);                 /* IDS: not an id it holds */
#ifdef CROSS_LIFE_IDS
  assert(devSeen[i] == 0 || devSeen[i] == g);          /* IDS: not an id it held in an earlier life with other bytes */
#endif
  devSeen[i] = g
}

/*
 * Finding F4 (docs/VERIFICATION.md §7.2): §12 as written lets a recovery
 * leave the hub with a pending N > A + 1 while the device, after a further
 * rollback, seals under A; the hub then offers N and the device refuses it
 * for ever (DK8). FIX_RECOVERED_PENDING is the proposed amendment: a HELLO
 * authenticated under A while P is not A + 1 (the device, sealing under A,
 * holds no future key, D3) is answered like a failing one (HS9), and its
 * `check` under A is not IN_SYNC, so a new recovery replaces P (R4 allows
 * it: the device does not seal with P).
 */
#ifdef FIX_RECOVERED_PENDING
#define UNOFFERABLE(i, g) (i == hA && g == hAg && hP != 0 && hP != hA + 1)
#else
#define UNOFFERABLE(i, g) false
#endif

/* The first side to land this handshake's key names it. */
inline nameHandshakeKey() {
  if
  :: hsTok == 0 -> gens++; hsTok = gens
  :: else -> skip
  fi
}

/* The hub makes a key under id i: within the model's bound (above every id it holds is the recheck, R3). */
#define HUB_NEW_ID_OK(i) (i <= MAXID)

/* Both streams lose what is in flight; both ends start a new connection. */
inline cut() {
  do
  :: toDevice?_, _, _, _, _, _
  :: toHub?_, _, _, _, _, _
  :: empty(toDevice) && empty(toHub) -> break
  od;
  dLink = false; hLink = false; hsTok = 0;
  needHello = true;
  dConn = D_OFFLINE; dRN = 0; dRg = 0; dReh = 0;
  hConn = H_AWAIT_HELLO; hRN = 0; hRg = 0; hRed = 0; hRsync = false
}

inline deviceRestart() {
  dOk = false;
#ifdef DEVICE_USES_RESULT_BEFORE_PERSISTING
  lazyWrite = false; lazyN = 0; lazyG = 0;
#endif
  dA = kA; dAg = kAg; dF = kF; dFg = kFg
}

inline hubRestart() {
  hOk = false;
  hA = bA; hAg = bAg; hP = bP; hPg = bPg
}

active proctype Device() {
  mtype t;
  byte a, b, c, d, e, sN, sG, rb;
  bool promote, store, again, recovered, cutNow;
end_loop:
  do
  :: atomic { needHello ->
       needHello = false;
       dConn = D_AWAIT_WELCOME;
       send(toHub, HELLO, NEWEST_ID, NEWEST_G, 0, 0, 0) }   /* D3: sealed under the newest key */
  /* The handshake timer: nothing in flight, nothing will come. */
  :: atomic { empty(toDevice) && empty(toHub) && !needHello && !hBusy &&
       !(dConn == D_ESTABLISHED && hConn == H_ESTABLISHED) -> cut() }
  :: atomic { toDevice?t, a, b, c, d, e ->
       dOk = true; dLink = true;
       promote = false; store = false; again = false; recovered = false; cutNow = false;
       sN = 0; sG = 0;
       if
       /* DS12: NO_KEY, unauthenticated: it only starts a handshake (draw e_d, RECOVER_INIT with check). */
       :: t == NO_KEY && dConn == D_AWAIT_WELCOME ->
            dConn = D_REC_SENT;
            send(toHub, INIT, NEWEST_ID, NEWEST_G, 0, 0, HONEST)
       /* DS13 / DS14: tag2 needs s_h and this handshake's E_d; N above every id held (R3). */
       :: t == REPLY && dConn == D_REC_SENT ->
            if
#ifdef DEVICE_SKIPS_HUB_STATIC_CHECK
            :: e != REPLAYED && a == HONEST &&
#else
            :: e == HONEST && a == HONEST &&
#endif
#ifdef RECOVERY_REUSES_CURRENT_ID
               c >= NEWEST_ID && c <= MAXID ->
#else
               c > NEWEST_ID && c <= MAXID ->
#endif
                 dRN = c; dRg = d; dReh = e;
#ifdef DEVICE_STORES_ON_REPLY
                 /* Broken (not R1): the recovered key is stored before tag4. */
                 if
                 :: d == 0 -> nameHandshakeKey(); dRg = hsTok
                 :: else -> skip
                 fi;
                 store = true; sN = dRN; sG = dRg;
                 deviceStores(sN, sG); kF = sN; kFg = sG
#else
                 dConn = D_REC_FINISHED;
                 send(toHub, FINISH, HONEST, dReh, 0, 0, HONEST)
#endif
            :: else -> cutNow = true
            fi
       /* DS15: tag4 under this handshake's m (both ephemerals, both statics). */
       :: t == RESULT && dConn == D_REC_FINISHED ->
            if
#ifdef DEVICE_SKIPS_HUB_STATIC_CHECK
            :: e != REPLAYED && a == HONEST && b == dReh ->
#else
            :: e == HONEST && a == HONEST && b == dReh ->
#endif
                 if
                 :: c == ACCEPTED ->   /* DK14: persist the future N, replacing F (R2) */
                      if
                      :: dRg == 0 -> nameHandshakeKey(); dRg = hsTok
                      :: else -> skip
                      fi;
                      recovered = true; sN = dRN; sG = dRg; rb = rollbacks;
#if !defined(DEVICE_USES_RESULT_BEFORE_PERSISTING) && !defined(DEVICE_STORES_ON_REPLY)
                      deviceStores(sN, sG); kF = sN; kFg = sG
#endif
                      skip
                 :: else -> cutNow = true   /* IN_SYNC, RATE_LIMITED: close, try again later */
                 fi
            :: else -> cutNow = true
            fi
       /* DS16: anything else during a handshake closes it; nothing changes. */
       :: (dConn == D_REC_SENT || dConn == D_REC_FINISHED) && !(t == REPLY && dConn == D_REC_SENT) &&
          !(t == RESULT && dConn == D_REC_FINISHED) -> cutNow = true
       /* Sealed hub frames: must authenticate under a key the device holds. */
       :: (t == WELCOME || t == REKEY || t == CONFIRM) && (dConn == D_AWAIT_WELCOME || dConn == D_ESTABLISHED) &&
          DEV_HOLDS(dA, dAg, dF, dFg, a, b) ->
            if
            :: t == WELCOME -> dConn = D_ESTABLISHED
            :: else -> skip
            fi;
            /* D2 / DK5: a hub frame under F promotes it, durably first. */
            if
            :: dF != 0 && a == dF -> promote = true; kA = dF; kAg = dFg; kF = 0; kFg = 0
            :: else -> skip
            fi;
            if
            :: t == REKEY && dConn == D_ESTABLISHED && c == NEWEST_ID + 1 && (dF == 0 || promote) ->
                 store = true; sN = c; sG = d;            /* DK1, D1: durable before acknowledged */
                 deviceStores(sN, sG); kF = sN; kFg = sG
            :: t == REKEY && dConn == D_ESTABLISHED && dF != 0 && !promote && c == dF && d == dFg ->
                 again = true                             /* DK2 */
            :: t == REKEY && dConn == D_ESTABLISHED && !(c == NEWEST_ID + 1 && (dF == 0 || promote)) &&
               !(dF != 0 && !promote && c == dF && d == dFg) ->
                 /* DK3, DK4, DK8: refused, no change. §12.4 says compliant peers never get here, even after rollbacks. */
                 offerRefused = true
            :: else -> skip
            fi
       :: else -> skip   /* DS9: rejected or no row: nothing changes */
       fi;
       if
       :: cutNow -> cut()
       :: else -> skip
       fi }
       /* Second step: memory and replies, unless the device crashed or the link died meanwhile. */
       atomic {
         if
         :: dOk && (promote || store || again || recovered) ->
              if
              :: promote -> dA = dF; dAg = dFg; dF = 0; dFg = 0
              :: else -> skip
              fi;
              if
              :: store -> dF = sN; dFg = sG
              :: else -> skip
              fi;
              if
              :: recovered ->
                   dF = sN; dFg = sG;
                   if
                   :: rb == rollbacks -> needRecovery = false   /* the device has completed the recovery */
                   :: else -> skip                              /* unless a rollback fell in between */
                   fi;
                   if
                   :: dLink -> cut()   /* close and reconnect at once: HELLO under N (DK6) */
                   :: else -> skip
                   fi
              :: (store || again) && dLink && dConn == D_ESTABLISHED ->
                   send(toHub, REKEY_ACK, dF, dFg, 0, 0, 0)
#ifdef DEVICE_STORES_ON_REPLY
              :: store && dLink && dConn == D_REC_SENT ->
                   dConn = D_REC_FINISHED;
                   send(toHub, FINISH, HONEST, dReh, 0, 0, HONEST)
#endif
              :: else -> skip
              fi;
#ifdef DEVICE_USES_RESULT_BEFORE_PERSISTING
              if
              :: recovered -> lazyWrite = true; lazyN = sN; lazyG = sG   /* Broken: written back later */
              :: else -> skip
              fi;
#endif
              skip
         :: else -> skip
         fi;
         dOk = false; dLink = false;
         promote = false; store = false; again = false; recovered = false; cutNow = false;
         t = HELLO; a = 0; b = 0; c = 0; d = 0; e = 0; sN = 0; sG = 0; rb = 0 }
#ifdef DEVICE_USES_RESULT_BEFORE_PERSISTING
  /* Broken (not R2): the keystore gets N at some later moment; the device already seals under it. */
  :: atomic { lazyWrite -> deviceStores(lazyN, lazyG); kF = lazyN; kFg = lazyG; lazyWrite = false; lazyN = 0; lazyG = 0 }
#endif
  od
}

active proctype Hub() {
  mtype t;
  byte a, b, c, d, e, n, rN, rG;
  bool promote, welcome, confirm, accept, stored;
end_loop:
  do
  :: atomic { toHub?t, a, b, c, d, e ->
       hOk = true; hLink = true;
       promote = false; welcome = false; confirm = false; accept = false; stored = false;
       if
       :: t == HELLO && hConn == H_AWAIT_HELLO ->
            if
            :: HUB_ACCEPTS(hA, hAg, hP, hPg, a, b) && !UNOFFERABLE(a, b) ->
                 welcome = true; hConn = H_ESTABLISHED
            :: else ->
                 /* HS9: unknown id or AUTH_FAILED: NO_KEY (recovery auto). */
                 hConn = H_AWAIT_INIT;
                 send(toDevice, NO_KEY, 0, 0, 0, 0, 0)
            fi
       :: t == REKEY_ACK && hConn == H_ESTABLISHED && HUB_ACCEPTS(hA, hAg, hP, hPg, a, b) -> confirm = true
       /* HS10: tag1 (ss: s_d or s_h) bound to Nh; nothing stored, nothing charged. */
       :: t == INIT && hConn == H_AWAIT_INIT ->
            if
#ifdef HUB_SKIPS_DEVICE_STATIC_CHECK
            :: e != REPLAYED ->
#else
            :: e == HONEST ->
#endif
                 hRed = e;
#if defined(RECOVERY_REUSES_CURRENT_ID)
                 hRN = (a != 0 -> a : MAX2(hA, hP) + 1);
#elif defined(RECOVERY_ID_FROM_DEVICE_ONLY)
                 hRN = a + 1;
#else
                 hRN = MAX2(MAX2(hA, hP), a) + 1;
#endif
#ifdef HUB_IGNORES_CHECK
                 hRsync = false;
#else
                 hRsync = HUB_ACCEPTS(hA, hAg, hP, hPg, a, b) && !UNOFFERABLE(a, b);
#endif
                 hConn = H_AWAIT_FINISH;
#ifdef HUB_STORES_ON_INIT
                 /* Broken (not R1): the pending N is stored on RECOVER_INIT, before tag3. */
                 if
                 :: !hRsync && bCount < MAXREC && hRN > MAX2(hA, hP) ->
                      assert(HUB_NEW_ID_OK(hRN));
                      nameHandshakeKey(); hRg = hsTok | (hRed == ATTACKER -> EVIL : 0);
                      rN = hRN; rG = hRg;
                      stored = true; bP = rN; bPg = rG; bCount++
                 :: else -> skip
                 fi;
#endif
                 send(toDevice, REPLY, hRed, 0, hRN, 0, HONEST)   /* d = 0: the transcript's key */
            :: else -> cut()
            fi
       /* HS11, HS12: tag3 proves s_d and both ephemerals of this handshake; then the decision. */
       :: t == FINISH && hConn == H_AWAIT_FINISH ->
            if
#ifdef HUB_SKIPS_DEVICE_STATIC_CHECK
            :: e != REPLAYED && a == hRed && b == HONEST ->
#else
            :: e == HONEST && a == hRed && b == HONEST ->
#endif
                 if
                 :: hRsync -> hConn = H_CLOSED; send(toDevice, RESULT, hRed, HONEST, IN_SYNC, 0, HONEST)
#ifdef HUB_STORES_ON_INIT
                 :: !hRsync && (bP != hRN || bPg != hRg) -> hConn = H_CLOSED; send(toDevice, RESULT, hRed, HONEST, RATE_LIMITED, 0, HONEST)
                 :: !hRsync && bP == hRN && bPg == hRg -> accept = true; rN = hRN; rG = hRg
#else
#ifdef RECOVERY_ID_FROM_DEVICE_ONLY
#define RECHECK true   /* Broken: the hub's own ids are ignored, at the decision too */
#else
#define RECHECK (hRN > MAX2(hA, hP))
#endif
                 :: !hRsync && (bCount >= MAXREC || !RECHECK) ->
                      /* the limit; or the scheduler moved past N (R3's recheck): not now */
                      hConn = H_CLOSED; send(toDevice, RESULT, hRed, HONEST, RATE_LIMITED, 0, HONEST)
                 :: !hRsync && bCount < MAXREC && RECHECK ->
                      accept = true;
                      assert(HUB_NEW_ID_OK(hRN));
                      nameHandshakeKey(); hRg = hsTok | (hRed == ATTACKER -> EVIL : 0);
                      rN = hRN; rG = hRg;
#ifndef HUB_ANSWERS_BEFORE_PERSISTING
                      stored = true; bP = rN; bPg = rG; bCount++   /* HK9, R2: durable first, with the count */
#endif
#endif
                 fi
            :: else -> cut()
            fi
       /* HS13: anything else during a handshake closes it. */
       :: (hConn == H_AWAIT_INIT || hConn == H_AWAIT_FINISH) &&
          !(t == INIT && hConn == H_AWAIT_INIT) && !(t == FINISH && hConn == H_AWAIT_FINISH) -> cut()
       :: else -> skip   /* HS6, or rejected: nothing changes */
       fi;
       /* H2 / HK5, HK10: the first frame under the pending key: the promotion is persisted first. */
       if
       :: (welcome || confirm) && hP != 0 && a == hP -> promote = true; bA = a; bAg = b; bP = 0; bPg = 0
       :: else -> skip
       fi;
       hBusy = true }
       atomic {
#ifndef HUB_ANSWERS_BEFORE_PERSISTING
         hBusy = false;
#endif
         if
         :: hOk ->
              if
              :: promote -> hA = a; hAg = b; hP = 0; hPg = 0
              :: else -> skip
              fi;
              if
              :: accept || stored -> hP = rN; hPg = rG
              :: else -> skip
              fi;
              if
              :: hLink && welcome ->
                   HUB_SEALS(hA, hAg);
                   send(toDevice, WELCOME, hA, hAg, 0, 0, 0);
                   if
                   :: hP != 0 -> send(toDevice, REKEY, hA, hAg, hP, hPg, 0)   /* HK4 */
                   :: else -> skip
                   fi
              :: hLink && confirm -> HUB_SEALS(hA, hAg); send(toDevice, CONFIRM, hA, hAg, 0, 0, 0)
              :: hLink && accept ->
                   hConn = H_CLOSED;
                   send(toDevice, RESULT, hRed, HONEST, ACCEPTED, 0, HONEST)
              :: else -> skip
              fi
         :: else -> skip
         fi;
#ifndef HUB_ANSWERS_BEFORE_PERSISTING
         hOk = false; hLink = false; rN = 0; rG = 0; promote = false; accept = false;
#endif
         t = HELLO; a = 0; b = 0; c = 0; d = 0; e = 0;
         welcome = false; confirm = false; stored = false }
#ifdef HUB_ANSWERS_BEFORE_PERSISTING
       /* Broken (not R2): the database gets the pending N only after RECOVER_RESULT ACCEPTED left. */
       atomic {
         if
         :: accept && hOk -> bP = rN; bPg = rG; bCount++
         :: else -> skip
         fi;
         hBusy = false; hOk = false; hLink = false; rN = 0; rG = 0; promote = false; accept = false }
#endif
  /* H1: the unchanged offer is repeated. */
  :: atomic { hConn == H_ESTABLISHED && hP != 0 && empty(toDevice) && empty(toHub) && !hBusy ->
       HUB_SEALS(hA, hAg);
       send(toDevice, REKEY, hA, hAg, hP, hPg, 0) }
  /* HK1, H1: the operator rotates; durable before offered (also while a recovery runs: R3's recheck). */
  :: atomic { hP == 0 && rotations < MAXROT ->
       hOk = true; hLink = true;
       rotations++; gens++;
       n = hA + 1;
       assert(HUB_NEW_ID_OK(n));
       bP = n; bPg = gens;
       hBusy = true }
     atomic {
       hBusy = false;
       if
       :: hOk ->
            hP = bP; hPg = bPg;
            if
            :: hConn == H_ESTABLISHED && hLink -> HUB_SEALS(hA, hAg); send(toDevice, REKEY, hA, hAg, hP, hPg, 0)
            :: else -> skip
            fi
       :: else -> skip
       fi;
       hOk = false; hLink = false; n = 0 }
  od
}

/* The hub's rate-limit window ends (its own process, so weak fairness lets it end). */
active proctype Window() {
end_loop:
  do
  :: atomic { bCount > 0 -> bCount = 0 }
  od
}

/* Cuts, crashes and rollbacks; a crashed or rolled-back side restarts from its durable state. */
active proctype Faults() {
end_loop:
  do
  :: atomic { faults < MAXFAULTS -> faults++; cut() }
  :: atomic { faults < MAXFAULTS -> faults++; deviceRestart(); cut() }
  :: atomic { faults < MAXFAULTS -> faults++; hubRestart(); cut() }
#if HUB_RB
  /* A backup of the database is taken. */
  :: atomic { !faultsOver && (sA != bA || sAg != bAg || sP != bP || sPg != bPg) ->
       sA = bA; sAg = bAg; sP = bP; sPg = bPg }
  /* The database is restored from it. */
  :: atomic { rollbacks < MAXRB ->
       rollbacks++; needRecovery = true;
       bA = sA; bAg = sAg; bP = sP; bPg = sPg;
       hubRestart(); cut() }
#endif
#if DEV_RB
  /* An image of the keystore is taken. */
  :: atomic { !faultsOver && (iA != kA || iAg != kAg || iF != kF || iFg != kFg) ->
       iA = kA; iAg = kAg; iF = kF; iFg = kFg }
  /* The device is re-flashed with its provisioning image, or with the earlier image. */
  :: atomic { rollbacks < MAXRB ->
       rollbacks++; needRecovery = true;
       kA = 1; kAg = 1; kF = 0; kFg = 0;
       deviceRestart(); cut() }
  :: atomic { rollbacks < MAXRB ->
       rollbacks++; needRecovery = true;
       kA = iA; kAg = iAg; kF = iF; kFg = iFg;
       deviceRestart(); cut() }
#endif
#if HUB_RB && DEV_RB
  /* Both at once: the hub restored and the device re-flashed with its earlier image. */
  :: atomic { rollbacks < MAXRB ->
       rollbacks++; needRecovery = true;
       bA = sA; bAg = sAg; bP = sP; bPg = sPg;
       kA = iA; kAg = iAg; kF = iF; kFg = iFg;
       hubRestart(); deviceRestart(); cut() }
#endif
  :: atomic { !faultsOver -> faultsOver = true; break }
  od
}

/*
 * The attacker: the hub's database (every key) but neither s_h nor s_d. A
 * forged frame races ahead of the honest one (the channel it enters is
 * empty). What it forges, it makes with its own ephemerals; what it
 * replays, is bound to another connection.
 */
active proctype Attacker() {
  byte m;
end_loop:
  do
  /* Corrupt the HELLO in flight: the hub's check fails (HS9). */
  :: atomic { attacks < MAXATT && len(toHub) == 1 && toHub?[HELLO, _, _, _, _, _] ->
       attacks++; toHub?_, _, _, _, _, _; toHub!HELLO, 0, 0, 0, 0, 0 }
  /* Forge NO_KEY (no tag: anyone can). */
  :: atomic { attacks < MAXATT && dConn == D_AWAIT_WELCOME && empty(toDevice) ->
       attacks++; send(toDevice, NO_KEY, 0, 0, 0, 0, 0) }
  /* An impostor hub: RECOVER_REPLY and RECOVER_RESULT with its own E_h, or replayed ones. */
  :: atomic { attacks < MAXATT && dConn == D_REC_SENT && empty(toDevice) ->
       attacks++;
       if
       :: m = ATTACKER
       :: m = REPLAYED
       fi;
       send(toDevice, REPLY, HONEST, 0, NEWEST_ID + 1, EVIL | attacks, m) }
  :: atomic { attacks < MAXATT && dConn == D_REC_FINISHED && empty(toDevice) ->
       attacks++;
       if
       :: m = ATTACKER
       :: m = REPLAYED
       fi;
       send(toDevice, RESULT, HONEST, dReh, ACCEPTED, 0, m) }
  /* An impostor device: RECOVER_INIT (a check under a key of the database, or none) and RECOVER_FINISH. */
  :: atomic { attacks < MAXATT && hConn == H_AWAIT_INIT && empty(toHub) ->
       attacks++;
       if
       :: m = ATTACKER
       :: m = REPLAYED
#ifdef INIT_FORGER
       :: m = HONEST   /* with s_h, tag1 verifies (a KK first message) */
#endif
       fi;
       if
       :: send(toHub, INIT, 0, 0, 0, 0, m)
       :: send(toHub, INIT, hA, hAg, 0, 0, m)
       fi }
  :: atomic { attacks < MAXATT && hConn == H_AWAIT_FINISH && empty(toHub) ->
       attacks++;
       if
       :: m = ATTACKER
       :: m = REPLAYED
       fi;
       send(toHub, FINISH, hRed, HONEST, 0, 0, m) }   /* bound to the hub's E_h and the INIT's E_d */
  :: atomic { !attackOver -> attackOver = true; break }
  od
}

#ifndef LIVENESS
active proctype Monitor() {
end_loop:
  do
  :: atomic { needRecovery && S1ALL && S2ALL -> needRecovery = false }
  /* In this order: the first that fails names the failure. */
  :: atomic { EVIL_HELD || !(needRecovery || S1ALL) || offerRefused ->
       assert(!EVIL_HELD);
       assert(needRecovery || S1ALL);
       assert(!offerRefused) }
  :: timeout -> assert(SYNCED)
  od
}
#endif

#ifdef LIVENESS
active proctype Time() {
end_loop:
  do
  :: tick = 1 - tick
  od
}
#endif

ltl converges { <> [] SYNCED }
