"""DuckDB side of bench/prepare/run.sh: the rendered training.sql and seen.sql over the live data
files of warehouse/events, each result written as Parquet (training first: seen reads it)."""
import os
import re
import sys
import tempfile

import duckdb
from deltalake import DeltaTable

lake, rendered, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])

# `elastirec sql-files --date D` prints each query after a line "-- NAME.sql (origin), night D".
sections = {}
name = None
for line in open(rendered).read().splitlines():
    header = re.match(r"-- (\w+\.sql) \(", line)
    if header:
        name = header.group(1)
        sections[name] = []
    elif name and not line.lstrip().startswith("--"):
        sections[name].append(line)


def query(name):
    return "\n".join(sections[name]).strip().rstrip(";")


files = DeltaTable(os.path.join(lake, "warehouse", "events")).file_uris()
con = duckdb.connect()
con.execute(f"SET threads = {threads}")
file_list = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
# event_date is a partition column (in the folder names), as elastirec's table has it.
con.execute(
    f"CREATE VIEW events AS SELECT * FROM read_parquet([{file_list}], hive_partitioning = true)"
)
out = tempfile.mkdtemp(prefix="bench-prepare-duckdb-")
training = os.path.join(out, "training.parquet")
seen = os.path.join(out, "seen.parquet")
con.execute(f"COPY ({query('training.sql')}) TO '{training}' (FORMAT PARQUET, COMPRESSION zstd)")
con.execute(f"CREATE VIEW training AS SELECT * FROM read_parquet('{training}')")
con.execute(f"COPY ({query('seen.sql')}) TO '{seen}' (FORMAT PARQUET, COMPRESSION zstd)")
rows = lambda p: con.execute(f"SELECT COUNT(*) FROM read_parquet('{p}')").fetchone()[0]
print(f"training pairs {rows(training)}, seen pairs {rows(seen)} ({len(files)} event files)")
