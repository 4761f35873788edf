#!/usr/bin/env python3
"""Quality acceptance on MovieLens 100K: elastirec's NDCG@10 against `implicit` and popularity.

Temporal split: train on every rating before 1998-04-01 00:00 UTC (elastirec's night 1998-03-31,
days are UTC), test on all later ratings of users and items known then (new pairs only: a user
rates a movie once). Both sides train on the same rows: elastirec's own training export of that
night (exports/training/1998/03/31/*.parquet, one row per (user, item) with value = rating), read
here with pyarrow and handed to implicit with the same confidence c = 1 + alpha * rating, the same
factors, iterations, regularization and conjugate-gradient steps. Seen items are excluded on both
sides; the same metric code below scores both lists (and elastirec's own `evaluate` report is
printed beside it as a cross-check).

elastirec is driven through its CLI on a temporary lake:
    import movielens → run --date 1998-03-31 → for each seed: train + recommend (ELASTIREC_MODEL__SEED)
    → ingest --date 1998-04-30 → evaluate --date 1998-03-31 --horizon-days 30

Standard errors: over test users (per-user NDCG, averaged over seeds) and over seeds; the
difference elastirec − implicit is paired by user.

Usage:
    export CARGO_TARGET_DIR=...; cargo build
    python3 bench/peers/quality_ml100k.py [--bin $CARGO_TARGET_DIR/debug/elastirec]
        [--data ../shared/data/movielens-100k] [--seeds 0,1,2] [--factors 32] [--iterations 15]
        [--regularization 0.05] [--alpha 1] [--threads 2] [--json OUT]
"""

import argparse
import csv
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from datetime import datetime, timezone

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # implicit asks for it: its own threads do the work

import numpy as np
import pyarrow.parquet as pq
import scipy.sparse as sp

NIGHT = "1998-03-31"
NIGHT_DIR = "1998/03/31"
SPLIT = int(datetime(1998, 4, 1, tzinfo=timezone.utc).timestamp())
UNTIL = None  # test ratings end here (exclusive); None: all later ratings
K = 10


def here_default_bin():
    target = os.environ.get("CARGO_TARGET_DIR")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return os.path.join(target or os.path.join(root, "target"), "debug", "elastirec")


def elastirec(args, lake, env=None, binary=None):
    cmd = [binary, "--lake", lake] + args
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("ELASTIREC_")}
    full_env.update(env or {})
    out = subprocess.run(cmd, env=full_env, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
    return out.stdout


def read_manifest_files(lake, manifest, key="files"):
    with open(os.path.join(lake, manifest)) as f:
        m = json.load(f)
    return [os.path.join(lake, e["path"]) for e in m[key]]


def read_table(paths, columns):
    cols = {c: [] for c in columns}
    for p in paths:
        t = pq.read_table(p, columns=columns)
        for c in columns:
            cols[c].append(t.column(c).to_numpy())
    return {c: (np.concatenate(v) if v else np.array([])) for c, v in cols.items()}


# --- metrics: the definitions of crates/elastirec-als/src/metrics.rs -------------------------


def ndcg_at_k(ranked, relevant, k=K):
    dcg = sum(1.0 / math.log2(r + 2) for r, i in enumerate(ranked[:k]) if i in relevant)
    ideal = sum(1.0 / math.log2(r + 2) for r in range(min(len(relevant), k)))
    return dcg / ideal


def recall_at_k(ranked, relevant, k=K):
    return sum(1 for i in ranked[:k] if i in relevant) / len(relevant)


def per_user(lists, truth, metric):
    """Metric per test user, in sorted user order; a user without a list scores 0."""
    return np.array([metric(lists.get(u, []), truth[u]) for u in sorted(truth)])


def se(values):
    values = np.asarray(values, dtype=float)
    if len(values) < 2:
        return float("nan")
    return float(values.std(ddof=1) / math.sqrt(len(values)))


# --- the two sides ---------------------------------------------------------------------------


def elastirec_lists(lake, binary, seed, p):
    env = {"ELASTIREC_MODEL__SEED": str(seed)}
    model = [
        "--factors", str(p.factors), "--iterations", str(p.iterations),
        "--regularization", str(p.regularization), "--alpha", str(p.alpha),
        "--threads", str(p.threads),
    ]
    env["ELASTIREC_MODEL__CG_STEPS"] = str(p.cg_steps)
    t0 = time.perf_counter()
    elastirec(["train", "--date", NIGHT] + model, lake, env, binary)
    fit = time.perf_counter() - t0
    elastirec(["recommend", "--date", NIGHT, "--k", str(K)], lake, env, binary)
    files = read_manifest_files(lake, f"recommendations/{NIGHT_DIR}/_manifest.json")
    t = read_table(files, ["user_id", "item_id", "rank"])
    # The files hold external ids (strings; MovieLens ids are their digits).
    users = [int(u) for u in t["user_id"].tolist()]
    items = [int(i) for i in t["item_id"].tolist()]
    rows = sorted(zip(users, t["rank"].tolist(), items))
    lists = defaultdict(list)
    for u, _, i in rows:
        lists[u].append(i)
    return dict(lists), fit


def implicit_lists(train, seen_pairs, users, items, seed, p):
    from implicit.cpu.als import AlternatingLeastSquares

    uidx = {u: n for n, u in enumerate(users)}
    iidx = {i: n for n, i in enumerate(items)}
    rows = np.array([uidx[u] for u in train["user_id"].tolist()])
    cols = np.array([iidx[i] for i in train["item_id"].tolist()])
    # implicit 0.7 takes the confidence itself (times its alpha): give it 1 + alpha * r, alpha 1.
    conf = (1.0 + p.alpha * train["value"].astype(np.float64)).astype(np.float32)
    user_items = sp.csr_matrix((conf, (rows, cols)), shape=(len(users), len(items)))
    model = AlternatingLeastSquares(
        factors=p.factors, regularization=p.regularization, alpha=1.0,
        iterations=p.iterations, use_cg=True,
        calculate_training_loss=False, num_threads=p.threads, random_state=seed,
    )
    model.cg_steps = p.cg_steps  # an attribute, not a constructor argument, in implicit 0.7
    t0 = time.perf_counter()
    model.fit(user_items, show_progress=False)
    fit = time.perf_counter() - t0
    # Seen items of each user (training plus older seen pairs), excluded from the lists.
    sr = [uidx[u] for u, i in seen_pairs if u in uidx and i in iidx]
    sc = [iidx[i] for u, i in seen_pairs if u in uidx and i in iidx]
    seen = sp.csr_matrix((np.ones(len(sr), np.float32), (sr, sc)), shape=user_items.shape)
    ids, _ = model.recommend(np.arange(len(users)), seen, N=K, filter_already_liked_items=True)
    lists = {users[u]: [items[i] for i in ids[u] if i >= 0] for u in range(len(users))}
    return lists, fit


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default=here_default_bin())
    ap.add_argument("--data", default=os.path.join(os.path.dirname(__file__), "../../../shared/data/movielens-100k"))
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--factors", type=int, default=32)
    ap.add_argument("--iterations", type=int, default=15)
    ap.add_argument("--regularization", type=float, default=0.05)
    ap.add_argument("--alpha", type=float, default=1.0)
    ap.add_argument("--cg-steps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--lake", help="reuse this lake folder (default: a temporary one)")
    ap.add_argument("--json", help="also write the results here")
    ap.add_argument("--validation", action="store_true",
                    help="the inner split for choosing defaults without touching the test set: "
                         "train before 1998-03-01, test on March 1998 only")
    p = ap.parse_args()
    if p.validation:
        global NIGHT, NIGHT_DIR, SPLIT, UNTIL
        NIGHT, NIGHT_DIR = "1998-02-28", "1998/02/28"
        SPLIT = int(datetime(1998, 3, 1, tzinfo=timezone.utc).timestamp())
        UNTIL = int(datetime(1998, 4, 1, tzinfo=timezone.utc).timestamp())
    seeds = [int(s) for s in p.seeds.split(",")]
    if not os.path.exists(p.bin):
        sys.exit(f"no elastirec binary at {p.bin}: run `cargo build` or pass --bin")
    ratings_csv = os.path.join(p.data, "ratings.csv")

    tmp = None
    lake = p.lake
    if lake is None:
        tmp = tempfile.TemporaryDirectory(prefix="quality-ml100k-")
        lake = os.path.join(tmp.name, "lake")
    if not os.path.exists(lake):
        elastirec(["import", "movielens", "--ratings", ratings_csv,
                   "--items", os.path.join(p.data, "movies.csv")], lake, binary=p.bin)
    if not os.path.exists(os.path.join(lake, f"exports/training/{NIGHT_DIR}/_manifest.json")):
        elastirec(["run", "--date", NIGHT], lake, binary=p.bin)

    # The training rows both sides use: elastirec's export of the night.
    export = f"exports/training/{NIGHT_DIR}/_manifest.json"
    train = read_table(read_manifest_files(lake, export), ["user_id", "item_id", "value"])
    older = read_table(read_manifest_files(lake, export, "seen_files"), ["user_id", "item_id"])
    seen_pairs = set(zip(train["user_id"].tolist(), train["item_id"].tolist()))
    seen_pairs |= set(zip(older["user_id"].tolist(), older["item_id"].tolist()))
    users = sorted(set(train["user_id"].tolist()))
    items = sorted(set(train["item_id"].tolist()))
    known_users = {u for u, _ in seen_pairs}
    known_items = set(items)

    # Cross-check the split against the source file: the export holds exactly the earlier ratings.
    truth = defaultdict(set)
    before = 0
    with open(ratings_csv) as f:
        for r in csv.DictReader(f):
            u, i, ts = int(r["userId"]), int(r["movieId"]), int(r["timestamp"])
            if ts < SPLIT:
                before += 1
            elif UNTIL is not None and ts >= UNTIL:
                continue
            elif u in known_users and i in known_items and (u, i) not in seen_pairs:
                truth[u].add(i)
    assert before == len(train["user_id"]), (before, len(train["user_id"]))
    test_pairs = sum(len(v) for v in truth.values())
    print(f"train: {before} ratings before 1998-04-01 UTC, {len(users)} users, {len(items)} items")
    print(f"test:  {test_pairs} later ratings of {len(truth)} known users on known items")
    print(f"params: factors {p.factors}, iterations {p.iterations}, regularization {p.regularization}, "
          f"alpha {p.alpha} (confidence 1 + alpha*rating), cg steps {p.cg_steps}, threads {p.threads}, "
          f"seeds {seeds}")

    # Popularity: distinct training users per item, ties by the lower item id.
    count = defaultdict(int)
    for i in train["item_id"].tolist():
        count[i] += 1
    ranked = sorted(count, key=lambda i: (-count[i], i))
    seen_by = defaultdict(set)
    for u, i in seen_pairs:
        seen_by[u].add(i)
    most_popular = {u: ranked[:K] for u in truth}
    popularity = {u: [i for i in ranked if i not in seen_by[u]][:K] for u in truth}

    results = {"elastirec": [], "implicit": []}
    fits = {"elastirec": [], "implicit": []}
    for seed in seeds:
        lists, fit = elastirec_lists(lake, p.bin, seed, p)
        results["elastirec"].append(per_user(lists, truth, ndcg_at_k))
        fits["elastirec"].append(fit)
        lists, fit = implicit_lists(train, seen_pairs, users, items, seed, p)
        results["implicit"].append(per_user(lists, truth, ndcg_at_k))
        fits["implicit"].append(fit)
        print(f"seed {seed}: NDCG@{K} elastirec {results['elastirec'][-1].mean():.4f}, "
              f"implicit {results['implicit'][-1].mean():.4f}")

    # elastirec's own evaluation of the last seed's lists, scored by the Rust metrics (the
    # held-out test only: the validation split's horizon would differ).
    report = None
    if not p.validation:
        elastirec(["ingest", "--date", "1998-04-30"], lake, binary=p.bin)
        elastirec(["evaluate", "--date", NIGHT, "--horizon-days", "30"], lake, binary=p.bin)
        with open(os.path.join(lake, f"evaluations/{NIGHT_DIR}/horizon-30d.json")) as f:
            report = json.load(f)

    out = {"users": len(truth), "test_pairs": test_pairs, "k": K, "seeds": seeds,
           "params": {"factors": p.factors, "iterations": p.iterations,
                      "regularization": p.regularization, "alpha": p.alpha, "cg_steps": p.cg_steps}}
    print()
    print(f"{'':<26} {'NDCG@10':>8} {'SE users':>9} {'SE seeds':>9} {'recall@10':>10}")
    for name in ["elastirec", "implicit"]:
        by_seed = [r.mean() for r in results[name]]
        user_mean = np.mean(results[name], axis=0)
        out[name] = {"ndcg": float(np.mean(by_seed)), "se_users": se(user_mean),
                     "se_seeds": se(by_seed), "by_seed": by_seed,
                     "fit_seconds": fits[name]}
        print(f"{name:<26} {np.mean(by_seed):>8.4f} {se(user_mean):>9.4f} {se(by_seed):>9.4f}")
    for name, lists in [("popularity (unseen)", popularity), ("most popular (one list)", most_popular)]:
        v = per_user(lists, truth, ndcg_at_k)
        r = per_user(lists, truth, recall_at_k)
        out[name] = {"ndcg": float(v.mean()), "se_users": se(v), "recall": float(r.mean())}
        print(f"{name:<26} {v.mean():>8.4f} {se(v):>9.4f} {'':>9} {r.mean():>10.4f}")
    diff = np.mean(results["elastirec"], axis=0) - np.mean(results["implicit"], axis=0)
    out["difference"] = {"mean": float(diff.mean()), "se_paired": se(diff)}
    print(f"\nelastirec − implicit: {diff.mean():+.4f} (paired SE over users {se(diff):.4f})")
    print(f"fit seconds (CLI train incl. start-up / implicit.fit): elastirec "
          f"{np.mean(fits['elastirec']):.2f}, implicit {np.mean(fits['implicit']):.2f}")
    if report is not None:
        print(f"elastirec evaluate (seed {seeds[-1]}, Rust metrics): NDCG@10 model "
              f"{report['model']['ndcg']:.4f}, popularity {report['popularity']['ndcg']:.4f}, "
              f"most popular {report['most_popular']['ndcg']:.4f} over "
              f"{report['users_scored']} users (this script: "
              f"{results['elastirec'][-1].mean():.4f} over {len(truth)})")
    out["elastirec_evaluate_report"] = report
    if p.json:
        with open(p.json, "w") as f:
            json.dump(out, f, indent=2)
    if tmp:
        tmp.cleanup()


if __name__ == "__main__":
    main()
