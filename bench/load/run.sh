#!/usr/bin/env bash
# Load benchmark: elastirec's `ingest` against DuckDB on the same raw files, in one run.
#
# Usage: bench/load/run.sh [LAKE] [SCALE] [THREADS] [FORMAT]
#   LAKE     a lake folder to create or reuse (default /var/tmp/elastirec-bench-load)
#   SCALE    `elastirec simulate --scale` (1 = MovieLens 20M's shape: 20,000,263 events over
#            1995-01-09..2015-03-31; default 1)
#   THREADS  threads for both sides (default 2)
#   FORMAT   `movielens` (daily CSV files, integer ids; default) or `segment` (Segment track
#            calls in gzip JSON lines per arrival-hour folder, UUID users, SKU items, ~1%
#            delivered twice: `simulate --format segment`)
#
# elastirec: `ingest --date 2015-03-31` loads every file into warehouse/events (Delta,
# partitioned by event_date) in one commit, with validation, rejects, de-duplication, the id
# dictionary (segment) and the load ledger. DuckDB: reads the same files (read_csv or
# read_json), keeps one row per messageId (segment) and writes Parquet partitioned the same way
# (COPY ... TO ... (FORMAT PARQUET, PARTITION_BY (event_date))). Both are timed as whole
# processes with /usr/bin/time; the script prints rows/s for both and the ratio.
# Needs: a built elastirec (cargo build; set ELASTIREC to the binary), python3 with duckdb.
set -euo pipefail
cd "$(dirname "$0")/../.."
LAKE="${1:-/var/tmp/elastirec-bench-load}"
SCALE="${2:-1}"
THREADS="${3:-2}"
FORMAT="${4:-movielens}"
BIN="${ELASTIREC:-${CARGO_TARGET_DIR:-target}/debug/elastirec}"
LAST_DAY="${LAST_DAY:-2015-03-31}"
[ -x "$BIN" ] || { echo "no elastirec binary at $BIN: cargo build, or set ELASTIREC" >&2; exit 2; }
python3 -c 'import duckdb' 2>/dev/null || python3 -m pip install --quiet duckdb

if [ ! -d "$LAKE/raw/events" ]; then
  echo "== generating raw files: simulate --scale $SCALE --format $FORMAT into $LAKE"
  "$BIN" --lake "$LAKE" simulate --scale "$SCALE" --format "$FORMAT"
fi
files=$(find "$LAKE/raw/events" -type f | wc -l)
bytes=$(du -sb "$LAKE/raw/events" | cut -f1)
echo "raw: $files files, $((bytes / 1048576)) MiB"

# Fresh targets for both sides, so a rerun measures a full load again.
rm -rf "$LAKE/warehouse" "$LAKE/runs" "$LAKE/snapshots" "$LAKE/bench-duckdb"
measure() { # label, command...
  local label="$1"; shift
  /usr/bin/time -f "%e %M" -o "/tmp/bench-load-$label.time" "$@" > "/tmp/bench-load-$label.out" 2>&1 \
    || { cat "/tmp/bench-load-$label.out" >&2; exit 1; }
  read -r wall rss < "/tmp/bench-load-$label.time"
  echo "$label $wall $rss"
}

if [ "$FORMAT" = segment ]; then export ELASTIREC_EVENTS__PRESET=segment; fi
el=$(ELASTIREC_MODEL__THREADS="$THREADS" RAYON_NUM_THREADS="$THREADS" measure elastirec \
  "$BIN" --lake "$LAKE" ingest --date "$LAST_DAY")
rows=$("$BIN" --lake "$LAKE" sql "SELECT COUNT(*) AS n FROM events" --format csv | tail -1)
dk=$(measure duckdb python3 - "$LAKE" "$THREADS" "$FORMAT" <<'PY'
import sys, duckdb
lake, threads, fmt = sys.argv[1], int(sys.argv[2]), sys.argv[3]
con = duckdb.connect()
con.execute(f"SET threads = {threads}")
if fmt == "segment":
    con.execute(f"""
COPY (
  SELECT userId AS user_id, properties.product_id AS item_id, CAST(1 AS REAL) AS value,
         event AS event_type, messageId AS event_id,
         CAST(timestamp AS TIMESTAMP) AS event_time,
         CAST(CAST(timestamp AS TIMESTAMP) AS DATE) AS event_date
  FROM read_json('{lake}/raw/events/*/*/*/*/*.jsonl.gz', format = 'newline_delimited',
                 columns = {{'type': 'VARCHAR', 'event': 'VARCHAR', 'userId': 'VARCHAR',
                            'messageId': 'VARCHAR', 'timestamp': 'VARCHAR',
                            'properties': 'STRUCT(product_id VARCHAR, rating DOUBLE)'}})
  WHERE type = 'track'
  QUALIFY row_number() OVER (PARTITION BY messageId) = 1
) TO '{lake}/bench-duckdb' (FORMAT PARQUET, PARTITION_BY (event_date))
""")
    print(con.execute(f"SELECT COUNT(*) FROM read_parquet('{lake}/bench-duckdb/*/*.parquet')").fetchone()[0])
    sys.exit(0)
con.execute(f"""
COPY (
  SELECT userId AS user_id, movieId AS item_id, CAST(rating AS REAL) AS value,
         to_timestamp(timestamp) AS event_time,
         CAST(to_timestamp(timestamp) AS DATE) AS event_date
  FROM read_csv('{lake}/raw/events/*/*/*/*.csv', header = true,
                columns = {{'userId': 'BIGINT', 'movieId': 'BIGINT', 'rating': 'DOUBLE',
                           'timestamp': 'BIGINT'}})
) TO '{lake}/bench-duckdb' (FORMAT PARQUET, PARTITION_BY (event_date))
""")
print(con.execute(f"SELECT COUNT(*) FROM read_parquet('{lake}/bench-duckdb/*/*.parquet')").fetchone()[0])
PY
)
duck_rows=$(tail -1 /tmp/bench-load-duckdb.out)
read -r _ el_wall el_rss <<< "$el"
read -r _ dk_wall dk_rss <<< "$dk"
python3 - "$rows" "$el_wall" "$el_rss" "$duck_rows" "$dk_wall" "$dk_rss" "$THREADS" <<'PY'
import sys
rows, ew, er, drows, dw, dr, threads = sys.argv[1:]
rows, drows, ew, dw = int(rows), int(drows), float(ew), float(dw)
print(f"threads {threads}")
print(f"elastirec ingest: {rows:,} rows in {ew:.1f} s = {rows/ew:,.0f} rows/s, peak RSS {int(er)//1024} MiB")
print(f"duckdb COPY:      {drows:,} rows in {dw:.1f} s = {drows/dw:,.0f} rows/s, peak RSS {int(dr)//1024} MiB")
print(f"time ratio elastirec/duckdb: {ew/dw:.2f}x (goal <= 1.5x)")
PY
