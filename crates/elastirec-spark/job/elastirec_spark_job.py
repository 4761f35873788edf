"""elastirec's train + recommend step on Apache Spark (MLlib ALS).

Shipped inside the elastirec binary and written out at submit time; run as
`spark-submit [conf] elastirec_spark_job.py SPEC_JSON`. SPEC_JSON (one argument) names the
training export's files (local paths or s3a:// URLs, exactly the files its manifest lists), the
staging folder to write and the model settings. The job writes, under the staging folder:

    user_factors/   user_id bigint, factors array<float>        (one Parquet dataset each,
    item_factors/   item_id bigint, factors array<float>         each ends with _SUCCESS)
    recommendations/ user_id bigint, item_id bigint, rank int, score float, source string
    report/         one JSON line: counts, seconds, Spark version  (written last)

elastirec then checks these files and publishes them into models/ and recommendations/ with its
own writers and manifests (fixed-size factor lists, manifest last), so the lake contracts are kept
in one place. On an error the last line of the log is
`ELASTIREC_JOB_ERROR kind=<invalid_input|not_found|transient|internal> <message>` and the exit
status is 1.
"""

import json
import sys
import time
import traceback

INT_MIN, INT_MAX = -(2**31), 2**31 - 1


def fail(kind, message):
    print(f"ELASTIREC_JOB_ERROR kind={kind} {message}", file=sys.stderr, flush=True)
    sys.exit(1)


def dense_ids(df, column, index):
    """A map from an id column to 0..n-1 (Spark ALS takes 32-bit ids only)."""
    from pyspark.sql import functions as F

    lo, hi = df.agg(F.min(column), F.max(column)).first()
    if lo is None or (lo >= INT_MIN and hi <= INT_MAX):
        # The ids fit: use them as they are (no shuffle, no Python workers).
        return None
    ids = df.select(column).distinct().rdd.map(lambda r: r[0]).zipWithIndex()
    return ids.toDF([column, index])


def with_mapped(df, id_map, have, want, cast):
    """Adds column `want` for column `have` through `id_map` (from `dense_ids`), or by casting
    when the ids were used as they are (`id_map` is None). Works both ways: id to index and back."""
    from pyspark.sql import functions as F

    if id_map is None:
        return df.withColumn(want, F.col(have).cast(cast))
    return df.join(id_map, have)


def main(spec):
    from pyspark.ml.recommendation import ALS
    from pyspark.sql import SparkSession, Window
    from pyspark.sql import functions as F

    spark = SparkSession.builder.appName(f"elastirec-{spec['night']}").getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    out = spec["output"].rstrip("/")
    # ALS builds an RDD lineage that grows with every iteration; past about ten iterations its
    # task closures overflow the JVM stack when they are deserialized (StackOverflowError, exit
    # status 50). Checkpointing every few iterations cuts the lineage; the folder is inside the
    # staging folder, so cluster executors reach it and elastirec deletes it after publishing.
    spark.sparkContext.setCheckpointDir(f"{out}/checkpoints")
    k = int(spec["k"])
    started = time.time()

    train = spark.read.parquet(*spec["training"]).select("user_id", "item_id", "value")
    if spec["seen"]:
        older = spark.read.parquet(*spec["seen"]).select("user_id", "item_id")
    else:
        older = spark.createDataFrame([], "user_id bigint, item_id bigint")
    # Training pairs that may be offered again ([events.types] seen = false, repeat_after_days).
    if spec.get("unseen"):
        again = spark.read.parquet(*spec["unseen"]).select("user_id", "item_id")
    else:
        again = spark.createDataFrame([], "user_id bigint, item_id bigint")
    train = train.cache()
    interactions = train.count()
    if interactions == 0:
        fail("invalid_input", "the training export has no pairs")

    user_map = dense_ids(train, "user_id", "u")
    item_map = dense_ids(train, "item_id", "i")
    data = with_mapped(train, user_map, "user_id", "u", "int")
    data = with_mapped(data, item_map, "item_id", "i", "int")

    als = ALS(
        rank=int(spec["factors"]),
        maxIter=int(spec["iterations"]),
        regParam=float(spec["regularization"]),
        alpha=float(spec["alpha"]),
        implicitPrefs=bool(spec["implicit"]),
        seed=int(spec["seed"]) % (2**63),
        userCol="u",
        itemCol="i",
        ratingCol="value",
        nonnegative=False,
        coldStartStrategy="drop",
        checkpointInterval=5,
    )
    model = als.fit(data)

    def factors(frame, mapping, id_column, index):
        f = frame.select(F.col("id").alias(index), F.col("features").alias("factors"))
        if mapping is None:
            return f.select(F.col(index).cast("bigint").alias(id_column), "factors")
        return f.join(mapping, index).select(F.col(id_column).cast("bigint"), "factors")

    user_factors = factors(model.userFactors, user_map, "user_id", "u").cache()
    item_factors = factors(model.itemFactors, item_map, "item_id", "i").cache()
    users = user_factors.count()
    items = item_factors.count()
    train_seconds = time.time() - started
    user_factors.coalesce(1).write.mode("overwrite").parquet(f"{out}/user_factors")
    item_factors.coalesce(1).write.mode("overwrite").parquet(f"{out}/item_factors")

    # Everything seen up to the night, whatever the window: never recommended.
    seen = (
        train.select("user_id", "item_id")
        .join(again, ["user_id", "item_id"], "left_anti")
        .unionByName(older)
        .distinct()
        .cache()
    )
    per_user = seen.groupBy("user_id").agg(F.count("*").alias("n"))
    max_seen = per_user.agg(F.max("n")).first()[0] or 0
    # recommendForAllUsers keeps the n best items of each user; with n = k + the most items any
    # user has seen, at least k unseen ones remain in every list (n is capped at the catalog).
    n = int(min(k + max_seen, items))
    ranked = (
        model.recommendForAllUsers(n)
        .select(F.col("u"), F.posexplode("recommendations").alias("pos", "rec"))
        .select("u", F.col("rec.i").alias("i"), F.col("rec.rating").alias("score"))
    )
    ranked = with_mapped(ranked, user_map, "u", "user_id", "bigint")
    ranked = with_mapped(ranked, item_map, "i", "item_id", "bigint")
    order = Window.partitionBy("user_id").orderBy(F.col("score").desc(), F.col("item_id").asc())
    als_lists = (
        ranked.select("user_id", "item_id", "score")
        .join(seen, ["user_id", "item_id"], "left_anti")
        .withColumn("rank", F.row_number().over(order))
        .where(F.col("rank") <= k)
        .select(
            "user_id",
            "item_id",
            F.col("rank").cast("int"),
            F.col("score").cast("float"),
            F.lit("als").alias("source"),
        )
    )

    # Users seen up to the night whom the model does not cover get the most popular items of the
    # window they have not seen (users per item, ties by the lower item id), as in elastirec.
    uncovered = seen.select("user_id").distinct().join(
        user_factors.select("user_id"), "user_id", "left_anti"
    )
    popularity = train.groupBy("item_id").agg(F.count("*").alias("users"))
    max_seen_uncovered = (
        per_user.join(uncovered, "user_id").agg(F.max("n")).first()[0] or 0
    )
    top_n = k + max_seen_uncovered
    popular = (
        popularity.orderBy(F.col("users").desc(), F.col("item_id").asc()).limit(top_n)
    )
    pop_order = Window.partitionBy("user_id").orderBy(
        F.col("users").desc(), F.col("item_id").asc()
    )
    popular_lists = (
        uncovered.crossJoin(F.broadcast(popular))
        .join(seen, ["user_id", "item_id"], "left_anti")
        .withColumn("rank", F.row_number().over(pop_order))
        .where(F.col("rank") <= k)
        .select(
            "user_id",
            "item_id",
            F.col("rank").cast("int"),
            F.col("users").cast("float").alias("score"),
            F.lit("popular").alias("source"),
        )
    )
    lists = als_lists.unionByName(popular_lists)
    partitions = max(1, int(spec.get("output_files", 1)))
    lists.repartition(partitions, "user_id").sortWithinPartitions("user_id", "rank").write.mode(
        "overwrite"
    ).parquet(f"{out}/recommendations")

    report = {
        "night": spec["night"],
        "spark_version": spark.version,
        "interactions": interactions,
        "users": users,
        "items": items,
        "factors": int(spec["factors"]),
        "train_seconds": train_seconds,
        "seconds": time.time() - started,
        "candidates_per_user": n,
    }
    spark.createDataFrame([tuple(report.values())], list(report.keys())).coalesce(1).write.mode(
        "overwrite"
    ).json(f"{out}/report")
    print(f"elastirec spark job done: {json.dumps(report)}", flush=True)
    spark.stop()


def classify(exc):
    text = f"{type(exc).__name__}: {exc}"
    if "PATH_NOT_FOUND" in text or "Path does not exist" in text:
        return "not_found"
    transient = (
        "Connection refused",
        "ConnectException",
        "Connection reset",
        "SocketTimeoutException",
        "ExecutorLostFailure",
        "FetchFailed",
        "Py4JNetworkError",
        "SlowDown",
    )
    if isinstance(exc, (ConnectionError, TimeoutError)) or any(t in text for t in transient):
        return "transient"
    if isinstance(exc, ImportError):
        return "invalid_input"
    return "internal"


if __name__ == "__main__":
    if len(sys.argv) != 2:
        fail("invalid_input", "usage: elastirec_spark_job.py SPEC_JSON")
    try:
        spec = json.loads(sys.argv[1])
    except ValueError as e:
        fail("invalid_input", f"the job spec is not JSON: {e}")
    try:
        main(spec)
    except SystemExit:
        raise
    except BaseException as e:  # noqa: BLE001 - the kind line must close every failure
        traceback.print_exc()
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        fail(classify(e), f"{type(e).__name__}: {first[:500]}")
