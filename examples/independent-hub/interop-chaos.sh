#!/bin/bash
# Interop under crashes: the independent hub against two reference devices (npm run device, used as a
# black box), one classic and one dh, rotating every second while the hub is killed with SIGKILL every
# 3–6 s and restarted from its state file. At the end the hub's active key ids must equal the ids the
# devices last promoted. Usage: examples/independent-hub/interop-chaos.sh [WORKDIR] [SECONDS] [PORT]
set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
W=${1:-$(mktemp -d /tmp/independent-hub-chaos.XXXX)}
DURATION=${2:-40}
PORT=${3:-7792}
cd "$ROOT"
mkdir -p "$W"
rm -rf "$W/dh" "$W/classic" "$W/ref.db"* "$W/state.json" "$W/hub.log"
# The reference provisioning tool writes the devices' keystore images and the §14 records.
npm run -s hub -- provision --db "$W/ref.db" --out "$W/dh" --mode dh >/dev/null
npm run -s hub -- provision --db "$W/ref.db" --out "$W/classic" --mode classic >/dev/null
(echo '['; cat "$W/dh/device.json"; echo ','; cat "$W/classic/device.json"; echo ']') > "$W/records.json"
start_hub() {
  setsid node --import tsx examples/independent-hub/hub.ts --state "$W/state.json" --port "$PORT" "$@" </dev/null 2>>"$W/hub.log" &
  echo $! > "$W/hub.pid"
}
start_hub --import "$W/records.json" --rotate-every 1
sleep 3
setsid npm run -s device -- --image "$W/dh/keystore.bin" --port "$PORT" --every 300ms > "$W/dev-dh.log" 2>&1 &
D1=$!
setsid npm run -s device -- --image "$W/classic/keystore.bin" --port "$PORT" --every 300ms > "$W/dev-classic.log" 2>&1 &
D2=$!
end=$((SECONDS + DURATION)); kills=0
while [ $SECONDS -lt $end ]; do
  sleep $((3 + RANDOM % 3)).$((RANDOM % 9))
  kill -9 -- -"$(cat "$W/hub.pid")" 2>/dev/null && kills=$((kills + 1))
  sleep 0.1
  start_hub --rotate-every 1
done
# A last kill, then a hub that no longer rotates: the pair must converge to one shared key.
kill -9 -- -"$(cat "$W/hub.pid")" 2>/dev/null && kills=$((kills + 1))
start_hub
sleep 12
kill -STOP -- -"$(cat "$W/hub.pid")" 2>/dev/null
status=0
for dev in dh classic; do
  id=$(python3 -c "import json;print(json.load(open('$W/$dev/device.json'))['deviceId'])")
  hub_active=$(node --import tsx examples/independent-hub/hub.ts --state "$W/state.json" --port 0 --status 2>/dev/null | python3 -c "import json,sys;print([d for d in json.load(sys.stdin) if d['device']=='$id'][0]['active'])")
  dev_active=$(grep -o '"event":"keyPromoted","keyId":[0-9]*' "$W/dev-$dev.log" | tail -1 | grep -o '[0-9]*$')
  sessions=$(grep -c '"event":"established"' "$W/dev-$dev.log")
  echo "$dev device $id: hub active $hub_active, device promoted $dev_active, sessions $sessions"
  [ "$hub_active" = "$dev_active" ] || status=1
done
echo "hub kills: $kills; promotions logged by the hub: $(grep -c '"promoted"' "$W/hub.log")"
kill -KILL -- -"$(cat "$W/hub.pid")" -"$D1" -"$D2" 2>/dev/null
exit $status
