#!/usr/bin/env bash
# The simulator half of issue 11: the firmware still builds and runs in the
# Moddable simulator (docs/FIRMWARE.md, "Running in the simulator"). Builds
# with `mcconfig -m -p lin` (never -d: the SDK's debug path runs pkill),
# provisions one device into a fresh hub database, runs the reference hub
# with a short rotation interval and the firmware in mcsim under xvfb-run,
# and passes when the device has promoted ROTATIONS keys and the hub's
# record agrees with the device's last active key. With --chaos, the hub is
# killed with SIGKILL and restarted from its database every few seconds and
# every third time the simulator is killed and restarted instead (the
# device then boots from its keystore image). With --restore, the hub's
# database is copied (hub stopped cleanly) after the first promotion, and
# once ROTATIONS further keys are promoted the hub is stopped, the older copy
# put back, and the hub started on it: the check then passes only when the
# device logs a recovery, the hub logs the accepted recovery, and one more
# key is promoted after it (docs/PROTOCOL.md §12). Not part of `npm test`
# (it needs the Moddable SDK's Linux tools and xvfb).
#
#   MODDABLE=/path/to/moddable tools/esp32-check/simulator-check.sh [--tls] [--chaos] [--restore] [--rotations N] [--timeout S] [--work DIR] [--app DIR]
#
# --app builds another application on the Lockstep library instead of the
# reference app (e.g. examples/key-events); it must log `key N promoted`.
#
# Everything it writes is under --work (default /tmp/lockstep-simulator-check);
# it stops only the processes it started (their process groups, via job control).
set -euo pipefail
REPO="$(cd "$(dirname "$0")/../.." && pwd)"
WORK=/tmp/lockstep-simulator-check
ROTATIONS=3
TIMEOUT=120
TLS=0
CHAOS=0
RESTORE=0
APP=.
while [ $# -gt 0 ]; do
  case "$1" in
    --tls) TLS=1 ;;
    --chaos) CHAOS=1 ;;
    --restore) RESTORE=1 ;;
    --rotations) ROTATIONS="$2"; shift ;;
    --timeout) TIMEOUT="$2"; shift ;;
    --work) WORK="$2"; shift ;;
    --app) APP="$2"; shift ;;
    *) echo "simulator-check: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
: "${MODDABLE:?set MODDABLE to the Moddable SDK (with build/bin/lin/release built)}"
export MODDABLE PATH="$MODDABLE/build/bin/lin/release:$REPO/node_modules/.bin:$PATH"
for tool in mcconfig mcsim xvfb-run stdbuf; do
  command -v "$tool" >/dev/null || { echo "simulator-check: $tool not found" >&2; exit 2; }
done

rm -rf "$WORK"
mkdir -p "$WORK/build"
free_port() { node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'; }
PORT=$(free_port)
hub() { (cd "$REPO" && npx tsx tools/hub/cli.ts "$@"); }

echo "simulator-check: provisioning a device into $WORK/hub.db"
hub provision --db "$WORK/hub.db" --out "$WORK/dev1" > "$WORK/provision.json"
cp "$WORK/dev1/keystore.bin" "$WORK/keystore.bin"
DEVICE=$(node -e 'console.log(JSON.parse(require("fs").readFileSync(process.argv[1],"utf8")).deviceId)' "$WORK/dev1/device.json")

HUB_FLAGS=(serve --db "$WORK/hub.db" --host 127.0.0.1 --rotate-every 3s)
BUILD_FLAGS=(hub=127.0.0.1 "keystoreImage=$WORK/keystore.bin" "keyWrapImage=$WORK/keywrap.bin")
if [ "$TLS" = 1 ]; then
  hub cert --out "$WORK/cert" > /dev/null
  HUB_FLAGS+=(--no-tcp --tls-port "$PORT" --cert "$WORK/cert/hub-cert.pem" --key "$WORK/cert/hub-key.pem")
  # The device verifies the hub's chain and name against the development CA (hubTlsVerify defaults to true).
  HUB_CA=$(node -e 'console.log(JSON.parse(require("fs").readFileSync(process.argv[1],"utf8")).hubCa)' "$WORK/cert/hub-cert-pins.json")
  BUILD_FLAGS+=(port="$PORT" hubTls=true "hubCa=$HUB_CA" ${SIMCHECK_EXTRA:-})
else
  HUB_FLAGS+=(--port "$PORT")
  BUILD_FLAGS+=(port="$PORT")
fi

echo "simulator-check: (cd $APP && mcconfig -m -p lin -o $WORK/build ${BUILD_FLAGS[*]})"
(cd "$REPO/$APP" && mcconfig -m -p lin -o "$WORK/build" "${BUILD_FLAGS[@]}") > "$WORK/mcconfig.log" 2>&1 || { tail -30 "$WORK/mcconfig.log"; echo "simulator-check: FAILED (build)"; exit 1; }
SO=$(find "$WORK/build/bin/lin" -name mc.so | head -1)
[ -n "$SO" ] || { echo "simulator-check: no mc.so under $WORK/build" >&2; exit 1; }

HUB_PGID=""; SIM_PGID=""
cleanup() {
  [ -n "$SIM_PGID" ] && kill -- -"$SIM_PGID" 2>/dev/null || true
  [ -n "$HUB_PGID" ] && kill -- -"$HUB_PGID" 2>/dev/null || true
}
trap cleanup EXIT

# Job control: each background job gets its own process group (PGID = $!), stopped as a whole.
start_hub() {
  set -m
  (cd "$REPO" && exec npx tsx tools/hub/cli.ts "${HUB_FLAGS[@]}") >> "$WORK/hub.log" 2>&1 &
  HUB_PGID=$!
  set +m
  local ready_before=$1
  for _ in $(seq 30); do [ "$(grep -c '"event":"ready"' "$WORK/hub.log" || true)" -gt "$ready_before" ] && return 0; sleep 1; done
  cat "$WORK/hub.log"; echo "simulator-check: FAILED (hub did not start)"; exit 1
}
start_sim() {
  set -m
  # mcsim's traces go to stdout, block-buffered into a file: line-buffer them.
  stdbuf -oL -eL xvfb-run -a mcsim "$SO" >> "$WORK/device.log" 2>&1 &
  SIM_PGID=$!
  set +m
}
: > "$WORK/hub.log"
: > "$WORK/device.log"
start_hub 0
start_sim
echo "simulator-check: hub (pgid $HUB_PGID) on 127.0.0.1:$PORT ($([ "$TLS" = 1 ] && echo TLS || echo TCP)), mcsim (pgid $SIM_PGID), device $DEVICE; waiting for $ROTATIONS promotions (at most ${TIMEOUT}s)"

HUB_KILLS=0; SIM_RESTARTS=0; chaos_tick=0
chaos_step() {
  [ "$CHAOS" = 1 ] || return 0
  chaos_tick=$((chaos_tick + 1))
  [ $((chaos_tick % 4)) = 0 ] || return 0
  if [ $(((HUB_KILLS + SIM_RESTARTS) % 3)) = 2 ]; then
    echo "simulator-check: chaos: killing mcsim (the device boots from its keystore image)"
    kill -KILL -- -"$SIM_PGID" 2>/dev/null || true
    sleep 1
    start_sim
    SIM_RESTARTS=$((SIM_RESTARTS + 1))
  else
    echo "simulator-check: chaos: SIGKILL to the hub, restart from its database"
    kill -KILL -- -"$HUB_PGID" 2>/dev/null || true
    sleep 1
    start_hub "$(grep -c '"event":"ready"' "$WORK/hub.log" || true)"
    HUB_KILLS=$((HUB_KILLS + 1))
  fi
}

stop_hub() {
  kill -TERM -- -"$HUB_PGID" 2>/dev/null || true
  for _ in $(seq 20); do kill -0 "$HUB_PGID" 2>/dev/null || break; sleep 0.5; done
}
count() { local n; n=$(grep -cE "$1" "$2" || true); echo "${n:-0}"; }
promoted=0
if [ "$RESTORE" = 1 ]; then
  # 1. the first promotion, then a backup of the hub's database (a clean stop checkpoints the WAL)
  for _ in $(seq "$TIMEOUT"); do [ "$(count 'key [0-9]+ promoted' "$WORK/device.log")" -ge 1 ] && break; sleep 1; done
  stop_hub
  cp "$WORK/hub.db" "$WORK/hub-backup.db"
  echo "simulator-check: backup taken (hub record: $(hub devices --db "$WORK/hub.db" --json | head -1))"
  start_hub "$(count '"event":"ready"' "$WORK/hub.log")"
  # 2. ROTATIONS more promotions: the backup is now that many keys behind the device
  for _ in $(seq "$TIMEOUT"); do [ "$(count 'key [0-9]+ promoted' "$WORK/device.log")" -ge $((ROTATIONS + 1)) ] && break; sleep 1; done
  # 3. the operator restores the backup: stop, put the old file back, start (nothing is done on the device)
  stop_hub
  rm -f "$WORK/hub.db-wal" "$WORK/hub.db-shm"
  cp "$WORK/hub-backup.db" "$WORK/hub.db"
  echo "simulator-check: hub database restored from the backup ($(hub devices --db "$WORK/hub.db" --json | head -1))"
  before=$(count 'key [0-9]+ promoted' "$WORK/device.log")
  start_hub "$(count '"event":"ready"' "$WORK/hub.log")"
  for _ in $(seq "$TIMEOUT"); do
    [ "$(count 'recovered' "$WORK/device.log")" -ge 1 ] && [ "$(count 'key [0-9]+ promoted' "$WORK/device.log")" -ge $((before + 2)) ] && break
    sleep 1
  done
  promoted=$(count 'key [0-9]+ promoted' "$WORK/device.log")
else
for _ in $(seq "$TIMEOUT"); do
  promoted=$(grep -cE 'key [0-9]+ promoted' "$WORK/device.log" || true); promoted=${promoted:-0}
  [ "$promoted" -ge "$ROTATIONS" ] && break
  if ! kill -0 "$SIM_PGID" 2>/dev/null; then echo "simulator-check: mcsim exited" >&2; break; fi
  chaos_step
  sleep 1
done
fi
sleep 1
cleanup
trap - EXIT
sleep 1

grep -E '^\[' "$WORK/device.log" | head -20 || true
last=$(grep -o 'key [0-9]* promoted' "$WORK/device.log" | tail -1 | awk '{print $2}' || true)
confirmed=$(grep -c '"event":"keyConfirmed"' "$WORK/hub.log" || true)
hubKey=$(hub devices --db "$WORK/hub.db" --json | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const d=JSON.parse(s.trim().split("\n")[0]);console.log(d.activeKeyId+" "+(d.pendingKeyId??"-"))})')
echo "simulator-check: device promoted $promoted keys (last: ${last:-none}); hub confirmed $confirmed; hub record: active ${hubKey% *}, pending ${hubKey#* }; chaos: $HUB_KILLS hub kills, $SIM_RESTARTS simulator restarts"
# In sync: the hub's active key is the device's, or the hub still holds it as the
# pending key whose proof was in flight when the check stopped (docs/PROTOCOL.md).
if [ "$RESTORE" = 1 ]; then
  echo "simulator-check: device log (recovery):"; grep -E 'lost|recover' "$WORK/device.log" | head -10 || true
  echo "simulator-check: hub log (recovery):"; grep -E 'recovery' "$WORK/hub.log" | head -10 || true
  if [ "$(count 'recovered' "$WORK/device.log")" -ge 1 ] && [ "$(count '"event":"recoveryAccepted"' "$WORK/hub.log")" -ge 1 ] && [ -n "$last" ] && { [ "${hubKey% *}" = "$last" ] || [ "${hubKey#* }" = "$last" ]; }; then
    echo "simulator-check: ok, recovered after the restore (logs in $WORK)"
    exit 0
  fi
  echo "simulator-check: FAILED (no recovery after the restore; logs in $WORK: device.log, hub.log)"
  exit 1
fi
if [ "$promoted" -ge "$ROTATIONS" ] && [ -n "$last" ] && { [ "${hubKey% *}" = "$last" ] || [ "${hubKey#* }" = "$last" ]; }; then
  echo "simulator-check: ok (logs in $WORK)"
  exit 0
fi
echo "simulator-check: FAILED (logs in $WORK: device.log, hub.log)"
exit 1
