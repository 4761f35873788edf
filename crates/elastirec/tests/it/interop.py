"""Reads an elastirec lake with other tools, as a downstream team would.

Usage: interop.py LAKE_DIR NIGHT
Prints one JSON object: per warehouse table (read with the `deltalake` package) its row count
and column names; for the night's training export and recommendations (Parquet files named by
their manifests) the rows counted by pyarrow and by DuckDB, and the column names.
"""
import json
import os
import sys

import duckdb
import pyarrow.parquet as pq
from deltalake import DeltaTable

lake, night = sys.argv[1], sys.argv[2]
y, m, d = night.split("-")
out = {"tables": {}, "outputs": {}}
for name in ["events", "items", "loads", "rejects"]:
    t = DeltaTable(os.path.join(lake, "warehouse", name)).to_pyarrow_table()
    out["tables"][name] = {"rows": t.num_rows, "columns": t.column_names}
for what, folder in [
    ("export", os.path.join("exports", "training", y, m, d)),
    ("recommendations", os.path.join("recommendations", y, m, d)),
]:
    with open(os.path.join(lake, folder, "_manifest.json")) as f:
        manifest = json.load(f)
    files = [os.path.join(lake, e["path"]) for e in manifest["files"]]
    tables = [pq.read_table(p) for p in files]
    duck = duckdb.connect().execute(
        "SELECT COUNT(*) FROM read_parquet(["
        + ", ".join("'" + p.replace("'", "''") + "'" for p in files)
        + "])"
    ).fetchone()[0]
    out["outputs"][what] = {
        "pyarrow_rows": sum(t.num_rows for t in tables),
        "duckdb_rows": duck,
        "columns": tables[0].column_names if tables else [],
        "manifest_rows": manifest["rows"],
        "manifest_columns": [c["name"] for c in manifest["schema"]],
    }
print(json.dumps(out))
