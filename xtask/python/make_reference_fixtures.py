"""Build the TensorFlow-side reference models that octet's quantizer is compared against.

Run through `cargo xtask fixtures`, after make_fixtures.py, which creates the pinned venv and calls

    PYTHONHASHSEED=0 .venv/bin/python xtask/python/make_reference_fixtures.py \
        --out models/reference/

It writes into the output directory:

- mobilenet_v1_tiny.tflite: a small MobileNet-v1-style float network (the background article's use
  case) built as a TF1 graph with seeded random weights and folded batch normalization;
- mobilenet_v1_tiny_tf_uint8.tflite: the same graph through TensorFlow's TF1 converter with the
  article's legacy flags (`inference_type=tf.uint8`, `quantized_input_stats={'input': (128,
  127)}`, `default_ranges_stats=(0, 6)`);
- mobilenet_v1_tiny_input.npy / _input_uint8.npy: 8 seeded images and their uint8 quantization;
- mobilenet_v1_tiny_float_output.npy / _tf_uint8_output.npy: LiteRT BUILTIN_REF outputs;
- digits_calib_x.npy: the first 100 digits training images, the calibration samples;
- digits_cnn_tf_int8.tflite, digits_mlp_tf_int8.tflite: TensorFlow's full-integer int8 conversion
  (float I/O) of the same trained Keras networks as models/digits_cnn.tflite and
  models/digits_mlp.tflite (rebuilt with make_fixtures.py's own functions and checked to convert
  to byte-identical float models);
- digits_{cnn,mlp}_tf_{int16x8,dynamic,fp16}.tflite: the same Keras networks through TensorFlow's
  other converter modes (int16 activations / int8 weights calibrated on the same samples,
  dynamic-range, float16 weights), each checked to run in LiteRT with both resolvers;
- digits_{cnn,mlp}_{float,tf_int8,tf_int16x8,tf_dynamic,tf_fp16}_test_output.npy: LiteRT
  BUILTIN_REF outputs on the test split;
- {multi_io,no_signature,sparse_fc}_tf_{int8,int16x8,dynamic,fp16}.tflite: the same four
  converter modes applied to make_fixtures.py's other float models, rebuilt with its functions
  (each checked to convert to its models/ file byte for byte; a model that does not is skipped,
  as is a mode TensorFlow refuses, and README.md says why). multi_io and no_signature are
  calibrated on 32 U(-1, 1) samples per input from np.random.default_rng(0x5EED), sparse_fc on
  digits_calib_x.npy; each file is checked to run in LiteRT with both resolvers;
- README.md: how each file was made, and a model x mode table of accuracy and SQNR.

Everything is seeded, so a rerun gives byte-identical files.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

# Quiet TensorFlow's C++ logging and keep everything on the CPU; must precede the import.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from ai_edge_litert.interpreter import Interpreter, OpResolverType  # noqa: E402

# make_fixtures.py (same directory) owns the digits data, the Keras networks and their training.
sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_fixtures  # noqa: E402

SEED = 0
COMMAND = "cargo xtask fixtures"
SCRIPT = "xtask/python/make_reference_fixtures.py"
BUDGET_BYTES = 2 * 1024 * 1024

# MobileNet-v1-tiny: input, first conv, depthwise-separable blocks (output channels, stride).
MOBILENET_INPUT_SHAPE = (1, 32, 32, 3)
MOBILENET_FIRST_CHANNELS = 8
MOBILENET_BLOCKS = [(16, 1), (32, 2), (32, 1), (64, 2)]
MOBILENET_CLASSES = 10
MOBILENET_SAMPLES = 8
# Images used to set the folded batch-norm statistics (separate from the saved inputs).
BN_STATS_SAMPLES = 32
BN_EPSILON = 1e-3
# Standard deviation of each logit over the batch-norm statistics images.
LOGIT_STD = 2.0
# The article's flags: uint8 input with mean 128 and std_dev 127, activations without a range in
# [0, 6].
INPUT_MEAN, INPUT_STD = 128.0, 127.0
DEFAULT_RANGES = (0.0, 6.0)

CALIBRATION_SAMPLES = 100
DIGITS_MODELS = ["digits_cnn", "digits_mlp"]


# ----------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------


def run_litert(model: Path | bytes, samples: np.ndarray) -> np.ndarray:
    """Run a single-input, single-output model on each sample with LiteRT's reference kernels
    (BUILTIN_REF, one thread); returns the outputs stacked, raw dtype, shape [N, *output]."""
    kwargs: dict[str, Any] = (
        {"model_path": str(model)} if isinstance(model, Path) else {"model_content": model}
    )
    interpreter = Interpreter(
        **kwargs, experimental_op_resolver_type=OpResolverType.BUILTIN_REF, num_threads=1
    )
    interpreter.allocate_tensors()
    (input_detail,) = interpreter.get_input_details()
    (output_detail,) = interpreter.get_output_details()
    outputs = []
    for sample in samples:
        interpreter.set_tensor(input_detail["index"], sample)
        interpreter.invoke()
        outputs.append(np.array(interpreter.get_tensor(output_detail["index"])))
    return np.stack(outputs)


def sqnr_db(reference: np.ndarray, quantized: np.ndarray) -> float:
    """10 log10(sum(ref^2) / sum((ref - q)^2)) over all elements, in dB."""
    reference = reference.astype(np.float64)
    noise = np.sum((reference - quantized.astype(np.float64)) ** 2)
    if noise == 0.0:
        return float("inf")
    return float(10.0 * np.log10(np.sum(reference**2) / noise))


def ops_of(model: Path) -> list[dict]:
    """LiteRT's op list (private helper, informational) for a model."""
    return Interpreter(model_path=str(model))._get_ops_details()


def describe_io(model: Path) -> list[str]:
    """README lines: operators, inputs and outputs with dtype, shape and quantization."""
    interpreter = Interpreter(model_path=str(model))
    op_names = sorted({op["op_name"] for op in interpreter._get_ops_details()})

    def tensor(detail: dict) -> str:
        text = f"`{detail['name']}` {np.dtype(detail['dtype']).name} {detail['shape'].tolist()}"
        scale, zero_point = detail["quantization"]
        if scale:
            text += f" (scale {scale:.9g}, zero point {zero_point})"
        return text

    return [
        f"- Operators: {', '.join(op_names)}",
        "- Inputs: " + "; ".join(tensor(d) for d in interpreter.get_input_details()),
        "- Outputs: " + "; ".join(tensor(d) for d in interpreter.get_output_details()),
    ]


def sha256(path: Path) -> str:
    """Hex SHA-256 of a file."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def versions() -> str:
    """The package versions that produced the files, for README.md."""
    names = ["tensorflow-cpu", "keras", "scikit-learn", "numpy", "ai-edge-litert"]
    return ", ".join(f"{name} {importlib.metadata.version(name)}" for name in names)


# ----------------------------------------------------------------------------------------------
# MobileNet-v1-tiny
# ----------------------------------------------------------------------------------------------


@dataclass
class Layer:
    """One conv layer with batch norm folded in: kernel (HWIO, or HWC1 for depthwise) and bias."""

    kind: str  # "conv" or "depthwise"
    kernel: np.ndarray
    bias: np.ndarray
    stride: int
    relu6: bool


def raw_conv(x: tf.Tensor, layer: Layer, kernel: np.ndarray) -> tf.Tensor:
    """The layer's convolution without bias and activation (works eagerly and in a graph)."""
    strides = [1, layer.stride, layer.stride, 1]
    if layer.kind == "depthwise":
        return tf.compat.v1.nn.depthwise_conv2d_native(x, kernel, strides, "SAME")
    return tf.nn.conv2d(x, kernel, strides, "SAME")


def apply_layer(x: tf.Tensor, layer: Layer) -> tf.Tensor:
    """conv / depthwise conv, bias, optional ReLU6."""
    y = tf.nn.bias_add(raw_conv(x, layer, tf.constant(layer.kernel)), tf.constant(layer.bias))
    return tf.nn.relu6(y) if layer.relu6 else y


def fold_batch_norm(
    rng: np.random.Generator, x: np.ndarray, layer: Layer
) -> tuple[Layer, dict[str, np.ndarray]]:
    """Fold a batch norm into `layer`: the moving mean and variance are the statistics of the raw
    convolution over `x` (as if the network had been trained on such data), gamma and beta are
    seeded random. Returns the folded layer and the batch-norm parameters."""
    kernel = tf.constant(layer.kernel, tf.float32)
    raw = raw_conv(tf.constant(x), layer, kernel).numpy().astype(np.float64)
    channels = raw.shape[-1]
    mean = raw.mean(axis=(0, 1, 2))
    variance = raw.var(axis=(0, 1, 2))
    gamma = rng.uniform(0.5, 1.5, channels)
    beta = rng.uniform(0.0, 1.5, channels)
    factor = gamma / np.sqrt(variance + BN_EPSILON)
    if layer.kind == "depthwise":
        kernel = layer.kernel * factor.reshape(1, 1, channels, 1)
    else:
        kernel = layer.kernel * factor.reshape(1, 1, 1, channels)
    bias = beta - mean * factor
    folded = Layer(
        layer.kind, kernel.astype(np.float32), bias.astype(np.float32), layer.stride, layer.relu6
    )
    return folded, {"gamma": gamma, "beta": beta, "mean": mean, "variance": variance}


def he_kernel(rng: np.random.Generator, shape: tuple[int, ...], fan_in: int) -> np.ndarray:
    """He-normal kernel of `shape`, float64 (folded and cast to float32 later)."""
    return rng.normal(0.0, np.sqrt(2.0 / fan_in), shape)


def mobilenet_layers(rng: np.random.Generator, bn_images: np.ndarray) -> list[Layer]:
    """Seeded MobileNet-v1-tiny weights with batch norm folded into every conv but the last."""
    layers: list[Layer] = []
    x = bn_images
    channels = MOBILENET_INPUT_SHAPE[-1]

    def add(layer: Layer) -> None:
        nonlocal x
        folded, _ = fold_batch_norm(rng, x, layer)
        layers.append(folded)
        x = apply_layer(tf.constant(x), folded).numpy()

    add(
        Layer(
            "conv",
            he_kernel(rng, (3, 3, channels, MOBILENET_FIRST_CHANNELS), 9 * channels),
            np.zeros(MOBILENET_FIRST_CHANNELS),
            2,
            True,
        )
    )
    channels = MOBILENET_FIRST_CHANNELS
    for out_channels, stride in MOBILENET_BLOCKS:
        depthwise = he_kernel(rng, (3, 3, channels, 1), 9)
        add(Layer("depthwise", depthwise, np.zeros(channels), stride, True))
        add(
            Layer(
                "conv",
                he_kernel(rng, (1, 1, channels, out_channels), channels),
                np.zeros(out_channels),
                1,
                True,
            )
        )
        channels = out_channels
    # Classifier: 1x1 conv with bias after global average pooling, no ReLU6. Random directions,
    # standardized so that each logit has mean 0 and standard deviation LOGIT_STD over the
    # statistics images: the predicted class then depends on the image, not on a dominant bias.
    features = x.astype(np.float64).mean(axis=(1, 2))
    kernel = rng.normal(0.0, 1.0, (channels, MOBILENET_CLASSES))
    logits = features @ kernel
    factor = LOGIT_STD / logits.std(axis=0)
    kernel = (kernel * factor).reshape(1, 1, channels, MOBILENET_CLASSES)
    bias = -logits.mean(axis=0) * factor
    layers.append(Layer("conv", kernel.astype(np.float32), bias.astype(np.float32), 1, False))
    return layers


def mobilenet_graph(layers: list[Layer]) -> tuple[tf.Graph, tf.Tensor, tf.Tensor]:
    """The TF1 graph: input placeholder `input`, output `MobilenetV1/Predictions/Softmax`."""
    graph = tf.Graph()
    with graph.as_default():
        images = tf.compat.v1.placeholder(tf.float32, MOBILENET_INPUT_SHAPE, name="input")
        x = images
        for k, layer in enumerate(layers[:-1]):
            with tf.compat.v1.name_scope(f"MobilenetV1/Conv2d_{k}_{layer.kind}"):
                x = apply_layer(x, layer)
        spatial = x.shape[1:3].as_list()
        with tf.compat.v1.name_scope("MobilenetV1/Logits"):
            x = tf.nn.avg_pool2d(x, spatial, [1, 1, 1, 1], "VALID", name="AvgPool")
            x = apply_layer(x, layers[-1])
            logits = tf.reshape(x, [MOBILENET_INPUT_SHAPE[0], MOBILENET_CLASSES], name="Squeeze")
        predictions = tf.nn.softmax(logits, name="MobilenetV1/Predictions/Softmax")
    return graph, images, predictions


def convert_mobilenet(graph: tf.Graph, images: tf.Tensor, predictions: tf.Tensor, uint8: bool):
    """tf.compat.v1.lite.TFLiteConverter.from_session, float or with the article's uint8 flags."""
    with tf.compat.v1.Session(graph=graph) as session:
        converter = tf.compat.v1.lite.TFLiteConverter.from_session(
            session, [images], [predictions]
        )
        if uint8:
            converter.inference_type = tf.uint8
            converter.quantized_input_stats = {"input": (INPUT_MEAN, INPUT_STD)}
            converter.default_ranges_stats = DEFAULT_RANGES
        return converter.convert()


def check_uint8_model(model: Path) -> list[str]:
    """Fail unless the model's input and output are uint8 and every op reads and writes uint8
    activations (int32 only for biases and shape operands); README lines about it."""
    interpreter = Interpreter(model_path=str(model))
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    for detail in interpreter.get_input_details() + interpreter.get_output_details():
        if detail["dtype"] != np.uint8:
            sys.exit(f"{model.name}: I/O tensor {detail['name']} is {detail['dtype']}, not uint8")
    ops = interpreter._get_ops_details()
    for op in ops:
        if op["op_name"] in ("QUANTIZE", "DEQUANTIZE"):
            sys.exit(f"{model.name}: unexpected {op['op_name']}")
        activations = [int(op["inputs"][0])] + [int(i) for i in op["outputs"]]
        for index in activations:
            if tensors[index]["dtype"] != np.uint8:
                sys.exit(
                    f"{model.name}: {op['op_name']} tensor {tensors[index]['name']} is"
                    f" {np.dtype(tensors[index]['dtype']).name}, not uint8"
                )
        for index in [int(i) for i in op["inputs"][1:] if i >= 0]:
            dtype = np.dtype(tensors[index]["dtype"])
            if dtype not in (np.uint8, np.int32):
                sys.exit(f"{model.name}: {op['op_name']} operand {index} is {dtype.name}")
    return [
        f"- Checked in LiteRT: input and output uint8, all {len(ops)} ops read and write uint8"
        " activations (uint8 weights, int32 biases), no QUANTIZE/DEQUANTIZE."
    ]


def seeded_images(rng: np.random.Generator, count: int) -> np.ndarray:
    """`count` float32 images [count, 32, 32, 3] in [-1, 1] that differ in more than noise: per
    image and channel a brightness U(-0.6, 0.6), plus a per-image contrast U(0.1, 0.6) times
    U(-1, 1) noise, clipped to [-1, 1]."""
    height, width, channels = MOBILENET_INPUT_SHAPE[1:]
    brightness = rng.uniform(-0.6, 0.6, (count, 1, 1, channels))
    contrast = rng.uniform(0.1, 0.6, (count, 1, 1, 1))
    noise = rng.uniform(-1.0, 1.0, (count, height, width, channels))
    return np.clip(brightness + contrast * noise, -1.0, 1.0).astype(np.float32)


def make_mobilenet(out_dir: Path) -> list[tuple[str, list[str]]]:
    """Write the MobileNet-v1-tiny files; return (file name, README lines) pairs."""
    rng = np.random.default_rng(SEED)
    layers = mobilenet_layers(rng, seeded_images(rng, BN_STATS_SAMPLES))
    images = seeded_images(rng, MOBILENET_SAMPLES)[:, np.newaxis]
    images_uint8 = np.clip(np.round(images * INPUT_STD + INPUT_MEAN), 0, 255).astype(np.uint8)

    graph, placeholder, predictions = mobilenet_graph(layers)
    float_path = out_dir / "mobilenet_v1_tiny.tflite"
    float_path.write_bytes(convert_mobilenet(graph, placeholder, predictions, uint8=False))
    uint8_path = out_dir / "mobilenet_v1_tiny_tf_uint8.tflite"
    uint8_path.write_bytes(convert_mobilenet(graph, placeholder, predictions, uint8=True))
    uint8_checks = check_uint8_model(uint8_path)

    # TensorFlow's own float result, to check the float conversion.
    with tf.compat.v1.Session(graph=graph) as session:
        tf_float = np.stack([session.run(predictions, {placeholder: x}) for x in images])
    float_output = run_litert(float_path, images)
    if not np.allclose(float_output, tf_float, atol=1e-5):
        sys.exit("mobilenet_v1_tiny.tflite: LiteRT disagrees with the TensorFlow graph")
    uint8_output = run_litert(uint8_path, images_uint8)
    np.save(out_dir / "mobilenet_v1_tiny_input.npy", images)
    np.save(out_dir / "mobilenet_v1_tiny_input_uint8.npy", images_uint8)
    np.save(out_dir / "mobilenet_v1_tiny_float_output.npy", float_output)
    np.save(out_dir / "mobilenet_v1_tiny_tf_uint8_output.npy", uint8_output)

    out_detail = Interpreter(model_path=str(uint8_path)).get_output_details()[0]
    out_scale, out_zero_point = out_detail["quantization"]
    dequantized = out_scale * (uint8_output.astype(np.float64) - out_zero_point)
    agree = float(np.mean(np.argmax(dequantized, -1) == np.argmax(float_output, -1)))
    top = np.sort(float_output.reshape(MOBILENET_SAMPLES, -1), axis=-1)[:, -1]
    sqnr = sqnr_db(float_output, dequantized)

    blocks = ", ".join(f"{c} ch stride {s}" for c, s in MOBILENET_BLOCKS)
    common = [
        f"- Made by `{COMMAND}` ({SCRIPT}), `np.random.default_rng({SEED})`.",
        "- TF1 graph (`tf.Graph` + `tf.compat.v1.Session`), placeholder `input` float32"
        f" {list(MOBILENET_INPUT_SHAPE)}, SAME padding:",
        f"  3x3 stride-2 `tf.nn.conv2d` ({MOBILENET_FIRST_CHANNELS} ch) + `tf.nn.bias_add` +"
        " `tf.nn.relu6`;",
        f"  {len(MOBILENET_BLOCKS)} depthwise-separable blocks, each 3x3"
        " `tf.compat.v1.nn.depthwise_conv2d_native` + bias + ReLU6",
        f"  then 1x1 conv + bias + ReLU6 ({blocks});",
        "  `tf.nn.avg_pool2d` over the whole 4x4 map (global average pool), 1x1 conv to"
        f" {MOBILENET_CLASSES} classes + bias,",
        f"  reshape to [1, {MOBILENET_CLASSES}], `tf.nn.softmax`"
        " (`MobilenetV1/Predictions/Softmax`).",
        "- Weights (no training): He-normal kernels with batch norm folded into every conv but the",
        f"  classifier (kernel * gamma / sqrt(var + {BN_EPSILON:g}), bias = beta - mean * gamma /"
        f" sqrt(var + {BN_EPSILON:g})),",
        "  gamma ~ U(0.5, 1.5), beta ~ U(0, 1.5), and the moving mean and variance set to each"
        " conv's",
        f"  statistics over {BN_STATS_SAMPLES} seeded images drawn like the inputs below (so each"
        " ReLU6 input has",
        "  mean beta and standard deviation gamma over them); classifier kernel N(0, 1)"
        " directions scaled,",
        f"  and bias set, so that each logit has mean 0 and standard deviation {LOGIT_STD:g} over"
        " those images.",
    ]
    return [
        (
            "mobilenet_v1_tiny.tflite",
            common
            + [
                "- Converted with `tf.compat.v1.lite.TFLiteConverter.from_session(session,"
                " [input], [softmax]).convert()` (float32).",
                "- LiteRT BUILTIN_REF matches the TensorFlow session within 1e-5 on the 8 inputs.",
                *describe_io(float_path),
            ],
        ),
        (
            "mobilenet_v1_tiny_tf_uint8.tflite",
            common
            + [
                "- Converted from the same session with the article's legacy flags (TF 2.21's"
                " default MLIR converter; no",
                "  `experimental_new_converter = False` or other setting was needed):",
                "  `converter.inference_type = tf.uint8`,",
                "  `converter.quantized_input_stats = {'input': (128., 127.)}` (mean 128, std_dev"
                " 127: scale 1/127, zero point 128),",
                "  `converter.default_ranges_stats = (0, 6)` (every activation without a"
                " fake-quant range, i.e. all of them, gets [0, 6];",
                "  the converter gives the softmax output its fixed scale 1/256, zero point 0).",
                "  Weights are quantized to uint8 per tensor from their own min/max; biases to"
                " int32.",
                *uint8_checks,
                *describe_io(uint8_path),
                f"- On the {MOBILENET_SAMPLES} inputs: top-1 agrees with the float model's on"
                f" {agree:.3f} of the samples; SQNR of the",
                f"  dequantized output against the float output {sqnr:.2f} dB (float top-1"
                f" probabilities {', '.join(f'{p:.3f}' for p in top)}).",
                "- With `default_ranges_stats=(0, 6)` the logits tensor also gets [0, 6] (scale"
                " 6/255, zero point 0),",
                "  so negative logits are clamped to 0: the article's dummy-quantization recipe,"
                " reproduced as is.",
            ],
        ),
        (
            "mobilenet_v1_tiny_input.npy",
            [
                f"{MOBILENET_SAMPLES} seeded images, float32 in [-1, 1], shape"
                f" {list(images.shape)}: N samples of the [1, 32, 32, 3] input.",
                "Per image and channel a brightness U(-0.6, 0.6), plus a per-image contrast"
                " U(0.1, 0.6) times U(-1, 1) noise, clipped to [-1, 1].",
            ],
        ),
        (
            "mobilenet_v1_tiny_input_uint8.npy",
            [
                "The same images quantized with mean 128 / std_dev 127:"
                " `q = clip(round(x * 127 + 128), 0, 255)`, uint8, shape"
                f" {list(images_uint8.shape)}.",
            ],
        ),
        (
            "mobilenet_v1_tiny_float_output.npy",
            [
                "mobilenet_v1_tiny.tflite's outputs on mobilenet_v1_tiny_input.npy, LiteRT"
                f" BUILTIN_REF, float32, shape {list(float_output.shape)}.",
            ],
        ),
        (
            "mobilenet_v1_tiny_tf_uint8_output.npy",
            [
                "mobilenet_v1_tiny_tf_uint8.tflite's outputs on mobilenet_v1_tiny_input_uint8.npy,"
                f" LiteRT BUILTIN_REF, raw uint8, shape {list(uint8_output.shape)}",
                f"(real = {out_scale:.9g} * (q - {out_zero_point})).",
            ],
        ),
    ]


# ----------------------------------------------------------------------------------------------
# Digits int8
# ----------------------------------------------------------------------------------------------


def trained_digits_models() -> dict[str, Any]:
    """The batch-1 digits MLP and CNN exactly as make_fixtures.py trains them (same seeding, same
    build order, so Keras gives the layers the same names)."""
    tf.config.threading.set_inter_op_parallelism_threads(1)
    tf.config.threading.set_intra_op_parallelism_threads(1)
    train_x, _, train_y, _ = make_fixtures.load_digits_split()
    make_fixtures.seed_everything()
    mlp = make_fixtures.build_digits_mlp(batch_size=None)
    make_fixtures.train(mlp, train_x, train_y, epochs=30)
    mlp_one = make_fixtures.with_batch_one(mlp, make_fixtures.build_digits_mlp)
    make_fixtures.seed_everything()
    cnn = make_fixtures.build_digits_cnn(batch_size=None)
    make_fixtures.train(cnn, train_x, train_y, epochs=30)
    cnn_one = make_fixtures.with_batch_one(cnn, make_fixtures.build_digits_cnn)
    return {"digits_mlp": mlp_one, "digits_cnn": cnn_one}


def convert_int8(model: tf.keras.Model, calibration: np.ndarray) -> bytes:
    """Full-integer int8 with float I/O, calibrated on `calibration` in order."""

    def representative_dataset():
        for sample in calibration:
            yield [sample]

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative_dataset
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    return converter.convert()


# The other TFLiteConverter modes, from the same Keras models and calibration samples.
EXTRA_MODES = ["int16x8", "dynamic", "fp16"]
MODE_RECIPES = {
    "int8": [
        "`optimizations = [tf.lite.Optimize.DEFAULT]`, `representative_dataset`,",
        "`target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]`",
    ],
    "int16x8": [
        "`optimizations = [tf.lite.Optimize.DEFAULT]`, `representative_dataset`,",
        "`target_spec.supported_ops ="
        " [tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]`",
    ],
    "dynamic": [
        "`optimizations = [tf.lite.Optimize.DEFAULT]`, no `representative_dataset`"
        " (dynamic-range quantization)",
    ],
    "fp16": [
        "`optimizations = [tf.lite.Optimize.DEFAULT]`,"
        " `target_spec.supported_types = [tf.float16]`",
    ],
}


def convert_mode(model: tf.keras.Model, calibration: np.ndarray, mode: str) -> bytes:
    """TFLiteConverter.from_keras_model in one of EXTRA_MODES (int8: see convert_int8)."""
    if mode == "int8":
        return convert_int8(model, calibration)

    def representative_dataset():
        for sample in calibration:
            yield [sample]

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if mode == "int16x8":
        converter.representative_dataset = representative_dataset
        converter.target_spec.supported_ops = [
            tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8
        ]
    elif mode == "fp16":
        converter.target_spec.supported_types = [tf.float16]
    elif mode != "dynamic":
        raise ValueError(mode)
    return converter.convert()


def run_both_resolvers(model: Path, samples: np.ndarray) -> tuple[np.ndarray, float]:
    """Outputs with BUILTIN_REF (as run_litert) and the largest absolute difference from LiteRT's
    default (optimized) kernels on the same samples; fails if either cannot load or run."""
    reference = run_litert(model, samples)
    interpreter = Interpreter(model_path=str(model), num_threads=1)
    interpreter.allocate_tensors()
    (input_detail,) = interpreter.get_input_details()
    (output_detail,) = interpreter.get_output_details()
    optimized = []
    for sample in samples:
        interpreter.set_tensor(input_detail["index"], sample)
        interpreter.invoke()
        optimized.append(np.array(interpreter.get_tensor(output_detail["index"])))
    optimized_output = np.stack(optimized)
    if not np.all(np.isfinite(reference)) or not np.all(np.isfinite(optimized_output)):
        sys.exit(f"{model.name}: non-finite outputs")
    difference = float(
        np.max(np.abs(reference.astype(np.float64) - optimized_output.astype(np.float64)))
    )
    return reference, difference


def weight_dtypes(model: Path) -> list[str]:
    """README lines: per CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED op, the dtype of its input,
    its kernel (or of the constant that feeds it through DEQUANTIZE), its bias and its output."""
    interpreter = Interpreter(model_path=str(model))
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    ops = interpreter._get_ops_details()
    producers = {int(o): op for op in ops for o in op["outputs"]}

    def dtype_of(index: int) -> str:
        if index < 0:
            return "none"
        text = np.dtype(tensors[index]["dtype"]).name
        producer = producers.get(index)
        if producer is not None and producer["op_name"] == "DEQUANTIZE":
            source = tensors[int(producer["inputs"][0])]
            text += f" (DEQUANTIZE of {np.dtype(source['dtype']).name})"
        return text

    lines = []
    for op in ops:
        if op["op_name"] not in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
            continue
        inputs = [int(i) for i in op["inputs"]]
        kernel = tensors[inputs[1]]
        lines.append(
            f"  {op['op_name']} {kernel['shape'].tolist()}: input {dtype_of(inputs[0])},"
            f" kernel {dtype_of(inputs[1])}, bias"
            f" {dtype_of(inputs[2]) if len(inputs) > 2 else 'none'},"
            f" output {dtype_of(int(op['outputs'][0]))}"
        )
    return lines


def check_same_weights(float_path: Path, int8_path: Path) -> list[str]:
    """Fail unless every float kernel and bias of the float model has an int8 kernel / int32 bias
    of the same shape in the int8 model that dequantizes to it within half a quantization step."""
    int8_model = Interpreter(model_path=str(int8_path))
    op_inputs: dict[str, list[int]] = {}
    for op in ops_of(float_path):
        if op["op_name"] in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
            op_inputs.setdefault(op["op_name"], []).extend(int(i) for i in op["inputs"][1:3])
    float_model = Interpreter(model_path=str(float_path))
    float_model.allocate_tensors()
    float_details = {t["index"]: t for t in float_model.get_tensor_details()}
    int8_model.allocate_tensors()
    int8_details = int8_model.get_tensor_details()
    lines = []
    for op_name, indices in sorted(op_inputs.items()):
        for index in indices:
            want = float_model.get_tensor(index).astype(np.float64)
            role = "kernel" if want.ndim > 1 else "bias"
            candidates = []
            for detail in int8_details:
                if detail["shape"].tolist() != list(want.shape):
                    continue
                if detail["dtype"] not in (np.int8, np.int32):
                    continue
                scales = detail["quantization_parameters"]["scales"]
                zero_points = detail["quantization_parameters"]["zero_points"]
                if scales.size == 0:
                    continue
                axis = detail["quantization_parameters"]["quantized_dimension"]
                shape = [1] * want.ndim
                if scales.size > 1:
                    shape[axis] = scales.size
                data = int8_model.get_tensor(detail["index"]).astype(np.float64)
                real = scales.reshape(shape) * (data - zero_points.reshape(shape))
                error = np.abs(real - want) / scales.reshape(shape)
                candidates.append((float(error.max()), detail, scales.size))
            if not candidates:
                sys.exit(f"{int8_path.name}: no quantized tensor shaped like {op_name} {role}")
            worst, detail, count = min(candidates, key=lambda c: c[0])
            if worst > 0.5 + 1e-3:
                sys.exit(
                    f"{int8_path.name}: {op_name} {role} {float_details[index]['name']} is"
                    f" {worst:.3f} steps from the float model's"
                )
            kind = np.dtype(detail["dtype"]).name
            granularity = "per channel" if count > 1 else "per tensor"
            lines.append(
                f"  {op_name} {role} {list(want.shape)}: {kind} {granularity}, within"
                f" {worst:.3f} of a step"
            )
    return lines


def make_digits(
    out_dir: Path, models_dir: Path
) -> tuple[list[tuple[str, list[str]]], list[str]]:
    """Rebuild the trained digits networks, check them against models/, convert to int8 and the
    other modes; returns the README entries and the accuracy table's lines."""
    train_x, _, _, _ = make_fixtures.load_digits_split()
    calibration = train_x[:CALIBRATION_SAMPLES, np.newaxis].astype(np.float32)
    np.save(out_dir / "digits_calib_x.npy", calibration)
    test_x = np.load(models_dir / "digits_test_x.npy")
    test_y = np.load(models_dir / "digits_test_y.npy")

    entries: list[tuple[str, list[str]]] = [
        (
            "digits_calib_x.npy",
            [
                f"The first {CALIBRATION_SAMPLES} images of the digits training split"
                " (make_fixtures.py's `load_digits_split()`), float32 in [0, 1],",
                f"shape {list(calibration.shape)}: the calibration samples octet and TensorFlow"
                " both use, in this order.",
            ],
        )
    ]
    models = trained_digits_models()
    outputs: list[tuple[str, list[str]]] = []
    mode_entries: list[tuple[str, list[str]]] = []
    accuracy_table: dict[tuple[str, str], tuple[float, float]] = {}
    float_accuracies: dict[str, float] = {}
    for name in DIGITS_MODELS:
        model = models[name]
        float_path = models_dir / f"{name}.tflite"
        if make_fixtures.convert_keras(model) != float_path.read_bytes():
            sys.exit(
                f"the rebuilt {name} does not convert to the bytes of {float_path}: training is"
                " not reproducing make_fixtures.py"
            )
        int8_path = out_dir / f"{name}_tf_int8.tflite"
        int8_path.write_bytes(convert_int8(model, calibration))
        weight_lines = check_same_weights(float_path, int8_path)

        float_output = run_litert(float_path, test_x)
        int8_output = run_litert(int8_path, test_x)
        np.save(out_dir / f"{name}_float_test_output.npy", float_output)
        np.save(out_dir / f"{name}_tf_int8_test_output.npy", int8_output)
        flat_float = float_output.reshape(len(test_y), -1)
        flat_int8 = int8_output.reshape(len(test_y), -1)
        float_accuracy = float(np.mean(np.argmax(flat_float, -1) == test_y))
        int8_accuracy = float(np.mean(np.argmax(flat_int8, -1) == test_y))
        agreement = float(np.mean(np.argmax(flat_float, -1) == np.argmax(flat_int8, -1)))
        sqnr = sqnr_db(float_output, int8_output)
        print(
            f"{name}_tf_int8: accuracy {int8_accuracy:.4f} (float {float_accuracy:.4f}),"
            f" SQNR {sqnr:.2f} dB"
        )
        entries.append(
            (
                f"{name}_tf_int8.tflite",
                [
                    f"- Made by `{COMMAND}` ({SCRIPT}).",
                    f"- The trained batch-1 Keras network behind models/{name}.tflite, rebuilt"
                    " with make_fixtures.py's functions and seeding",
                    f"  (checked: it converts to a file byte-identical to models/{name}.tflite).",
                    "- `tf.lite.TFLiteConverter.from_keras_model(model)` with"
                    " `optimizations = [tf.lite.Optimize.DEFAULT]`,",
                    "  `representative_dataset` yielding `[x]` for each of the"
                    f" {CALIBRATION_SAMPLES} digits_calib_x.npy samples in order (x: float32"
                    " [1, 8, 8, 1]),",
                    "  `target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]`;"
                    " float32 inputs and outputs (QUANTIZE / DEQUANTIZE at the edges).",
                    "- Same weights: each float kernel and bias of"
                    f" models/{name}.tflite dequantizes from the int8 model's:",
                    *weight_lines,
                    *describe_io(int8_path),
                    f"- Test accuracy (top-1, {len(test_y)} digits_test_x.npy images, LiteRT"
                    f" BUILTIN_REF): **{int8_accuracy:.4f}**",
                    f"  (float models/{name}.tflite: {float_accuracy:.4f}; top-1 agreement with"
                    f" the float model {agreement:.4f}).",
                    "- SQNR of its output against the float model's over the test set:"
                    f" **{sqnr:.2f} dB**",
                    "  (10 log10(sum(ref^2) / sum((ref - q)^2)) over all 450 x 10 softmax"
                    " outputs).",
                ],
            )
        )
        outputs += [
            (
                f"{name}_float_test_output.npy",
                [
                    f"models/{name}.tflite's outputs on models/digits_test_x.npy, LiteRT"
                    f" BUILTIN_REF, float32, shape {list(float_output.shape)}.",
                ],
            ),
            (
                f"{name}_tf_int8_test_output.npy",
                [
                    f"{name}_tf_int8.tflite's outputs on models/digits_test_x.npy, LiteRT"
                    f" BUILTIN_REF, float32, shape {list(int8_output.shape)}.",
                ],
            ),
        ]
        accuracy_table[(name, "int8")] = (int8_accuracy, sqnr)
        float_accuracies[name] = float_accuracy
        entries_extra, outputs_extra = extra_modes(
            out_dir, models_dir, name, model, calibration, test_x, test_y, float_output,
            accuracy_table,
        )
        mode_entries += entries_extra
        outputs += outputs_extra
    table = accuracy_readme(accuracy_table, float_accuracies, len(test_y))
    return entries + mode_entries + outputs, table


def extra_modes(
    out_dir: Path,
    models_dir: Path,
    name: str,
    model: tf.keras.Model,
    calibration: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    float_output: np.ndarray,
    accuracy_table: dict[tuple[str, str], tuple[float, float]],
) -> tuple[list[tuple[str, list[str]]], list[tuple[str, list[str]]]]:
    """Convert `model` in EXTRA_MODES, check each runs in LiteRT with both resolvers, record its
    accuracy and SQNR; return README (model entries, test-output entries)."""
    entries: list[tuple[str, list[str]]] = []
    outputs: list[tuple[str, list[str]]] = []
    for mode in EXTRA_MODES:
        path = out_dir / f"{name}_tf_{mode}.tflite"
        converted = convert_mode(model, calibration, mode)
        notes: list[str] = []
        if mode == "fp16":
            existing = models_dir / f"{name}_fp16.tflite"
            if existing.exists():
                same = existing.read_bytes() == converted
                notes.append(
                    f"- Byte-identical to models/{name}_fp16.tflite (make_fixtures.py's"
                    " `convert_keras(model, fp16=True)`)."
                    if same
                    else f"- Differs from models/{name}_fp16.tflite (same recipe in"
                    " make_fixtures.py); this file is TensorFlow's conversion of the rebuilt model."
                )
        path.write_bytes(converted)
        output, difference = run_both_resolvers(path, test_x)
        if mode == "dynamic":
            notes.append(
                "- TensorFlow's dynamic-range quantizer leaves weight tensors with fewer than"
                " 1024 elements in float32, so only the larger kernels below are int8."
            )
            if np.array_equal(output, float_output):
                float_bytes = (models_dir / f"{name}.tflite").read_bytes()
                notes.append(
                    "- Nothing was quantized: its test outputs are bit-identical to"
                    f" models/{name}.tflite's; the file is "
                    + (
                        "byte-identical to it."
                        if converted == float_bytes
                        else f"not byte-identical to it ({len(converted)} vs"
                        f" {len(float_bytes)} bytes)."
                    )
                )
        np.save(out_dir / f"{name}_tf_{mode}_test_output.npy", output)
        flat = output.reshape(len(test_y), -1).astype(np.float64)
        flat_float = float_output.reshape(len(test_y), -1)
        accuracy = float(np.mean(np.argmax(flat, -1) == test_y))
        agreement = float(np.mean(np.argmax(flat_float, -1) == np.argmax(flat, -1)))
        sqnr = sqnr_db(float_output, output)
        accuracy_table[(name, mode)] = (accuracy, sqnr)
        print(f"{name}_tf_{mode}: accuracy {accuracy:.4f}, SQNR {sqnr:.2f} dB")
        recipe = MODE_RECIPES[mode]
        entries.append(
            (
                path.name,
                [
                    f"- Made by `{COMMAND}` ({SCRIPT}), from the same rebuilt Keras network as"
                    f" {name}_tf_int8.tflite (models/{name}.tflite's).",
                    "- `tf.lite.TFLiteConverter.from_keras_model(model)` with "
                    + " ".join(recipe)
                    + (
                        f"; `representative_dataset` yields `[x]` for each of the"
                        f" {CALIBRATION_SAMPLES} digits_calib_x.npy samples in order."
                        if mode == "int16x8"
                        else "."
                    ),
                    *notes,
                    "- Kernels and activations (LiteRT tensor dtypes):",
                    *weight_dtypes(path),
                    *describe_io(path),
                    "- Loads and runs in LiteRT with both BUILTIN_REF and the default resolver;"
                    f" largest difference between the two over the test set {difference:.3g}.",
                    f"- Test accuracy (top-1, {len(test_y)} images, BUILTIN_REF):"
                    f" **{accuracy:.4f}** (top-1 agreement with the float model"
                    f" {agreement:.4f}); SQNR against the float output **{sqnr:.2f} dB**.",
                ],
            )
        )
        outputs.append(
            (
                f"{name}_tf_{mode}_test_output.npy",
                [
                    f"{path.name}'s outputs on models/digits_test_x.npy, LiteRT BUILTIN_REF,"
                    f" {np.dtype(output.dtype).name}, shape {list(output.shape)}.",
                ],
            )
        )
    return entries, outputs


def accuracy_readme(
    table: dict[tuple[str, str], tuple[float, float]],
    float_accuracies: dict[str, float],
    count: int,
) -> list[str]:
    """README lines: the model x mode table of top-1 accuracy and SQNR."""
    modes = ["int8", *EXTRA_MODES]
    lines = [
        "## TensorFlow's conversions of the digits models",
        "",
        f"Top-1 accuracy on models/digits_test_x.npy / digits_test_y.npy ({count} images, LiteRT"
        " BUILTIN_REF) and SQNR of the output against the float model's over the test set",
        "(10 log10(sum(ref^2) / sum((ref - q)^2)) over all softmax outputs). Files:"
        " `<model>_tf_<mode>.tflite`.",
        "",
        "| model | float | " + " | ".join(modes) + " |",
        "| --- | ---: | " + " | ".join("---:" for _ in modes) + " |",
    ]
    for name in DIGITS_MODELS:
        cells = [
            f"{table[(name, m)][0]:.4f} / "
            + (
                f"{table[(name, m)][1]:.2f} dB"
                if np.isfinite(table[(name, m)][1])
                else "inf (output identical to float)"
            )
            for m in modes
        ]
        lines.append(f"| {name} | {float_accuracies[name]:.4f} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Cells: accuracy / SQNR. int8: full-integer, float I/O; int16x8: int16 activations, int8"
        " weights, float I/O;",
        "dynamic: dynamic-range (int8 weights where TensorFlow quantizes them, float"
        " activations); fp16: float16 weights, float32 compute.",
    ]
    return lines


# ----------------------------------------------------------------------------------------------
# The other make_fixtures.py models: multi_io, no_signature, sparse_fc
# ----------------------------------------------------------------------------------------------

OTHER_MODELS = ["multi_io", "no_signature", "sparse_fc"]
ALL_MODES = ["int8", *EXTRA_MODES]
# Seed and count of the uniform(-1, 1) calibration samples for multi_io and no_signature.
UNIFORM_SEED = 0x5EED
UNIFORM_SAMPLES = 32


def configure_converter(converter: Any, mode: str, representative_dataset: Any) -> None:
    """Set a (v1 or v2) TFLiteConverter up for `mode`, exactly as convert_mode / convert_int8."""
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if mode == "int8":
        converter.representative_dataset = representative_dataset
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    elif mode == "int16x8":
        converter.representative_dataset = representative_dataset
        converter.target_spec.supported_ops = [
            tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8
        ]
    elif mode == "fp16":
        converter.target_spec.supported_types = [tf.float16]
    elif mode != "dynamic":
        raise ValueError(mode)


def convert_keras_mode(model: tf.keras.Model, mode: str, representative_dataset: Any) -> bytes:
    """from_keras_model in `mode` with a representative dataset generator."""
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    configure_converter(converter, mode, representative_dataset)
    return converter.convert()


def convert_session_mode(mode: str, representative_dataset: Any) -> bytes:
    """make_fixtures.convert_tf1_session_model() (same graph, same from_session call), with the
    converter configured for `mode` before convert()."""
    from_session = tf.compat.v1.lite.TFLiteConverter.from_session

    def configured(session, input_tensors, output_tensors):
        converter = from_session(session, input_tensors, output_tensors)
        configure_converter(converter, mode, representative_dataset)
        return converter

    with mock.patch.object(tf.compat.v1.lite.TFLiteConverter, "from_session", configured):
        return make_fixtures.convert_tf1_session_model()


def run_model(
    model: Path, inputs: list[np.ndarray], ref: bool
) -> list[np.ndarray]:
    """Run a model on N samples, one per invoke, one thread, BUILTIN_REF or the default resolver.
    `inputs` holds one [N, *shape] array per input in signature order (subgraph order without a
    signature); returns one stacked array per output in the same kind of order."""
    kwargs: dict[str, Any] = {"model_path": str(model), "num_threads": 1}
    if ref:
        kwargs["experimental_op_resolver_type"] = OpResolverType.BUILTIN_REF
    interpreter = Interpreter(**kwargs)
    interpreter.allocate_tensors()
    signatures = interpreter.get_signature_list()
    if signatures:
        ((key, signature),) = signatures.items()
        runner = interpreter.get_signature_runner(key)
        in_details, out_details = runner.get_input_details(), runner.get_output_details()
        input_indices = [in_details[name]["index"] for name in signature["inputs"]]
        output_indices = [out_details[name]["index"] for name in signature["outputs"]]
        # The runner keeps references into the interpreter, which invoke() refuses.
        del runner, in_details, out_details
    else:
        input_indices = [d["index"] for d in interpreter.get_input_details()]
        output_indices = [d["index"] for d in interpreter.get_output_details()]
    if len(input_indices) != len(inputs):
        sys.exit(f"{model.name}: {len(input_indices)} inputs, {len(inputs)} given")
    outputs: list[list[np.ndarray]] = [[] for _ in output_indices]
    for n in range(len(inputs[0])):
        for index, values in zip(input_indices, inputs, strict=True):
            interpreter.set_tensor(index, values[n])
        interpreter.invoke()
        for k, index in enumerate(output_indices):
            outputs[k].append(np.array(interpreter.get_tensor(index)))
    return [np.stack(o) for o in outputs]


def check_both_resolvers(model: Path, inputs: list[np.ndarray]) -> tuple[list[np.ndarray], float]:
    """BUILTIN_REF outputs and the largest difference from the default resolver's; fails if either
    cannot load or run or gives non-finite values."""
    reference = run_model(model, inputs, ref=True)
    optimized = run_model(model, inputs, ref=False)
    difference = 0.0
    for r, o in zip(reference, optimized, strict=True):
        if not np.all(np.isfinite(r)) or not np.all(np.isfinite(o)):
            sys.exit(f"{model.name}: non-finite outputs")
        difference = max(difference, float(np.max(np.abs(r.astype(np.float64) - o))))
    return reference, difference


def uniform_samples(shapes: list[tuple[int, ...]]) -> list[np.ndarray]:
    """UNIFORM_SAMPLES float32 U(-1, 1) samples per input, drawn input after input from
    np.random.default_rng(UNIFORM_SEED); shape [UNIFORM_SAMPLES, *input shape] each."""
    rng = np.random.default_rng(UNIFORM_SEED)
    return [
        rng.uniform(-1.0, 1.0, (UNIFORM_SAMPLES, *shape)).astype(np.float32) for shape in shapes
    ]


def rebuilt_other_models(out_dir: Path) -> dict[str, dict[str, Any]]:
    """multi_io, no_signature and sparse_fc rebuilt with make_fixtures.py's functions and seeding
    (after trained_digits_models(), so Keras numbers the layers as make_fixtures.py does). Each
    entry: `convert(mode, dataset)`, the calibration inputs, their description and whether the
    float conversion is byte-identical to models/<name>.tflite (else a reason)."""
    result: dict[str, dict[str, Any]] = {}

    make_fixtures.seed_everything()
    multi_io = make_fixtures.build_multi_io()
    shapes = [tuple([1, *t.shape[1:]]) for t in multi_io.inputs]
    names = [t.name.split(":")[0] for t in multi_io.inputs]
    inputs = uniform_samples(shapes)
    result["multi_io"] = {
        "float": make_fixtures.convert_keras(multi_io),
        "convert": lambda mode, dataset, m=multi_io: convert_keras_mode(m, mode, dataset),
        "inputs": inputs,
        # Keyed by signature input name: the subgraph lists the inputs in another order.
        "sample": lambda n, names=names, inputs=inputs: {
            name: values[n] for name, values in zip(names, inputs, strict=True)
        },
        "recipe": [
            f"`make_fixtures.seed_everything()` then `build_multi_io()` (untrained), as"
            " make_fixtures.py builds models/multi_io.tflite;",
            "  `from_keras_model(model)`.",
        ],
        "calibration": (
            f"{UNIFORM_SAMPLES} samples per input drawn by"
            f" `np.random.default_rng({UNIFORM_SEED:#x}).uniform(-1, 1, ...)`, float32, the"
            f" {UNIFORM_SAMPLES} `{names[0]}` samples {list(shapes[0])} first, then the"
            f" {UNIFORM_SAMPLES} `{names[1]}` samples {list(shapes[1])} (Keras / signature input"
            " order);"
            " `representative_dataset` yields `{"
            + ", ".join(f"'{n}': x_{n}" for n in names)
            + "}` (keyed by signature input name, since the subgraph lists `patch` first)."
        ),
    }

    x_shape = (1, 4)
    inputs = uniform_samples([x_shape])
    result["no_signature"] = {
        "float": make_fixtures.convert_tf1_session_model(),
        "convert": lambda mode, dataset: convert_session_mode(mode, dataset),
        "inputs": inputs,
        "sample": lambda n, inputs=inputs: [inputs[0][n]],
        "recipe": [
            "the TF1 graph of `make_fixtures.convert_tf1_session_model()` (called as is; its",
            "  `tf.compat.v1.lite.TFLiteConverter.from_session(session, [x], [y])` converter is"
            " configured before `convert()`).",
        ],
        "calibration": (
            f"{UNIFORM_SAMPLES} samples of `x` {list(x_shape)} drawn by"
            f" `np.random.default_rng({UNIFORM_SEED:#x}).uniform(-1, 1, ...)`, float32;"
            " `representative_dataset` yields `[x]`."
        ),
    }

    train_x, _, train_y, _ = make_fixtures.load_digits_split()
    make_fixtures.seed_everything()
    keep_mask = make_fixtures.pruning_mask((64, 32), make_fixtures.SPARSE_ZERO_FRACTION)
    sparse_fc = make_fixtures.build_sparse_fc(batch_size=None, keep_mask=keep_mask)
    make_fixtures.train(sparse_fc, train_x, train_y, epochs=30)
    sparse_one = make_fixtures.with_batch_one(sparse_fc, make_fixtures.build_sparse_fc)
    calibration = np.load(out_dir / "digits_calib_x.npy")
    if tuple(sparse_one.inputs[0].shape) != calibration.shape[1:]:
        sys.exit(
            f"sparse_fc input {sparse_one.inputs[0].shape} does not match the calibration samples"
            f" {calibration.shape[1:]}"
        )
    result["sparse_fc"] = {
        "float": make_fixtures.convert_sparse(sparse_one),
        "convert": lambda mode, dataset, m=sparse_one: convert_keras_mode(m, mode, dataset),
        "inputs": [calibration],
        "sample": lambda n, c=calibration: [c[n]],
        "recipe": [
            "the trained batch-1 Keras network behind models/sparse_fc.tflite, rebuilt with",
            "  make_fixtures.py's `pruning_mask`, `build_sparse_fc`, `train` (30 epochs) and"
            " `with_batch_one`; `from_keras_model(model)`",
            "  without `EXPERIMENTAL_SPARSITY` (the kernel is stored dense, as TensorFlow's"
            " quantized conversions of the digits models).",
        ],
        "calibration": (
            f"the {len(calibration)} digits_calib_x.npy samples in order (float32"
            f" {list(calibration.shape[1:])}, the model's input shape);"
            " `representative_dataset` yields `[x]`."
        ),
    }
    return result


def make_others(
    out_dir: Path, models_dir: Path
) -> tuple[list[tuple[str, list[str]]], list[str]]:
    """Convert OTHER_MODELS in every mode; returns README entries and the summary lines."""
    models = rebuilt_other_models(out_dir)
    entries: list[tuple[str, list[str]]] = []
    rows: list[str] = []
    skipped: list[str] = []
    for name in OTHER_MODELS:
        spec = models[name]
        float_path = models_dir / f"{name}.tflite"
        if spec["float"] != float_path.read_bytes():
            reason = (
                f"the rebuilt {name} does not convert to the bytes of models/{name}.tflite"
            )
            print(f"skipping {name}: {reason}")
            skipped.append(f"- `{name}`: skipped, {reason}.")
            continue
        float_outputs = run_model(float_path, spec["inputs"], ref=True)
        cells = []
        for mode in ALL_MODES:
            path = out_dir / f"{name}_tf_{mode}.tflite"

            def representative_dataset(spec=spec):
                for n in range(len(spec["inputs"][0])):
                    yield spec["sample"](n)

            try:
                converted = spec["convert"](mode, representative_dataset)
            except Exception as error:  # noqa: BLE001 - TensorFlow raises many kinds
                reason = " ".join(str(error).split())[:300]
                print(f"skipping {path.name}: {reason}")
                skipped.append(f"- `{path.name}`: TensorFlow refused: {reason}")
                cells.append("refused")
                continue
            path.write_bytes(converted)
            outputs, difference = check_both_resolvers(path, spec["inputs"])
            sqnrs = [
                sqnr_db(f, o.astype(np.float64)) for f, o in zip(float_outputs, outputs, strict=True)
            ]
            sqnr_text = ", ".join(
                f"{s:.2f} dB" if np.isfinite(s) else "inf (identical)" for s in sqnrs
            )
            cells.append(sqnr_text)
            notes = []
            if mode in ("dynamic", "fp16") and converted == float_path.read_bytes():
                notes.append(f"- Byte-identical to models/{name}.tflite: nothing was converted.")
            elif mode == "dynamic" and all(np.isinf(s) for s in sqnrs):
                notes.append(
                    "- Outputs bit-identical to the float model's: TensorFlow's dynamic-range"
                    " quantizer leaves weight tensors with fewer than 1024 elements in float32."
                )
            print(f"{path.name}: SQNR {sqnr_text}, resolver difference {difference:.3g}")
            entries.append(
                (
                    path.name,
                    [
                        f"- Made by `{COMMAND}` ({SCRIPT}) from " + spec["recipe"][0],
                        *spec["recipe"][1:],
                        "- Checked: the same source converts to a file byte-identical to"
                        f" models/{name}.tflite with make_fixtures.py's own recipe ("
                        + (
                            "`convert_sparse`, i.e. `EXPERIMENTAL_SPARSITY`)."
                            if name == "sparse_fc"
                            else "no optimizations)."
                        ),
                        "- Converter settings: " + " ".join(MODE_RECIPES[mode]) + ".",
                        *(
                            ["- Calibration: " + spec["calibration"]]
                            if mode in ("int8", "int16x8")
                            else []
                        ),
                        *notes,
                        "- Kernels and activations (LiteRT tensor dtypes):",
                        *(weight_dtypes(path) or ["  (no CONV_2D / DEPTHWISE_CONV_2D /"
                                                  " FULLY_CONNECTED op)"]),
                        *describe_io(path),
                        "- Loads and runs in LiteRT with both BUILTIN_REF and the default"
                        " resolver on the calibration inputs; largest difference between the two"
                        f" {difference:.3g}.",
                        "- SQNR against models/" + f"{name}.tflite's output (BUILTIN_REF, same"
                        " inputs, per output in signature order): " + sqnr_text + ".",
                    ],
                )
            )
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    lines = [
        "",
        "## TensorFlow's conversions of multi_io, no_signature and sparse_fc",
        "",
        "The same four converter modes applied to make_fixtures.py's other float models, rebuilt"
        " from the same sources",
        "(each checked to convert with make_fixtures.py's recipe to its models/ file byte for"
        " byte)."
        f" multi_io and no_signature are calibrated on {UNIFORM_SAMPLES} seeded",
        f"U(-1, 1) samples per input (`np.random.default_rng({UNIFORM_SEED:#x})`), sparse_fc on"
        " digits_calib_x.npy. Cells: SQNR of each output",
        "against the float model's on the calibration inputs (LiteRT BUILTIN_REF), per output in"
        " signature order.",
        "",
        "| model | " + " | ".join(ALL_MODES) + " |",
        "| --- | " + " | ".join("---:" for _ in ALL_MODES) + " |",
        *rows,
        "",
        "Skipped: " + ("none." if not skipped else ""),
        *skipped,
    ]
    return entries, lines


# ----------------------------------------------------------------------------------------------
# Driver
# ----------------------------------------------------------------------------------------------


def render_readme(
    out_dir: Path, entries: list[tuple[str, list[str]]], table: list[str]
) -> str:
    """README.md text: recipe, file table, one section per file."""
    lines = [
        "# Reference models: TensorFlow's own quantization",
        "",
        f"Generated by `{COMMAND}`, which runs `{SCRIPT} --out models/reference/` in the pinned",
        "venv after make_fixtures.py. This README is written by the same script: edit the script,",
        "not this file. These are the models octet's quantizer is compared against: what",
        "TensorFlow's converter makes of the same float networks and calibration data.",
        "",
        f"- Versions: Python {sys.version.split()[0]}, {versions()}.",
        "- Outputs: LiteRT `Interpreter(..., experimental_op_resolver_type="
        "OpResolverType.BUILTIN_REF, num_threads=1)`,",
        "  one sample per invoke, raw output dtype, stacked to [N, *output shape].",
        "- A rerun gives byte-identical files.",
        "",
        "| file | bytes | sha256 |",
        "| --- | ---: | --- |",
    ]
    for name, _ in entries:
        path = out_dir / name
        lines.append(f"| `{name}` | {path.stat().st_size} | `{sha256(path)[:16]}` |")
    lines += ["", *table]
    for name, text in entries:
        lines += ["", f"## {name}", "", *text]
    return "\n".join(lines) + "\n"


def main() -> None:
    """Build, check and document every reference file."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=Path, default=Path("models/reference"), help="output directory"
    )
    parser.add_argument(
        "--models",
        type=Path,
        default=None,
        help="directory with make_fixtures.py's outputs (default: the parent of --out)",
    )
    args = parser.parse_args()
    out_dir: Path = args.out
    models_dir: Path = args.models or out_dir.resolve().parent
    out_dir.mkdir(parents=True, exist_ok=True)
    tf.get_logger().setLevel("ERROR")
    tf.config.threading.set_inter_op_parallelism_threads(1)
    tf.config.threading.set_intra_op_parallelism_threads(1)
    make_fixtures.seed_everything()

    entries = make_mobilenet(out_dir)
    digits_entries, table = make_digits(out_dir, models_dir)
    entries += digits_entries
    other_entries, other_lines = make_others(out_dir, models_dir)
    entries += other_entries
    table += other_lines
    (out_dir / "README.md").write_text(render_readme(out_dir, entries, table))
    total = sum(p.stat().st_size for p in out_dir.iterdir() if p.is_file())
    for name, _ in entries:
        print(f"{name:<40} {(out_dir / name).stat().st_size:>8} bytes")
    print(f"{total} bytes in {out_dir}")
    if total > BUDGET_BYTES:
        sys.exit(f"{out_dir} holds {total} bytes, over the {BUDGET_BYTES}-byte budget")


if __name__ == "__main__":
    main()
