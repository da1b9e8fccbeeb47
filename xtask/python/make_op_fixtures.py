"""Build octet's op-coverage fixtures: one tiny .tflite per op variant and quantization flavour.

Run through `cargo xtask fixtures` (or `cargo xtask fixtures --ops-only`), which creates the pinned
venv and calls

    PYTHONHASHSEED=0 .venv/bin/python xtask/python/make_op_fixtures.py --out models/ops/

Every *case* below is a small TensorFlow function built from raw tf ops around one TFLite op
(CONV_2D with stride 2 and VALID padding, ADD broadcasting [1,5,7,3] with [3], ...). Each case is
converted in every *flavour* the TFLite converter can produce for it:

- float: `TFLiteConverter.from_concrete_functions`, no optimizations;
- int8, int8_io, int8_uint8_io: full-integer int8 with a seeded representative dataset and
  `supported_ops=[TFLITE_BUILTINS_INT8]`; float, int8 or uint8 model inputs and outputs;
- uint8, uint8_float_io: the legacy TF1 path, `tf.compat.v1.lite.TFLiteConverter.from_session`
  with `inference_type=tf.uint8`, input statistics and fake-quant ranges; uint8 or float I/O;
- int16x8: `supported_ops=[EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]`;
- dynamic: `optimizations=[DEFAULT]` without a dataset (int8 weights, hybrid kernels);
- fp16: float16 weights feeding DEQUANTIZE;
- sparse: `optimizations=[EXPERIMENTAL_SPARSITY]`, a mostly-zero kernel feeding DENSIFY.

Every model is checked (the op under test is present, and runs in the flavour's types); a
float model that does not contain exactly the expected ops stops the script, while a quantized
flavour the converter cannot produce is recorded, with the reason, in README.md. Each model is
run on one seeded input with LiteRT's reference kernels (`OpResolverType.BUILTIN_REF`), twice,
and the outputs are saved in their raw dtype. Where the reference resolver lacks the kernel, the
builtin kernels' outputs are saved instead and the manifest says so; where the reference outputs
change between runs, or are far from TensorFlow's own float result while the builtin kernels'
are not, the model is dropped and README.md says why. The script writes into the output
directory:

- `<case>-<flavour>.tflite`, `<case>-<flavour>.in<k>.npy` (k: subgraph input index) and
  `<case>-<flavour>.out<k>.npy` (k: subgraph output index),
- `manifest.json`: one entry per model (ops, files, dtypes, shapes, reference resolver),
- `README.md`: how the fixtures are made, what exists per op and flavour, and what is missing.

Everything is seeded from the case name (CRC-32), so a rerun gives byte-identical files.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import json
import os
import re
import sys
import textwrap
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

# Quiet TensorFlow's C++ logging and keep everything on the CPU; must precede the import.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from ai_edge_litert.interpreter import Interpreter, OpResolverType  # noqa: E402

COMMAND = "cargo xtask fixtures"
SCRIPT = "xtask/python/make_op_fixtures.py"
# Representative-dataset samples for the int8 and int16x8 flavours and for the uint8 ranges.
CALIBRATION_SAMPLES = 32
# The whole output directory must stay under this (it is committed).
BUDGET_BYTES = 4 * 1024 * 1024
# Range the legacy uint8 converter gives activations that have no fake-quant range.
UINT8_DEFAULT_RANGE = (-8.0, 8.0)
# Fraction of the DENSIFY cases' kernels that is zero.
SPARSE_ZERO_FRACTION = 0.8
# The converter only quantizes weights with at least this many elements in the dynamic flavour.
DYNAMIC_MIN_WEIGHTS = 1024
# A reference output further than this from TensorFlow's own float result (relative to the
# float result's largest magnitude) means a broken reference kernel if LiteRT's builtin kernels
# get close; quantization error on these cases stays under 10%.
PLAUSIBLE_ERROR = 0.25

# ----------------------------------------------------------------------------------------------
# Flavours
# ----------------------------------------------------------------------------------------------

FLOAT = "float"
INT8 = "int8"
INT8_IO = "int8_io"
INT8_UINT8_IO = "int8_uint8_io"
UINT8 = "uint8"
UINT8_FLOAT_IO = "uint8_float_io"
INT16X8 = "int16x8"
DYNAMIC = "dynamic"
FP16 = "fp16"
SPARSE = "sparse"

# Column order of the README tables.
ALL_FLAVOURS = (
    FLOAT,
    INT8,
    INT8_IO,
    INT8_UINT8_IO,
    UINT8,
    UINT8_FLOAT_IO,
    INT16X8,
    DYNAMIC,
    FP16,
    SPARSE,
)

FLAVOUR_RECIPES = {
    FLOAT: "`tf.lite.TFLiteConverter.from_concrete_functions([f], None).convert()` on a "
    "`tf.function` with an explicit input signature.",
    INT8: "as float, plus `optimizations=[tf.lite.Optimize.DEFAULT]`, a seeded "
    f"`representative_dataset` ({CALIBRATION_SAMPLES} samples) and "
    "`target_spec.supported_ops=[tf.lite.OpsSet.TFLITE_BUILTINS_INT8]`; float32 model inputs "
    "and outputs (QUANTIZE and DEQUANTIZE at the edges).",
    INT8_IO: "as int8, plus `inference_input_type = inference_output_type = tf.int8`.",
    INT8_UINT8_IO: "as int8, plus `inference_input_type = inference_output_type = tf.uint8` "
    "(QUANTIZE uint8->int8 at the inputs, int8->uint8 at the outputs).",
    UINT8: "the same function built in a `tf.compat.v1` Graph and Session and converted with "
    "`tf.compat.v1.lite.TFLiteConverter.from_session` and `inference_type=tf.uint8`: "
    "`quantized_input_stats` from each input's sampling range "
    "(mean = zero point, std = 1 / scale), `tf.quantization.fake_quant_with_min_max_args` on "
    "outputs whose range depends on the data (min/max over the calibration samples, widened to "
    "contain 0), `default_ranges_stats="
    f"{UINT8_DEFAULT_RANGE}` for any other activation; uint8 model inputs and outputs.",
    UINT8_FLOAT_IO: "as uint8, plus `inference_input_type = inference_output_type = "
    "tf.float32` (QUANTIZE float->uint8 and DEQUANTIZE uint8->float at the edges).",
    INT16X8: "as int8 but with `target_spec.supported_ops=[tf.lite.OpsSet."
    "EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]` only: int16 activations "
    "(symmetric), int8 weights, float32 model inputs and outputs.",
    DYNAMIC: "`optimizations=[tf.lite.Optimize.DEFAULT]` without a representative dataset: "
    "int8 weights, float activations, hybrid kernels. The converter only quantizes weights "
    f"with at least {DYNAMIC_MIN_WEIGHTS} elements, so these cases have bigger kernels.",
    FP16: "`optimizations=[tf.lite.Optimize.DEFAULT]`, "
    "`target_spec.supported_types=[tf.float16]`: float16 weights feeding DEQUANTIZE.",
    SPARSE: "`optimizations=[tf.lite.Optimize.EXPERIMENTAL_SPARSITY]` on a kernel that is "
    f"{SPARSE_ZERO_FRACTION:.0%} zeros: the kernel is stored sparse and feeds DENSIFY.",
}

# The dtype an op must read or write in each full-integer flavour.
ACTIVATION_DTYPES = {
    INT8: "int8",
    INT8_IO: "int8",
    INT8_UINT8_IO: "int8",
    UINT8: "uint8",
    UINT8_FLOAT_IO: "uint8",
    INT16X8: "int16",
}

# Common flavour sets.
ACTIVATION = (FLOAT, INT8, UINT8, INT16X8)
WEIGHTED = (FLOAT, INT8, UINT8, INT16X8, FP16)
WITH_INT8_IO = (FLOAT, INT8, INT8_IO, UINT8, INT16X8, FP16)
# Ops with several outputs: with float model outputs, TF 2.21's int8 converter orders the
# output DEQUANTIZE ops (and their tensors) differently from one conversion to the next, so these
# use int8 model outputs instead.
MULTI_OUTPUT = (FLOAT, INT8_IO, UINT8, INT16X8)


# ----------------------------------------------------------------------------------------------
# Cases
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Input:
    """One model input: its shape (None for a dynamic dimension) and how test data is drawn."""

    shape: tuple[int | None, ...]
    low: float = -2.0
    high: float = 2.0
    dtype: str = "float32"
    # The shape fed at run time when `shape` has dynamic dimensions.
    feed_shape: tuple[int, ...] | None = None

    def concrete_shape(self) -> tuple[int, ...]:
        """The shape of the arrays fed to the model."""
        if self.feed_shape is not None:
            return self.feed_shape
        assert None not in self.shape
        return tuple(int(d) for d in self.shape)  # type: ignore[arg-type]

    def sample(self, rng: np.random.Generator) -> np.ndarray:
        """One seeded sample: uniform floats in [low, high), or integers in [low, high]."""
        shape = self.concrete_shape()
        if self.dtype == "float32":
            return rng.uniform(self.low, self.high, shape).astype(np.float32)
        return rng.integers(int(self.low), int(self.high), shape, endpoint=True).astype(self.dtype)


# A case's graph: called with one tf.Tensor per input, returns a tensor or a list of tensors.
GraphFn = Callable[..., Any]


@dataclass(frozen=True)
class Case:
    """One op variant: a graph around one TFLite op, and the flavours to convert it in."""

    name: str
    op: str
    doc: str
    inputs: tuple[Input, ...]
    # Called once with the case's seeded generator (for weights); returns the graph function.
    make: Callable[[np.random.Generator], GraphFn]
    flavours: tuple[str, ...]
    # uint8 flavours: give float outputs a calibrated fake-quant range ("calibrated"), or leave
    # their parameters to the converter ("inherit": ops that keep their input's parameters or
    # have fixed output parameters, like SOFTMAX).
    uint8_outputs: str = "calibrated"
    # flavour -> (input dtype, output dtype) pairs that instances of `op` must show.
    expect: dict[str, tuple[tuple[str, str], ...]] = field(default_factory=dict)
    # flavour -> why it is not built although the converter produces it.
    skip: dict[str, str] = field(default_factory=dict)


def seed_of(*parts: str) -> int:
    """A stable seed from strings (CRC-32; Python's hash() is salted per process)."""
    return zlib.crc32("/".join(parts).encode())


def uniform(rng: np.random.Generator, shape: Sequence[int], scale: float = 1.0) -> np.ndarray:
    """Float32 weights uniform in [-scale, scale)."""
    return rng.uniform(-scale, scale, tuple(shape)).astype(np.float32)


def sparse_uniform(rng: np.random.Generator, shape: Sequence[int]) -> np.ndarray:
    """Float32 weights of which SPARSE_ZERO_FRACTION (seeded positions) are exactly zero."""
    weights = uniform(rng, shape)
    flat = weights.reshape(-1)
    zeros = rng.permutation(flat.size)[: round(SPARSE_ZERO_FRACTION * flat.size)]
    flat[zeros] = 0.0
    return weights


def activation(tensor: tf.Tensor, name: str | None) -> tf.Tensor:
    """Apply a fusable activation by name (None, relu, relu6, relu_n1_to_1)."""
    if name is None:
        return tensor
    if name == "relu":
        return tf.nn.relu(tensor)
    if name == "relu6":
        return tf.nn.relu6(tensor)
    if name == "relu_n1_to_1":
        return tf.clip_by_value(tensor, -1.0, 1.0)
    raise ValueError(f"unknown activation {name}")


# --- convolutions ------------------------------------------------------------------------------


def conv_2d(
    name: str,
    in_shape: tuple[int, ...],
    kernel: tuple[int, int],
    out_channels: int,
    strides: tuple[int, int],
    padding: str,
    dilations: tuple[int, int] = (1, 1),
    act: str | None = None,
    flavours: tuple[str, ...] = WEIGHTED,
    weight_scale: float = 0.5,
) -> Case:
    """CONV_2D: tf.nn.conv2d + bias + optional activation (fused by the converter)."""

    def make(rng: np.random.Generator) -> GraphFn:
        weights = uniform(rng, (*kernel, in_shape[-1], out_channels), weight_scale)
        bias = uniform(rng, (out_channels,), 0.5)

        def graph(x: tf.Tensor) -> tf.Tensor:
            y = tf.nn.conv2d(x, weights, strides=strides, padding=padding, dilations=dilations)
            return activation(tf.nn.bias_add(y, bias), act)

        return graph

    doc = (
        f"input {list(in_shape)}, kernel {kernel[0]}x{kernel[1]}, {out_channels} filters, "
        f"strides {strides}, {padding}, dilations {dilations}, bias, activation {act or 'none'}"
    )
    return Case(name, "CONV_2D", doc, (Input(in_shape),), make, flavours)


def depthwise_conv_2d(
    name: str,
    in_shape: tuple[int, ...],
    kernel: tuple[int, int],
    multiplier: int,
    strides: tuple[int, int],
    padding: str,
    dilations: tuple[int, int] = (1, 1),
    act: str | None = None,
    flavours: tuple[str, ...] = WEIGHTED,
) -> Case:
    """DEPTHWISE_CONV_2D: tf.nn.depthwise_conv2d + bias + optional activation."""

    def make(rng: np.random.Generator) -> GraphFn:
        weights = uniform(rng, (*kernel, in_shape[-1], multiplier), 0.5)
        bias = uniform(rng, (in_shape[-1] * multiplier,), 0.5)

        def graph(x: tf.Tensor) -> tf.Tensor:
            y = tf.nn.depthwise_conv2d(
                x, weights, strides=(1, *strides, 1), padding=padding, dilations=dilations
            )
            return activation(tf.nn.bias_add(y, bias), act)

        return graph

    doc = (
        f"input {list(in_shape)}, kernel {kernel[0]}x{kernel[1]}, depth multiplier {multiplier}, "
        f"strides {strides}, {padding}, dilations {dilations}, bias, activation {act or 'none'}"
    )
    return Case(name, "DEPTHWISE_CONV_2D", doc, (Input(in_shape),), make, flavours)


def fully_connected(
    name: str,
    in_shape: tuple[int, ...],
    units: int,
    bias: bool = True,
    act: str | None = None,
    flavours: tuple[str, ...] = WEIGHTED,
    weight_scale: float = 0.5,
) -> Case:
    """FULLY_CONNECTED: tf.matmul (rank 2) or tf.einsum (rank 3: keep_num_dims) by a constant."""

    def make(rng: np.random.Generator) -> GraphFn:
        weights = uniform(rng, (in_shape[-1], units), weight_scale)
        bias_values = uniform(rng, (units,), 0.5)

        def graph(x: tf.Tensor) -> tf.Tensor:
            if len(in_shape) == 2:
                y = tf.matmul(x, weights)
            else:
                y = tf.einsum("...i,io->...o", x, weights)
            if bias:
                y = y + bias_values
            return activation(y, act)

        return graph

    keep = " (the converter keeps the rank: keep_num_dims)" if len(in_shape) > 2 else ""
    doc = (
        f"input {list(in_shape)} times a constant [{in_shape[-1]}, {units}]{keep}, "
        f"{'bias' if bias else 'no bias'}, activation {act or 'none'}"
    )
    return Case(name, "FULLY_CONNECTED", doc, (Input(in_shape),), make, flavours)


def transpose_conv(
    name: str,
    in_shape: tuple[int, ...],
    kernel: tuple[int, int],
    out_shape: tuple[int, ...],
    strides: tuple[int, int],
    padding: str,
    bias: bool = True,
    flavours: tuple[str, ...] = WEIGHTED,
) -> Case:
    """TRANSPOSE_CONV: tf.nn.conv2d_transpose (+ bias, which the converter fuses)."""

    def make(rng: np.random.Generator) -> GraphFn:
        weights = uniform(rng, (*kernel, out_shape[-1], in_shape[-1]), 0.5)
        bias_values = uniform(rng, (out_shape[-1],), 0.5)

        def graph(x: tf.Tensor) -> tf.Tensor:
            y = tf.nn.conv2d_transpose(x, weights, out_shape, strides=strides, padding=padding)
            return tf.nn.bias_add(y, bias_values) if bias else y

        return graph

    doc = (
        f"input {list(in_shape)} -> {list(out_shape)}, kernel {kernel[0]}x{kernel[1]}, "
        f"strides {strides}, {padding}, {'bias' if bias else 'no bias'}"
    )
    return Case(name, "TRANSPOSE_CONV", doc, (Input(in_shape),), make, flavours)


def batch_matmul(
    name: str,
    lhs: tuple[int, ...],
    rhs: tuple[int, ...],
    adj_x: bool = False,
    adj_y: bool = False,
    constant_rhs: bool = False,
    flavours: tuple[str, ...] = ACTIVATION,
) -> Case:
    """BATCH_MATMUL: tf.matmul of rank-3 tensors (both inputs, or a constant right-hand side)."""
    if constant_rhs:

        def make(rng: np.random.Generator) -> GraphFn:
            weights = uniform(rng, rhs, 0.5)

            def graph(x: tf.Tensor) -> tf.Tensor:
                return tf.matmul(x, weights, adjoint_a=adj_x, adjoint_b=adj_y)

            return graph

        inputs: tuple[Input, ...] = (Input(lhs),)
    else:

        def make(rng: np.random.Generator) -> GraphFn:
            def graph(x: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
                return tf.matmul(x, y, adjoint_a=adj_x, adjoint_b=adj_y)

            return graph

        inputs = (Input(lhs), Input(rhs))
    doc = (
        f"{list(lhs)} x {'constant ' if constant_rhs else ''}{list(rhs)}, "
        f"adj_x {adj_x}, adj_y {adj_y}"
    )
    return Case(name, "BATCH_MATMUL", doc, inputs, make, flavours)


# --- elementwise -------------------------------------------------------------------------------

BINARY_FNS: dict[str, Callable[[tf.Tensor, tf.Tensor], tf.Tensor]] = {
    "ADD": tf.add,
    "SUB": tf.subtract,
    "MUL": tf.multiply,
    "MAXIMUM": tf.maximum,
    "MINIMUM": tf.minimum,
}


def binary(
    name: str,
    op: str,
    lhs: tuple[int, ...],
    rhs: tuple[int, ...],
    act: str | None = None,
    constant_rhs: bool = False,
    flavours: tuple[str, ...] = ACTIVATION,
    rhs_range: tuple[float, float] = (-2.0, 2.0),
) -> Case:
    """ADD, SUB, MUL, MAXIMUM, MINIMUM with broadcasting, optional fused activation."""
    fn = BINARY_FNS[op]
    if constant_rhs:

        def make(rng: np.random.Generator) -> GraphFn:
            values = rng.uniform(*rhs_range, rhs).astype(np.float32)

            def graph(x: tf.Tensor) -> tf.Tensor:
                return activation(fn(x, values), act)

            return graph

        inputs: tuple[Input, ...] = (Input(lhs),)
    else:

        def make(rng: np.random.Generator) -> GraphFn:
            def graph(x: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
                return activation(fn(x, y), act)

            return graph

        inputs = (Input(lhs), Input(rhs, *rhs_range))
    doc = (
        f"{list(lhs)} {op.lower()} {'constant ' if constant_rhs else ''}{list(rhs)} "
        f"(right side in [{rhs_range[0]:g}, {rhs_range[1]:g})), activation {act or 'none'}"
    )
    return Case(name, op, doc, inputs, make, flavours)


def plain(
    name: str,
    op: str,
    fn: Callable[..., Any],
    doc: str,
    inputs: tuple[Input, ...] = (Input((1, 7, 9, 3)),),
    flavours: tuple[str, ...] = ACTIVATION,
    uint8_outputs: str = "inherit",
    expect: dict[str, tuple[tuple[str, str], ...]] | None = None,
    skip: dict[str, str] | None = None,
) -> Case:
    """An op without weights: `fn` maps the input tensors to the output(s)."""

    def make(rng: np.random.Generator) -> GraphFn:
        return fn

    return Case(
        name,
        op,
        doc,
        inputs,
        make,
        flavours,
        uint8_outputs=uint8_outputs,
        expect=expect or {},
        skip=skip or {},
    )


def with_constant(
    name: str,
    op: str,
    fn: Callable[[tf.Tensor, np.ndarray], Any],
    doc: str,
    shape: tuple[int, ...],
    constant_shape: tuple[int, ...],
    flavours: tuple[str, ...] = WEIGHTED,
) -> Case:
    """An op of one input and one seeded constant (uniform in [-0.5, 0.5))."""

    def make(rng: np.random.Generator) -> GraphFn:
        values = uniform(rng, constant_shape, 0.5)
        return lambda x: fn(x, values)

    return Case(name, op, doc, (Input(shape),), make, flavours)


def prelu(x: tf.Tensor, alpha: np.ndarray) -> tf.Tensor:
    """Keras' PReLU formula, which the converter matches into PRELU."""
    return tf.nn.relu(x) + tf.negative(tf.constant(alpha)) * tf.nn.relu(tf.negative(x))


def hard_swish(x: tf.Tensor) -> tf.Tensor:
    """x * relu6(x + 3) / 6, which the converter matches into HARD_SWISH."""
    return x * tf.nn.relu6(x + 3.0) / 6.0


def resize(op: str, out_size: tuple[int, int], align: bool, half: bool) -> Case:
    """RESIZE_BILINEAR / RESIZE_NEAREST_NEIGHBOR through the TF1 image ops."""
    resize_fn = (
        tf.compat.v1.image.resize_bilinear
        if op == "RESIZE_BILINEAR"
        else tf.compat.v1.image.resize_nearest_neighbor
    )
    variant = "align_corners" if align else "half_pixel" if half else "default"
    upsampling = out_size[0] > 5
    in_shape = (1, 5, 7, 3) if upsampling else X

    def fn(x: tf.Tensor) -> tf.Tensor:
        return resize_fn(x, out_size, align_corners=align, half_pixel_centers=half)

    return plain(
        f"{op.lower()}_{'up' if upsampling else 'down'}_{variant}",
        op,
        fn,
        f"{list(in_shape)} -> {list(out_size)}, align_corners {align}, half_pixel_centers {half}",
        inputs=(Input(in_shape),),
    )


def sparse_fc(name: str, in_features: int, units: int) -> Case:
    """DENSIFY: FULLY_CONNECTED by a kernel that is mostly zeros, stored sparse."""

    def make(rng: np.random.Generator) -> GraphFn:
        weights = sparse_uniform(rng, (in_features, units))
        bias = uniform(rng, (units,), 0.5)
        return lambda x: tf.matmul(x, weights) + bias

    doc = (
        f"[1, {in_features}] times a constant [{in_features}, {units}] that is "
        f"{SPARSE_ZERO_FRACTION:.0%} zeros (seeded positions), plus bias"
    )
    return Case(name, "DENSIFY", doc, (Input((1, in_features)),), make, (SPARSE,))


def sparse_conv(name: str, in_shape: tuple[int, ...], out_channels: int) -> Case:
    """DENSIFY: CONV_2D by a kernel that is mostly zeros, stored sparse."""

    def make(rng: np.random.Generator) -> GraphFn:
        weights = sparse_uniform(rng, (3, 3, in_shape[-1], out_channels))
        bias = uniform(rng, (out_channels,), 0.5)
        return lambda x: tf.nn.bias_add(tf.nn.conv2d(x, weights, 1, "SAME"), bias)

    doc = (
        f"input {list(in_shape)}, 3x3 kernel with {out_channels} filters that is "
        f"{SPARSE_ZERO_FRACTION:.0%} zeros (seeded positions), SAME, bias"
    )
    return Case(name, "DENSIFY", doc, (Input(in_shape),), make, (SPARSE,))


# --- the cases ---------------------------------------------------------------------------------

X = (1, 7, 9, 3)  # the usual activation shape: odd height, width and channel count
X5 = (1, 7, 9, 5)
# TFLite's int16 SUM requires the output scale to equal the input's, so the converter gives it the
# input's, and LiteRT 2.3's BUILTIN_REF kernel for it returns different values on identical runs.
SUM_INT16_SKIP = (
    "not kept: int16 SUM must keep its input's scale (so sums saturate), and LiteRT's "
    "BUILTIN_REF gives different outputs for it on identical runs"
)


def convolution_cases() -> list[Case]:
    """CONV_2D, DEPTHWISE_CONV_2D, TRANSPOSE_CONV."""
    hybrid = (FLOAT, DYNAMIC)
    return [
        conv_2d("conv_2d_3x3_same", X, (3, 3), 5, (1, 1), "SAME"),
        conv_2d(
            "conv_2d_3x3_valid_s2_relu",
            X,
            (3, 3),
            5,
            (2, 2),
            "VALID",
            act="relu",
            flavours=WITH_INT8_IO,
        ),
        conv_2d("conv_2d_5x3_same_s2x1_relu6", X5, (5, 3), 3, (2, 1), "SAME", act="relu6"),
        conv_2d("conv_2d_3x3_same_dilation2", X, (3, 3), 4, (1, 1), "SAME", (2, 2)),
        conv_2d("conv_2d_2x3_valid_dilation2x1", X5, (2, 3), 3, (1, 1), "VALID", (2, 1)),
        conv_2d("conv_2d_1x1_relu_n1_to_1", X5, (1, 1), 7, (1, 1), "VALID", act="relu_n1_to_1"),
        conv_2d(
            "conv_2d_3x3_hybrid",
            (1, 7, 9, 16),
            (3, 3),
            8,
            (1, 1),
            "SAME",
            flavours=hybrid,
            weight_scale=0.2,
        ),
        depthwise_conv_2d("depthwise_conv_2d_3x3_same", X, (3, 3), 1, (1, 1), "SAME"),
        depthwise_conv_2d(
            "depthwise_conv_2d_3x3_valid_s2_m2_relu6", X, (3, 3), 2, (2, 2), "VALID", act="relu6"
        ),
        depthwise_conv_2d(
            "depthwise_conv_2d_3x3_same_m3_dilation2", X5, (3, 3), 3, (1, 1), "SAME", (2, 2)
        ),
        depthwise_conv_2d(
            "depthwise_conv_2d_5x5_same_s2_relu", X5, (5, 5), 1, (2, 2), "SAME", act="relu"
        ),
        depthwise_conv_2d(
            "depthwise_conv_2d_5x5_hybrid",
            (1, 4, 5, 21),
            (5, 5),
            2,
            (1, 1),
            "SAME",
            flavours=hybrid,
        ),
        transpose_conv(
            "transpose_conv_3x3_s2_same", (1, 4, 5, 3), (3, 3), (1, 7, 9, 5), (2, 2), "SAME"
        ),
        transpose_conv(
            "transpose_conv_2x2_s2_valid",
            (1, 3, 4, 5),
            (2, 2),
            (1, 6, 8, 3),
            (2, 2),
            "VALID",
            bias=False,
        ),
        transpose_conv("transpose_conv_3x3_s1_valid", X, (3, 3), (1, 9, 11, 2), (1, 1), "VALID"),
        transpose_conv(
            "transpose_conv_3x3_hybrid",
            (1, 4, 5, 16),
            (3, 3),
            (1, 7, 9, 8),
            (2, 2),
            "SAME",
            flavours=hybrid,
        ),
    ]


def matmul_cases() -> list[Case]:
    """FULLY_CONNECTED, BATCH_MATMUL."""
    hybrid = (FLOAT, DYNAMIC)
    return [
        fully_connected("fully_connected_bias_relu", (2, 7), 5, act="relu", flavours=WITH_INT8_IO),
        fully_connected("fully_connected_no_bias", (1, 9), 3, bias=False),
        fully_connected("fully_connected_keep_num_dims", (1, 5, 7), 4),
        fully_connected("fully_connected_hybrid", (2, 64), 32, flavours=hybrid, weight_scale=0.2),
        batch_matmul("batch_matmul", (2, 3, 4), (2, 4, 5)),
        batch_matmul("batch_matmul_broadcast_adj_y", (1, 3, 4), (2, 5, 4), adj_y=True),
        batch_matmul("batch_matmul_adj_x", (2, 4, 3), (2, 4, 5), adj_x=True),
        batch_matmul(
            "batch_matmul_const_rhs", (2, 3, 4), (2, 4, 5), constant_rhs=True, flavours=WEIGHTED
        ),
        batch_matmul(
            "batch_matmul_hybrid", (2, 3, 32), (2, 32, 32), constant_rhs=True, flavours=hybrid
        ),
    ]


def elementwise_cases() -> list[Case]:
    """ADD, SUB, MUL, MAXIMUM, MINIMUM, with broadcasting."""
    cases = []
    for op in ("ADD", "SUB", "MUL"):
        low = op.lower()
        cases += [
            binary(f"{low}_same_shape_relu", op, (1, 5, 7, 3), (1, 5, 7, 3), act="relu"),
            binary(
                f"{low}_broadcast_channel",
                op,
                (1, 5, 7, 3),
                (3,),
                flavours=(*ACTIVATION, INT8_IO) if op == "ADD" else ACTIVATION,
            ),
            binary(f"{low}_broadcast_row", op, (1, 5, 7, 3), (1, 1, 7, 1), rhs_range=(-1, 3)),
            binary(f"{low}_broadcast_both", op, (1, 5, 1, 3), (1, 1, 7, 1)),
            binary(
                f"{low}_constant_relu6",
                op,
                (1, 5, 7, 3),
                (1, 1, 7, 3),
                act="relu6",
                constant_rhs=True,
            ),
        ]
    for op in ("MAXIMUM", "MINIMUM"):
        low = op.lower()
        cases += [
            binary(f"{low}_broadcast_row", op, (1, 5, 7, 3), (1, 1, 7, 1), rhs_range=(-1, 1)),
            binary(f"{low}_same_shape", op, (1, 5, 7, 3), (1, 5, 7, 3), rhs_range=(-3, 1)),
            binary(f"{low}_constant", op, (1, 5, 7, 3), (3,), constant_rhs=True, rhs_range=(-1, 1)),
        ]
    return cases


def pool_and_reduce_cases() -> list[Case]:
    """AVERAGE_POOL_2D, MAX_POOL_2D, MEAN, SUM, REDUCE_MAX, ARG_MAX."""
    cases = []
    pools = (("AVERAGE_POOL_2D", tf.nn.avg_pool2d), ("MAX_POOL_2D", tf.nn.max_pool2d))
    windows = (((3, 3), (2, 2), "SAME"), ((2, 3), (1, 2), "VALID"), ((3, 2), (3, 3), "SAME"))
    for op, pool in pools:
        for size, strides, padding in windows:
            cases.append(
                plain(
                    f"{op.lower()}_{size[0]}x{size[1]}_s{strides[0]}x{strides[1]}_"
                    f"{padding.lower()}",
                    op,
                    partial(pool, ksize=size, strides=strides, padding=padding),
                    f"input {list(X5)}, window {size}, strides {strides}, {padding}",
                    inputs=(Input(X5),),
                )
            )
    reductions = (("MEAN", tf.reduce_mean), ("SUM", tf.reduce_sum), ("REDUCE_MAX", tf.reduce_max))
    for op, reduce in reductions:
        for axes, keep in (((1, 2), True), ((2,), False), ((1, 3), False), ((3,), True)):
            cases.append(
                plain(
                    f"{op.lower()}_axes{''.join(map(str, axes))}{'_keepdims' if keep else ''}",
                    op,
                    partial(reduce, axis=list(axes), keepdims=keep),
                    f"input {list(X5)}, axes {list(axes)}, keepdims {keep}",
                    inputs=(Input(X5),),
                    uint8_outputs="inherit" if op == "REDUCE_MAX" else "calibrated",
                    skip={INT16X8: SUM_INT16_SKIP} if op == "SUM" else None,
                )
            )
    cases += [
        plain(
            "arg_max_int32",
            "ARG_MAX",
            partial(tf.argmax, axis=-1, output_type=tf.int32),
            f"{list(X5)}, last axis, int32 output",
            inputs=(Input(X5),),
        ),
        plain(
            "arg_max_int64_axis1",
            "ARG_MAX",
            partial(tf.argmax, axis=1),
            f"{list(X5)}, axis 1, int64 output",
            inputs=(Input(X5),),
        ),
    ]
    return cases


def activation_cases() -> list[Case]:
    """SOFTMAX, LOG_SOFTMAX, LOGISTIC, TANH, the RELUs, LEAKY_RELU, PRELU, HARD_SWISH, ELU,
    L2_NORMALIZATION."""
    calibrated = "calibrated"
    return [
        plain(
            "softmax_rank2",
            "SOFTMAX",
            tf.nn.softmax,
            "[2, 9], last axis, inputs in [-4, 4)",
            inputs=(Input((2, 9), -4, 4),),
            flavours=(*ACTIVATION, INT8_IO),
        ),
        plain(
            "softmax_rank4",
            "SOFTMAX",
            tf.nn.softmax,
            f"{list(X)}, last axis, inputs in [-4, 4)",
            inputs=(Input(X, -4, 4),),
        ),
        plain(
            "log_softmax",
            "LOG_SOFTMAX",
            tf.nn.log_softmax,
            "[2, 9], last axis, inputs in [-4, 4)",
            inputs=(Input((2, 9), -4, 4),),
        ),
        plain(
            "logistic",
            "LOGISTIC",
            tf.sigmoid,
            f"{list(X)}, inputs in [-6, 6)",
            inputs=(Input(X, -6, 6),),
        ),
        plain("tanh", "TANH", tf.tanh, f"{list(X)}, inputs in [-3, 3)", inputs=(Input(X, -3, 3),)),
        plain("relu", "RELU", tf.nn.relu, f"{list(X)}", uint8_outputs=calibrated),
        plain(
            "relu6",
            "RELU6",
            tf.nn.relu6,
            f"{list(X)}, inputs in [-8, 8)",
            inputs=(Input(X, -8, 8),),
            uint8_outputs=calibrated,
        ),
        plain(
            "relu_n1_to_1",
            "RELU_N1_TO_1",
            partial(tf.clip_by_value, clip_value_min=-1.0, clip_value_max=1.0),
            f"tf.clip_by_value(x, -1, 1), {list(X)}",
            uint8_outputs=calibrated,
        ),
        plain(
            "leaky_relu",
            "LEAKY_RELU",
            partial(tf.nn.leaky_relu, alpha=0.2),
            f"alpha 0.2, {list(X)}",
            uint8_outputs=calibrated,
        ),
        plain(
            "hard_swish",
            "HARD_SWISH",
            hard_swish,
            f"x * relu6(x + 3) / 6, {list(X)}, inputs in [-5, 5)",
            inputs=(Input(X, -5, 5),),
            uint8_outputs=calibrated,
        ),
        plain(
            "elu",
            "ELU",
            tf.nn.elu,
            f"{list(X)}, inputs in [-4, 4)",
            inputs=(Input(X, -4, 4),),
            uint8_outputs=calibrated,
        ),
        plain(
            "l2_normalization",
            "L2_NORMALIZATION",
            partial(tf.nn.l2_normalize, axis=-1),
            f"tf.nn.l2_normalize over the last axis, {list(X5)}",
            inputs=(Input(X5),),
        ),
        with_constant(
            "prelu_channel_alpha", "PRELU", prelu, f"{list(X)}, alpha [1, 1, 3]", X, (1, 1, 3)
        ),
        with_constant(
            "prelu_full_alpha", "PRELU", prelu, f"{list(X)}, alpha [7, 9, 3]", X, (7, 9, 3)
        ),
    ]


def data_movement_cases() -> list[Case]:
    """CONCATENATION, the pads, shape ops, slices, splits, PACK, UNPACK, GATHER, DEPTH_TO_SPACE,
    SPACE_TO_DEPTH, the resizes."""
    paddings = [[0, 0], [1, 2], [2, 1], [0, 0]]
    cases = [
        plain(
            "concatenation_axis3",
            "CONCATENATION",
            lambda a, b, c: tf.concat([a, b, c], 3),
            "[1,5,7,3] (in [-1, 1)), [1,5,7,2] (in [-2, 2)), [1,5,7,1] (in [-4, 4)) on axis 3",
            inputs=(Input((1, 5, 7, 3), -1, 1), Input((1, 5, 7, 2)), Input((1, 5, 7, 1), -4, 4)),
        ),
        plain(
            "concatenation_axis1",
            "CONCATENATION",
            lambda a, b: tf.concat([a, b], 1),
            "[2,3,5] (in [-2, 2)) and [2,4,5] (in [-3, 1)) on axis 1",
            inputs=(Input((2, 3, 5)), Input((2, 4, 5), -3, 1)),
        ),
        plain(
            "pad",
            "PAD",
            partial(tf.pad, paddings=paddings),
            f"{list(X)}, paddings {paddings}, zeros",
        ),
        plain(
            "pad_channels",
            "PAD",
            partial(tf.pad, paddings=[[0, 0], [0, 0], [0, 0], [2, 1]]),
            "[1,5,7,3], paddings [[0,0],[0,0],[0,0],[2,1]], inputs in [0.5, 3) (zero is "
            "outside the input range)",
            inputs=(Input((1, 5, 7, 3), 0.5, 3),),
        ),
        plain(
            "padv2",
            "PADV2",
            partial(tf.pad, paddings=paddings, constant_values=0.5),
            f"{list(X)}, paddings {paddings}, constant 0.5",
        ),
        plain(
            "mirror_pad_reflect",
            "MIRROR_PAD",
            partial(tf.pad, paddings=[[0, 0], [2, 1], [1, 2], [0, 0]], mode="REFLECT"),
            f"{list(X)}, paddings [[0,0],[2,1],[1,2],[0,0]], REFLECT",
        ),
        plain(
            "mirror_pad_symmetric",
            "MIRROR_PAD",
            partial(tf.pad, paddings=[[0, 0], [3, 1], [1, 3], [1, 0]], mode="SYMMETRIC"),
            f"{list(X)}, paddings [[0,0],[3,1],[1,3],[1,0]], SYMMETRIC",
        ),
        plain("reshape", "RESHAPE", partial(tf.reshape, shape=[7, 27]), f"{list(X)} -> [7, 27]"),
        plain(
            "squeeze",
            "SQUEEZE",
            partial(tf.squeeze, axis=[0]),
            "[1, -1, -1] squeezed on axis 0, fed [1, 5, 3] (resized: the converter turns "
            "SQUEEZE into RESHAPE unless two output dimensions are dynamic)",
            inputs=(Input((1, None, None), feed_shape=(1, 5, 3)),),
        ),
        plain(
            "squeeze_all",
            "SQUEEZE",
            tf.squeeze,
            "[1, -1, 1, 3] with every size-1 dimension squeezed (no axes), fed [1, 1, 1, 3], the "
            "model's own shape",
            inputs=(Input((1, None, 1, 3), feed_shape=(1, 1, 1, 3)),),
        ),
        plain(
            "expand_dims",
            "EXPAND_DIMS",
            partial(tf.expand_dims, axis=2),
            "[-1, 5, 3] expanded at axis 2, fed [1, 5, 3], the model's own shape (the converter "
            "turns EXPAND_DIMS of a static shape into RESHAPE)",
            inputs=(Input((None, 5, 3), feed_shape=(1, 5, 3)),),
        ),
        plain(
            "transpose_nchw",
            "TRANSPOSE",
            partial(tf.transpose, perm=[0, 3, 1, 2]),
            f"{list(X)}, perm [0, 3, 1, 2]",
        ),
        plain(
            "transpose_rank3",
            "TRANSPOSE",
            partial(tf.transpose, perm=[2, 0, 1]),
            "[5, 7, 3], perm [2, 0, 1]",
            inputs=(Input((5, 7, 3)),),
        ),
        plain(
            "strided_slice_masks",
            "STRIDED_SLICE",
            partial(
                tf.strided_slice,
                begin=[0, 1, 1, 0],
                end=[1, 6, 0, 2],
                strides=[1, 2, 3, 1],
                begin_mask=0b0001,
                end_mask=0b0100,
            ),
            f"{list(X)}, begin [0,1,1,0], end [1,6,0,2], strides [1,2,3,1], begin_mask 1, "
            "end_mask 4",
        ),
        plain(
            "strided_slice_negative_strides",
            "STRIDED_SLICE",
            partial(
                tf.strided_slice,
                begin=[0, 6, -1, 2],
                end=[1, 0, 0, 0],
                strides=[1, -2, -3, -1],
                end_mask=0b1000,
            ),
            f"{list(X)}, begin [0,6,-1,2], end [1,0,0,0], strides [1,-2,-3,-1], end_mask 8",
        ),
        plain(
            "strided_slice_shrink_ellipsis",
            "STRIDED_SLICE",
            lambda x: x[..., 2:7, 1],
            f"{list(X)}, x[..., 2:7, 1] (ellipsis mask, shrink axis mask)",
        ),
        plain(
            "slice",
            "SLICE",
            partial(tf.slice, begin=[0, 1, 2, 1], size=[1, 4, -1, 2]),
            f"{list(X)}, begin [0,1,2,1], size [1,4,-1,2]",
        ),
        plain(
            "split",
            "SPLIT",
            partial(tf.split, num_or_size_splits=3, axis=3),
            f"{list(X)} into 3 on axis 3",
            flavours=MULTI_OUTPUT,
        ),
        plain(
            "split_v",
            "SPLIT_V",
            partial(tf.split, num_or_size_splits=[2, 4, 3], axis=2),
            f"{list(X)} into [2, 4, 3] on axis 2",
            flavours=MULTI_OUTPUT,
        ),
        plain(
            "split_v_inferred",
            "SPLIT_V",
            partial(tf.split, num_or_size_splits=[1, -1], axis=1),
            f"{list(X)} into [1, -1] on axis 1",
            flavours=MULTI_OUTPUT,
        ),
        plain(
            "pack_axis1",
            "PACK",
            lambda a, b: tf.stack([a, b], axis=1),
            "two [5, 3] (in [-2, 2) and [-1, 1)) stacked on axis 1",
            inputs=(Input((5, 3)), Input((5, 3), -1, 1)),
        ),
        plain(
            "pack_axis0",
            "PACK",
            lambda a, b, c: tf.stack([a, b, c], axis=0),
            "three [2, 3, 5] stacked on axis 0",
            inputs=(Input((2, 3, 5)),) * 3,
        ),
        plain(
            "unpack_axis1",
            "UNPACK",
            partial(tf.unstack, axis=1),
            "[2, 3, 5] unstacked on axis 1",
            inputs=(Input((2, 3, 5)),),
            flavours=MULTI_OUTPUT,
        ),
        plain(
            "gather_axis1",
            "GATHER",
            lambda x: tf.gather(x, np.array([4, 0, 2, 2, 1], np.int32), axis=1),
            "[2, 5, 3], constant indices [4, 0, 2, 2, 1] on axis 1",
            inputs=(Input((2, 5, 3)),),
        ),
        plain(
            "gather_indices_input",
            "GATHER",
            lambda x, i: tf.gather(x, i, axis=0),
            "[7, 3] gathered on axis 0 by an int32 input [2, 4] in [0, 6]",
            inputs=(Input((7, 3)), Input((2, 4), 0, 6, dtype="int32")),
        ),
        plain(
            "depth_to_space",
            "DEPTH_TO_SPACE",
            partial(tf.nn.depth_to_space, block_size=2),
            "[1, 3, 5, 8], block 2",
            inputs=(Input((1, 3, 5, 8)),),
        ),
        plain(
            "space_to_depth",
            "SPACE_TO_DEPTH",
            partial(tf.nn.space_to_depth, block_size=2),
            "[1, 6, 10, 3], block 2",
            inputs=(Input((1, 6, 10, 3)),),
        ),
    ]
    for op in ("RESIZE_BILINEAR", "RESIZE_NEAREST_NEIGHBOR"):
        for align, half in ((False, False), (True, False), (False, True)):
            cases.append(resize(op, (11, 13), align, half))
        cases.append(resize(op, (4, 5), False, True))
    return cases


def type_cases() -> list[Case]:
    """CAST, QUANTIZE and DEQUANTIZE (beyond the ones at the edges of every quantized model),
    DENSIFY."""
    reshape = partial(tf.reshape, shape=[7, 27])
    return [
        plain(
            "cast_float_to_int32",
            "CAST",
            partial(tf.cast, dtype=tf.int32),
            f"{list(X)}, inputs in [-4, 4) (truncation toward zero)",
            inputs=(Input(X, -4, 4),),
        ),
        plain(
            "cast_int32_to_float",
            "CAST",
            partial(tf.cast, dtype=tf.float32),
            "[3, 5] int32 in [-100, 100] to float32",
            inputs=(Input((3, 5), -100, 100, dtype="int32"),),
            flavours=(FLOAT,),
        ),
        plain(
            "quantize",
            "QUANTIZE",
            reshape,
            f"RESHAPE of {list(X)} to [7, 27] between the quantized model edges",
            flavours=(INT8, INT8_UINT8_IO, UINT8_FLOAT_IO, INT16X8),
            expect={
                INT8: (("float32", "int8"),),
                INT8_UINT8_IO: (("uint8", "int8"), ("int8", "uint8")),
                UINT8_FLOAT_IO: (("float32", "uint8"),),
                INT16X8: (("float32", "int16"),),
            },
        ),
        plain(
            "quantize_requantize",
            "QUANTIZE",
            lambda x: tf.concat([tf.tanh(x), x], 3),
            f"concatenation of tanh(x) (fixed scale 1/128) and x, {list(X)}: the converter "
            "requantizes tanh's output to the concatenation's scale",
            flavours=(INT8, INT8_IO, UINT8, INT16X8),
            expect={
                INT8: (("int8", "int8"),),
                INT8_IO: (("int8", "int8"),),
                UINT8: (("uint8", "uint8"),),
                INT16X8: (("int16", "int16"),),
            },
        ),
        replace(
            fully_connected("dequantize", (2, 7), 5),
            op="DEQUANTIZE",
            doc="[2, 7] times a constant [7, 5] plus bias, with float outputs or fp16 weights",
            flavours=(INT8, UINT8_FLOAT_IO, INT16X8, FP16),
            expect={
                INT8: (("int8", "float32"),),
                UINT8_FLOAT_IO: (("uint8", "float32"),),
                INT16X8: (("int16", "float32"),),
                FP16: (("float16", "float32"),),
            },
        ),
        sparse_fc("densify_fully_connected", 16, 8),
        sparse_conv("densify_conv_2d", (1, 5, 7, 4), 6),
    ]


def all_cases() -> list[Case]:
    """Every op variant, in manifest order."""
    return [
        *convolution_cases(),
        *matmul_cases(),
        *elementwise_cases(),
        *pool_and_reduce_cases(),
        *activation_cases(),
        *data_movement_cases(),
        *type_cases(),
    ]


# ----------------------------------------------------------------------------------------------
# Conversion
# ----------------------------------------------------------------------------------------------


@contextlib.contextmanager
def silenced(enabled: bool) -> Iterator[None]:
    """Send file descriptors 1 and 2 to /dev/null (the converter's C++ chatter), if enabled."""
    if not enabled:
        yield
        return
    sys.stdout.flush()
    sys.stderr.flush()
    saved = (os.dup(1), os.dup(2))
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, devnull):
            os.close(fd)


def input_specs(case: Case) -> list[tf.TensorSpec]:
    """The tf.function input signature: inputs named in0, in1, ..."""
    return [
        tf.TensorSpec(spec.shape, tf.as_dtype(spec.dtype), name=f"in{k}")
        for k, spec in enumerate(case.inputs)
    ]


def as_list(result: Any) -> list[tf.Tensor]:
    """A graph function's result as a list of tensors."""
    return list(result) if isinstance(result, (list, tuple)) else [result]


def convert_tf2(
    case: Case, graph_fn: GraphFn, flavour: str, calibration: list[list[np.ndarray]]
) -> bytes:
    """Every flavour but the uint8 ones: TFLiteConverter.from_concrete_functions."""
    function = tf.function(graph_fn, input_signature=input_specs(case)).get_concrete_function()
    converter = tf.lite.TFLiteConverter.from_concrete_functions([function], None)
    if flavour in (INT8, INT8_IO, INT8_UINT8_IO, INT16X8):
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: iter([list(s) for s in calibration])
        if flavour == INT16X8:
            converter.target_spec.supported_ops = [
                tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8
            ]
        else:
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if flavour == INT8_IO:
            converter.inference_input_type = tf.int8
            converter.inference_output_type = tf.int8
        elif flavour == INT8_UINT8_IO:
            converter.inference_input_type = tf.uint8
            converter.inference_output_type = tf.uint8
    elif flavour == DYNAMIC:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif flavour == FP16:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif flavour == SPARSE:
        converter.optimizations = [tf.lite.Optimize.EXPERIMENTAL_SPARSITY]
    elif flavour != FLOAT:
        raise ValueError(f"not a TF2 flavour: {flavour}")
    return converter.convert()


def uint8_input_stats(spec: Input) -> tuple[float, float]:
    """(mean, std) for `quantized_input_stats`: uint8 parameters covering [low, high]."""
    low, high = min(spec.low, 0.0), max(spec.high, 0.0)
    scale = (high - low) / 255.0
    zero_point = int(np.clip(round(-low / scale), 0, 255))
    return float(zero_point), 1.0 / scale


def output_ranges(
    case: Case, graph_fn: GraphFn, calibration: list[list[np.ndarray]]
) -> list[tuple[float, float] | None]:
    """Per output, the float range over the calibration samples (widened to contain 0), or
    None for outputs that get no fake-quant range (integer outputs, `uint8_outputs=inherit`)."""
    function = tf.function(graph_fn, input_signature=input_specs(case))
    results = [as_list(function(*sample)) for sample in calibration]
    ranges: list[tuple[float, float] | None] = []
    for k, first in enumerate(results[0]):
        if case.uint8_outputs != "calibrated" or not first.dtype.is_floating:
            ranges.append(None)
            continue
        low = min(0.0, min(float(tf.reduce_min(r[k])) for r in results))
        high = max(0.0, max(float(tf.reduce_max(r[k])) for r in results))
        ranges.append((low, high if high > low else low + 1.0))
    return ranges


def convert_uint8(
    case: Case, graph_fn: GraphFn, flavour: str, calibration: list[list[np.ndarray]]
) -> bytes:
    """uint8 and uint8_float_io: the legacy TF1 session path with inference_type=tf.uint8."""
    ranges = output_ranges(case, graph_fn, calibration)
    graph = tf.Graph()
    with graph.as_default():
        placeholders = [
            tf.compat.v1.placeholder(tf.as_dtype(spec.dtype), spec.shape, name=f"in{k}")
            for k, spec in enumerate(case.inputs)
        ]
        outputs = []
        for k, (tensor, value_range) in enumerate(
            zip(as_list(graph_fn(*placeholders)), ranges, strict=True)
        ):
            if value_range is not None:
                tensor = tf.quantization.fake_quant_with_min_max_args(
                    tensor, min=value_range[0], max=value_range[1], num_bits=8
                )
            outputs.append(tf.identity(tensor, name=f"out{k}"))
        with tf.compat.v1.Session(graph=graph) as session:
            converter = tf.compat.v1.lite.TFLiteConverter.from_session(
                session, placeholders, outputs
            )
            converter.inference_type = tf.uint8
            if flavour == UINT8_FLOAT_IO:
                converter.inference_input_type = tf.float32
                converter.inference_output_type = tf.float32
            # The converter wants statistics for integer inputs too, and ignores them.
            converter.quantized_input_stats = {
                f"in{k}": uint8_input_stats(spec) if spec.dtype == "float32" else (0.0, 1.0)
                for k, spec in enumerate(case.inputs)
            }
            converter.default_ranges_stats = UINT8_DEFAULT_RANGE
            return converter.convert()


def convert(
    case: Case, graph_fn: GraphFn, flavour: str, calibration: list[list[np.ndarray]]
) -> bytes:
    """Convert a case in one flavour."""
    if flavour in (UINT8, UINT8_FLOAT_IO):
        return convert_uint8(case, graph_fn, flavour, calibration)
    return convert_tf2(case, graph_fn, flavour, calibration)


def summarize_error(error: BaseException) -> str:
    """The converter's `error:` lines (or the first line), without source locations."""
    text = str(error)
    messages: list[str] = []
    for line in text.splitlines():
        match = re.search(r"error: (.+)", line)
        if match and match.group(1).strip() not in messages:
            messages.append(match.group(1).strip())
    if not messages:
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        messages = lines[:1] or [type(error).__name__]
    reason = "; ".join(messages)
    reason = re.sub(r"loc\(.*?\):\s*", "", reason)
    reason = re.sub(r"\S*/site-packages/", "", reason)
    return reason if len(reason) <= 300 else reason[:297] + "..."


# ----------------------------------------------------------------------------------------------
# Inspection and checks
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TensorInfo:
    """What the checks need to know about a tensor."""

    dtype: str
    sparse: bool


@dataclass(frozen=True)
class OpInfo:
    """One operator of a converted model, with its input and output tensors."""

    name: str
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]

    def describe(self) -> str:
        """`CONV_2D(float32, int8, int32 -> float32)`."""
        ins = ", ".join(t.dtype for t in self.inputs)
        outs = ", ".join(t.dtype for t in self.outputs)
        return f"{self.name}({ins} -> {outs})"


def inspect(model_path: Path) -> list[OpInfo]:
    """The model's operators in execution order (LiteRT's private `_get_ops_details()`)."""
    interpreter = Interpreter(
        model_path=str(model_path),
        experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
    )
    tensors = {
        t["index"]: TensorInfo(np.dtype(t["dtype"]).name, bool(t["sparsity_parameters"]))
        for t in interpreter.get_tensor_details()
    }
    ops = []
    for op in interpreter._get_ops_details():
        ops.append(
            OpInfo(
                op["op_name"],
                tuple(tensors[i] for i in op["inputs"] if i >= 0),
                tuple(tensors[i] for i in op["outputs"] if i >= 0),
            )
        )
    return ops


def check(case: Case, flavour: str, ops: list[OpInfo]) -> str | None:
    """Why the model does not exercise `case.op` in `flavour`, or None if it does."""
    names = sorted({op.name for op in ops})
    instances = [op for op in ops if op.name == case.op]
    if not instances:
        return f"the converter emitted {', '.join(names) or 'no ops'} but no {case.op}"
    found = "; ".join(sorted({op.describe() for op in instances}))
    if flavour in case.expect:
        for want_in, want_out in case.expect[flavour]:
            if not any(
                op.inputs[0].dtype == want_in and op.outputs[0].dtype == want_out
                for op in instances
            ):
                return f"no {case.op} from {want_in} to {want_out} (found {found})"
        return None
    if flavour == FLOAT:
        # Nothing but the op: this also checks that bias, activations and patterns were fused.
        if names != [case.op]:
            return f"expected just {case.op}, the converter emitted {names}"
        return None
    if flavour in ACTIVATION_DTYPES:
        want = ACTIVATION_DTYPES[flavour]
        if not any(t.dtype == want for op in instances for t in op.inputs + op.outputs):
            return f"the converter left {case.op} unquantized: {found}"
        return None
    if flavour == DYNAMIC:
        hybrid = [
            op
            for op in instances
            if any(t.dtype == "float32" for t in op.inputs)
            and any(t.dtype == "int8" for t in op.inputs)
            and all(t.dtype == "float32" for t in op.outputs)
        ]
        return None if hybrid else f"no hybrid {case.op} (float activations, int8 weights): {found}"
    if flavour == FP16:
        if not any(op.name == "DEQUANTIZE" and op.inputs[0].dtype == "float16" for op in ops):
            return f"no float16 constant feeding DEQUANTIZE (ops {names})"
        return None
    if flavour == SPARSE:
        if not any(op.inputs[0].sparse for op in instances):
            return f"no {case.op} reading a sparse tensor (ops {names})"
        return None
    raise ValueError(f"unknown flavour {flavour}")


# ----------------------------------------------------------------------------------------------
# Reference outputs
# ----------------------------------------------------------------------------------------------

QUANTIZED_DTYPES = ("int8", "uint8", "int16")


def input_order(interpreter: Interpreter) -> list[int]:
    """For each subgraph input, the index k of the case input (named in<k>) it is."""
    order = []
    for detail in interpreter.get_input_details():
        match = re.search(r"in(\d+)(:\d+)?$", detail["name"])
        if match is None:
            raise ValueError(f"unexpected input name {detail['name']!r}")
        order.append(int(match.group(1)))
    return order


def model_feeds(model_path: Path, sample: list[np.ndarray]) -> tuple[list[np.ndarray], bool]:
    """The arrays fed to the model, in subgraph input order: the case's float sample, quantized
    with the input's parameters where the model takes integers; and whether any of them has
    another shape than the model's input (dynamic dimensions), so inputs must be resized."""
    interpreter = Interpreter(
        model_path=str(model_path),
        experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
    )
    feeds = []
    resize = False
    for detail, k in zip(interpreter.get_input_details(), input_order(interpreter), strict=True):
        value = sample[k]
        dtype = np.dtype(detail["dtype"])
        if dtype.name in QUANTIZED_DTYPES and value.dtype == np.float32:
            scale, zero_point = detail["quantization"]
            info = np.iinfo(dtype)
            quantized = np.round(value.astype(np.float64) / scale) + zero_point
            value = np.clip(quantized, info.min, info.max).astype(dtype)
        if value.dtype != dtype:
            raise ValueError(f"{model_path.name}: input {k} is {dtype.name}, data {value.dtype}")
        feeds.append(value)
        resize |= list(detail["shape"]) != list(value.shape)
    return feeds, resize


def relative_error(
    model_path: Path, outputs: list[np.ndarray], expected: list[np.ndarray]
) -> float:
    """The largest difference between the model's float (or dequantized) outputs and
    TensorFlow's, relative to the largest magnitude of TensorFlow's output; integer outputs
    (ARG_MAX, CAST) are not compared."""
    interpreter = Interpreter(
        model_path=str(model_path),
        experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
    )
    worst = 0.0
    details = interpreter.get_output_details()
    for detail, got, want in zip(details, outputs, expected, strict=True):
        if want.dtype.kind != "f":
            continue
        values = got.astype(np.float64)
        if got.dtype.name in QUANTIZED_DTYPES:
            scale, zero_point = detail["quantization"]
            values = (values - zero_point) * scale
        if values.shape != want.shape:
            sys.exit(f"{model_path.name}: output shape {values.shape}, TensorFlow's {want.shape}")
        magnitude = max(float(np.abs(want).max()), 1e-6)
        worst = max(worst, float(np.abs(values - want).max()) / magnitude)
    return worst


def run_model(model_path: Path, feeds: list[np.ndarray], resolver: OpResolverType) -> list[Any]:
    """Invoke the model once with one thread; outputs in subgraph order, raw dtype."""
    interpreter = Interpreter(
        model_path=str(model_path), experimental_op_resolver_type=resolver, num_threads=1
    )
    details = interpreter.get_input_details()
    for detail, value in zip(details, feeds, strict=True):
        if list(detail["shape"]) != list(value.shape):
            interpreter.resize_tensor_input(detail["index"], list(value.shape))
    interpreter.allocate_tensors()
    for detail, value in zip(details, feeds, strict=True):
        interpreter.set_tensor(detail["index"], value)
    interpreter.invoke()
    return [np.array(interpreter.get_tensor(d["index"])) for d in interpreter.get_output_details()]


# ----------------------------------------------------------------------------------------------
# Driver
# ----------------------------------------------------------------------------------------------


@dataclass
class Sample:
    """A case's test input (one array per case input) and TensorFlow's float outputs for it."""

    inputs: list[np.ndarray]
    expected: list[np.ndarray]


class UnusableReference(Exception):
    """The reference kernels' outputs cannot be trusted: they change between identical runs, or
    they are far from TensorFlow's result while LiteRT's builtin kernels' are not. Arguments: the
    reason, and optionally a detail for this model."""


@dataclass
class Produced:
    """One written model and its manifest entry."""

    case: Case
    flavour: str
    entry: dict[str, Any]


@dataclass
class Missing:
    """A case and flavour that is not produced, why (shared by similar pairs), and details."""

    case: Case
    flavour: str
    reason: str
    detail: str = ""


def build_case(case: Case, out_dir: Path, quiet: bool) -> list[Produced | Missing]:
    """Convert, check, run and save one case in each of its flavours."""
    graph_fn = case.make(np.random.default_rng(seed_of(case.name, "weights")))
    calibration_rng = np.random.default_rng(seed_of(case.name, "calibration"))
    calibration = [
        [spec.sample(calibration_rng) for spec in case.inputs] for _ in range(CALIBRATION_SAMPLES)
    ]
    test_rng = np.random.default_rng(seed_of(case.name, "test"))
    sample = [spec.sample(test_rng) for spec in case.inputs]
    function = tf.function(graph_fn, input_signature=input_specs(case))
    expected = [t.numpy() for t in as_list(function(*sample))]
    results = []
    for flavour in case.flavours:
        result = build_flavour(
            case, flavour, graph_fn, calibration, Sample(sample, expected), out_dir, quiet
        )
        if isinstance(result, Missing) and flavour == FLOAT:
            # The float model is the control: if it is wrong, so is the case.
            sys.exit(f"{case.name}-{flavour}: {result.reason}")
        results.append(result)
    return results


def build_flavour(
    case: Case,
    flavour: str,
    graph_fn: GraphFn,
    calibration: list[list[np.ndarray]],
    sample: Sample,
    out_dir: Path,
    quiet: bool,
) -> Produced | Missing:
    """Convert one case in one flavour, check the model, run it and save it with its data."""
    if flavour in case.skip:
        return Missing(case, flavour, case.skip[flavour])
    name = f"{case.name}-{flavour}"
    try:
        with silenced(quiet):
            content = convert(case, graph_fn, flavour, calibration)
            again = convert(case, graph_fn, flavour, calibration)
    except Exception as error:  # the converter raises many exception types
        return Missing(case, flavour, "conversion fails: " + summarize_error(error))
    if content != again:
        sys.exit(
            f"{name}: two conversions gave different bytes, so the fixtures would not be "
            "reproducible; give this case other flavours"
        )
    model_path = out_dir / f"{name}.tflite"
    model_path.write_bytes(content)
    ops = inspect(model_path)
    problem = check(case, flavour, ops)
    if problem is not None:
        model_path.unlink()
        return Missing(case, flavour, problem)
    try:
        return Produced(case, flavour, save_run(case, flavour, model_path, ops, sample))
    except UnusableReference as error:
        model_path.unlink()
        return Missing(case, flavour, f"converted, but {error.args[0]}", *error.args[1:])
    except (RuntimeError, ValueError) as error:
        model_path.unlink()
        return Missing(
            case, flavour, "converted, but LiteRT cannot run it: " + summarize_error(error)
        )


def save_run(
    case: Case, flavour: str, model_path: Path, ops: list[OpInfo], sample: Sample
) -> dict[str, Any]:
    """Run the model with the reference kernels (and AUTO), save inputs and outputs, and return
    the manifest entry."""
    name = model_path.name.removesuffix(".tflite")
    feeds, resize = model_feeds(model_path, sample.inputs)
    reference = "BUILTIN_REF"
    reference_note = None
    builtin = OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    try:
        outputs = run_model(model_path, feeds, OpResolverType.BUILTIN_REF)
    except (RuntimeError, ValueError) as error:
        # LiteRT's reference resolver lacks a few kernels (ELU, DEPTH_TO_SPACE version 2): use
        # the builtin ones, and say so.
        reference = "BUILTIN_WITHOUT_DEFAULT_DELEGATES"
        reason = summarize_error(error)
        missing_kernel = re.search(r"builtin opcode '(\w+)' version '(\d+)'", reason)
        if missing_kernel:
            reason = f"it registers no {missing_kernel.group(1)} version {missing_kernel.group(2)}"
        reference_note = f"BUILTIN_REF cannot run this model: {reason}"
        outputs = run_model(model_path, feeds, builtin)
    else:
        # A reference kernel can be plainly wrong (LiteRT 2.3's int8 SUM): its outputs are far
        # from TensorFlow's while the builtin kernels' are not. The builtin kernels round
        # differently, so they are no bit-exact substitute: the model is dropped.
        error = relative_error(model_path, outputs, sample.expected)
        if error > PLAUSIBLE_ERROR:
            builtin_error = relative_error(
                model_path, run_model(model_path, feeds, builtin), sample.expected
            )
            if builtin_error <= PLAUSIBLE_ERROR:
                raise UnusableReference(
                    "LiteRT's BUILTIN_REF outputs are far from TensorFlow's float result while "
                    "the builtin kernels' are close (error relative to the result's largest "
                    "magnitude)",
                    f"{error:.0%} against {builtin_error:.1%}",
                )
    # A kernel that reads memory it never wrote shows up as outputs that change between runs.
    rerun = run_model(model_path, feeds, getattr(OpResolverType, reference))
    if not all(np.array_equal(a, b) for a, b in zip(outputs, rerun, strict=True)):
        raise UnusableReference(f"LiteRT's {reference} gives different outputs on identical runs")
    auto = run_model(model_path, feeds, OpResolverType.AUTO)
    auto_matches = all(
        a.dtype == r.dtype and a.shape == r.shape and np.array_equal(a, r)
        for a, r in zip(auto, outputs, strict=True)
    )
    input_files, output_files = [], []
    for k, value in enumerate(feeds):
        input_files.append(f"{name}.in{k}.npy")
        np.save(model_path.parent / input_files[-1], value)
    for k, value in enumerate(outputs):
        output_files.append(f"{name}.out{k}.npy")
        np.save(model_path.parent / output_files[-1], value)
    entry: dict[str, Any] = {
        "name": name,
        "model": model_path.name,
        "case": case.name,
        "op": case.op,
        "flavour": flavour,
        "ops": sorted({op.name for op in ops}),
        "inputs": input_files,
        "input_dtypes": [v.dtype.name for v in feeds],
        "input_shapes": [list(v.shape) for v in feeds],
        "resize_inputs": resize,
        "outputs": output_files,
        "output_dtypes": [v.dtype.name for v in outputs],
        "output_shapes": [list(v.shape) for v in outputs],
        "reference": reference,
        "auto_matches_ref": auto_matches,
    }
    if reference_note is not None:
        entry["reference_note"] = reference_note
    return entry


def clean(out_dir: Path) -> None:
    """Remove the files a previous run wrote (and nothing else)."""
    for pattern in ("*.tflite", "*.npy", "manifest.json", "README.md"):
        for path in out_dir.glob(pattern):
            path.unlink()


def directory_bytes(out_dir: Path) -> int:
    """Total size of the files directly in `out_dir`."""
    return sum(p.stat().st_size for p in out_dir.iterdir() if p.is_file())


def versions() -> str:
    """The package versions that produced the fixtures, for README.md."""
    names = ["tensorflow-cpu", "keras", "numpy", "ai-edge-litert"]
    return ", ".join(f"{name} {importlib.metadata.version(name)}" for name in names)


# ----------------------------------------------------------------------------------------------
# README.md
# ----------------------------------------------------------------------------------------------

MANIFEST_FIELDS = [
    ("name", "`<case>-<flavour>`, the stem of every file of the model"),
    ("model", "the .tflite file"),
    ("case, op", "the op variant and the TFLite op it is about"),
    ("flavour", "how it was converted (see Flavours)"),
    ("ops", "the TFLite ops in the model, sorted"),
    ("inputs, input_dtypes, input_shapes", "one .npy per subgraph input, in subgraph order"),
    (
        "resize_inputs",
        "true when an input's shape differs from the model's (dynamic dimensions): resize the "
        "model's inputs to `input_shapes` before allocating",
    ),
    ("outputs, output_dtypes, output_shapes", "the reference outputs, in subgraph order"),
    (
        "reference",
        "the LiteRT op resolver that computed the outputs: `BUILTIN_REF` (the "
        "reference kernels), or `BUILTIN_WITHOUT_DEFAULT_DELEGATES` where the reference resolver "
        "lacks the kernel (then `reference_note` says why)",
    ),
    (
        "auto_matches_ref",
        "informational: whether LiteRT's default resolver (AUTO: optimized "
        "kernels and XNNPACK) gives bit-identical outputs",
    ),
]


def bullet(text: str) -> str:
    """A Markdown list item wrapped at 100 columns."""
    return textwrap.fill(
        text,
        width=100,
        initial_indent="- ",
        subsequent_indent="  ",
        break_long_words=False,
        break_on_hyphens=False,
    )


def markdown_table(header: list[str], rows: list[list[str]]) -> list[str]:
    """Lines of a Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def render_readme(
    cases: list[Case], produced: list[Produced], missing: list[Missing], out_dir: Path
) -> str:
    """README.md: recipe, flavours, tables of what exists and what the converter cannot make."""
    made = {(p.case.name, p.flavour) for p in produced}
    reasons: list[str] = []
    for m in missing:
        if m.reason not in reasons:
            reasons.append(m.reason)
    reason_number = {reason: k + 1 for k, reason in enumerate(reasons)}
    missing_by_key = {(m.case.name, m.flavour): m for m in missing}
    flavours = [f for f in ALL_FLAVOURS if any(f in c.flavours for c in cases)]
    ops = list(dict.fromkeys(c.op for c in cases))
    model_bytes = sum((out_dir / p.entry["model"]).stat().st_size for p in produced)
    data_bytes = sum(
        (out_dir / f).stat().st_size
        for p in produced
        for f in p.entry["inputs"] + p.entry["outputs"]
    )
    fallbacks = [p.entry for p in produced if p.entry["reference"] != "BUILTIN_REF"]
    resized = [p.entry["name"] for p in produced if p.entry["resize_inputs"]]

    lines = [
        "# Op-coverage fixtures",
        "",
        f"Generated by `{COMMAND}` (or `{COMMAND} --ops-only`), which runs",
        f"`{SCRIPT} --out models/ops/` in the pinned venv with `PYTHONHASHSEED=0`.",
        "This README is written by the same script: edit the script, not this file.",
        "",
        "Each fixture is one small TensorFlow function around one TFLite op, converted by the",
        "TFLite converter in one quantization flavour, plus one seeded input and LiteRT's",
        "reference-kernel outputs for it. octet's runtime must reproduce the outputs bit for bit",
        "for the integer flavours and within 1e-5 relative for float ones.",
        "",
        f"- Versions: Python {sys.version.split()[0]}, {versions()}.",
        f"- {len(produced)} models ({model_bytes} bytes of .tflite, {data_bytes} bytes of .npy);",
        f"  {len(missing)} case and flavour pairs attempted but not produced (listed below).",
        "- Files: `<case>-<flavour>.tflite`, `<case>-<flavour>.in<k>.npy` for subgraph input k,",
        "  `<case>-<flavour>.out<k>.npy` for subgraph output k; `manifest.json` lists them all.",
        "- Seeds: weights, calibration samples and the test input each come from",
        "  `np.random.default_rng(crc32('<case>/weights'))` (`/calibration`, `/test`), so every",
        "  flavour of a case has the same weights and the same float test input.",
        "- Inputs: float32 uniform in the case's range (default [-2, 2)); int32 inputs uniform",
        "  integers. Where a model takes int8, uint8 or int16, the float test input is quantized",
        "  with the input tensor's scale and zero point (round half to even, clamped); the `.npy`",
        "  holds the integers actually fed.",
        bullet(
            "Outputs: `Interpreter(model_path=..., experimental_op_resolver_type="
            "OpResolverType.BUILTIN_REF, num_threads=1)`, one invoke, raw output dtype. Each model "
            "runs twice (two interpreters) and is dropped if the runs disagree, or if its outputs "
            "are off from TensorFlow's own float result by more than "
            f"{PLAUSIBLE_ERROR:.0%} of that result's largest magnitude while LiteRT's builtin "
            "kernels' are not (a broken reference kernel; quantization error on these cases stays "
            "under 10%)."
        ),
        bullet(
            "Dynamic shapes: the SQUEEZE and EXPAND_DIMS cases have dynamic dimensions (shape "
            "signature -1), because the converter turns those ops into RESHAPE on static shapes. "
            'Models fed another shape than their own (`"resize_inputs": true` in the manifest) '
            "need their inputs resized to the `.npy` shapes before allocation: "
            + (", ".join(f"`{name}`" for name in resized) or "none")
            + "."
        ),
        "- Checks: a float model must contain nothing but the op (which also checks that",
        "  activations, bias and patterns like HARD_SWISH and PRELU were fused), or the script",
        "  fails; a quantized model must run the op in the flavour's types (int8, uint8 or int16",
        "  tensors; int8 weights with float activations for dynamic; a float16 constant feeding",
        "  DEQUANTIZE for fp16; a sparse tensor feeding DENSIFY for sparse), or it is not kept",
        "  and the reason is listed below.",
    ]
    if fallbacks:
        lines += [
            "- Where BUILTIN_REF has no kernel for a model, the outputs come from",
            "  `BUILTIN_WITHOUT_DEFAULT_DELEGATES` (LiteRT's optimized builtin kernels, no",
            "  XNNPACK) instead; the manifest says so in `reference` and `reference_note`:",
        ]
        lines += [f"  - `{entry['name']}`: {entry['reference_note']}." for entry in fallbacks]
    lines += ["", "## Flavours", ""]
    for flavour in flavours:
        lines.append(bullet(f"`{flavour}`: {FLAVOUR_RECIPES[flavour]}"))
    lines += ["", "## manifest.json", "", "A list with one object per model, in this order:", ""]
    for key, meaning in MANIFEST_FIELDS:
        lines.append(bullet(f"`{key}`: {meaning}"))

    lines += ["", "## Models per op and flavour", ""]
    rows = []
    for op in ops:
        row = [op]
        for flavour in flavours:
            count = sum(1 for p in produced if p.case.op == op and p.flavour == flavour)
            row.append(str(count) if count else "")
        rows.append(row)
    totals = [str(sum(1 for p in produced if p.flavour == flavour)) for flavour in flavours]
    rows.append(["all", *totals])
    lines += markdown_table(["op", *flavours], rows)

    lines += [
        "",
        "## Cases",
        "",
        "Y: produced; N<k>: not produced, for reason k in the next section; empty: not",
        "attempted (the flavour does not apply to the case).",
        "",
    ]
    rows = []
    for case in cases:
        row = [f"`{case.name}`", case.op]
        for flavour in flavours:
            if (case.name, flavour) in made:
                row.append("Y")
            elif (case.name, flavour) in missing_by_key:
                row.append(f"N{reason_number[missing_by_key[(case.name, flavour)].reason]}")
            else:
                row.append("")
        rows.append(row)
    lines += markdown_table(["case", "op", *flavours], rows)

    lines += ["", "## What is missing, and why", ""]
    if not reasons:
        lines.append("Nothing: every attempted case and flavour was produced.")
    for reason in reasons:
        pairs = [
            f"{m.case.name}-{m.flavour}" + (f": {m.detail}" if m.detail else "")
            for m in missing
            if m.reason == reason
        ]
        lines.append(f"{reason_number[reason]}. {reason}")
        lines.append(f"   ({', '.join(pairs)})")

    lines += ["", "## Case details", ""]
    for case in cases:
        lines.append(bullet(f"`{case.name}` ({case.op}): {case.doc}."))
    return "\n".join(lines) + "\n"


def main() -> None:
    """Build every case in every flavour, then write manifest.json and README.md."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("models/ops"), help="output directory")
    parser.add_argument(
        "--only",
        metavar="SUBSTRING",
        help="only build cases whose name contains SUBSTRING (for development; the manifest and "
        "README then describe just those)",
    )
    parser.add_argument("--verbose", action="store_true", help="show the converter's own output")
    args = parser.parse_args()
    started = time.monotonic()
    if not args.verbose:
        # TensorFlow's Python deprecation notices (the TF1 resize ops, for instance).
        tf.get_logger().setLevel("ERROR")
    tf.config.threading.set_inter_op_parallelism_threads(1)
    tf.config.threading.set_intra_op_parallelism_threads(1)

    out_dir: Path = args.out
    out_dir.mkdir(parents=True, exist_ok=True)
    clean(out_dir)
    cases = [c for c in all_cases() if args.only is None or args.only in c.name]
    names = [c.name for c in cases]
    if len(set(names)) != len(names):
        sys.exit("duplicate case names")

    produced: list[Produced] = []
    missing: list[Missing] = []
    for case in cases:
        results = build_case(case, out_dir, quiet=not args.verbose)
        case_produced = [r for r in results if isinstance(r, Produced)]
        case_missing = [r for r in results if isinstance(r, Missing)]
        produced += case_produced
        missing += case_missing
        made = " ".join(p.flavour for p in case_produced)
        skipped = " ".join(m.flavour for m in case_missing)
        print(f"{case.name:<44} {made}" + (f"  (not: {skipped})" if skipped else ""), flush=True)

    manifest = [p.entry for p in produced]
    # One entry per line: diffs stay readable and the file stays small.
    lines = ",\n".join(json.dumps(entry) for entry in manifest)
    (out_dir / "manifest.json").write_text(f"[\n{lines}\n]\n")
    (out_dir / "README.md").write_text(render_readme(cases, produced, missing, out_dir))

    total = directory_bytes(out_dir)
    elapsed = time.monotonic() - started
    print(
        f"{len(produced)} models, {len(missing)} case/flavour pairs not produced, "
        f"{total} bytes in {out_dir}, {elapsed:.0f} s"
    )
    if total > BUDGET_BYTES:
        sys.exit(f"{out_dir} holds {total} bytes, over the {BUDGET_BYTES}-byte budget")


if __name__ == "__main__":
    main()
