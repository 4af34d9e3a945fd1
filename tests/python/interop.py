"""Interop checks between redstash and the Python tools (numpy, lz4.frame, zlib).

Run by tests/python_interop.rs against a live redis-server:

    python interop.py check URL     # numpy reads every `rs:*` array redstash wrote
    python interop.py write URL     # numpy writes `py:*` arrays for redstash to read

Key names describe the expected array, so both sides can build it independently:
  rs:{codec}:{dtype}:{shape}:{order}       (shape as 2x3, "s" for 0-d; order C or F)
  py:{variant}:{dtype}:{shape}:{order}     variant in npy-le, npy-be, lz4, zlib
  rsrecipe:{compression}:{dtype}:{shape}   tobytes() + JSON metadata layout of the Python recipe, written by redstash
  pyrecipe:{compression}:{dtype}:{shape}   tobytes() + JSON metadata layout of the Python recipe, written here
Values are defined by the C-order flat index i: base(i) = (i*37 + 11) % 97 (see
tests/common/mod.rs, `sample`).
"""

import io
import json
import sys
import zlib

import lz4.frame
import numpy as np
import redis

DTYPES = [
    "bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
    "float16", "float32", "float64", "complex64", "complex128",
]


def expected(dtype, shape):
    n = int(np.prod(shape)) if shape else 1
    base = (np.arange(n, dtype=np.int64) * 37 + 11) % 97
    f = (base - 40).astype(np.float64) * 0.25
    if dtype == "bool":
        v = base % 2 == 1
    elif dtype == "int8":
        v = (base - 40).astype(np.int8)
    elif dtype == "int16":
        v = ((base - 40) * 300).astype(np.int16)
    elif dtype == "int32":
        v = ((base - 40) * 70000).astype(np.int32)
    elif dtype == "int64":
        v = (base - 40) * 5_000_000_000
    elif dtype == "uint8":
        v = base.astype(np.uint8)
    elif dtype == "uint16":
        v = (base * 600).astype(np.uint16)
    elif dtype == "uint32":
        v = (base * 40_000_000).astype(np.uint32)
    elif dtype == "uint64":
        v = (base * 100_000_000_000).astype(np.uint64)
    elif dtype in ("float16", "float32", "float64"):
        v = f.astype(dtype)
    elif dtype == "complex64":
        v = (f.astype(np.float32) + 1j * (-(f.astype(np.float32)) * np.float32(0.5))).astype(np.complex64)
    elif dtype == "complex128":
        v = (f + 1j * (-f * 0.5)).astype(np.complex128)
    else:
        raise ValueError(dtype)
    return np.asarray(v).reshape(shape)


def parse_shape(s):
    return () if s == "s" else tuple(int(x) for x in s.split("x"))


def shape_name(shape):
    return "s" if shape == () else "x".join(str(d) for d in shape)


def unwrap(value):
    """Peel compression layers by magic, as a Python user would."""
    if value[:4] == b"\x04\x22\x4d\x18":
        return unwrap(lz4.frame.decompress(value))
    if value[:1] == b"\x78":
        return unwrap(zlib.decompress(value))
    if value[:4] == b"\x28\xb5\x2f\xfd":
        import zstandard  # optional

        return unwrap(zstandard.ZstdDecompressor().decompress(value))
    return value


def check(r):
    checked = 0
    failures = []
    for key in r.scan_iter(match="rs:*", count=1000):
        name = key.decode()
        _, codec, dtype, shape, order = name.split(":")
        shape = parse_shape(shape)
        value = r.get(key)
        try:
            if codec.startswith("zstd"):
                try:
                    import zstandard  # noqa: F401
                except ImportError:
                    continue
            arr = np.load(io.BytesIO(unwrap(value)), allow_pickle=False)
            want = expected(dtype, shape)
            ok = arr.dtype == want.dtype and arr.shape == want.shape and np.array_equal(arr, want)
            if order == "F" and len(shape) > 1 and not arr.flags.f_contiguous:
                ok = False
            if not ok:
                failures.append(f"{name}: got {arr.dtype} {arr.shape} {arr.ravel()[:5]}")
        except Exception as e:  # noqa: BLE001
            failures.append(f"{name}: {e!r}")
        checked += 1
    for key in r.scan_iter(match="rsrecipe:*:meta", count=1000):
        name = key.decode()[: -len(":meta")]
        _, comp, dtype, shape = name.split(":")
        meta = json.loads(r.get(f"{name}:meta"))
        data = r.get(f"{name}:data")
        if meta.get("compression") == "lz4":
            data = lz4.frame.decompress(data)
        elif meta.get("compression") == "zlib":
            data = zlib.decompress(data)
        arr = np.frombuffer(data, dtype=meta["dtype"]).reshape(meta["shape"])
        want = expected(dtype, parse_shape(shape))
        if not (arr.dtype == want.dtype and np.array_equal(arr, want)):
            failures.append(f"{name}: recipe mismatch")
        checked += 1
    print(f"checked {checked} values written by redstash")
    if failures:
        print("\n".join(failures))
        sys.exit(1)
    if checked == 0:
        print("nothing to check")
        sys.exit(1)


SHAPES = [(), (0,), (5,), (2, 3), (2, 3, 4), (1, 2, 1, 2, 3, 2)]


def write(r):
    n = 0
    for dtype in DTYPES:
        for shape in SHAPES:
            a = expected(dtype, shape)
            for order in ("C", "F"):
                arr = a.copy(order=order)
                for variant in ("npy-le", "npy-be", "lz4", "zlib"):
                    x = arr
                    if variant == "npy-be":
                        x = arr.astype(arr.dtype.newbyteorder(">"))
                    buf = io.BytesIO()
                    np.save(buf, x, allow_pickle=False)
                    value = buf.getvalue()
                    if variant == "lz4":
                        value = lz4.frame.compress(value)
                    elif variant == "zlib":
                        value = zlib.compress(value, 6)
                    r.set(f"py:{variant}:{dtype}:{shape_name(shape)}:{order}", value)
                    n += 1
            # The Python recipe's layout: tobytes() bytes + JSON meta.
            for comp in ("none", "lz4", "zlib"):
                data = a.tobytes()
                meta = {"dtype": str(a.dtype), "shape": a.shape}
                if comp == "lz4":
                    meta.update(compression="lz4", original_size=len(data))
                    data = lz4.frame.compress(data, compression_level=1)
                elif comp == "zlib":
                    meta.update(compression="zlib", original_size=len(data))
                    data = zlib.compress(data, 6)
                pipe = r.pipeline()
                key = f"pyrecipe:{comp}:{dtype}:{shape_name(shape)}"
                pipe.set(f"{key}:data", data)
                pipe.set(f"{key}:meta", json.dumps(meta))
                pipe.execute()
                n += 1
    print(f"wrote {n} values")


if __name__ == "__main__":
    mode, url = sys.argv[1], sys.argv[2]
    client = redis.Redis.from_url(url)
    {"check": check, "write": write}[mode](client)
