#!/usr/bin/env python3
"""A producer and a consumer of an elastirec lake on S3, using standard tools (boto3, pyarrow).

The S3 tests run this to play the applications around elastirec: one uploads raw event files
as a producer would, another reads the published recommendations straight from the bucket.
The endpoint and credentials come from the standard AWS environment variables
(AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION).

Usage:
  s3_tool.py create-bucket BUCKET
  s3_tool.py upload LOCAL_DIR BUCKET PREFIX     every file under LOCAL_DIR, as PREFIX/<relative path>
  s3_tool.py recommendations LAKE NIGHT         LAKE is s3://bucket/prefix or a local folder;
                                                prints {"rows", "latest", "lists": {user: [items]}}
  s3_tool.py cat LAKE PATH                      prints one object of the lake
  s3_tool.py count BUCKET PREFIX                prints {"objects", "bytes"} under PREFIX
"""

import io
import json
import os
import sys

import pyarrow.parquet as pq


def client():
    import boto3

    return boto3.client("s3", endpoint_url=os.environ.get("AWS_ENDPOINT_URL"))


def create_bucket(bucket):
    client().create_bucket(Bucket=bucket)


def upload(local_dir, bucket, prefix):
    s3 = client()
    count = 0
    for root, _, files in os.walk(local_dir):
        for name in sorted(files):
            path = os.path.join(root, name)
            rel = os.path.relpath(path, local_dir).replace(os.sep, "/")
            key = f"{prefix.strip('/')}/{rel}" if prefix.strip("/") else rel
            with open(path, "rb") as f:
                s3.put_object(Bucket=bucket, Key=key, Body=f.read())
            count += 1
    print(json.dumps({"uploaded": count}))


def count(bucket, prefix):
    """Objects under a prefix, with their total size: a listing a test compares before and after."""
    s3, n, size = client(), 0, 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            n, size = n + 1, size + obj["Size"]
    print(json.dumps({"objects": n, "bytes": size}))


class Lake:
    """Reads whole objects of a lake, on S3 or in a local folder."""

    def __init__(self, root):
        if root.startswith("s3://"):
            bucket, _, prefix = root[len("s3://"):].partition("/")
            self.s3, self.bucket, self.prefix = client(), bucket, prefix.strip("/")
        else:
            self.s3, self.root = None, root

    def read(self, path):
        if self.s3 is None:
            with open(os.path.join(self.root, path), "rb") as f:
                return f.read()
        key = f"{self.prefix}/{path}" if self.prefix else path
        return self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()


def recommendations(root, night):
    lake = Lake(root)
    y, m, d = night.split("-")
    manifest = json.loads(lake.read(f"recommendations/{y}/{m}/{d}/_manifest.json"))
    latest = json.loads(lake.read("recommendations/_LATEST"))
    lists, rows = {}, 0
    # The manifest lists the files; a listing could show files of an interrupted attempt.
    for entry in manifest["files"]:
        table = pq.read_table(io.BytesIO(lake.read(entry["path"])), use_threads=False)
        rows += table.num_rows
        cols = table.to_pydict()
        for user, item, rank in zip(cols["user_id"], cols["item_id"], cols["rank"]):
            lists.setdefault(str(user), []).append((rank, item))
    lists = {u: [item for _, item in sorted(l)] for u, l in lists.items()}
    print(json.dumps({"rows": rows, "manifest_rows": manifest["rows"], "latest": latest["night"],
                      "lists": lists}))


def main(argv):
    if len(argv) >= 2 and argv[1] == "create-bucket" and len(argv) == 3:
        create_bucket(argv[2])
    elif len(argv) == 5 and argv[1] == "upload":
        upload(argv[2], argv[3], argv[4])
    elif len(argv) == 4 and argv[1] == "recommendations":
        recommendations(argv[2], argv[3])
    elif len(argv) == 4 and argv[1] == "count":
        count(argv[2], argv[3])
    elif len(argv) == 4 and argv[1] == "cat":
        sys.stdout.write(Lake(argv[2]).read(argv[3]).decode("utf-8"))
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    code = main(sys.argv)
    sys.stdout.flush()
    # pyarrow's thread pools were seen to abort the interpreter's teardown ("terminate called
    # without an active exception") after all output was written; skip the teardown.
    os._exit(code)
