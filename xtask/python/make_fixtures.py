"""Build octet's small float TFLite test models and write models/README.md.

Run through `cargo xtask fixtures`, which creates the pinned venv and calls

    .venv/bin/python xtask/python/make_fixtures.py --out models/

Everything is seeded (Python, NumPy and TensorFlow via tf.keras.utils.set_random_seed, TensorFlow
op determinism, single-threaded CPU), so a rerun on the same package versions gives the same
weights as far as TensorFlow allows. The data is scikit-learn's bundled `load_digits` set (no
download). Third-party models are not written here: `cargo xtask fetch-models` puts them in
.cache/third_party/. The script writes:

- digits_mlp.tflite, digits_cnn.tflite, digits_cnn_fp16.tflite: classifiers of 8x8 digit images,
- multi_io.tflite: two inputs, two outputs, dynamic batch (signature with several tensors),
- no_signature.tflite: a TF1-session model without signature defs,
- sparse_fc.tflite: a digits MLP whose first kernel is 80% zeros, stored as a sparse tensor that
  feeds DENSIFY,
- digits_test_x.npy / digits_test_y.npy: the digits test split,
- README.md: how each file was made, its inputs/outputs and its test accuracy.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

# Quiet TensorFlow's C++ logging and keep everything on the CPU; must precede the import.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from ai_edge_litert.interpreter import Interpreter  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402

SEED = 0
TEST_SIZE = 0.25
COMMAND = "cargo xtask fixtures"
SCRIPT = "xtask/python/make_fixtures.py"
# Fraction of sparse_fc.tflite's first kernel that is pruned to zero.
SPARSE_ZERO_FRACTION = 0.8
# README.md lines listing what `cargo xtask fetch-models` puts in .cache/third_party/; the pinned
# wheel versions are in xtask/src/fetch_models.rs.
THIRD_PARTY_MODELS = [
    "  - `.cache/third_party/mediapipe/*.tflite`: the 14 models that the `mediapipe` wheel bundles",
    "    under `mediapipe/modules/` (face detection and landmarks, hands, iris, palm, pose,",
    "    selfie segmentation), some with custom ops.",
    "  - `.cache/third_party/tflite-micro/sine_float.tflite`: the float sine-regression model that",
    "    the `tflite-micro` wheel ships at `tflite_micro/python/tflite_micro/sine_float.tflite`.",
]


@dataclass
class Fixture:
    """One file written to the output directory, with what README.md says about it."""

    file_name: str
    how_made: list[str]
    test_accuracy: float | None = None
    keras_test_accuracy: float | None = None


def seed_everything() -> None:
    """Seed Python, NumPy and TensorFlow and ask TensorFlow for deterministic kernels."""
    tf.keras.utils.set_random_seed(SEED)
    np.random.seed(SEED)
    tf.config.experimental.enable_op_determinism()


def load_digits_split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Digits as float32 images in [0, 1] shaped (N, 8, 8, 1), split 75/25 with random_state=0."""
    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)[..., np.newaxis]
    labels = digits.target.astype(np.int32)
    train_x, test_x, train_y, test_y = train_test_split(
        images, labels, test_size=TEST_SIZE, random_state=SEED
    )
    return train_x, test_x, train_y, test_y


def build_digits_mlp(batch_size: int | None) -> tf.keras.Model:
    """Flatten -> Dense(32, relu) -> Dense(10, softmax) on (batch, 8, 8, 1) images."""
    images = tf.keras.Input((8, 8, 1), batch_size=batch_size, name="image")
    hidden = tf.keras.layers.Flatten()(images)
    hidden = tf.keras.layers.Dense(32, activation="relu")(hidden)
    probabilities = tf.keras.layers.Dense(10, activation="softmax", name="probabilities")(hidden)
    return tf.keras.Model(images, probabilities, name="digits_mlp")


def build_digits_cnn(batch_size: int | None) -> tf.keras.Model:
    """Conv2D, max pool, DepthwiseConv2D, average pool, Dense with softmax."""
    layers = tf.keras.layers
    images = tf.keras.Input((8, 8, 1), batch_size=batch_size, name="image")
    hidden = layers.Conv2D(8, 3, padding="same", activation="relu")(images)
    hidden = layers.MaxPooling2D(2)(hidden)
    hidden = layers.DepthwiseConv2D(3, padding="same", activation="relu")(hidden)
    hidden = layers.AveragePooling2D(2)(hidden)
    hidden = layers.Flatten()(hidden)
    probabilities = layers.Dense(10, activation="softmax", name="probabilities")(hidden)
    return tf.keras.Model(images, probabilities, name="digits_cnn")


def build_multi_io() -> tf.keras.Model:
    """Two inputs of different shapes, two outputs; untrained (seeded initial weights)."""
    layers = tf.keras.layers
    features = tf.keras.Input((8,), name="features")
    patch = tf.keras.Input((4, 4, 2), name="patch")
    from_features = layers.Dense(8, activation="relu")(features)
    from_patch = layers.Dense(8, activation="tanh")(layers.Flatten()(patch))
    joined = layers.Concatenate()([from_features, from_patch])
    class_probs = layers.Dense(3, activation="softmax", name="class_probs")(joined)
    score = layers.Dense(1, activation="sigmoid", name="score")(joined)
    return tf.keras.Model([features, patch], [class_probs, score], name="multi_io")


class KeepMasked(tf.keras.constraints.Constraint):
    """Weight constraint that holds the entries outside a fixed boolean mask at exactly +0.0."""

    def __init__(self, mask: np.ndarray) -> None:
        self.mask = tf.constant(mask)

    def __call__(self, weights: tf.Tensor) -> tf.Tensor:
        return tf.where(self.mask, weights, tf.zeros_like(weights))


def pruning_mask(shape: tuple[int, ...], zero_fraction: float) -> np.ndarray:
    """A boolean keep-mask with exactly round(zero_fraction * size) False entries, seeded."""
    size = int(np.prod(shape))
    pruned = np.random.default_rng(SEED).permutation(size)[: round(zero_fraction * size)]
    keep = np.ones(size, dtype=bool)
    keep[pruned] = False
    return keep.reshape(shape)


def build_sparse_fc(batch_size: int | None, keep_mask: np.ndarray | None = None) -> tf.keras.Model:
    """Flatten -> Dense(32, relu) -> Dense(10, softmax), the first kernel held to keep_mask."""
    layers = tf.keras.layers
    images = tf.keras.Input((8, 8, 1), batch_size=batch_size, name="image")
    hidden = layers.Flatten()(images)
    constraint = None if keep_mask is None else KeepMasked(keep_mask)
    hidden = layers.Dense(32, activation="relu", kernel_constraint=constraint, name="pruned")(
        hidden
    )
    probabilities = layers.Dense(10, activation="softmax", name="probabilities")(hidden)
    return tf.keras.Model(images, probabilities, name="sparse_fc")


def train(model: tf.keras.Model, train_x: np.ndarray, train_y: np.ndarray, epochs: int) -> None:
    """Adam(1e-2), sparse categorical cross-entropy, batch 32, shuffled by the global seed."""
    model.compile(
        optimizer=tf.keras.optimizers.Adam(learning_rate=1e-2),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    model.fit(train_x, train_y, batch_size=32, epochs=epochs, shuffle=True, verbose=0)


def keras_accuracy(model: tf.keras.Model, test_x: np.ndarray, test_y: np.ndarray) -> float:
    """Top-1 accuracy of a Keras model on the test split."""
    predictions = model.predict(test_x, batch_size=64, verbose=0)
    return float(np.mean(np.argmax(predictions, axis=1) == test_y))


def with_batch_one(
    trained: tf.keras.Model, builder: Callable[..., tf.keras.Model]
) -> tf.keras.Model:
    """The same network with a static batch of 1 (input [1, 8, 8, 1]) and the trained weights."""
    fixed = builder(batch_size=1)
    fixed.set_weights(trained.get_weights())
    return fixed


def convert_keras(model: tf.keras.Model, fp16: bool = False) -> bytes:
    """TFLiteConverter.from_keras_model, optionally with float16 weights."""
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if fp16:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    return converter.convert()


def convert_sparse(model: tf.keras.Model) -> bytes:
    """TFLiteConverter.from_keras_model with `optimizations = [EXPERIMENTAL_SPARSITY]`."""
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.EXPERIMENTAL_SPARSITY]
    return converter.convert()


def convert_tf1_session_model() -> bytes:
    """A tiny TF1 graph, y = tanh(x @ W + b), converted from a session: no signature defs."""
    rng = np.random.default_rng(SEED)
    weights = rng.uniform(-1.0, 1.0, size=(4, 3)).astype(np.float32)
    bias = rng.uniform(-0.5, 0.5, size=(3,)).astype(np.float32)
    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, shape=(1, 4), name="x")
        y = tf.tanh(tf.matmul(x, tf.constant(weights)) + tf.constant(bias), name="y")
        with tf.compat.v1.Session(graph=graph) as session:
            converter = tf.compat.v1.lite.TFLiteConverter.from_session(session, [x], [y])
            return converter.convert()


def tflite_accuracy(model_path: Path, test_x: np.ndarray, test_y: np.ndarray) -> float:
    """Top-1 accuracy of a single-input classifier run in LiteRT, one sample per invoke."""
    interpreter = Interpreter(model_path=str(model_path), num_threads=1)
    interpreter.allocate_tensors()
    (input_detail,) = interpreter.get_input_details()
    (output_detail,) = interpreter.get_output_details()
    correct = 0
    for image, label in zip(test_x, test_y, strict=True):
        interpreter.set_tensor(input_detail["index"], image.reshape(input_detail["shape"]))
        interpreter.invoke()
        correct += int(np.argmax(interpreter.get_tensor(output_detail["index"])) == label)
    return correct / len(test_y)


def describe_tensors(details: list[dict]) -> list[str]:
    """One line per tensor: name, dtype, shape (with -1 for dynamic dimensions)."""
    lines = []
    for detail in details:
        shape = detail.get("shape_signature", detail["shape"]).tolist()
        lines.append(f"`{detail['name']}` {np.dtype(detail['dtype']).name} {shape}")
    return lines


def describe_model(model_path: Path) -> list[str]:
    """README lines listing a model's operators, inputs, outputs and signatures (from LiteRT)."""
    interpreter = Interpreter(model_path=str(model_path))
    # The op list comes from a private LiteRT helper; it is only informational here.
    op_names = sorted({op["op_name"] for op in interpreter._get_ops_details()})
    lines = [f"- Operators: {', '.join(op_names)}"]
    lines.append(
        "- Inputs (subgraph order): " + "; ".join(describe_tensors(interpreter.get_input_details()))
    )
    lines.append(
        "- Outputs (subgraph order): "
        + "; ".join(describe_tensors(interpreter.get_output_details()))
    )
    signatures = interpreter.get_signature_list()
    if not signatures:
        lines.append("- Signature defs: none")
    subgraph_inputs = [detail["index"] for detail in interpreter.get_input_details()]
    for key, signature in signatures.items():
        lines.append(
            f"- Signature `{key}`: inputs {signature['inputs']}, outputs {signature['outputs']}"
        )
        runner_inputs = interpreter.get_signature_runner(key).get_input_details()
        signature_inputs = [runner_inputs[name]["index"] for name in signature["inputs"]]
        if signature_inputs != subgraph_inputs:
            lines.append("  (the signature lists its inputs in another order than the subgraph)")
    return lines


def fp16_tensor_count(model_path: Path) -> int:
    """How many float16 tensors (the fp16 constants feeding DEQUANTIZE) a model holds."""
    interpreter = Interpreter(model_path=str(model_path))
    return sum(1 for t in interpreter.get_tensor_details() if t["dtype"] == np.float16)


def check_sparse_densified(model_path: Path) -> list[str]:
    """Fail unless exactly one tensor in the model has sparsity parameters and feeds DENSIFY.

    Returns README lines describing the sparse tensor's encoding (from LiteRT's tensor details;
    the op list comes from the private `_get_ops_details()` helper).
    """
    interpreter = Interpreter(model_path=str(model_path))
    sparse = [t for t in interpreter.get_tensor_details() if t["sparsity_parameters"]]
    if len(sparse) != 1:
        sys.exit(f"{model_path.name}: expected one sparse tensor, found {len(sparse)}")
    (tensor,) = sparse
    densify_inputs = [
        int(op["inputs"][0])
        for op in interpreter._get_ops_details()
        if op["op_name"] == "DENSIFY"
    ]
    if densify_inputs != [tensor["index"]]:
        sys.exit(
            f"{model_path.name}: expected one DENSIFY op reading sparse tensor {tensor['index']},"
            f" found DENSIFY inputs {densify_inputs}"
        )
    parameters = tensor["sparsity_parameters"]
    formats = ", ".join(
        "DENSE" if dimension["format"] == 0 else "SPARSE_CSR"
        for dimension in parameters["dim_metadata"]
    )
    stored = len(parameters["dim_metadata"][-1].get("array_indices", []))
    return [
        f"- Sparse tensor: `{tensor['name']}`, shape {tensor['shape'].tolist()},",
        f"  traversal order {parameters['traversal_order'].tolist()}, dimension formats"
        f" {formats}, block map {parameters['block_map'].tolist()}, {stored} stored values.",
    ]


def sha256(path: Path) -> str:
    """Hex SHA-256 of a file."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_model(out_dir: Path, file_name: str, content: bytes) -> Path:
    """Write converter output to out_dir/file_name and return the path."""
    path = out_dir / file_name
    path.write_bytes(content)
    return path


def versions() -> str:
    """The package versions that produced the fixtures, for README.md."""
    names = ["tensorflow-cpu", "keras", "scikit-learn", "numpy", "ai-edge-litert"]
    return ", ".join(f"{name} {importlib.metadata.version(name)}" for name in names)


def render_readme(
    out_dir: Path,
    fixtures: list[Fixture],
    data_files: list[tuple[str, str]],
    split_sizes: tuple[int, int],
) -> str:
    """README.md text: common recipe, then one section per file."""
    train_count, test_count = split_sizes
    lines = [
        "# Test models",
        "",
        f"Generated by `{COMMAND}`, which runs `{SCRIPT} --out models/` in the",
        "pinned venv that xtask creates. This README is written by the same script: edit the",
        "script, not this file.",
        "",
        f"- Versions: Python {sys.version.split()[0]}, {versions()}.",
        f"- Seed {SEED}: `tf.keras.utils.set_random_seed({SEED})`, `np.random.seed({SEED})`,",
        "  `tf.config.experimental.enable_op_determinism()`, one CPU thread.",
        "- Digits data: scikit-learn's bundled `load_digits()` (1797 8x8 images, 16 grey levels),",
        "  pixels divided by 16 to [0, 1] float32, shaped (8, 8, 1);",
        f"  `train_test_split(test_size={TEST_SIZE}, random_state={SEED})` gives {train_count}",
        f"  training and {test_count} test images.",
        "- Training: Adam (learning rate 0.01), sparse categorical cross-entropy, batch 32.",
        f"- Test accuracy: top-1 on the {test_count} test images, run one by one in LiteRT",
        "  (`ai_edge_litert.interpreter.Interpreter`, default op resolver).",
        "",
        "- Op-coverage fixtures (one tiny model per op and quantization flavour, with LiteRT",
        "  reference outputs) are in `models/ops/`; see `models/ops/README.md`.",
        "- TensorFlow-quantized reference models for octet: see `models/reference/README.md`.",
        "- Third-party models are not committed. `cargo xtask fetch-models` downloads pinned",
        "  wheels (versions in xtask/src/fetch_models.rs) into `.cache/downloads/` and extracts",
        "  their models into `.cache/third_party/` (gitignored); `cargo test` and",
        "  `cargo xtask roundtrip` include them when present:",
        *THIRD_PARTY_MODELS,
        "",
        "| file | bytes | sha256 |",
        "| --- | ---: | --- |",
    ]
    all_files = [f.file_name for f in fixtures] + [name for name, _ in data_files]
    for name in all_files:
        path = out_dir / name
        lines.append(f"| `{name}` | {path.stat().st_size} | `{sha256(path)[:16]}` |")
    for fixture in fixtures:
        lines += ["", f"## {fixture.file_name}", ""]
        lines += fixture.how_made
        lines += describe_model(out_dir / fixture.file_name)
        if fixture.test_accuracy is not None:
            lines.append(
                f"- Test accuracy: {fixture.test_accuracy:.4f} in LiteRT"
                f" (Keras before conversion: {fixture.keras_test_accuracy:.4f})"
            )
    for name, description in data_files:
        lines += ["", f"## {name}", "", description]
    return "\n".join(lines) + "\n"


def main() -> None:
    """Train, convert, verify and document every fixture."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="output directory (models/)")
    args = parser.parse_args()
    out_dir: Path = args.out
    out_dir.mkdir(parents=True, exist_ok=True)

    tf.config.threading.set_inter_op_parallelism_threads(1)
    tf.config.threading.set_intra_op_parallelism_threads(1)
    train_x, test_x, train_y, test_y = load_digits_split()
    fixtures: list[Fixture] = []
    common = f"- Made by `{COMMAND}` ({SCRIPT}), seed {SEED}."

    # (a) MLP.
    seed_everything()
    mlp = build_digits_mlp(batch_size=None)
    train(mlp, train_x, train_y, epochs=30)
    mlp_path = write_model(
        out_dir, "digits_mlp.tflite", convert_keras(with_batch_one(mlp, build_digits_mlp))
    )
    fixtures.append(
        Fixture(
            "digits_mlp.tflite",
            [
                common,
                "- Keras: Input (8, 8, 1) -> Flatten -> Dense(32, relu) -> Dense(10, softmax);",
                "  30 epochs; re-built with batch size 1 and converted with",
                "  `tf.lite.TFLiteConverter.from_keras_model(model).convert()`.",
            ],
            tflite_accuracy(mlp_path, test_x, test_y),
            keras_accuracy(mlp, test_x, test_y),
        )
    )

    # (b) CNN and (d) its fp16 form.
    seed_everything()
    cnn = build_digits_cnn(batch_size=None)
    train(cnn, train_x, train_y, epochs=30)
    cnn_batch_one = with_batch_one(cnn, build_digits_cnn)
    cnn_keras_accuracy = keras_accuracy(cnn, test_x, test_y)
    cnn_path = write_model(out_dir, "digits_cnn.tflite", convert_keras(cnn_batch_one))
    cnn_recipe = [
        common,
        "- Keras: Input (8, 8, 1) -> Conv2D(8, 3x3, same, relu) -> MaxPooling2D(2)",
        "  -> DepthwiseConv2D(3x3, same, relu) -> AveragePooling2D(2) -> Flatten",
        "  -> Dense(10, softmax);",
        "  30 epochs; re-built with batch size 1.",
    ]
    fixtures.append(
        Fixture(
            "digits_cnn.tflite",
            cnn_recipe
            + ["- Converted with `tf.lite.TFLiteConverter.from_keras_model(model).convert()`."],
            tflite_accuracy(cnn_path, test_x, test_y),
            cnn_keras_accuracy,
        )
    )
    fp16_path = write_model(
        out_dir, "digits_cnn_fp16.tflite", convert_keras(cnn_batch_one, fp16=True)
    )
    fp16_tensors = fp16_tensor_count(fp16_path)
    if fp16_tensors == 0:
        sys.exit("digits_cnn_fp16.tflite has no float16 tensors")
    fixtures.append(
        Fixture(
            "digits_cnn_fp16.tflite",
            cnn_recipe
            + [
                "- The same trained network as digits_cnn.tflite, converted with",
                "  `from_keras_model`, `optimizations = [tf.lite.Optimize.DEFAULT]` and",
                "  `target_spec.supported_types = [tf.float16]`: weights stored as float16",
                f"  constants ({fp16_tensors} float16 tensors) feeding DEQUANTIZE ops;",
                "  activations stay float32.",
            ],
            tflite_accuracy(fp16_path, test_x, test_y),
            cnn_keras_accuracy,
        )
    )

    # (c) Two inputs, two outputs.
    seed_everything()
    multi_io_path = write_model(out_dir, "multi_io.tflite", convert_keras(build_multi_io()))
    if not Interpreter(model_path=str(multi_io_path)).get_signature_list():
        sys.exit("multi_io.tflite unexpectedly has no signature defs")
    fixtures.append(
        Fixture(
            "multi_io.tflite",
            [
                common,
                "- Keras functional model, untrained (seeded initial weights):",
                "  `features` (8,) -> Dense(8, relu);",
                "  `patch` (4, 4, 2) -> Flatten -> Dense(8, tanh);",
                "  Concatenate -> Dense(3, softmax) `class_probs` and Dense(1, sigmoid) `score`.",
                "- Dynamic batch (shape signature -1); converted with",
                "  `tf.lite.TFLiteConverter.from_keras_model(model).convert()`.",
            ],
        )
    )

    # (e) No signature defs.
    no_signature_path = write_model(out_dir, "no_signature.tflite", convert_tf1_session_model())
    if Interpreter(model_path=str(no_signature_path)).get_signature_list():
        sys.exit("no_signature.tflite unexpectedly has signature defs")
    fixtures.append(
        Fixture(
            "no_signature.tflite",
            [
                common,
                "- TF1 graph `y = tanh(x @ W + b)` with x a (1, 4) placeholder,",
                f"  W (4, 3) and b (3,) drawn by `np.random.default_rng({SEED})`; converted with",
                "  `tf.compat.v1.lite.TFLiteConverter.from_session(session, [x], [y]).convert()`,",
                "  which writes no signature defs (checked with LiteRT's `get_signature_list()`).",
            ],
        )
    )

    # (f) Sparse weights: trained with 80% of the first kernel held at zero by a seeded mask.
    seed_everything()
    keep_mask = pruning_mask((64, 32), SPARSE_ZERO_FRACTION)
    sparse_fc = build_sparse_fc(batch_size=None, keep_mask=keep_mask)
    train(sparse_fc, train_x, train_y, epochs=30)
    sparse_kernel = sparse_fc.get_layer("pruned").get_weights()[0]
    if not np.all(sparse_kernel[~keep_mask] == 0.0):
        sys.exit("sparse_fc: the mask constraint left nonzero weights in pruned positions")
    sparse_batch_one = with_batch_one(sparse_fc, build_sparse_fc)
    sparse_path = write_model(out_dir, "sparse_fc.tflite", convert_sparse(sparse_batch_one))
    sparse_encoding = check_sparse_densified(sparse_path)
    dense_bytes = len(convert_keras(sparse_batch_one))
    if sparse_path.stat().st_size >= dense_bytes:
        sys.exit(
            f"sparse_fc.tflite ({sparse_path.stat().st_size} bytes) is not smaller than the"
            f" dense conversion ({dense_bytes} bytes)"
        )
    zero_count = int(np.sum(sparse_kernel == 0.0))
    fixtures.append(
        Fixture(
            "sparse_fc.tflite",
            [
                common,
                "- Keras: Input (8, 8, 1) -> Flatten -> Dense(32, relu) -> Dense(10, softmax);",
                f"  {zero_count} of the first kernel's {sparse_kernel.size} weights"
                f" ({SPARSE_ZERO_FRACTION:.0%}, chosen by",
                f"  `np.random.default_rng({SEED}).permutation`) are held at zero during training",
                "  by a kernel constraint; 30 epochs; re-built with batch size 1.",
                "- Converted with `from_keras_model` and",
                "  `optimizations = [tf.lite.Optimize.EXPERIMENTAL_SPARSITY]` (float32, no",
                "  quantization): the converter stores the unstructured-sparse kernel as a sparse",
                "  tensor feeding a DENSIFY op, which LiteRT expands once at preparation.",
                "  (With TF 2.21, pruning whole 4x1 Keras blocks, i.e. 1x4 blocks of TFLite's",
                "  [out, in] kernel, instead makes FULLY_CONNECTED read a block-sparse kernel",
                "  directly, without DENSIFY.)",
                *sparse_encoding,
                f"- {sparse_path.stat().st_size} bytes, against {dense_bytes} for the same model"
                " converted without optimizations.",
            ],
            tflite_accuracy(sparse_path, test_x, test_y),
            keras_accuracy(sparse_fc, test_x, test_y),
        )
    )

    # Test split, shaped N x model input shape so octet's data-file rule reads it as N samples.
    np.save(out_dir / "digits_test_x.npy", test_x[:, np.newaxis].astype(np.float32))
    np.save(out_dir / "digits_test_y.npy", test_y.astype(np.int32))
    data_files = [
        (
            "digits_test_x.npy",
            f"The {len(test_y)} digits test images, float32 in [0, 1], shape"
            f" ({len(test_y)}, 1, 8, 8, 1): N samples of the digits models' [1, 8, 8, 1] input.",
        ),
        ("digits_test_y.npy", f"Their labels, int32, shape ({len(test_y)},)."),
    ]

    readme = render_readme(out_dir, fixtures, data_files, (len(train_y), len(test_y)))
    (out_dir / "README.md").write_text(readme)
    for fixture in fixtures:
        size = (out_dir / fixture.file_name).stat().st_size
        accuracy = ""
        if fixture.test_accuracy is not None:
            accuracy = f"  test accuracy {fixture.test_accuracy:.4f} in LiteRT"
            accuracy += f" (Keras {fixture.keras_test_accuracy:.4f})"
        print(f"{fixture.file_name:<24} {size:>8} bytes{accuracy}")
    for name, _ in data_files:
        print(f"{name:<24} {(out_dir / name).stat().st_size:>8} bytes")


if __name__ == "__main__":
    main()
