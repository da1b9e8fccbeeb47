"""How LiteRT's default CPU path splits each model: one JSON line per .tflite given, with the
number of partitions its XNNPACK delegate took (DELEGATE nodes) and the node count before
delegation. Used by `cargo xtask litert-ops`."""

import json
import sys

from ai_edge_litert.interpreter import Interpreter


def main() -> None:
    for path in sys.argv[1:]:
        interpreter = Interpreter(model_path=path, num_threads=1)
        interpreter.allocate_tensors()
        names = [op["op_name"] for op in interpreter._get_ops_details()]
        partitions = names.count("DELEGATE")
        print(json.dumps({"file": path, "partitions": partitions,
                          "nodes": len(names) - partitions}))


if __name__ == "__main__":
    main()
