#!/bin/bash
# Runs the conformance kit's hub mode (docs/CONFORMANCE.md) against the independent hub, with
# rotations (--rotate-cmd over the hub's control socket), crashes (SIGKILL of its process group) and
# recovery (a hub static key made here). Extra arguments go to the kit (e.g. --duration 60s, --scenarios a,b).
# Work files (records, keys, state, report) in K, outside the repository.
# Usage: [K=DIR] [PORT=7796] examples/independent-hub/conformance.sh [kit options]
set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
KIT_DIR=${KIT_DIR:-$ROOT}
HUB_DIR=${HUB_DIR:-$ROOT}
K=${K:-$(mktemp -d /tmp/independent-hub-kit.XXXX)}
PORT=${PORT:-7796}
mkdir -p "$K"; rm -f "$K"/static.json "$K"/kit.jsonl "$K"/kit.jsonl.kit.json "$K"/state.json "$K"/state.json.kek "$K"/hub.log "$K"/ctl.sock "$K"/report.txt "$K"/report.json
HUB="node --import tsx $HUB_DIR/examples/independent-hub/hub.ts"
cd "$HUB_DIR"
PUB=$($HUB --make-static-key "$K/static.json" --static-id 1 | python3 -c 'import json,sys;print(json.load(sys.stdin)["hubPublicKey"])')
cd "$KIT_DIR"
npm run -s conformance -- hub --records-out "$K/kit.jsonl" --hub-static-public "$PUB" --hub-static-id 1 >/dev/null
cd "$HUB_DIR"
$HUB --state "$K/state.json" --import "$K/kit.jsonl" --status >/dev/null
cat > "$K/start.sh" <<EOS
#!/bin/sh
cd $HUB_DIR
setsid sh -c 'echo \$\$ > $K/hub.pid; exec $HUB --state $K/state.json --port $PORT --control $K/ctl.sock --static-keys $K/static.json' </dev/null >>$K/hub.log 2>&1 &
EOS
chmod +x "$K/start.sh"
"$K/start.sh"
sleep 3
cd "$KIT_DIR"
/usr/bin/time -f 'kit cpu user %U s sys %S s wall %e s' npm run -s conformance -- hub --target 127.0.0.1:$PORT --records "$K/kit.jsonl" \
  --rotate-cmd "$HUB --control $K/ctl.sock --command 'rotate {device}'" \
  --kill-cmd "kill -KILL -\$(cat $K/hub.pid)" --start-cmd "$K/start.sh" \
  --json "$K/report.json" "$@" > "$K/report.txt" 2> "$K/kit.err"
echo "kit exit $?"
kill -TERM -- -"$(cat $K/hub.pid)" 2>/dev/null
tail -1 "$K/report.txt"; grep -A3 '^fail' "$K/report.txt"; echo "report: $K/report.txt, $K/report.json"
