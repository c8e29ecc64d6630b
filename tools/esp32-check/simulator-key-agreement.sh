#!/usr/bin/env bash
# The simulator's key agreement backend (@noble on the Moddable SDK's XS, as
# hosts/moddable/platform-sim.ts wires it) against RFC 7748 and all Wycheproof
# x25519/hkdf_sha512 cases, inside mcsim: builds a small app with
# `mcconfig -m -p lin` (never -d: the SDK's debug path runs pkill) from
# tools/esp32-check/sim-key-agreement/run.ts, hosts/moddable/manifest_noble.json
# and a vectors module generated from tests/vectors, runs it under xvfb-run and
# passes on "N passed, 0 failed". Not part of `npm test` (it needs the Moddable
# SDK's Linux tools and xvfb); the same cases run on @noble under the XS test
# host in `npm run test:xs`.
#
#   MODDABLE=/path/to/moddable tools/esp32-check/simulator-key-agreement.sh [--timeout S] [--work DIR]
set -euo pipefail
REPO="$(cd "$(dirname "$0")/../.." && pwd)"
WORK=/tmp/lockstep-simulator-key-agreement
TIMEOUT=300
while [ $# -gt 0 ]; do
  case "$1" in
    --timeout) TIMEOUT="$2"; shift ;;
    --work) WORK="$2"; shift ;;
    *) echo "simulator-key-agreement: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
: "${MODDABLE:?set MODDABLE to the Moddable SDK (with build/bin/lin/release built)}"
export MODDABLE PATH="$MODDABLE/build/bin/lin/release:$REPO/node_modules/.bin:$PATH"
for tool in mcconfig mcsim xvfb-run stdbuf; do
  command -v "$tool" >/dev/null || { echo "simulator-key-agreement: $tool not found" >&2; exit 2; }
done
rm -rf "$WORK"
mkdir -p "$WORK/app" "$WORK/build"

node -e '
const fs = require("fs"); const [repo, out] = process.argv.slice(1);
const read = (p) => JSON.parse(fs.readFileSync(repo + "/tests/vectors/" + p, "utf8"));
const vectors = { x25519: read("wycheproof/x25519_test.json"), hkdf: read("wycheproof/hkdf_sha512_test.json"), rfc7748: read("rfc7748/x25519.json") };
fs.writeFileSync(out + "/vectors.js", "export default " + JSON.stringify(vectors) + ";\n");
fs.writeFileSync(out + "/vectors.d.ts", "declare const vectors: unknown;\nexport default vectors;\n");
// A dynamic import, so that an exception while the modules load is traced rather than an XS abort.
fs.writeFileSync(out + "/main.js", "import(\"tools/esp32-check/sim-key-agreement/run\").catch((e) => trace(`sim-key-agreement: 0 passed, 1 failed: ${e} ${e?.stack ?? \"\"}\\n`));\n");
' "$REPO" "$WORK/app"
cat > "$WORK/app/manifest.json" <<JSON
{
	"include": ["\$(MODDABLE)/examples/manifest_base.json", "$REPO/hosts/moddable/manifest_noble.json"],
	"modules": {
		"*": "./main",
		"lockstep-key-agreement-vectors": "./vectors",
		"tools/esp32-check/sim-key-agreement/run": "$REPO/tools/esp32-check/sim-key-agreement/run",
		"hosts/moddable/text-encoder-global": "$REPO/hosts/moddable/text-encoder-global",
		"tools/testing/key-agreement-cases": "$REPO/tools/testing/key-agreement-cases",
		"modules/bytes": "$REPO/modules/bytes",
		"modules/errors": "$REPO/modules/errors",
		"modules/crypto/key-agreement-arguments": "$REPO/modules/crypto/key-agreement-arguments",
		"modules/crypto/primitives": "$REPO/modules/crypto/primitives"
	},
	"creation": { "stack": 4096 },
	"typescript": { "tsconfig": { "compilerOptions": { "strict": true, "noUncheckedIndexedAccess": true } } }
}
JSON
echo "simulator-key-agreement: mcconfig -m -p lin -o $WORK/build"
(cd "$WORK/app" && mcconfig -m -p lin -o "$WORK/build") > "$WORK/mcconfig.log" 2>&1 || { tail -30 "$WORK/mcconfig.log"; echo "simulator-key-agreement: FAILED (build)"; exit 1; }
SO=$(find "$WORK/build/bin/lin" -name mc.so | head -1)
[ -n "$SO" ] || { echo "simulator-key-agreement: no mc.so under $WORK/build" >&2; exit 1; }

SIM_PGID=""
cleanup() { [ -n "$SIM_PGID" ] && kill -- -"$SIM_PGID" 2>/dev/null || true; }
trap cleanup EXIT
: > "$WORK/device.log"
set -m
stdbuf -oL -eL xvfb-run -a mcsim "$SO" >> "$WORK/device.log" 2>&1 &
SIM_PGID=$!
set +m
started=$(date +%s)
for _ in $(seq "$TIMEOUT"); do
  grep -q 'sim-key-agreement: [0-9]* passed' "$WORK/device.log" && break
  grep -q 'XS abort' "$WORK/device.log" && break
  kill -0 "$SIM_PGID" 2>/dev/null || break
  sleep 1
done
cleanup; trap - EXIT
grep 'sim-key-agreement' "$WORK/device.log" || true
summary=$(grep -o 'sim-key-agreement: [0-9]* passed, [0-9]* failed' "$WORK/device.log" | tail -1 || true)
echo "simulator-key-agreement: ${summary:-no summary} after $(( $(date +%s) - started )) s in mcsim"
case "$summary" in *" 0 failed") exit 0 ;; *) tail -20 "$WORK/device.log"; exit 1 ;; esac
