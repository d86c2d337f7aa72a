"""int8 export: how many of a float student's actions its int8 file keeps, with the inner layers'
weights rounded each to its nearest step (what the quantisers do by themselves) and rounded on
calibration states (what `qdistill export --int8` does: learners/quantise.py), side by side.

    python benchmarks/int8_rounding.py RUN_DIR[:STUDENT] [RUN_DIR[:STUDENT] ...] [--format onnx]

The states and the calibration states are those `qdistill export` uses (the float student acting
with ε = 0.1, seeds 30000 and 40000); actions are taken one state per call, as on a device. Not
part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np


def agreements(run: Path, student: str | None, fmt: str, states: int) -> dict[str, object]:
    from qdistill.cluster import export as ex
    from qdistill.learners import export as formats
    from qdistill.learners.networks import GreedyPolicy

    name, ckpt, _ = ex.find_student(run, student)
    float_student = GreedyPolicy(ckpt.net, ckpt.obs_shape, ckpt.n_actions)
    float_student.load(ckpt.version, ckpt.weights)
    held_out = ex.held_out_states(ckpt.env_id, float_student.act, states, ex.EXPORT_SEED)
    calibration = ex.held_out_states(ckpt.env_id, float_student.act, states, ex.CALIBRATION_SEED)
    wanted = float_student.act(held_out)
    row: dict[str, object] = {"run": str(run), "env": ckpt.env_id, "student": name, "format": fmt}
    with tempfile.TemporaryDirectory() as tmp:
        for label, cal in (("nearest", None), ("calibrated", calibration)):
            path = Path(tmp) / f"{label}{formats.SUFFIX[fmt]}"
            formats.write(ckpt.network(), path, fmt, int8=True, obs_shape=ckpt.obs_shape, calibration=cal)
            act = ex._one_at_a_time(formats.runner(path, fmt))
            row[label] = float(np.mean(act(held_out) == wanted))
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", metavar="RUN_DIR[:STUDENT]", help="`qdistill run` directories")
    parser.add_argument("--format", default="onnx", choices=("onnx", "torchscript"))
    parser.add_argument("--states", type=int, default=10_000, help="held-out (and calibration) states (10000)")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()
    rows = []
    for spec in args.runs:
        run, _, student = spec.partition(":")
        rows.append(agreements(Path(run), student or None, args.format, args.states))
        r = rows[-1]
        print(f"  {r['env']} {r['student']}: nearest {r['nearest']:.2%}, calibrated {r['calibrated']:.2%}",
              file=sys.stderr, flush=True)
    print(f"\nint8 ({args.format}) actions equal to the float student's, {args.states:,} held-out states, one per call\n")
    print("| run | env | student | rounded to nearest | rounded on calibration states | flips removed |")
    print("|---|---|---|---:|---:|---:|")
    for r in rows:
        removed = 1 - (1 - r["calibrated"]) / (1 - r["nearest"]) if r["nearest"] < 1 else 0.0
        print(f"| {r['run']} | {r['env']} | {r['student']} | {r['nearest']:.2%} | {r['calibrated']:.2%} | {removed:.0%} |")
    print(f"\nreproduce: python benchmarks/int8_rounding.py {' '.join(args.runs)} --format {args.format} --states {args.states}")
    if args.json:
        Path(args.json).write_text(json.dumps({"format": args.format, "states": args.states, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
