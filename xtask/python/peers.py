"""The peers `cargo xtask bench` compares octet with, run the way their users run them.

    peers.py calib MODEL OUT.npy [--samples N] [--seed S]
        Seeded calibration data for every input of MODEL (uniform in [-1, 1] for float inputs):
        one .npy per input, OUT.npy for input 0 and OUT.<i>.npy for input i > 0, each shaped
        (N, *input shape). Prints {"inputs": [...paths]}.

        --kind smooth makes image-like float inputs instead: for a 4-D (NHWC) input, each
        sample and channel is noise with a 1/f amplitude spectrum (the spectrum of natural
        images), scaled to --range MIN,MAX (default -1,1).

    peers.py sqnr FLOAT.tflite DATA.npz Q.tflite [Q.tflite ...]
        Runs the float model and each quantized model in LiteRT (default CPU path) on every
        sample of DATA.npz (arrays in input order, leading sample axis), dequantizing integer
        inputs and outputs, and prints {"files": [{"file", "sqnr_db": [per output]}]}: each
        output's SQNR against the float model over all samples.

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
        if np.issubdtype(dtype, np.floating) and args.kind == "smooth" and len(shape) == 4:
            lo, hi = (float(v) for v in args.range.split(","))
            data = np.stack([_smooth_image(rng, shape[1:], lo, hi) for _ in range(args.samples)])
            data = data.reshape([args.samples] + shape).astype(np.float32)
        elif np.issubdtype(dtype, np.floating):
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


def _smooth_image(rng, hwc, lo_out=-1.0, hi_out=1.0):
    """An H x W x C image of 1/f noise per channel, in [lo_out, hi_out]."""
    h, w, c = hwc
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    f = np.sqrt(fx * fx + fy * fy)
    f[0, 0] = 1.0 / max(h, w)
    channels = []
    for _ in range(c):
        phase = rng.uniform(0, 2 * np.pi, size=f.shape)
        spectrum = (1.0 / f) * np.exp(1j * phase)
        image = np.fft.irfft2(spectrum, s=(h, w))
        lo, hi = image.min(), image.max()
        unit = (image - lo) / max(hi - lo, 1e-12)
        channels.append(lo_out + (hi_out - lo_out) * unit)
    return np.stack(channels, axis=-1)


def _run_all(path, arrays):
    """Outputs of `path` in LiteRT on every sample, as float arrays (dequantized)."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=path, num_threads=1)
    interpreter.allocate_tensors()
    inputs = interpreter.get_input_details()
    outputs = interpreter.get_output_details()
    if len(inputs) != len(arrays):
        sys.exit(f"{path} has {len(inputs)} inputs, the data {len(arrays)}")
    results = [[] for _ in outputs]
    for s in range(len(arrays[0])):
        for detail, array in zip(inputs, arrays):
            x = array[s].reshape(detail["shape"])
            if np.issubdtype(detail["dtype"], np.integer):
                scale, zero = detail["quantization"]
                info = np.iinfo(detail["dtype"])
                x = np.clip(np.round(x / scale) + zero, info.min, info.max)
            interpreter.set_tensor(detail["index"], x.astype(detail["dtype"]))
        interpreter.invoke()
        for k, detail in enumerate(outputs):
            y = interpreter.get_tensor(detail["index"]).astype(np.float64)
            if np.issubdtype(detail["dtype"], np.integer):
                scale, zero = detail["quantization"]
                y = (y - zero) * scale
            results[k].append(y)
    return [np.stack(r) for r in results]


def sqnr(args):
    data = np.load(args.data)
    arrays = [data[key] for key in data.files]
    reference = _run_all(args.float, arrays)
    files = []
    for path in args.quantized:
        got = _run_all(path, arrays)
        if len(got) != len(reference):
            sys.exit(f"{path} has {len(got)} outputs, the float model {len(reference)}")
        values = []
        for f, q in zip(reference, got):
            noise = np.sum((f - q) ** 2)
            signal = np.sum(f ** 2)
            values.append(None if noise == 0 else float(10 * np.log10(signal / noise)))
        files.append({"file": path, "sqnr_db": values})
    print(json.dumps({"files": files}))


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
    p.add_argument("--kind", choices=["uniform", "smooth"], default="uniform")
    p.add_argument("--range", default="-1,1")
    p = sub.add_parser("sqnr")
    p.add_argument("float")
    p.add_argument("data")
    p.add_argument("quantized", nargs="+")
    p = sub.add_parser("aeq")
    p.add_argument("model")
    p.add_argument("out")
    p.add_argument("calib", nargs="+")
    args = parser.parse_args()
    {"calib": calib, "sqnr": sqnr, "aeq": aeq}[args.command](args)


if __name__ == "__main__":
    main()
