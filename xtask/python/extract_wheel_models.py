"""Extract .tflite models that a wheel ships, into one flat directory.

Usage: extract_wheel_models.py WHEEL [--under PREFIX]... [--member PATH]... --out DIR

Selects every member whose path starts with an --under prefix and ends in .tflite, plus every
--member given by its exact path (which must exist and end in .tflite). Each selected member is
written to DIR under its base name. Base names must be unique (the script stops before writing
anything if two members share one, or if nothing is selected).
Prints one tab-separated line per model: size in bytes, file name, member path in the wheel.
"""

from __future__ import annotations

import argparse
import sys
import zipfile
from collections import defaultdict
from pathlib import Path, PurePosixPath


def select_members(names: list[str], prefixes: list[str], exact: list[str]) -> list[str]:
    """The sorted .tflite members under any prefix, plus the exact members (which must exist)."""
    available = set(names)
    missing = [member for member in exact if member not in available]
    if missing:
        sys.exit(f"not in the wheel: {missing}")
    not_models = [member for member in exact if not member.endswith(".tflite")]
    if not_models:
        sys.exit(f"not .tflite files: {not_models}")
    selected = {
        name
        for name in names
        if name.endswith(".tflite") and any(name.startswith(prefix) for prefix in prefixes)
    }
    selected.update(exact)
    return sorted(selected)


def main() -> None:
    """Parse arguments, select members, check base names are unique, extract, list."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("wheel", type=Path, help="the .whl file (a zip archive)")
    parser.add_argument(
        "--under",
        action="append",
        default=[],
        metavar="PREFIX",
        help="extract every .tflite member below this path prefix, e.g. mediapipe/modules/",
    )
    parser.add_argument(
        "--member",
        action="append",
        default=[],
        metavar="PATH",
        help="extract this member, given by its exact path in the wheel",
    )
    parser.add_argument("--out", type=Path, required=True, help="directory to write the models to")
    args = parser.parse_args()
    if not args.under and not args.member:
        parser.error("give at least one --under or --member")

    with zipfile.ZipFile(args.wheel) as wheel:
        members = select_members(wheel.namelist(), args.under, args.member)
        if not members:
            sys.exit(f"no .tflite members under {args.under} in {args.wheel}")
        members_by_file_name: dict[str, list[str]] = defaultdict(list)
        for member in members:
            members_by_file_name[PurePosixPath(member).name].append(member)
        clashes = {name: paths for name, paths in members_by_file_name.items() if len(paths) > 1}
        if clashes:
            sys.exit(f"model file names are not unique: {clashes}")

        args.out.mkdir(parents=True, exist_ok=True)
        for member in members:
            file_name = PurePosixPath(member).name
            data = wheel.read(member)
            (args.out / file_name).write_bytes(data)
            print(f"{len(data)}\t{file_name}\t{member}")


if __name__ == "__main__":
    main()
