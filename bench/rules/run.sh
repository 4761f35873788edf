#!/usr/bin/env bash
# What [rules] cost the recommend step at MovieLens 20M's shape (138,493 users, 27,278 items),
# with the catalog coming from feeds: the simulation's items file read as a feed (`[items]
# id_column`), plus an attribute feed (category, price, in_stock, tags) per item.
#
# Usage: bench/rules/run.sh [LAKE] [SCALE] [RUNS]
#   LAKE   a lake folder to create or reuse (default /var/tmp/elastirec-bench-rules)
#   SCALE  `elastirec simulate --scale` (1 = MovieLens 20M's shape; default 1)
#   RUNS   timed `recommend` runs per configuration (default 2)
#
# One night (2015-03-31) is run without rules; then, for each configuration below, the night's
# input is prepared again with its rules (`prepare --overwrite`) and `recommend --date` is timed
# as a whole process (/usr/bin/time), RUNS times:
#   none      no rules
#   sql       exclude_where on price and stock, promote_where on a tag
#   caps      max_per = { category = 2 } (a catalog column) and { genres = 2 }
#   all       both
# The script prints each run and the ratio of the medians against `none`.
# Needs: a built elastirec (cargo build; set ELASTIREC to the binary), python3.
set -euo pipefail
cd "$(dirname "$0")/../.."
LAKE="${1:-/var/tmp/elastirec-bench-rules}"
SCALE="${2:-1}"
RUNS="${3:-2}"
NIGHT=2015-03-31
BIN="$(realpath "${ELASTIREC:-${CARGO_TARGET_DIR:-target}/debug/elastirec}")"
[ -x "$BIN" ] || { echo "no elastirec binary at $BIN: cargo build, or set ELASTIREC" >&2; exit 2; }
WORK="$LAKE.bench"
mkdir -p "$WORK"

if [ ! -d "$LAKE/raw/events" ]; then
  echo "== generating raw files: simulate --scale $SCALE into $LAKE"
  "$BIN" --lake "$LAKE" simulate --scale "$SCALE"
fi
# The attribute feed: deterministic per item id, 40 categories, prices 1..200.
python3 - "$LAKE" <<'EOF'
import csv, sys, pathlib
lake = pathlib.Path(sys.argv[1])
items = next((lake / "raw/items").glob("*.csv"))
out = lake / "raw/items/2015/03/30/attributes.csv"
out.parent.mkdir(parents=True, exist_ok=True)
with open(items, newline="") as f, open(out, "w", newline="") as g:
    r = csv.reader(f); next(r)
    w = csv.writer(g); w.writerow(["movieId", "category", "price", "in_stock", "tags"])
    for row in r:
        i = int(row[0])
        w.writerow([i, f"c{i % 40}", (i * 37) % 200 + 1, "false" if i % 19 == 0 else "true",
                    "new|staff-pick" if i % 97 == 0 else "new"])
EOF

base='[model]
factors = 32
[items]
id_column = "movieId"
title_column = "title"
genres_column = "genres"
[items.attributes]
tags = "list"
'
printf '%s' "$base" > "$WORK/none.toml"
printf '%s[rules]\nexclude_where = "price > 150 OR NOT in_stock"\npromote_where = "array_has(tags, '"'"'staff-pick'"'"')"\n' "$base" > "$WORK/sql.toml"
printf '%s[rules]\nmax_per = { category = 2, genres = 2 }\n' "$base" > "$WORK/caps.toml"
printf '%s[rules]\nexclude_where = "price > 150 OR NOT in_stock"\npromote_where = "array_has(tags, '"'"'staff-pick'"'"')"\nmax_per = { category = 2, genres = 2 }\n' "$base" > "$WORK/all.toml"

echo "== night $NIGHT without rules (ingest, prepare, train, recommend; nothing when done)"
/usr/bin/time -f "night: %e s, peak %M KiB" "$BIN" --lake "$LAKE" --config "$WORK/none.toml" \
  run --date "$NIGHT" > "$WORK/night.log" 2>&1 || { tail -20 "$WORK/night.log"; exit 1; }
tail -3 "$WORK/night.log"

declare -A median
for c in none sql caps all; do
  echo "== $c"
  "$BIN" --lake "$LAKE" --config "$WORK/$c.toml" prepare --date "$NIGHT" --overwrite > "$WORK/prepare-$c.log" 2>&1 \
    || { tail -20 "$WORK/prepare-$c.log"; exit 1; }
  times=()
  for r in $(seq "$RUNS"); do
    /usr/bin/time -f "%e" -o "$WORK/time" "$BIN" --lake "$LAKE" --config "$WORK/$c.toml" \
      recommend --date "$NIGHT" > "$WORK/recommend-$c.log" 2>&1 || { tail -20 "$WORK/recommend-$c.log"; exit 1; }
    t=$(tail -1 "$WORK/time"); times+=("$t"); echo "  recommend run $r: $t s"
  done
  median[$c]=$(printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}')
done
for c in sql caps all; do
  echo "$c / none: $(python3 -c "print(f'{${median[$c]} / ${median[none]}:.3f}')") (medians ${median[$c]} s / ${median[none]} s)"
done
