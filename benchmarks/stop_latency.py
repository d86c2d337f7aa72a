"""How long a run takes to stop after SIGTERM or SIGINT, at each of five moments: Ray starting,
teacher training, distillation, the final evaluation, writing the report (the chains of
tests/e2e/test_signals.py, timed). Each row: the command's wall time up to the signal, and from
the signal to its exit (final checkpoints, state, summary and report written, Ray shut down).

    python -m benchmarks.stop_latency --repeats 3 --signal SIGTERM
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from tests.support.teachers import steady_teacher
from tests.support.stopping import Cli, final_evaluation, learning, newer, ray_starting

BUDGET = ["--steps", "100000000", "--no-target", "--quiet", "--actors", "1"]


def _stop(name: str, cli: Cli, moment, signal: str, rows: dict[str, list[tuple[float, float]]]) -> None:
    cli.wait_for(moment)
    before = time.time() - cli.started
    cli.signal(signal)
    ended = cli.finish()
    if ended.returncode != 0:
        sys.exit(f"{name}: exit {ended.returncode}\n{ended.stderr[-3000:]}")
    rows.setdefault(name, []).append((before, ended.after_signal_s))


def chains(folder: Path, signal: str, sigint: str, rows: dict[str, list[tuple[float, float]]]) -> None:
    teacher_out, out = folder / "teacher", folder / "run"
    cli = Cli(["train-teacher", "--env", "CartPole-v1", *BUDGET, "--out", str(teacher_out)], sigint=sigint)
    _stop("Ray starting", cli, lambda: ray_starting(cli.proc.pid), signal, rows)
    cli = Cli(["train-teacher", "--resume", str(teacher_out), "--quiet"], sigint=sigint)
    _stop("teacher training", cli, lambda: learning(teacher_out), signal, rows)
    cli = Cli(["run", "--env", "CartPole-v1", "--teacher", steady_teacher(folder / "teacher.pt"), *BUDGET, "--out", str(out)],
              sigint=sigint)
    _stop("distillation", cli, lambda: learning(out), signal, rows)
    steps = json.loads((out / "summary.json").read_text())["env_steps"] + 2000
    cli = Cli(["run", "--resume", str(out), "--steps", str(steps), "--quiet"], sigint=sigint)
    _stop("final evaluation", cli, lambda: final_evaluation(out, cli.started), signal, rows)
    steps = json.loads((out / "summary.json").read_text())["env_steps"] + 2000
    cli = Cli(["run", "--resume", str(out), "--steps", str(steps), "--quiet"], sigint=sigint)
    _stop("writing the report", cli, lambda: newer(out / "summary.json", cli.started), signal, rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--signal", default="SIGTERM", choices=["SIGTERM", "SIGINT"])
    parser.add_argument("--sigint-ignored", action="store_true", help="the command inherits SIGINT ignored")
    args = parser.parse_args()
    rows: dict[str, list[tuple[float, float]]] = {}
    for i in range(args.repeats):
        with tempfile.TemporaryDirectory(prefix="qdistill-stop-") as folder:
            chains(Path(folder), args.signal, "ignored" if args.sigint_ignored else "default", rows)
        print(f"repeat {i + 1}/{args.repeats} done", file=sys.stderr)
    kind = args.signal + (" (SIGINT inherited ignored)" if args.sigint_ignored else "")
    print(f"\n{kind} at each moment, {args.repeats} repeats: median [min–max] seconds\n")
    print("| moment | command ran before the signal | signal → exit |")
    print("|---|---|---|")
    for name, values in rows.items():
        before, after = zip(*values)
        print(f"| {name} | {statistics.median(before):.1f} [{min(before):.1f}–{max(before):.1f}] "
              f"| {statistics.median(after):.1f} [{min(after):.1f}–{max(after):.1f}] |")
    flags = f" --signal {args.signal}" + (" --sigint-ignored" if args.sigint_ignored else "")
    print(f"\nreproduce: python -m benchmarks.stop_latency --repeats {args.repeats}{flags}")


if __name__ == "__main__":
    main()
