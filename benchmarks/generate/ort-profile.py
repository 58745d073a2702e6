#!/usr/bin/env python3
"""Sums an ONNX Runtime profile (SERVING_ORT_PROFILE=PREFIX serving generate ...) by operator and by node.

The first run is the prefill; the rest are decode steps, reported per step.
Usage: python3 benchmarks/generate/ort-profile.py PREFIX_*.json [--top 15]
"""
import collections
import json
import re
import sys


def main():
    path = sys.argv[1]
    top = int(sys.argv[sys.argv.index("--top") + 1]) if "--top" in sys.argv else 15
    events = json.load(open(path))
    runs = [e for e in events if e.get("cat") == "Session" and e["name"] == "model_run"]
    kernels = [e for e in events if e.get("cat") == "Node" and e["name"].endswith("_kernel_time")]
    if len(runs) < 2:
        sys.exit("need a prefill and at least one decode step in the profile")

    def within(run):
        return [e for e in kernels if run["ts"] <= e["ts"] <= run["ts"] + run["dur"]]

    prefill = within(runs[0])
    decode = [e for e in kernels if e["ts"] >= runs[1]["ts"]]
    steps = len(runs) - 1
    for title, nodes, per in (("prefill (one run)", prefill, 1), (f"decode (per step, {steps} steps)", decode, steps)):
        by_op = collections.defaultdict(float)
        count = collections.Counter()
        by_node = collections.defaultdict(float)
        for e in nodes:
            op = e["args"].get("op_name")
            by_op[op] += e["dur"]
            count[op] += 1
            by_node[re.sub(r"layers\.\d+", "layers.N", e["name"][: -len("_kernel_time")])] += e["dur"]
        total = sum(by_op.values())
        print(f"== {title}: kernels {total / per / 1000:.3f} ms, {sum(count.values()) / per:.0f} nodes")
        for op, d in sorted(by_op.items(), key=lambda x: -x[1])[:top]:
            print(f"  {op:30s} {d / per / 1000:8.3f} ms {count[op] / per:7.1f} nodes {100 * d / total:5.1f}%")
        print("  -- by node (layers summed)")
        for name, d in sorted(by_node.items(), key=lambda x: -x[1])[:top]:
            print(f"  {d / per / 1000:8.3f} ms  {name}")
    medians = sorted(r["dur"] for r in runs[1:])
    print(f"decode run median {medians[len(medians) // 2] / 1000:.3f} ms (kernels plus ONNX Runtime's own work)")


if __name__ == "__main__":
    main()
