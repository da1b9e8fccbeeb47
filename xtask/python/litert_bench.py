"""Median single-inference latency of a .tflite model in LiteRT, for `cargo xtask bench`.

Prints one JSON line: {"median_ms": ..., "runs": ..., "resolver": ...}. Inputs are seeded random
values of each input's dtype; timing starts after a warm-up, like `octet bench`.
"""

import argparse
import json
import time

import numpy as np
from ai_edge_litert.interpreter import Interpreter, OpResolverType


def random_input(detail, rng):
    shape = [max(1, int(d)) for d in detail["shape"]]
    dtype = detail["dtype"]
    if np.issubdtype(dtype, np.floating):
        return rng.uniform(-1.0, 1.0, size=shape).astype(dtype)
    if dtype == np.bool_:
        return rng.integers(0, 2, size=shape).astype(np.bool_)
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, size=shape, endpoint=True).astype(dtype)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("model")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--resolver", choices=["AUTO", "BUILTIN_REF"], default="AUTO")
    args = parser.parse_args()

    interpreter = Interpreter(
        model_path=args.model,
        num_threads=args.threads,
        experimental_op_resolver_type=getattr(OpResolverType, args.resolver),
    )
    interpreter.allocate_tensors()
    rng = np.random.default_rng(0x5EED)
    for detail in interpreter.get_input_details():
        interpreter.set_tensor(detail["index"], random_input(detail, rng))

    warm_until = time.perf_counter() + 0.2
    warmups = 0
    while warmups < 3 or (time.perf_counter() < warm_until and warmups < 50):
        interpreter.invoke()
        warmups += 1
    times = []
    start = time.perf_counter()
    while len(times) < 10 or (time.perf_counter() - start < args.seconds and len(times) < 100_000):
        t = time.perf_counter()
        interpreter.invoke()
        times.append((time.perf_counter() - t) * 1e3)
    times.sort()
    print(json.dumps({"median_ms": times[len(times) // 2], "runs": len(times), "resolver": args.resolver}))


if __name__ == "__main__":
    main()
