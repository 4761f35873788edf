#!/usr/bin/env bash
# Latency of `POST /v1/recommendations` (fold-in) at MovieLens 20M's shape under wrk.
#
# Usage: bench/foldin/latency.sh [LAKE] [DURATION_SECONDS] [CONNECTIONS] [ITEMS_PER_REQUEST]
#   LAKE defaults to /var/tmp/elastirec-bench-foldin, made when missing with
#   `simulate --scale 1` (27,278 items) and one night over the whole history
#   (ELASTIREC_PREPARE__WINDOW_DAYS=8000, ELASTIREC_MODEL__FACTORS=64, `run --date 2015-03-31`).
#   CONNECTIONS defaults to 64, ITEMS_PER_REQUEST to 20.
# Each request is an anonymous session of ITEMS_PER_REQUEST distinct random items of the model
# (1,000 bodies made up front, seeded); the server and wrk share the machine's 2 cores
# (SERVER_CPUS / WRK_CPUS, taskset lists, default both "0,1"), wrk with 2 threads.
# Needs: wrk, python3 with pyarrow, a built binary (cargo build; CARGO_TARGET_DIR honoured).
# Not a test: it measures and prints; nothing is asserted.
set -euo pipefail
cd "$(dirname "$0")/../.."
LAKE="${1:-/var/tmp/elastirec-bench-foldin}"
DURATION="${2:-20}"
CONNECTIONS="${3:-64}"
ITEMS="${4:-20}"
PORT="${PORT:-18081}"
BIN="${BIN:-${CARGO_TARGET_DIR:-target}/debug/elastirec}"
SERVER_CPUS="${SERVER_CPUS:-0,1}"
WRK_CPUS="${WRK_CPUS:-0,1}"
NIGHT=2015-03-31
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 2; }
[ -x "$BIN" ] || { echo "$BIN is missing: run cargo build first" >&2; exit 2; }
if [ ! -f "$LAKE/recommendations/_LATEST" ]; then
  echo "== making the lake in $LAKE: simulate --scale 1, then one night over the whole history" >&2
  "$BIN" --lake "$LAKE" simulate --scale 1 >/dev/null
  ELASTIREC_MODEL__FACTORS=64 ELASTIREC_PREPARE__WINDOW_DAYS=8000 "$BIN" --lake "$LAKE" run --date "$NIGHT" >/dev/null
fi
SCRIPT="$(mktemp --suffix .lua)"
LAKE="$LAKE" ITEMS="$ITEMS" python3 - > "$SCRIPT" <<'PY'
import glob, json, os, random
import pyarrow.parquet as pq
lake, n = os.environ["LAKE"], int(os.environ["ITEMS"])
night = json.load(open(os.path.join(lake, "recommendations", "_LATEST")))["night"]
info = json.load(open(os.path.join(lake, "models", *night.split("-"), "model.json")))
path = next(f["path"] for f in info["files"] if "item_factors" in f["path"])
ids = pq.read_table(os.path.join(lake, path), columns=["item_id"]).column(0).to_pylist()
# Integer ids of a MovieLens-shaped lake are their own external ids.
ids = [str(i) for i in ids]
rng = random.Random(42)
bodies = []
for _ in range(1000):
    items = [{"item_id": i} for i in rng.sample(ids, n)]
    bodies.append(json.dumps({"items": items, "k": 10}))
print(f"-- {len(ids)} items in night {night}'s model; 1,000 bodies of {n} items")
print("bodies = {")
for b in bodies:
    print("  [[" + b + "]],")
print("}")
print("""
math.randomseed(42)
local headers = { ["Content-Type"] = "application/json" }
request = function()
  return wrk.format("POST", "/v1/recommendations", headers, bodies[math.random(1, #bodies)])
end
""")
PY
head -1 "$SCRIPT"
taskset -c "$SERVER_CPUS" "$BIN" --lake "$LAKE" serve --port "$PORT" > /tmp/elastirec-bench-foldin.log 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true; rm -f "$SCRIPT"' EXIT
for _ in $(seq 1 600); do
  curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break
  sleep 0.1
done
BODY="$(sed -n 3p "$SCRIPT" | sed 's/^  \[\[//; s/\]\],$//')"
curl -sf -H 'Content-Type: application/json' -d "$BODY" "http://127.0.0.1:$PORT/v1/recommendations" | head -c 400; echo
echo "--- warm-up (5 s), then measured run (${DURATION} s, ${CONNECTIONS} connections, server on cpus $SERVER_CPUS, wrk on $WRK_CPUS)"
taskset -c "$WRK_CPUS" wrk -t2 -c"$CONNECTIONS" -d5s -s "$SCRIPT" "http://127.0.0.1:$PORT" >/dev/null
taskset -c "$WRK_CPUS" wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" --latency -s "$SCRIPT" "http://127.0.0.1:$PORT"
echo "--- server's own view"
curl -sf "http://127.0.0.1:$PORT/metrics" | grep -E 'route="/v1/recommendations"' | grep -E 'status|_count|le="0.005"' || true
