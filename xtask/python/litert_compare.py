"""Check that a rewritten .tflite file computes exactly what the original computes, in LiteRT.

Usage: litert_compare.py ORIGINAL REWRITTEN

For each op resolver (AUTO, LiteRT's default with XNNPACK, and BUILTIN_REF, the reference
kernels) both files are loaded and allocated, every input gets the same seeded random data
(floats uniform in [-1, 1], integers over their whole range, dynamic dimensions set to 1), both
are invoked, and every output is compared bit for bit. Prints one JSON line:

    {"original": ..., "rewritten": ..., "ok": bool, "skipped": bool, "verdict": "...",
     "resolvers": {"AUTO": "...", "BUILTIN_REF": "..."}}

`ok` is false when a model LiteRT runs gives different outputs after the rewrite, or when the
rewritten file fails to load or run while the original does. A model whose original LiteRT
cannot load, allocate or invoke under any resolver (custom ops, for instance) is skipped.
Exits 0 whenever the comparison itself ran; the caller reads `ok`.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ai_edge_litert.interpreter import Interpreter, OpResolverType

SEED = 0
RESOLVERS = {"AUTO": OpResolverType.AUTO, "BUILTIN_REF": OpResolverType.BUILTIN_REF}
REASON_MAX_CHARS = 120


class OriginalUnusable(Exception):
    """LiteRT cannot load, allocate or invoke the original model under a resolver."""


@dataclass
class Outcome:
    """The result of comparing both files under one op resolver."""

    status: str  # "identical", "different", "rewritten_fails" or "skipped"
    detail: str

    def describe(self) -> str:
        """Short human-readable form, e.g. `identical (2 outputs)`."""
        return f"{self.status} ({self.detail})" if self.detail else self.status


def short_reason(error: Exception) -> str:
    """First meaningful line of an exception message, truncated."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    reason = lines[0] if lines else type(error).__name__
    return reason if len(reason) <= REASON_MAX_CHARS else reason[: REASON_MAX_CHARS - 3] + "..."


def static_shape(detail: dict) -> list[int]:
    """An input's shape with every dynamic (-1) dimension of its shape signature set to 1."""
    signature = detail.get("shape_signature")
    if signature is None or len(signature) == 0:
        signature = detail["shape"]
    return [1 if dim < 0 else int(dim) for dim in signature]


def load(path: Path, resolver: OpResolverType) -> Interpreter:
    """Load a model, give dynamic inputs a batch of 1, and allocate its tensors."""
    interpreter = Interpreter(
        model_path=str(path), num_threads=1, experimental_op_resolver_type=resolver
    )
    for detail in interpreter.get_input_details():
        shape = static_shape(detail)
        if list(detail["shape"]) != shape:
            interpreter.resize_tensor_input(detail["index"], shape)
    interpreter.allocate_tensors()
    return interpreter


def random_input(detail: dict, rng: np.random.Generator) -> np.ndarray:
    """Seeded random data for one input, respecting its dtype and (static) shape."""
    dtype = np.dtype(detail["dtype"])
    shape = static_shape(detail)
    if dtype == np.bool_:
        return rng.integers(0, 2, size=shape).astype(np.bool_)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max, size=shape, dtype=dtype, endpoint=True)
    if np.issubdtype(dtype, np.floating):
        return rng.uniform(-1.0, 1.0, size=shape).astype(dtype)
    if np.issubdtype(dtype, np.complexfloating):
        real = rng.uniform(-1.0, 1.0, size=shape)
        imaginary = rng.uniform(-1.0, 1.0, size=shape)
        return (real + 1j * imaginary).astype(dtype)
    raise ValueError(f"unsupported input dtype {dtype} for input {detail['name']}")


def invoke(interpreter: Interpreter, inputs: list[np.ndarray]) -> list[np.ndarray]:
    """Set every input in subgraph order, invoke, and copy out every output."""
    for detail, data in zip(interpreter.get_input_details(), inputs, strict=True):
        interpreter.set_tensor(detail["index"], data)
    interpreter.invoke()
    return [interpreter.get_tensor(d["index"]).copy() for d in interpreter.get_output_details()]


def run_original(
    path: Path, resolver: OpResolverType
) -> tuple[list[dict], list[np.ndarray], list[np.ndarray]]:
    """Run the original once on seeded inputs; raise OriginalUnusable if LiteRT cannot."""
    try:
        interpreter = load(path, resolver)
        input_details = interpreter.get_input_details()
        rng = np.random.default_rng(SEED)
        inputs = [random_input(detail, rng) for detail in input_details]
        outputs = invoke(interpreter, inputs)
    except Exception as error:  # LiteRT raises RuntimeError/ValueError with a C++ message.
        raise OriginalUnusable(short_reason(error)) from error
    return input_details, inputs, outputs


def same_bits(expected: np.ndarray, actual: np.ndarray) -> bool:
    """Whether two arrays have the same dtype, shape and raw bytes."""
    if expected.dtype != actual.dtype or expected.shape != actual.shape:
        return False
    if expected.dtype == np.object_:
        return expected.tolist() == actual.tolist()
    return np.array_equal(
        np.ascontiguousarray(expected).reshape(-1).view(np.uint8),
        np.ascontiguousarray(actual).reshape(-1).view(np.uint8),
    )


def difference(expected: np.ndarray, actual: np.ndarray) -> str:
    """Describe how two outputs differ: dtype, shape, or how many values."""
    if expected.dtype != actual.dtype:
        return f"dtype {actual.dtype}, was {expected.dtype}"
    if expected.shape != actual.shape:
        return f"shape {list(actual.shape)}, was {list(expected.shape)}"
    if expected.dtype == np.object_:
        return "values differ"
    item_bytes = expected.dtype.itemsize
    expected_bytes = (
        np.ascontiguousarray(expected).reshape(-1).view(np.uint8).reshape(-1, item_bytes)
    )
    actual_bytes = np.ascontiguousarray(actual).reshape(-1).view(np.uint8).reshape(-1, item_bytes)
    differing = int(np.count_nonzero((expected_bytes != actual_bytes).any(axis=1)))
    return f"{differing} of {expected.size} values differ in their bits"


def compare(original: Path, rewritten: Path, resolver: OpResolverType) -> Outcome:
    """Compare both files under one resolver."""
    try:
        original_inputs, inputs, expected = run_original(original, resolver)
    except OriginalUnusable as error:
        return Outcome("skipped", f"LiteRT cannot run the original: {error}")

    try:
        interpreter = load(rewritten, resolver)
    except Exception as error:
        return Outcome("rewritten_fails", f"cannot load: {short_reason(error)}")

    rewritten_inputs = interpreter.get_input_details()
    if len(rewritten_inputs) != len(original_inputs):
        return Outcome(
            "different", f"{len(rewritten_inputs)} inputs instead of {len(original_inputs)}"
        )
    for position, (before, after) in enumerate(zip(original_inputs, rewritten_inputs, strict=True)):
        if np.dtype(before["dtype"]) != np.dtype(after["dtype"]) or static_shape(
            before
        ) != static_shape(after):
            return Outcome(
                "different",
                f"input {position} is {np.dtype(after['dtype'])}{static_shape(after)},"
                f" was {np.dtype(before['dtype'])}{static_shape(before)}",
            )

    try:
        actual = invoke(interpreter, inputs)
    except Exception as error:
        return Outcome("rewritten_fails", f"cannot invoke: {short_reason(error)}")

    if len(actual) != len(expected):
        return Outcome("different", f"{len(actual)} outputs instead of {len(expected)}")
    output_names = [d["name"] for d in interpreter.get_output_details()]
    for position, (before, after) in enumerate(zip(expected, actual, strict=True)):
        if not same_bits(before, after):
            return Outcome(
                "different",
                f"output {position} `{output_names[position]}`: {difference(before, after)}",
            )
    return Outcome("identical", f"{len(expected)} output{'s' if len(expected) != 1 else ''}")


def verdict(outcomes: dict[str, Outcome]) -> tuple[bool, bool, str]:
    """(ok, skipped, verdict text) over all resolvers."""
    failures = [
        f"{name}: {outcome.describe()}"
        for name, outcome in outcomes.items()
        if outcome.status in ("different", "rewritten_fails")
    ]
    if failures:
        return False, False, "FAIL " + "; ".join(failures)
    skipped = {name: outcome for name, outcome in outcomes.items() if outcome.status == "skipped"}
    if len(skipped) == len(outcomes):
        return True, True, f"skipped ({next(iter(outcomes.values())).detail})"
    if skipped:
        ran = ", ".join(name for name in outcomes if name not in skipped)
        notes = "; ".join(f"{name} skipped: {outcome.detail}" for name, outcome in skipped.items())
        return True, False, f"identical under {ran} ({notes})"
    return True, False, "identical"


def main() -> None:
    """Parse arguments, compare under every resolver, print one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("original", type=Path, help="the .tflite file as it was")
    parser.add_argument("rewritten", type=Path, help="the same model after a read/write round trip")
    args = parser.parse_args()

    outcomes = {
        name: compare(args.original, args.rewritten, resolver)
        for name, resolver in RESOLVERS.items()
    }
    ok, skipped, text = verdict(outcomes)
    report = {
        "original": str(args.original),
        "rewritten": str(args.rewritten),
        "ok": ok,
        "skipped": skipped,
        "verdict": text,
        "resolvers": {name: outcome.describe() for name, outcome in outcomes.items()},
    }
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
