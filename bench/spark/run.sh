#!/usr/bin/env bash
# Both engines on the same synthetic data, in one run: elastirec's in-process ALS (train +
# recommend steps) against one Spark MLlib job (`--engine spark`, spark-submit --master local[N])
# on the same training export, then NDCG@10 of each night's lists over the following days.
#
# Usage: bench/spark/run.sh [LAKE] [CORES]
#   LAKE defaults to /var/tmp/elastirec-bench-spark-lake (made when missing: `simulate` with
#   20,000 users, 5,000 items, 100,000 events a day for 21 days = 2.1M events; the night is day 20,
#   day 21 is held out for NDCG). CORES (default 2) is both engines' parallelism.
# Needs: a built binary (cargo build; CARGO_TARGET_DIR honoured), Java 17, pyspark (pip).
# Not a test: it measures and prints; nothing is asserted.
set -euo pipefail
cd "$(dirname "$0")/../.."
LAKE="${1:-/var/tmp/elastirec-bench-spark-lake}"
CORES="${2:-2}"
BIN="${CARGO_TARGET_DIR:-target}/debug/elastirec"
NIGHT=2024-01-20
[ -x "$BIN" ] || { echo "$BIN is missing: run cargo build first" >&2; exit 2; }
python3 -c 'import pyspark' 2>/dev/null || { echo "pyspark is missing: pip install pyspark" >&2; exit 2; }
CONFIG="$(mktemp --suffix .toml)"
trap 'rm -f "$CONFIG"' EXIT
cat > "$CONFIG" <<TOML
[model]
threads = $CORES
[spark]
submit = "spark-submit --master local[$CORES]"
conf = { "spark.sql.shuffle.partitions" = "$((CORES * 4))", "spark.driver.memory" = "6g", "spark.ui.enabled" = "false" }
TOML
E() { "$BIN" --lake "$LAKE" --config "$CONFIG" "$@"; }
if [ ! -f "$LAKE/exports/training/2024/01/20/_manifest.json" ]; then
  E simulate --users 20000 --items 5000 --events-per-day 100000 --days 21
  E ingest --date "$NIGHT" >/dev/null
  E prepare --date "$NIGHT"
fi
E ingest --date 2024-01-21 >/dev/null
secs() { python3 -c "import time; print(f'{time.time() - $1:.1f}')"; }
now() { python3 -c 'import time; print(time.time())'; }

echo "--- in-process ALS ($CORES threads): train + recommend"
T0=$(now)
E train --date "$NIGHT"
E recommend --date "$NIGHT"
ALS=$(secs "$T0")
E evaluate --date "$NIGHT" --horizon-days 1 | tail -n 3
ALS_NDCG=$(python3 -c "import json; print(json.load(open('$LAKE/evaluations/2024/01/20/horizon-1d.json'))['model']['ndcg'])")

echo "--- Spark MLlib ALS (local[$CORES]): one job for train + recommend"
T0=$(now)
E train --date "$NIGHT" --engine spark
SPARK=$(secs "$T0")
E evaluate --date "$NIGHT" --horizon-days 1 | tail -n 3
SPARK_NDCG=$(python3 -c "import json; print(json.load(open('$LAKE/evaluations/2024/01/20/horizon-1d.json'))['model']['ndcg'])")
PAIRS=$(python3 -c "import json; print(json.load(open('$LAKE/exports/training/2024/01/20/_manifest.json'))['rows'])")

echo "--- $PAIRS training pairs, night $NIGHT, $CORES cores"
printf '%-12s %10s %10s\n' engine seconds 'NDCG@10'
printf '%-12s %10s %10.4f\n' in-process "$ALS" "$ALS_NDCG"
printf '%-12s %10s %10.4f\n' spark "$SPARK" "$SPARK_NDCG"
python3 -c "print(f'time ratio spark / in-process: {$SPARK / $ALS:.1f}x')"
