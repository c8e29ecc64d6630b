#!/usr/bin/env bash
# The simulator firmware under the conformance kit's device mode
# (docs/CONFORMANCE.md, "Device mode"; docs/FIRMWARE.md): the kit provisions
# a device (its keystore image and a recovery credential for the kit's own
# hub static key), the firmware is built with that image (`mcconfig -m -p lin`,
# never -d: the SDK's debug path runs pkill) and run in mcsim under xvfb-run
# against the kit listening on 127.0.0.1, and the kit runs every scenario —
# with power cuts: --device-kill-cmd kills the simulator's process group
# (SIGKILL), --device-start-cmd starts it again from its keystore image.
# Prints the kit's report (one line per requirement) and leaves the JSON
# report, the kit's and the simulator's logs under --work. Not part of
# `npm test` (it needs the Moddable SDK's Linux tools and xvfb).
#
#   MODDABLE=/path/to/moddable tools/esp32-check/simulator-conformance.sh [--mode classic|dh] [--no-power-cuts] [--scenarios a,b] [--work DIR] [--reuse]
#
# --reuse keeps the firmware built by an earlier run in the same --work (its port and image path
# are built in) and only provisions a fresh image: a build takes minutes on a shared machine.
#
# It stops only the processes it started (the simulator's process group, by the id it recorded).
set -euo pipefail
REPO="$(cd "$(dirname "$0")/../.." && pwd)"
WORK=/tmp/lockstep-simulator-conformance
MODE=classic
POWER=1
SCENARIOS=""
REUSE=0
while [ $# -gt 0 ]; do
  case "$1" in
    --mode) MODE="$2"; shift ;;
    --no-power-cuts) POWER=0 ;;
    --scenarios) SCENARIOS="$2"; shift ;;
    --work) WORK="$2"; shift ;;
    --reuse) REUSE=1 ;;
    *) echo "simulator-conformance: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
: "${MODDABLE:?set MODDABLE to the Moddable SDK (with build/bin/lin/release built)}"
export MODDABLE PATH="$MODDABLE/build/bin/lin/release:$REPO/node_modules/.bin:$PATH"
for tool in mcconfig mcsim xvfb-run stdbuf; do
  command -v "$tool" >/dev/null || { echo "simulator-conformance: $tool not found" >&2; exit 2; }
done
if [ "$REUSE" = 1 ] && [ -s "$WORK/port" ] && [ -n "$(find "$WORK/build/bin/lin" -name mc.so 2>/dev/null | head -1)" ]; then
  PORT=$(cat "$WORK/port")
  rm -rf "$WORK/dev" "$WORK/keystore.bin" "$WORK/keywrap.bin" "$WORK/report.json" "$WORK/report.txt" "$WORK/kit.log" "$WORK/device.log"
else
  REUSE=0
  rm -rf "$WORK"
  mkdir -p "$WORK/build"
  PORT=$(node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')
  echo "$PORT" > "$WORK/port"
fi
kit() { (cd "$REPO" && tsx tools/conformance/cli.ts device "$@"); }

echo "simulator-conformance: provisioning a $MODE device for the kit into $WORK/dev"
kit --provision-out "$WORK/dev" --provision-only --mode "$MODE"
cp "$WORK/dev/keystore.bin" "$WORK/keystore.bin"
BUILD_FLAGS=(hub=127.0.0.1 port="$PORT" "keystoreImage=$WORK/keystore.bin" "keyWrapImage=$WORK/keywrap.bin")
if [ "$REUSE" = 0 ]; then
  echo "simulator-conformance: mcconfig -m -p lin -o $WORK/build ${BUILD_FLAGS[*]}"
  (cd "$REPO" && mcconfig -m -p lin -o "$WORK/build" "${BUILD_FLAGS[@]}") > "$WORK/mcconfig.log" 2>&1 || { tail -30 "$WORK/mcconfig.log"; echo "simulator-conformance: FAILED (build)"; exit 1; }
else
  echo "simulator-conformance: reusing the firmware in $WORK/build (port $PORT, image $WORK/keystore.bin)"
fi
SO=$(find "$WORK/build/bin/lin" -name mc.so | head -1)
[ -n "$SO" ] || { echo "simulator-conformance: no mc.so under $WORK/build" >&2; exit 1; }

# The kit spawns the start command in a process group of its own (the shell's pid is its id): recorded, killed as a whole.
START="echo \$\$ > $WORK/sim.pgid; exec stdbuf -oL -eL xvfb-run -a mcsim $SO"
# `kill -9 -PGID`: the kit runs commands with sh (dash), whose kill takes no `--`.
KILL="[ -s $WORK/sim.pgid ] && kill -9 -\$(cat $WORK/sim.pgid) 2>/dev/null; rm -f $WORK/sim.pgid; sleep 0.5"
cleanup() { sh -c "$KILL" || true; }
trap cleanup EXIT
FLAGS=(--listen "127.0.0.1:$PORT" --records "$WORK/dev/device.json" --hub-static-key-file "$WORK/dev/hub.static" --device-log "$WORK/device.log" --connect-wait 40s --json "$WORK/report.json" --checks --verbose)
[ -n "$SCENARIOS" ] && FLAGS+=(--scenarios "$SCENARIOS")
if [ "$POWER" = 1 ]; then
  FLAGS+=(--device-start-cmd "$START" --device-kill-cmd "$KILL")
else
  # No power control: the kit asks for the device once; started here.
  (sleep 1; sh -c "$START" >> "$WORK/device.log" 2>&1) &
fi
echo "simulator-conformance: npm run conformance -- device ${FLAGS[*]}"
set +e
kit "${FLAGS[@]}" 2> "$WORK/kit.log" | tee "$WORK/report.txt"
STATUS=${PIPESTATUS[0]}
set -e
echo "simulator-conformance: exit $STATUS (report: $WORK/report.txt, $WORK/report.json; logs: $WORK/kit.log, $WORK/device.log)"
exit "$STATUS"
