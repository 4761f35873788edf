#!/usr/bin/env python3
"""Fold-in quality on MovieLens 100K (issue 24): lists for users the night never saw.

Cold users: users with no rating before the split (1998-04-01 00:00 UTC) who rate between the
split and 1998-04-22 (the data's end). Each gives its first N ratings by time (ties by item id);
the rest of its ratings, on items known in training, is the test. NDCG@10 with the given items
excluded, binary relevance, mean over users (a user with no test item is left out).

In one run, on the same split and the same metric code:
  - popularity: distinct training users per item, ties by the lower item id;
  - elastirec fold-in: `cargo run --example foldin_lists` trains the night's model (implicit
    ALS, its default conjugate-gradient solver) and folds each user in with
    elastirec_als::foldin::ModelFoldIn, the code behind `POST /v1/recommendations`,
    for each prior strength of --priors (0: the plain fold-in, training's exact user solve);
  - implicit 0.7.3: AlternatingLeastSquares on the same rows with confidence 1 + rating, then
    recommend(..., recalculate_user=True) on each user's given items.
Both models: 64 factors, 15 iterations, regularization 0.05, confidence 1 + alpha*rating
(alpha 1), per seed of --seeds; the table shows the mean over seeds.

--validation: the same protocol one month earlier (train before 1998-03-01, cold users of March
1998), which never looks at the test split: choose the prior there.

Usage:
    export CARGO_TARGET_DIR=/var/tmp/target-foldin       # where `cargo build` put the examples
    cargo build --workspace --examples                   # or cargo test --workspace --no-run
    pip install implicit==0.7.3
    python3 bench/foldin/run.py [--data ../shared/data/movielens-100k] [--seeds 0,1,2]
        [--priors 0,0.5,1,2] [--validation] [--json OUT]
"""

import argparse
import csv
import json
import math
import os
import subprocess
import sys
import tempfile
from collections import defaultdict
from datetime import datetime, timezone

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np
import scipy.sparse as sp

K = 10
NS = (3, 5, 10)


def utc(*d):
    return int(datetime(*d, tzinfo=timezone.utc).timestamp())


def ndcg(ranked, relevant, k=K):
    dcg = sum(1.0 / math.log2(r + 2) for r, i in enumerate(ranked[:k]) if i in relevant)
    ideal = sum(1.0 / math.log2(r + 2) for r in range(min(len(relevant), k)))
    return dcg / ideal


def split(ratings_csv, start, end):
    rows = []
    with open(ratings_csv) as f:
        for r in csv.DictReader(f):
            rows.append((int(r["userId"]), int(r["movieId"]), float(r["rating"]), int(r["timestamp"])))
    train = [r for r in rows if r[3] < start]
    known_users = {r[0] for r in train}
    known_items = {r[1] for r in train}
    later = defaultdict(list)
    for r in rows:
        if start <= r[3] < end and r[0] not in known_users:
            later[r[0]].append(r)
    cases = {}
    for n in NS:
        users = {}
        for u, rs in sorted(later.items()):
            rs = sorted(rs, key=lambda r: (r[3], r[1]))
            given = [(r[1], r[2]) for r in rs[:n]]
            test = {r[1] for r in rs[n:] if r[1] in known_items}
            if test:
                users[u] = (given, test)
        cases[n] = users
    return train, cases


def popularity_lists(train, cases):
    count = defaultdict(int)
    for _, i, _, _ in train:
        count[i] += 1
    ranked = sorted(count, key=lambda i: (-count[i], i))
    out = {}
    for n, users in cases.items():
        for u, (given, _) in users.items():
            seen = {i for i, _ in given}
            out[(n, u)] = [i for i in ranked if i not in seen][:K]
    return out


def implicit_lists(train, cases, seed, p):
    from implicit.cpu.als import AlternatingLeastSquares

    users = sorted({r[0] for r in train})
    items = sorted({r[1] for r in train})
    uidx = {u: n for n, u in enumerate(users)}
    iidx = {i: n for n, i in enumerate(items)}
    conf = np.array([1.0 + p.alpha * r[2] for r in train], dtype=np.float32)
    ui = sp.csr_matrix((conf, ([uidx[r[0]] for r in train], [iidx[r[1]] for r in train])),
                       shape=(len(users), len(items)))
    model = AlternatingLeastSquares(factors=p.factors, regularization=p.regularization, alpha=1.0,
                                    iterations=p.iterations, random_state=seed, num_threads=1,
                                    calculate_training_loss=False)
    model.fit(ui, show_progress=False)
    out = {}
    for n, cs in cases.items():
        for u, (given, _) in cs.items():
            known = [(iidx[i], r) for i, r in given if i in iidx]
            row = sp.csr_matrix(
                (np.array([1.0 + p.alpha * r for _, r in known], dtype=np.float32),
                 (np.zeros(len(known), dtype=int), np.array([i for i, _ in known], dtype=int))),
                shape=(1, len(items)))
            ids, _ = model.recommend(0, row, N=K, filter_already_liked_items=True,
                                     recalculate_user=True)
            out[(n, u)] = [items[i] for i in ids if i >= 0]
    return out


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.dirname(os.path.dirname(here))
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(root, "target"))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=os.path.join(root, "../shared/data/movielens-100k"))
    ap.add_argument("--bin", default=os.path.join(target, "debug", "examples", "foldin_lists"))
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--priors", default="0,8")
    ap.add_argument("--factors", type=int, default=64)
    ap.add_argument("--iterations", type=int, default=15)
    ap.add_argument("--regularization", type=float, default=0.05)
    ap.add_argument("--alpha", type=float, default=1.0)
    ap.add_argument("--validation", action="store_true")
    ap.add_argument("--no-implicit", action="store_true", help="skip implicit 0.7.3")
    ap.add_argument("--json")
    p = ap.parse_args()
    if not os.path.exists(p.bin):
        sys.exit(f"no example binary at {p.bin}: run `cargo build --workspace --examples` or pass --bin")
    if p.validation:
        start, end, name = utc(1998, 3, 1), utc(1998, 4, 1), "validation (cold users of March 1998)"
    else:
        start, end, name = utc(1998, 4, 1), utc(1998, 4, 23), "test (cold users of 1998-04-01..22)"
    seeds = [int(s) for s in p.seeds.split(",")]
    train, cases = split(os.path.join(p.data, "ratings.csv"), start, end)
    print(f"split: {name}; train {len(train)} ratings; users "
          + ", ".join(f"N={n}: {len(c)}" for n, c in cases.items()))

    with tempfile.TemporaryDirectory(prefix="foldin-") as tmp:
        train_csv, given_csv, lists_csv = (os.path.join(tmp, f) for f in ("train.csv", "given.csv", "lists.csv"))
        with open(train_csv, "w") as f:
            f.write("user,item,value\n")
            for u, i, r, _ in train:
                f.write(f"{u},{i},{r}\n")
        with open(given_csv, "w") as f:
            f.write("n,user,item,value\n")
            for n, cs in cases.items():
                for u, (given, _) in cs.items():
                    for i, r in given:
                        f.write(f"{n},{u},{i},{r}\n")
        cmd = [p.bin, "--train", train_csv, "--given", given_csv, "--out", lists_csv,
               "--seeds", p.seeds, "--priors", p.priors, "--factors", str(p.factors),
               "--iterations", str(p.iterations), "--regularization", str(p.regularization),
               "--alpha", str(p.alpha)]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            sys.exit(f"{' '.join(cmd)} failed:\n{done.stderr}")
        print(done.stderr.strip())
        ours = defaultdict(dict)  # (seed, prior) -> (n, user) -> list
        with open(lists_csv) as f:
            for r in csv.DictReader(f):
                key = (int(r["seed"]), float(r["prior"]))
                ours[key].setdefault((int(r["n"]), int(r["user"])), []).append(int(r["item"]))

    def score(lists):
        return {n: float(np.mean([ndcg(lists.get((n, u), []), test) for u, (_, test) in cs.items()]))
                for n, cs in cases.items()}

    rows = {"popularity": [score(popularity_lists(train, cases))]}
    for prior in [float(x) for x in p.priors.split(",")]:
        label = "elastirec fold-in" + (f", prior {prior:g}" if prior else " (no prior)")
        rows[label] = [score(ours[(s, prior)]) for s in seeds]
    if not p.no_implicit:
        import implicit
        rows[f"implicit {implicit.__version__} fold-in"] = [
            score(implicit_lists(train, cases, s, p)) for s in seeds]

    print(f"\nNDCG@{K} (mean over seeds {seeds}; min–max over seeds in brackets)\n")
    print("| | " + " | ".join(f"N = {n}" for n in NS) + " |")
    print("|---|" + "---|" * len(NS))
    out = {}
    for label, by_seed in rows.items():
        cells = []
        for n in NS:
            v = [s[n] for s in by_seed]
            cell = f"{np.mean(v):.3f}" + (f" ({min(v):.3f}–{max(v):.3f})" if len(v) > 1 else "")
            cells.append(cell)
        out[label] = {str(n): [s[n] for s in by_seed] for n in NS}
        print(f"| {label} | " + " | ".join(cells) + " |")
    if p.json:
        with open(p.json, "w") as f:
            json.dump({"split": name, "seeds": seeds, "ndcg": out}, f, indent=2)


if __name__ == "__main__":
    main()
