#!/usr/bin/env bash
# Load test of the recommendations route: `elastirec serve` pinned to core 0, wrk pinned to core 1
# (the 2-core machine shared between server and load generator), random known users.
#
# Usage: bench/serve/run.sh [LAKE] [DURATION_SECONDS] [CONNECTIONS]
#   LAKE defaults to /var/tmp/elastirec-bench-lake, made with `elastirec demo` when missing
#   (2,000 simulated users, ids 1..2000, all known to the last night).
# Needs: wrk (apt-get install wrk), taskset, a built binary (cargo build; CARGO_TARGET_DIR honoured).
# Not a test: it measures and prints; nothing is asserted.
set -euo pipefail
cd "$(dirname "$0")/../.."
LAKE="${1:-/var/tmp/elastirec-bench-lake}"
DURATION="${2:-20}"
CONNECTIONS="${3:-32}"
PORT="${PORT:-18080}"
BIN="${BIN:-${CARGO_TARGET_DIR:-target}/debug/elastirec}"
USERS="${USERS:-2000}"
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 2; }
[ -x "$BIN" ] || { echo "$BIN is missing: run cargo build first" >&2; exit 2; }
if [ ! -f "$LAKE/recommendations/_LATEST" ]; then
  echo "making the demo lake in $LAKE" >&2
  "$BIN" demo --demo-lake "$LAKE" >/dev/null
fi
SCRIPT="$(mktemp --suffix .lua)"
cat > "$SCRIPT" <<LUA
-- A random known user per request.
math.randomseed(42)
request = function()
  return wrk.format("GET", "/v1/users/" .. math.random(1, $USERS) .. "/recommendations?k=10")
end
LUA
taskset -c 0 "$BIN" --lake "$LAKE" serve --port "$PORT" > /tmp/elastirec-bench-serve.log 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true; rm -f "$SCRIPT"' EXIT
for _ in $(seq 1 100); do
  curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break
  sleep 0.1
done
curl -sf "http://127.0.0.1:$PORT/v1/users/1/recommendations?k=10" | head -c 300; echo
echo "--- warm-up (5 s), then measured run (${DURATION} s, ${CONNECTIONS} connections)"
taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d5s -s "$SCRIPT" "http://127.0.0.1:$PORT" >/dev/null
taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency -s "$SCRIPT" "http://127.0.0.1:$PORT"
echo "--- server's own view"
curl -sf "http://127.0.0.1:$PORT/metrics" | grep -E 'route="/v1/users/\{id\}/recommendations",(status|le="0.001"|le="0.002")|_count\{route="/v1/users/\{id\}/rec'
