"""The common Python way to bulk-load a CSV into Redis, written correctly, for the
`load` benchmark's baseline: csv.DictReader, json.dumps (real JSON), a redis-py
pipeline executed every BATCH records. With PROCESSES > 1, that many processes each
stream the file and take every PROCESSES-th batch (no process holds the whole file).

usage: load_csv.py CSV PORT [PROCESSES] [BATCH]
Prints the number of records it loaded.
"""
import csv
import json
import multiprocessing
import sys

import redis


def load(path, port, shard, shards, batch):
    r = redis.Redis(port=port)
    pipe = r.pipeline(transaction=False)
    loaded = 0
    pending = 0
    with open(path, newline="") as f:
        for i, row in enumerate(csv.DictReader(f)):
            if (i // batch) % shards != shard:
                continue
            row["id"] = int(row["id"])
            pipe.set("item:%d" % row["id"], json.dumps(row, separators=(",", ":")))
            pending += 1
            if pending == batch:
                loaded += sum(1 for ok in pipe.execute() if ok)
                pending = 0
    if pending:
        loaded += sum(1 for ok in pipe.execute() if ok)
    return loaded


def main():
    path, port = sys.argv[1], int(sys.argv[2])
    procs = int(sys.argv[3]) if len(sys.argv) > 3 else 1
    batch = int(sys.argv[4]) if len(sys.argv) > 4 else 10_000
    if procs == 1:
        print(load(path, port, 0, 1, batch))
        return
    with multiprocessing.Pool(procs) as pool:
        counts = pool.starmap(load, [(path, port, i, procs, batch) for i in range(procs)])
    print(sum(counts))


if __name__ == "__main__":
    main()
