"""redis-py (with hiredis) SET+GET of the same bytes as the stores bench, for a
side-by-side baseline. Prints one line per size: `<label>\t<median ms>`.

    python redis_py_put_get.py URL RUNS LABEL=N_F64 [LABEL=N_F64 ...]
"""

import sys
import time

import numpy as np
import redis


def main():
    url, runs = sys.argv[1], int(sys.argv[2])
    r = redis.Redis.from_url(url)
    for spec in sys.argv[3:]:
        label, n = spec.rsplit("=", 1)
        value = np.random.default_rng(1).standard_normal(int(n)).tobytes()
        key = f"pybench:{label}"
        r.set(key, value)
        r.get(key)
        times = []
        for _ in range(runs):
            t = time.perf_counter()
            r.set(key, value)
            got = r.get(key)
            times.append(time.perf_counter() - t)
            assert len(got) == len(value)
        times.sort()
        print(f"{label}\t{times[len(times) // 2] * 1e3:.4f}", flush=True)
        r.delete(key)


if __name__ == "__main__":
    main()
