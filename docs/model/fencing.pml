/*
 * Two hub instances sharing one database, one device (docs/HUB.md §13.2).
 * A separate model from lockstep.pml: that one has one hub and every
 * fault of the link, the device's flash and the hub process; this one has
 * one device row, two instances with their own cached view of it, and a
 * write of each instance that may land in the database at any later
 * moment (an instance paused by SIGSTOP, partitioned or slow between
 * deciding a write and the database applying it). Key bytes are modelled
 * by unique numbers (a fresh key per rotation).
 *
 * The fencing rule: a HELLO takes the lease (epoch + 1) and reloads the row
 * in one step; every write carries the (epoch, row version) its instance
 * holds and applies only if both are still current (plus the key-id
 * conditions of the SQLite store). An instance whose write did not apply
 * closes the device's connection and stops acting (HK7).
 *
 * Checked in every state: the device's sealing key (future if any, else
 * active) is a key the database accepts with the same bytes, and the
 * database's active key is one the device holds (docs/PROTOCOL.md §9).
 *
 * Variants (-D...), each must be refuted by spin (tools/verify/spin-fencing.ts):
 *   NO_FENCE      writes are unconditional (no epoch, no row version, no key-id check)
 *   EPOCH_ONLY_NO_RELOAD  the lease takes the epoch but keeps the cached row (no reload, no row version)
 */
#ifndef MAXKEYS
#define MAXKEYS 4
#endif
#ifndef MAXLEASES
#define MAXLEASES 3
#endif
#define NONE 255

/* the database row */
byte da_id = 1; byte da_k = 1; byte dp_id = 0; byte dp_k = 0;
byte epoch = 0; byte ver = 0;
/* the device's flash */
byte va_id = 1; byte va_k = 1; byte vf_id = 0; byte vf_k = 0;
/* the instance the device's current connection goes to */
byte conn = NONE;
byte leases = 0;
byte nextKey = 2;

/* each instance: its lease, its cached row, one write in flight, a CONFIRM to send */
bool leased[2];
byte c_ep[2]; byte c_ver[2];
byte ca_id[2]; byte ca_k[2]; byte cp_id[2]; byte cp_k[2];
byte w_kind[2]; /* 0 none, 1 storePending, 2 promote */
byte w_id[2]; byte w_k[2]; byte w_ep[2]; byte w_ver[2];
bool confirmDue[2];

inline check() {
  if
  :: vf_id != 0 -> assert((vf_id == da_id && vf_k == da_k) || (vf_id == dp_id && vf_k == dp_k))
  :: else -> assert((va_id == da_id && va_k == da_k) || (va_id == dp_id && va_k == dp_k))
  fi;
  assert((da_id == va_id && da_k == va_k) || (da_id == vf_id && da_k == vf_k))
}

/* A HELLO of the device reaches instance i and authenticates: the lease. */
inline lease(i) {
  leases++;
  epoch++;
  c_ep[i] = epoch;
#ifndef EPOCH_ONLY_NO_RELOAD
  c_ver[i] = ver;
  ca_id[i] = da_id; ca_k[i] = da_k; cp_id[i] = dp_id; cp_k[i] = dp_k;
#endif
  leased[i] = true;
  confirmDue[i] = false;
  conn = i;
  /* WELCOME under the instance's active key: a device whose future key it is promotes (D2) */
  if
  :: vf_id != 0 && vf_id == ca_id[i] && vf_k == ca_k[i] -> va_id = vf_id; va_k = vf_k; vf_id = 0; vf_k = 0
  :: else -> skip
  fi
}

/* HK1: instance i decides a rotation from its cached row; the write is in flight. */
inline decide(i) {
  w_kind[i] = 1; w_id[i] = ca_id[i] + 1; w_k[i] = nextKey; nextKey++;
  w_ep[i] = c_ep[i]; w_ver[i] = c_ver[i]
}

/* The write of instance i reaches the database (at any later moment). */
inline land(i) {
  bool applied;
#ifdef NO_FENCE
  applied = (w_kind[i] == 1 || dp_id != 0);
#else
#ifdef EPOCH_ONLY_NO_RELOAD
  applied = (epoch == w_ep[i]);
#else
  applied = (epoch == w_ep[i] && ver == w_ver[i] &&
             ((w_kind[i] == 1 && da_id + 1 == w_id[i] && dp_id == 0) || (w_kind[i] == 2 && dp_id == w_id[i])));
#endif
#endif
  if
  :: applied && w_kind[i] == 1 ->
     dp_id = w_id[i]; dp_k = w_k[i]; ver++;
     cp_id[i] = w_id[i]; cp_k[i] = w_k[i]; c_ver[i] = ver
  :: applied && w_kind[i] == 2 ->
     da_id = dp_id; da_k = dp_k; dp_id = 0; dp_k = 0; ver++;
     ca_id[i] = da_id; ca_k[i] = da_k; cp_id[i] = 0; cp_k[i] = 0; c_ver[i] = ver;
     confirmDue[i] = true
  :: else ->
     /* HK7 across instances: close the device's connection, stop acting until a new lease */
     leased[i] = false;
     if
     :: conn == i -> conn = NONE
     :: else -> skip
     fi
  fi;
  w_kind[i] = 0;
  applied = false
}

/* HK3/HK4: instance i offers its (durable) pending key on the device's connection. */
inline offer(i) {
  if
  :: vf_id == 0 && cp_id[i] == va_id + 1 -> vf_id = cp_id[i]; vf_k = cp_k[i]   /* D1: durable, then acked */
  :: else -> skip                                                             /* a repeat, or refused (D4/D5) */
  fi
}

/* The device seals a frame under its future key to instance i (REKEY_ACK, or a HELLO under it). */
inline ack(i) {
  if
  :: cp_id[i] == vf_id && cp_k[i] == vf_k -> w_kind[i] = 2; w_id[i] = vf_id; w_k[i] = vf_k; w_ep[i] = c_ep[i]; w_ver[i] = c_ver[i]  /* HK5 */
  :: ca_id[i] == vf_id && ca_k[i] == vf_k -> confirmDue[i] = true                                                             /* HK6 */
  :: else -> skip                                                                                                              /* refused */
  fi
}

/* CONFIRM from instance i under its active key: the device promotes its future key (D2). */
inline confirm(i) {
  if
  :: vf_id != 0 && vf_id == ca_id[i] && vf_k == ca_k[i] -> va_id = vf_id; va_k = vf_k; vf_id = 0; vf_k = 0
  :: else -> skip
  fi;
  confirmDue[i] = false
}

active proctype world() {
  /* both instances loaded the row at start (loadDevices) */
  ca_id[0] = 1; ca_k[0] = 1; ca_id[1] = 1; ca_k[1] = 1;
  check();
  do
  /* the device (re)connects to either instance: the balancer picks */
  :: atomic { leases < MAXLEASES -> lease(0); check() }
  :: atomic { leases < MAXLEASES -> lease(1); check() }
  :: atomic { conn != NONE -> conn = NONE }
  /* instances decide rotations from what they hold (a stale instance too: it does not know yet) */
  :: atomic { leased[0] && w_kind[0] == 0 && cp_id[0] == 0 && nextKey <= MAXKEYS -> decide(0) }
  :: atomic { leased[1] && w_kind[1] == 0 && cp_id[1] == 0 && nextKey <= MAXKEYS -> decide(1) }
  /* writes land whenever */
  :: atomic { w_kind[0] != 0 -> land(0); check() }
  :: atomic { w_kind[1] != 0 -> land(1); check() }
  /* traffic on the device's connection */
  :: atomic { conn == 0 && leased[0] && cp_id[0] != 0 && w_kind[0] == 0 -> offer(0); check() }
  :: atomic { conn == 1 && leased[1] && cp_id[1] != 0 && w_kind[1] == 0 -> offer(1); check() }
  :: atomic { conn == 0 && vf_id != 0 && w_kind[0] == 0 -> ack(0); check() }
  :: atomic { conn == 1 && vf_id != 0 && w_kind[1] == 0 -> ack(1); check() }
  :: atomic { conn == 0 && confirmDue[0] -> confirm(0); check() }
  :: atomic { conn == 1 && confirmDue[1] -> confirm(1); check() }
  :: else -> break
  od
}
