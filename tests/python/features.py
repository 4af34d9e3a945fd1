"""Feature-store and batch interop between redstash and Python (numpy + redis-py).

Run by tests/python_features.rs against a live redis-server:

    python features.py write URL   # the Python recipe (tobytes() into a hash) writes `pyfeat_{dtype}:{i}` hashes
    python features.py check URL   # numpy reads what redstash wrote:
                                   #   rsfeat:{dtype}:e{i}   native layout (8-byte ts + vector)
                                   #   rscompat_{dtype}:{i}  recipe layout written by redstash
                                   #   rsbatch:b1            BatchStore hash of .npy fields

Vectors: entity i of a (6, 5) array whose values come from `expected` (interop.py).
"""

import io
import json
import os
import sys
import time

import numpy as np
import redis

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from interop import DTYPES, expected  # noqa: E402

N, DIM = 6, 5


def write(r):
    """The recipe's FeatureStore.set_features, for every dtype (no TTL is needed)."""
    for dtype in DTYPES:
        arr = expected(dtype, (N, DIM))
        for i in range(N):
            features = arr[i]
            key = f"pyfeat_{dtype}:{i}"
            r.hset(key, mapping={
                "data": features.tobytes(),
                "dtype": str(features.dtype),
                "shape": json.dumps(features.shape),
                "updated_at": str(time.time()),
            })
            r.expire(key, 3600)
    print(f"wrote {len(DTYPES) * N} recipe feature hashes")


def check(r):
    now = time.time()
    n = 0
    for dtype in DTYPES:
        want = expected(dtype, (N, DIM))
        le = np.dtype(dtype).newbyteorder("<")
        for i in range(N):
            # Native layout: 8-byte little-endian ms timestamp, then the raw vector.
            v = r.get(f"rsfeat:{dtype}:e{i}")
            assert v is not None, (dtype, i)
            assert len(v) == 8 + DIM * le.itemsize, (dtype, len(v))
            ts = int.from_bytes(v[:8], "little") / 1000.0
            assert abs(now - ts) < 600, (dtype, ts, now)
            got = np.frombuffer(v[8:], dtype=le).reshape(DIM)
            assert np.array_equal(got, want[i]), (dtype, i, got, want[i])
            ttl = r.pttl(f"rsfeat:{dtype}:e{i}")
            assert 0 < ttl <= 3_600_000, ttl
            # Recipe layout written by redstash, read the recipe's way.
            raw = r.hgetall(f"rscompat_{dtype}:{i}")
            assert raw, (dtype, i)
            shape = tuple(json.loads(raw[b"shape"]))
            got = np.frombuffer(raw[b"data"], dtype=raw[b"dtype"].decode()).reshape(shape)
            assert got.dtype == want.dtype and np.array_equal(got, want[i]), (dtype, i)
            assert abs(now - float(raw[b"updated_at"])) < 600
            n += 2
    # BatchStore: every field is a .npy value.
    fields = r.hgetall("rsbatch:b1")
    assert set(fields) == {b"features", b"labels"}, fields.keys()
    x = np.load(io.BytesIO(fields[b"features"]))
    y = np.load(io.BytesIO(fields[b"labels"]))
    assert x.dtype == np.float64 and np.array_equal(x, expected("float64", (4, 3))), x
    assert y.dtype == np.int64 and np.array_equal(y, expected("int64", (4,))), y
    print(f"checked {n} feature vectors and 1 batch")


if __name__ == "__main__":
    mode, url = sys.argv[1], sys.argv[2]
    client = redis.Redis.from_url(url)
    {"write": write, "check": check}[mode](client)
