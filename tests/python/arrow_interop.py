"""Arrow table interop between redstash's TableStore and pyarrow, in the ArrowRedis layout.

Run by tests/table_store.rs against a live redis-server:

    python arrow_interop.py write URL   # write table `py:demo` as ArrowRedis's split does:
                                        #   py:demo:{part=XXXXX}:batch=YYYYY, one IPC stream
                                        #   per key (partition 0 zstd, 1 lz4, 2 uncompressed)
    python arrow_interop.py check URL   # read table `rs:t` that redstash split, as
                                        # ArrowRedis's read does (MGET + ipc.open_stream),
                                        # using the batch counts of redstash's manifest

Both tables hold 3 partitions x 2 batches x 50 rows of the ArrowRedis schema, with values
given by a formula of the global row number `g` (see `batch`), mirrored in the Rust test.
"""

import json
import sys
from decimal import Decimal

import pyarrow as pa
import pyarrow.ipc as ipc
import redis

PARTS, BATCHES, ROWS = 3, 2, 50
VOCAB = ["alpha", "beta", "gamma", "delta"]


def batch(p: int, b: int) -> pa.RecordBatch:
    g0 = (p * BATCHES + b) * ROWS
    gs = list(range(g0, g0 + ROWS))
    cols = [
        ("id64", pa.array(gs, pa.int64())),
        ("partition", pa.array([p] * ROWS, pa.int32())),
        ("int32_c", pa.array([(g * 37 + 11) % 97 - 40 for g in gs], pa.int32())),
        ("float64_c", pa.array([g * 0.25 for g in gs], pa.float64())),
        ("float32_c", pa.array([g * 0.5 for g in gs], pa.float32())),
        ("bool_c", pa.array([g % 3 == 0 for g in gs], pa.bool_())),
        ("ts_ns", pa.array([1_700_000_000_000_000_000 + g * 1000 for g in gs], pa.timestamp("ns"))),
        ("dec_18_4", pa.array([Decimal(g * 12345 - 500000).scaleb(-4) for g in gs], pa.decimal128(18, 4))),
        ("str_c", pa.DictionaryArray.from_arrays(pa.array([g % 4 for g in gs], pa.int32()),
                                                 pa.array(VOCAB, pa.string()))),
        ("list_ints", pa.array([[g % 1000 + k for k in range(g % 4)] for g in gs],
                               pa.list_(pa.int32()))),
    ]
    return pa.record_batch([c for _, c in cols], names=[n for n, _ in cols])


def write(r):
    compressions = ["zstd", "lz4", None]
    for p in range(PARTS):
        opts = ipc.IpcWriteOptions(compression=compressions[p])
        for b in range(BATCHES):
            rb = batch(p, b)
            sink = pa.BufferOutputStream()
            with ipc.new_stream(sink, rb.schema, options=opts) as w:
                w.write_batch(rb)
            r.set(f"py:demo:{{part={p:05d}}}:batch={b:05d}", sink.getvalue().to_pybytes())


def check(r):
    prefix = "rs:t"
    manifest = json.loads(r.get(f"{prefix}:__manifest__"))
    assert manifest["format"] == "redstash.table", manifest
    assert manifest["version"] == 1
    assert manifest["rows"] == PARTS * BATCHES * ROWS
    schema = ipc.open_stream(bytes.fromhex(manifest["schema"])).schema
    assert schema.equals(batch(0, 0).schema), (schema, batch(0, 0).schema)
    # ArrowRedis discovers the partitions with SCAN; the manifest must not match.
    found = sorted(k.decode() for k in r.scan_iter(match=f"{prefix}:{{part=*}}:batch=*"))
    assert len(found) == PARTS * BATCHES, found
    parts = {p["id"]: p["batches"] for p in manifest["partitions"]}
    assert parts == {p: BATCHES for p in range(PARTS)}, parts
    for p, n in sorted(parts.items()):
        keys = [f"{prefix}:{{part={p:05d}}}:batch={b:05d}" for b in range(n)]
        for b, buf in enumerate(r.mget(keys)):
            assert buf is not None, keys[b]
            t = ipc.open_stream(pa.BufferReader(buf)).read_all()
            want = pa.Table.from_batches([batch(p, b)])
            assert t.schema.metadata[b"redstash.generation"] == str(manifest["generation"]).encode()
            got = t.replace_schema_metadata(None)
            assert got.equals(want), (keys[b], got.to_pydict(), want.to_pydict())
    print(f"pyarrow {pa.__version__} read {len(found)} batches of {prefix}")


def read_file(path):
    """What redstash's TableStore::read_ipc wrote: an IPC file (.arrow) or stream."""
    want = pa.Table.from_batches([batch(p, b) for p in range(PARTS) for b in range(BATCHES)])
    if path.endswith(".arrow"):
        t = ipc.open_file(path).read_all()
    else:
        t = ipc.open_stream(path).read_all()
    assert t.schema.equals(want.schema), (t.schema, want.schema)
    assert t.equals(want), (t.num_rows, want.num_rows)
    print(f"pyarrow {pa.__version__} read {t.num_rows} rows from {path}")


if __name__ == "__main__":
    mode, arg = sys.argv[1], sys.argv[2]
    if mode == "file":
        read_file(arg)
    else:
        r = redis.Redis.from_url(arg)
        {"write": write, "check": check}[mode](r)
