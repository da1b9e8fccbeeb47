"""Reference runs in LiteRT for `cargo xtask runtime-check`.

  make MODEL DIR [--samples N]   write seeded inputs DIR/input_k.npy (leading sample dimension N)
                                 and LiteRT's outputs DIR/ref_<resolver>_k.npy for the
                                 BUILTIN_REF and AUTO resolvers (or a JSON line saying why not)
  compare DIR OCTET_DIR          compare OCTET_DIR/output_k.npy with DIR/ref_BUILTIN_REF_k.npy
                                 (or AUTO where the reference kernels cannot run the model):
                                 integers must match exactly; floats within 1e-5 of the output's
                                 largest magnitude, or no further from the reference kernels than
                                 LiteRT's own default kernels (XNNPACK, which like octet uses fused
                                 multiply-adds) are on the same inputs. Prints one JSON line.
"""

import argparse
import json
import os

import numpy as np
from ai_edge_litert.interpreter import Interpreter, OpResolverType

RESOLVERS = ["BUILTIN_REF", "AUTO"]


def seeded_input(detail, samples, rng):
    shape = [samples] + [max(1, int(d)) for d in detail["shape"]]
    dtype = detail["dtype"]
    if np.issubdtype(dtype, np.floating):
        return rng.uniform(-1.0, 1.0, size=shape).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, size=shape, endpoint=True).astype(dtype)


def make(args):
    os.makedirs(args.dir, exist_ok=True)
    rng = np.random.default_rng(0x0C7E7)
    probe = Interpreter(model_path=args.model)
    inputs = [seeded_input(d, args.samples, rng) for d in probe.get_input_details()]
    for k, array in enumerate(inputs):
        np.save(os.path.join(args.dir, f"input_{k}.npy"), array)
    report = {}
    for resolver in RESOLVERS:
        try:
            interpreter = Interpreter(
                model_path=args.model,
                experimental_op_resolver_type=getattr(OpResolverType, resolver),
                num_threads=1,
            )
            interpreter.allocate_tensors()
        except Exception as e:  # LiteRT cannot run it (custom op): report, do not fail
            report[resolver] = f"cannot run: {str(e).splitlines()[0][:120]}"
            continue
        outputs = [[] for _ in interpreter.get_output_details()]
        for s in range(args.samples):
            for detail, array in zip(interpreter.get_input_details(), inputs):
                interpreter.set_tensor(detail["index"], array[s])
            interpreter.invoke()
            for k, detail in enumerate(interpreter.get_output_details()):
                outputs[k].append(interpreter.get_tensor(detail["index"]).copy())
        for k, out in enumerate(outputs):
            np.save(os.path.join(args.dir, f"ref_{resolver}_{k}.npy"), np.stack(out))
        report[resolver] = "ok"
    print(json.dumps(report))


def compare(args):
    resolver = next(
        (r for r in RESOLVERS if os.path.exists(os.path.join(args.dir, f"ref_{r}_0.npy"))), None
    )
    if resolver is None:
        print(json.dumps({"resolver": None, "outputs": []}))
        return
    results = []
    k = 0
    while os.path.exists(os.path.join(args.dir, f"ref_{resolver}_{k}.npy")):
        ref = np.load(os.path.join(args.dir, f"ref_{resolver}_{k}.npy"))
        path = os.path.join(args.octet_dir, f"output_{k}.npy")
        if not os.path.exists(path):
            results.append({"output": k, "ok": False, "detail": "octet wrote no output"})
            k += 1
            continue
        got = np.load(path)
        entry = {"output": k, "dtype": str(ref.dtype), "shape": list(ref.shape)}
        if got.shape != ref.shape or got.dtype != ref.dtype:
            entry.update(ok=False, detail=f"octet gave {got.dtype}{list(got.shape)}")
        elif np.issubdtype(ref.dtype, np.floating):
            diff = np.abs(got.astype(np.float64) - ref.astype(np.float64))
            scale = float(np.max(np.abs(ref))) if ref.size else 0.0
            max_abs = float(np.max(diff)) if diff.size else 0.0
            # How far LiteRT's default path is from its reference kernels, when both ran.
            litert_abs = None
            auto = os.path.join(args.dir, f"ref_AUTO_{k}.npy")
            if resolver == "BUILTIN_REF" and os.path.exists(auto):
                other = np.load(auto)
                if other.shape == ref.shape:
                    litert_abs = float(
                        np.max(np.abs(other.astype(np.float64) - ref.astype(np.float64)))
                    ) if ref.size else 0.0
            tolerance = 1e-5 * max(scale, np.finfo(np.float32).tiny)
            entry.update(
                max_abs_diff=max_abs,
                rel_to_max=max_abs / scale if scale > 0 else max_abs,
                litert_default_abs_diff=litert_abs,
                ok=bool(max_abs <= tolerance or (litert_abs is not None and max_abs <= litert_abs)),
            )
        else:
            mismatches = int(np.count_nonzero(got != ref))
            entry.update(mismatches=mismatches, ok=mismatches == 0)
        results.append(entry)
        k += 1
    print(json.dumps({"resolver": resolver, "outputs": results}))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("make")
    p.add_argument("model")
    p.add_argument("dir")
    p.add_argument("--samples", type=int, default=2)
    p = sub.add_parser("compare")
    p.add_argument("dir")
    p.add_argument("octet_dir")
    args = parser.parse_args()
    make(args) if args.command == "make" else compare(args)


if __name__ == "__main__":
    main()
