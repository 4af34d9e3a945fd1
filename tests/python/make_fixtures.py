"""Write the golden files of tests/fixtures/ with numpy, lz4, zlib, zstandard and pyarrow.

    .venv/bin/python tests/python/make_fixtures.py      # from the repository root

tests/golden_files.rs decodes them without Python, so the interop decoding is tested
where the venv is absent; the live tests (python_interop.rs, table_store.rs) still run
Python against redis-server. Running this again writes the same bytes (all inputs are
deterministic); commit what changed only when a fixture is added on purpose.

File names say what a file holds, so the Rust side can build the expected array:

  npy/{container}-{endian}-{dtype}-{shape}-{order}.{ext}
      container: npy (np.save, format 1.0), npy2 / npy3 (np.lib.format.write_array
      with version (2, 0) / (3, 0)), lz4 (lz4.frame.compress of the .npy bytes), zlib
      (zlib.compress, level 6), zstd (zstandard, level 3); endian: le or be; shape 2x3,
      "s" for 0-d; order C or F.
      Values: base(i) = (i*37 + 11) % 97 of the C-order flat index i, per dtype as in
      tests/common/mod.rs `sample` (and interop.py `expected`).
  recipe/{compression}-{dtype}-{shape}.data / .meta
      the `tobytes()` + JSON metadata layout of the Python recipe ("Storing NumPy arrays
      in Redis"): `.data` is `a.tobytes()` (or its lz4 frame / zlib stream), `.meta` the
      JSON the recipe stores beside it.
  arrow/table-{compression}.{arrow|arrows}
      pyarrow IPC file (.arrow) and stream (.arrows) of the table below, in two record
      batches of 25 rows, body compression zstd, lz4 or none.
  arrow/batch-zstd.arrows
      one record batch (rows 0..25) as one IPC stream: a value in the ArrowRedis table
      layout, as `pyarrow.ipc.new_stream` writes it for `r.set(key, ...)`.

The table: id int64 = i, part int32 = i % 3, x float64 = i * 0.25, s utf8 = "row{i}",
color dictionary<int32, utf8> = ["red", "green", "blue"][i % 3], flag bool = i % 2 == 0,
for i in 0..50.
"""

import io
import json
import pathlib
import zlib

import lz4.frame
import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc
import zstandard

ROOT = pathlib.Path(__file__).resolve().parent.parent / "fixtures"

DTYPES = [
    "bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
    "float16", "float32", "float64", "complex64", "complex128",
]


def expected(dtype, shape):
    """The array tests/common/mod.rs `sample` builds (C-order values)."""
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
        f32 = f.astype(np.float32)
        v = (f32 + 1j * (-f32 * np.float32(0.5))).astype(np.complex64)
    elif dtype == "complex128":
        v = (f + 1j * (-f * 0.5)).astype(np.complex128)
    else:
        raise ValueError(dtype)
    return np.asarray(v).reshape(shape)


def shape_name(shape):
    return "s" if shape == () else "x".join(str(d) for d in shape)


def npy_bytes(a, version=None):
    buf = io.BytesIO()
    if version is None:
        np.save(buf, a, allow_pickle=False)
    else:
        np.lib.format.write_array(buf, a, version=version, allow_pickle=False)
    return buf.getvalue()


def write(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def npy_fixtures():
    out = ROOT / "npy"
    cases = []
    # Every dtype, little-endian, C order.
    cases += [("npy", "le", d, (2, 3), "C") for d in DTYPES]
    # Big-endian (np.save keeps the byte order of the array).
    cases += [("npy", "be", d, (3, 2), "C")
              for d in ("int32", "uint64", "float16", "float64", "complex128")]
    # Fortran order.
    cases += [("npy", "le", "float32", (3, 4), "F"), ("npy", "le", "int16", (2, 3, 4), "F"),
              ("npy", "le", "complex64", (2, 2), "F"), ("npy", "le", "bool", (3, 3), "F"),
              ("npy", "be", "float64", (2, 5), "F")]
    # 0-d, empty, 1-d.
    cases += [("npy", "le", "float64", (), "C"), ("npy", "le", "int32", (0, 3), "C"),
              ("npy", "le", "uint8", (5,), "C")]
    # Header format versions 2.0 and 3.0.
    cases += [("npy2", "le", "float64", (2, 3), "C"), ("npy3", "le", "int64", (2, 3), "F")]
    # Compressed .npy, as a Python user compresses np.save's bytes.
    cases += [("lz4", "le", "float32", (4, 5), "C"), ("lz4", "be", "float64", (3, 2), "F"),
              ("zlib", "le", "int32", (4, 5), "F"), ("zlib", "le", "complex128", (2, 3), "C"),
              ("zstd", "le", "uint16", (4, 5), "C")]
    for container, endian, dtype, shape, order in cases:
        a = expected(dtype, shape).copy(order=order)
        if endian == "be":
            a = a.astype(a.dtype.newbyteorder(">"))
        version = {"npy2": (2, 0), "npy3": (3, 0)}.get(container)
        data = npy_bytes(a, version)
        ext = "npy"
        if container == "lz4":
            data, ext = lz4.frame.compress(data), "npy.lz4"
        elif container == "zlib":
            data, ext = zlib.compress(data, 6), "npy.zlib"
        elif container == "zstd":
            data, ext = zstandard.ZstdCompressor(level=3).compress(data), "npy.zst"
        name = f"{container}-{endian}-{dtype}-{shape_name(shape)}-{order}.{ext}"
        write(out / name, data)
    return len(cases)


def recipe_fixtures():
    out = ROOT / "recipe"
    n = 0
    for comp, dtype, shape in [("none", "float32", (2, 3)), ("lz4", "float64", (4, 5)),
                               ("zlib", "int16", (3, 4)), ("none", "uint8", (7,))]:
        a = expected(dtype, shape)
        data = a.tobytes()
        meta = {"dtype": str(a.dtype), "shape": a.shape}
        if comp == "lz4":
            meta.update(compression="lz4", original_size=len(data))
            data = lz4.frame.compress(data, compression_level=1)
        elif comp == "zlib":
            meta.update(compression="zlib", original_size=len(data))
            data = zlib.compress(data, 6)
        stem = f"{comp}-{dtype}-{shape_name(shape)}"
        write(out / f"{stem}.data", data)
        write(out / f"{stem}.meta", json.dumps(meta).encode())
        n += 1
    return n


def table():
    i = np.arange(50)
    colors = pa.array(["red", "green", "blue"], pa.utf8())
    return pa.table({
        "id": pa.array(i, pa.int64()),
        "part": pa.array(i % 3, pa.int32()),
        "x": pa.array(i * 0.25, pa.float64()),
        "s": pa.array([f"row{k}" for k in i], pa.utf8()),
        "color": pa.DictionaryArray.from_arrays(pa.array(i % 3, pa.int32()), colors),
        "flag": pa.array(i % 2 == 0, pa.bool_()),
    })


def arrow_fixtures():
    out = ROOT / "arrow"
    out.mkdir(parents=True, exist_ok=True)
    t = table()
    batches = t.to_batches(max_chunksize=25)
    assert len(batches) == 2
    n = 0
    for comp in ("zstd", "lz4", "uncompressed"):
        opts = ipc.IpcWriteOptions(compression=None if comp == "uncompressed" else comp)
        for ext, new in (("arrow", ipc.new_file), ("arrows", ipc.new_stream)):
            sink = pa.BufferOutputStream()
            with new(sink, t.schema, options=opts) as w:
                for b in batches:
                    w.write_batch(b)
            write(out / f"table-{comp}.{ext}", sink.getvalue().to_pybytes())
            n += 1
    sink = pa.BufferOutputStream()
    with ipc.new_stream(sink, t.schema, options=ipc.IpcWriteOptions(compression="zstd")) as w:
        w.write_batch(batches[0])
    write(out / "batch-zstd.arrows", sink.getvalue().to_pybytes())
    return n + 1


if __name__ == "__main__":
    counts = (npy_fixtures(), recipe_fixtures(), arrow_fixtures())
    print(f"wrote {counts[0]} .npy, {counts[1]} recipe and {counts[2]} Arrow fixtures to {ROOT}")
