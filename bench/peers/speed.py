#!/usr/bin/env python3
"""Speed peer comparison: elastirec's implicit ALS against `implicit` (pip) on the same files.

1. `elastirec simulate --scale S --seed SEED` writes MovieLens-20M-shaped daily raw files
   (skipped when the lake already has them);
2. the raw files are split: the last `--holdout-days` days are the held-out test, everything
   before is training; both are written once as Parquet (user_id, item_id, value);
3. each side runs in its own child process on those two files (implicit first, then
   elastirec's `peer_fit` example), with the same model: 64 factors, 10 iterations, 2 threads,
   regularization 0.05, 3 CG steps, confidence c = 1 + alpha·rating (implicit is fed the values
   1 + alpha·rating with its own alpha = 1, since it uses the values as confidences directly);
4. prints fit time, top-10-for-all-users time, peak memory of each child (ru_maxrss from
   wait4), NDCG@10 on the held-out days, and the ratios.

Not a test; see bench/README.md. Needs pyarrow, numpy, scipy and implicit.
"""
import argparse
import glob
import json
import os
import subprocess
import sys
import time

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))


def run_child(cmd, env=None):
    """Runs a child; returns (stdout, peak RSS in MiB, wall seconds)."""
    start = time.time()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, env=env, cwd=REPO)
    out = p.stdout.read().decode()
    _, status, usage = os.wait4(p.pid, 0)
    p.wait()
    if status != 0:
        sys.exit(f"{cmd[0]} failed with status {status}:\n{out}")
    return out, usage.ru_maxrss / 1024.0, time.time() - start


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--work", default=None, help="folder for the lake and the Parquet files (default /var/tmp/elastirec-peers-S<scale>)")
    ap.add_argument("--holdout-days", type=int, default=1)
    ap.add_argument("--factors", type=int, default=64)
    ap.add_argument("--iterations", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--alpha", type=float, default=1.0)
    ap.add_argument("--regularization", type=float, default=0.05)
    ap.add_argument("--cg-steps", type=int, default=3)
    ap.add_argument("--elastirec", default=None, help="the elastirec binary (default $CARGO_TARGET_DIR/debug/elastirec)")
    ap.add_argument("--peer-fit", default=None, help="the peer_fit example (default $CARGO_TARGET_DIR/debug/examples/peer_fit)")
    ap.add_argument("--skip-implicit", action="store_true")
    a = ap.parse_args()

    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(REPO, "target"))
    elastirec = a.elastirec or os.path.join(target, "debug", "elastirec")
    peer_fit = a.peer_fit or os.path.join(target, "debug", "examples", "peer_fit")
    work = a.work or f"/var/tmp/elastirec-peers-S{a.scale:g}-seed{a.seed}"
    lake = os.path.join(work, "lake")
    os.makedirs(work, exist_ok=True)

    files = sorted(glob.glob(os.path.join(lake, "raw/events/*/*/*/*.csv")))
    if not files:
        t = time.time()
        subprocess.run([elastirec, "--lake", lake, "simulate", "--scale", str(a.scale), "--seed", str(a.seed)], check=True)
        print(f"simulate --scale {a.scale}: {time.time() - t:.1f} s wall")
        files = sorted(glob.glob(os.path.join(lake, "raw/events/*/*/*/*.csv")))

    train_path = os.path.join(work, f"train-h{a.holdout_days}.parquet")
    test_path = os.path.join(work, f"test-h{a.holdout_days}.parquet")
    if not (os.path.exists(train_path) and os.path.exists(test_path)):
        t = time.time()
        holdout = set(files[-a.holdout_days:])
        opts = pacsv.ConvertOptions(column_types={"userId": pa.int64(), "movieId": pa.int64(), "rating": pa.float32(), "timestamp": pa.int64()})
        parts = {True: [], False: []}
        for f in files:
            parts[f in holdout].append(pacsv.read_csv(f, convert_options=opts))
        for is_test, path in [(False, train_path), (True, test_path)]:
            t_ = pa.concat_tables(parts[is_test])
            out = pa.table({"user_id": t_["userId"], "item_id": t_["movieId"], "value": t_["rating"]})
            pq.write_table(out, path)
        print(f"split {len(files)} daily files (last {a.holdout_days} held out): {time.time() - t:.1f} s")
    n_train = pq.ParquetFile(train_path).metadata.num_rows
    n_test = pq.ParquetFile(test_path).metadata.num_rows
    print(f"train {n_train:,} rows, held out {n_test:,} rows; factors {a.factors}, iterations {a.iterations}, threads {a.threads}")

    common = ["--factors", str(a.factors), "--iterations", str(a.iterations), "--threads", str(a.threads),
              "--alpha", str(a.alpha), "--regularization", str(a.regularization), "--cg-steps", str(a.cg_steps)]
    results = {}
    if not a.skip_implicit:
        env = dict(os.environ, OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1", OMP_NUM_THREADS="1")
        out, rss, wall = run_child([sys.executable, os.path.join(HERE, "speed_implicit.py"), "--train", train_path, "--test", test_path] + common, env)
        r = json.loads(out.strip().splitlines()[-1])
        r["peak_mib"], r["wall"] = rss, wall
        results["implicit"] = r
    out, rss, wall = run_child([peer_fit, "--train", train_path, "--test", test_path] + common)
    r = json.loads(out.strip().splitlines()[-1])
    r["peak_mib"], r["wall"] = rss, wall
    results["elastirec"] = r

    print(f"{'side':<10} {'fit s':>8} {'top-10 s':>9} {'peak MiB':>9} {'NDCG@10':>8} {'test users':>10}")
    for side, r in results.items():
        print(f"{side:<10} {r['fit_seconds']:>8.2f} {r['topk_seconds']:>9.2f} {r['peak_mib']:>9.0f} {r['ndcg10']:>8.4f} {r['test_users']:>10}")
    if "implicit" in results:
        i, e = results["implicit"], results["elastirec"]
        print(f"ratios elastirec/implicit: fit {e['fit_seconds'] / i['fit_seconds']:.2f}, top-10 {e['topk_seconds'] / i['topk_seconds']:.2f}, peak memory {e['peak_mib'] / i['peak_mib']:.2f}")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
