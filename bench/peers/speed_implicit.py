#!/usr/bin/env python3
"""The `implicit` side of bench/peers/speed.py (run as its own process so its peak memory is its
own). Reads the training and held-out Parquet files, fits
implicit.cpu.als.AlternatingLeastSquares on confidences 1 + alpha·value, computes top-10 for
every user with seen items filtered, scores NDCG@10 like elastirec's peer_fit, prints one JSON
line."""
import argparse
import json
import math
import time

import numpy as np
import pyarrow.parquet as pq
import scipy.sparse as sp


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--train", required=True)
    ap.add_argument("--test", required=True)
    ap.add_argument("--factors", type=int, default=64)
    ap.add_argument("--iterations", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--alpha", type=float, default=1.0)
    ap.add_argument("--regularization", type=float, default=0.05)
    ap.add_argument("--cg-steps", type=int, default=3)
    a = ap.parse_args()

    from implicit.cpu.als import AlternatingLeastSquares

    t = time.time()
    tr = pq.read_table(a.train)
    users_raw = tr["user_id"].to_numpy()
    items_raw = tr["item_id"].to_numpy()
    values = tr["value"].to_numpy().astype(np.float32)
    del tr
    read_seconds = time.time() - t
    t = time.time()
    user_ids, u = np.unique(users_raw, return_inverse=True)
    item_ids, i = np.unique(items_raw, return_inverse=True)
    del users_raw, items_raw
    conf = (1.0 + a.alpha * values).astype(np.float32)
    m = sp.csr_matrix((conf, (u, i)), shape=(len(user_ids), len(item_ids)), dtype=np.float32)
    m.sum_duplicates()
    del u, i, conf, values
    build_seconds = time.time() - t

    model = AlternatingLeastSquares(factors=a.factors, iterations=a.iterations, regularization=a.regularization,
                                    alpha=1.0, num_threads=a.threads, use_cg=True,
                                    calculate_training_loss=False, random_state=42)
    model.cg_steps = a.cg_steps  # implicit's default is 3 too
    t = time.time()
    model.fit(m, show_progress=False)
    fit_seconds = time.time() - t

    t = time.time()
    all_users = np.arange(len(user_ids))
    ids, _ = model.recommend(all_users, m, N=10, filter_already_liked_items=True)
    topk_seconds = time.time() - t

    te = pq.read_table(a.test)
    uidx = {int(x): n for n, x in enumerate(user_ids)}
    iidx = {int(x): n for n, x in enumerate(item_ids)}
    relevant = {}
    for uu, ii in zip(te["user_id"].to_pylist(), te["item_id"].to_pylist()):
        if uu in uidx and ii in iidx:
            ur, ir = uidx[uu], iidx[ii]
            row = m.indices[m.indptr[ur]:m.indptr[ur + 1]]
            if not np.any(row == ir):
                relevant.setdefault(ur, set()).add(ir)
    ndcg = 0.0
    for ur, rel in relevant.items():
        dcg = sum(1.0 / math.log2(r + 2) for r, it in enumerate(ids[ur]) if int(it) in rel)
        ideal = sum(1.0 / math.log2(r + 2) for r in range(min(len(rel), 10)))
        ndcg += dcg / ideal
    ndcg /= max(len(relevant), 1)
    print(json.dumps({"side": "implicit", "users": len(user_ids), "items": len(item_ids), "nnz": int(m.nnz),
                      "read_seconds": read_seconds, "build_seconds": build_seconds, "fit_seconds": fit_seconds,
                      "topk_seconds": topk_seconds, "ndcg10": ndcg, "test_users": len(relevant)}))


if __name__ == "__main__":
    main()
