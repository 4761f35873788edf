#!/usr/bin/env bash
# Prepare benchmark: elastirec's `prepare` at full history against DuckDB running the same
# training.sql and seen.sql on the same Parquet files of warehouse/events, in one run.
#
# Usage: bench/prepare/run.sh [LAKE] [SCALE] [THREADS] [ROUNDS]
#   LAKE     a lake folder to create or reuse (default /var/tmp/elastirec-bench-prepare)
#   SCALE    `elastirec simulate --scale` (1 = MovieLens 20M's shape; default 1)
#   THREADS  threads for both sides (default 2)
#   ROUNDS   alternating rounds of both sides (default 3)
#
# The lake is made once: `simulate` then `ingest --date 2015-03-31` (every day loaded). Each
# round times `elastirec prepare --date 2015-03-31 --overwrite` with a window covering the whole
# history (ELASTIREC_PREPARE__WINDOW_DAYS=8000; every other setting the default), and DuckDB
# running the queries `elastirec sql-files --date` renders for the same settings over the live
# data files of warehouse/events (listed by the deltalake package), writing the same two
# outputs as Parquet: the training pairs, then the seen pairs (`training` being the first
# output). Both are whole processes timed with /usr/bin/time. Not a test: nothing is asserted.
# Needs: a built elastirec (set ELASTIREC to the binary), python3 with duckdb and deltalake.
set -euo pipefail
cd "$(dirname "$0")/../.."
LAKE="${1:-/var/tmp/elastirec-bench-prepare}"
SCALE="${2:-1}"
THREADS="${3:-2}"
ROUNDS="${4:-3}"
BIN="${ELASTIREC:-${CARGO_TARGET_DIR:-target}/debug/elastirec}"
NIGHT="${NIGHT:-2015-03-31}"
[ -x "$BIN" ] || { echo "no elastirec binary at $BIN: cargo build, or set ELASTIREC" >&2; exit 2; }
python3 -c 'import duckdb, deltalake' 2>/dev/null || python3 -m pip install --quiet duckdb deltalake
export ELASTIREC_PREPARE__WINDOW_DAYS=8000 ELASTIREC_MODEL__THREADS="$THREADS" RAYON_NUM_THREADS="$THREADS"

if [ ! -d "$LAKE/warehouse/events" ]; then
  echo "== making the lake: simulate --scale $SCALE, then ingest every day"
  "$BIN" --lake "$LAKE" simulate --scale "$SCALE" >/dev/null
  "$BIN" --lake "$LAKE" ingest --date "$NIGHT" >/dev/null
fi
RENDERED="$(mktemp --suffix .sql)"
trap 'rm -f "$RENDERED"' EXIT
"$BIN" --lake "$LAKE" sql-files --date "$NIGHT" > "$RENDERED"

measure() { # label, command...
  local label="$1"; shift
  /usr/bin/time -f "%e %M" -o "/tmp/bench-prepare-$label.time" "$@" > "/tmp/bench-prepare-$label.out" 2>&1 \
    || { cat "/tmp/bench-prepare-$label.out" >&2; exit 1; }
  read -r wall rss < "/tmp/bench-prepare-$label.time"
  echo "$wall $rss"
}

printf '%-6s %14s %10s %14s %10s %7s\n' round elastirec_s MiB duckdb_s MiB ratio
for round in $(seq 1 "$ROUNDS"); do
  read -r e_wall e_rss < <(measure elastirec "$BIN" --lake "$LAKE" prepare --date "$NIGHT" --overwrite)
  read -r d_wall d_rss < <(measure duckdb python3 bench/prepare/duckdb_prepare.py "$LAKE" "$RENDERED" "$THREADS")
  ratio=$(python3 -c "print(f'{$e_wall / $d_wall:.2f}')")
  printf '%-6s %14s %10s %14s %10s %7s\n' "$round" "$e_wall" "$((e_rss / 1024))" "$d_wall" "$((d_rss / 1024))" "$ratio"
done
echo "-- elastirec's export:"; grep -E "pairs|seen|rows" /tmp/bench-prepare-elastirec.out | head -5 || true
echo "-- DuckDB's outputs:"; cat /tmp/bench-prepare-duckdb.out
