"""The peers `cargo xtask bench` compares octet with, run the way their users run them.

    peers.py calib MODEL OUT.npy [--samples N] [--seed S]
        Seeded calibration data for every input of MODEL (uniform in [-1, 1] for float inputs):
        one .npy per input, OUT.npy for input 0 and OUT.<i>.npy for input i > 0, each shaped
        (N, *input shape). Prints {"inputs": [...paths]}.

    peers.py aeq MODEL OUT.tflite CALIB.npy [CALIB.1.npy ...]
        AI Edge Quantizer's static int8 recipe (static_wi8_ai8) on MODEL, calibrated with the
        given samples. MODEL must have a signature and float32 weights. Prints
        {"seconds": in-process time from loading the model to writing OUT, "output": OUT}.
"""

import argparse
import json
import sys
import time

import numpy as np


def input_details(model):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=model)
    return interpreter.get_input_details()


def calib(args):
    rng = np.random.default_rng(args.seed)
    paths = []
    for i, detail in enumerate(input_details(args.model)):
        shape = [max(1, int(d)) for d in detail["shape"]]
        dtype = detail["dtype"]
        if np.issubdtype(dtype, np.floating):
            data = rng.uniform(-1.0, 1.0, size=[args.samples] + shape).astype(np.float32)
        else:
            info = np.iinfo(dtype)
            data = rng.integers(info.min, info.max, size=[args.samples] + shape, endpoint=True)
            data = data.astype(dtype)
        path = args.out if i == 0 else args.out[: -len(".npy")] + f".{i}.npy"
        np.save(path, data)
        paths.append(path)
    npz = args.out[: -len(".npy")] + ".npz"
    np.savez(npz, *[np.load(p) for p in paths])
    print(json.dumps({"inputs": paths, "npz": npz}))


def aeq(args):
    from ai_edge_quantizer import quantizer, recipe

    arrays = [np.load(path) for path in args.calib]
    started = time.perf_counter()
    qt = quantizer.Quantizer(args.model)
    qt.load_quantization_recipe(recipe.static_wi8_ai8())
    signature_key, signature = next(iter(_signatures(args.model).items()))
    names = signature["inputs"]
    if len(names) != len(arrays):
        sys.exit(f"the signature has {len(names)} inputs, {len(arrays)} calibration files given")
    samples = [
        {name: array[s] for name, array in zip(names, arrays)} for s in range(len(arrays[0]))
    ]
    result = qt.calibrate({signature_key: samples})
    quantized = qt.quantize(result, enable_progress_report=False)
    quantized.export_model(args.out, overwrite=True)
    seconds = time.perf_counter() - started
    print(json.dumps({"seconds": seconds, "output": args.out}))


def _signatures(model):
    from ai_edge_litert.interpreter import Interpreter

    return Interpreter(model_path=model).get_signature_list()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("calib")
    p.add_argument("model")
    p.add_argument("out")
    p.add_argument("--samples", type=int, default=16)
    p.add_argument("--seed", type=int, default=0x5EED)
    p = sub.add_parser("aeq")
    p.add_argument("model")
    p.add_argument("out")
    p.add_argument("calib", nargs="+")
    args = parser.parse_args()
    {"calib": calib, "aeq": aeq}[args.command](args)


if __name__ == "__main__":
    main()
