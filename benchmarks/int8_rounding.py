"""int8 export: how many of a float student's actions its int8 file keeps, side by side, with the
inner layers' weights rounded
  - each to its nearest step (what the quantisers do by themselves),
  - on calibration states, keeping the layer's outputs alike (plain GPTQ),
  - on calibration states, keeping the greedy action's margin (learners/quantise.py),
  - the same after equalising the layers' inputs,
and what `qdistill export --int8` wrote: the one of the last two that keeps more actions on the
calibration states.

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


COLUMNS = ("nearest", "outputs", "margin", "equalised", "export")


def agreements(run: Path, student: str | None, fmt: str, states: int) -> dict[str, object]:
    from qdistill.cluster import export as ex
    from qdistill.learners import export as formats
    from qdistill.learners import quantise

    found = ex.find_student(run, student)
    name, ckpt = found.name, found.parts[0].student
    float_student = ckpt.policy()
    held_out = ex.held_out_states(ckpt.env_id, float_student.act, states, ex.EXPORT_SEED)
    calibration = ex.held_out_states(ckpt.env_id, float_student.act, states, ex.CALIBRATION_SEED)
    wanted = float_student.act(held_out)
    row: dict[str, object] = {"run": str(run), "env": ckpt.env_id, "student": name, "format": fmt}
    net, inner = ckpt.network(), formats.inner_linears(ckpt.network())
    # weights already on the int8 grid are written as they are when no calibration states are given
    variants = (("nearest", net, None), ("outputs", quantise.on_int8_grid(net, inner, calibration, by_margin=False), None),
                ("margin", quantise.on_int8_grid(net, inner, calibration), None),
                ("equalised", quantise.for_int8(net, inner, calibration), None), ("export", net, calibration))
    with tempfile.TemporaryDirectory() as tmp:
        for label, prepared, cal in variants:
            path = Path(tmp) / f"{label}{formats.SUFFIX[fmt]}"
            choice = formats.write(prepared, path, fmt, int8=True, obs_shape=ckpt.obs_shape, calibration=cal)
            act = formats.one_at_a_time(formats.runner(path, fmt))
            row[label] = float(np.mean(act(held_out) == wanted))
    row["export_equalised"] = choice["inputs_equalised"]
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
        print(f"  {r['env']} {r['student']}: " + ", ".join(f"{k} {r[k]:.2%}" for k in COLUMNS),
              file=sys.stderr, flush=True)
    print(f"\nint8 ({args.format}) actions equal to the float student's, {args.states:,} held-out states, one per call\n")
    print("| run | env | student | nearest | outputs alike (GPTQ) | margin kept | inputs equalised, margin kept "
          "| export (its choice) | flips removed |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        removed = 1 - (1 - r["export"]) / (1 - r["nearest"]) if r["nearest"] < 1 else 0.0
        choice = "equalised" if r["export_equalised"] else "margin"
        print(f"| {r['run']} | {r['env']} | {r['student']} | {r['nearest']:.2%} | {r['outputs']:.2%} | {r['margin']:.2%} "
              f"| {r['equalised']:.2%} | {r['export']:.2%} ({choice}) | {removed:.0%} |")
    print(f"\nreproduce: python benchmarks/int8_rounding.py {' '.join(args.runs)} --format {args.format} --states {args.states}")
    if args.json:
        Path(args.json).write_text(json.dumps({"format": args.format, "states": args.states, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
