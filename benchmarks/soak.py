"""Soak: a long run with the rollout actors at full rate and a deliberately slow learner; is memory
flat? RSS of every process of the run (the CLI, Ray's GCS and raylet, every worker) and the object
store's use, sampled every few seconds; growth after warm-up is the figure.

    python benchmarks/soak.py --minutes 10

The run: `qdistill run --env CartPole-v1 --teacher T --time S --no-target --actors N
--actor-cpus 2/N --envs-per-actor 32 --students 256x256x256 --replay-ratio 0.5` (N = --actors, 2) — three-layer 256-wide students at
half a learner step per env step make the learner the slow side, so the actors would outrun it
were they not held back. The teacher is an untrained 256x256 network: memory does not depend on
its quality. Growth = median of the last fifth of samples against the median of the first fifth
after warm-up (the first `--warmup` seconds are left out). Not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import psutil


def _teacher(path: Path) -> None:
    from qdistill.learners import checkpoint
    from qdistill.learners.networks import QNetwork, to_numpy

    checkpoint.save(path, checkpoint.Checkpoint("256x256", (4,), 2, "CartPole-v1", 0,
                                                to_numpy(QNetwork("256x256", (4,), 2).state_dict())))


def _role(proc: psutil.Process) -> str:
    cmd = proc.cmdline()
    if cmd and cmd[0].startswith("ray::"):
        return cmd[0].split(".")[0]  # ray::RolloutActor.collect → ray::RolloutActor
    if any("qdistill.cluster.cli" in c for c in cmd):
        return "qdistill run (driver)"
    script = next((Path(c).name for c in cmd if c.endswith(".py")), None)  # Ray's Python helpers
    return script or proc.name()


def _rss(root: psutil.Process) -> dict[str, float]:
    """MiB of resident memory per role (processes of one role summed)."""
    out: dict[str, float] = defaultdict(float)
    for proc in [root, *root.children(recursive=True)]:
        try:
            out[_role(proc)] += proc.memory_info().rss / 2**20
        except psutil.Error:
            pass
    return dict(out)


def _object_store(root: psutil.Process) -> float | None:
    """MiB the object store holds, from `ray memory --stats-only` against the run's own GCS."""
    try:
        raylet = next(p for p in root.children(recursive=True) if p.name() == "raylet")
        gcs = next(a.split("=", 1)[1] for a in raylet.cmdline() if a.startswith("--gcs-address"))
    except (StopIteration, psutil.Error):
        return None
    for env in (os.environ, {**os.environ, "RAY_AUTH_MODE": "token"}):  # as the runtime was started
        out = subprocess.run(["ray", "memory", "--stats-only", "--address", gcs], capture_output=True, text=True,
                             timeout=60, env=env).stdout
        m = re.search(r"Plasma memory usage (\d+) MiB", out)
        if m:
            return float(m.group(1))
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--every", type=float, default=5.0, help="seconds between samples")
    parser.add_argument("--warmup", type=float, default=60.0, help="seconds left out at the start")
    parser.add_argument("--actors", type=int, default=2, help="rollout actors, sharing 2 CPUs of Ray's (--actor-cpus 2/N)")
    parser.add_argument("--json", help="also write the samples here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        teacher, out = Path(tmp) / "teacher.pt", Path(tmp) / "run"
        _teacher(teacher)
        cmd = [sys.executable, "-m", "qdistill.cluster.cli", "run", "--env", "CartPole-v1", "--teacher", str(teacher),
               "--time", str(args.minutes * 60), "--no-target", "--actors", str(args.actors),
               "--actor-cpus", f"{2 / args.actors:g}", "--envs-per-actor", "32",
               "--students", "256x256x256", "--replay-ratio", "0.5", "--out", str(out), "--quiet"]
        started = time.monotonic()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
        root = psutil.Process(proc.pid)
        samples = []
        end = args.minutes * 60 - 2 * args.every  # not while the run winds down
        while proc.poll() is None:
            time.sleep(args.every)
            if proc.poll() is not None or time.monotonic() - started > end:
                continue
            samples.append({"t": round(time.monotonic() - started, 1), "rss": _rss(root),
                            "object_store_mib": _object_store(root)})
        summary = json.loads((out / "summary.json").read_text())
    steady = [s for s in samples if s["t"] >= args.warmup]
    fifth = max(len(steady) // 5, 1)
    first, last = steady[:fifth], steady[-fifth:]
    roles = sorted({r for s in steady for r in s["rss"]}, key=lambda r: -steady[-1]["rss"].get(r, 0))

    def med(rows, key):
        values = [key(s) for s in rows if key(s) is not None]
        return statistics.median(values) if values else None

    print(f"soak: {args.minutes:g} min, {args.actors} actors, {summary['env_steps']:,} env steps, {summary['learner_steps']:,} learner "
          f"steps, {len(samples)} samples every {args.every:g} s (warm-up {args.warmup:g} s left out)")
    print(f"{'process':<28} {'MiB at start':>12} {'MiB at end':>11} {'growth':>8}")
    rows = [(role, lambda s, r=role: s["rss"].get(r)) for role in roles]
    rows += [("all processes", lambda s: sum(s["rss"].values())), ("object store", lambda s: s["object_store_mib"])]
    for name, key in rows:
        a, b = med(first, key), med(last, key)
        growth = f"{100 * (b - a) / a:+.1f}%" if a and b is not None else "-"
        print(f"{name:<28} {a if a is not None else float('nan'):>12.1f} {b if b is not None else float('nan'):>11.1f} "
              f"{growth:>8}")
    print(f"\nreproduce: python benchmarks/soak.py --minutes {args.minutes:g} --every {args.every:g} "
          f"--warmup {args.warmup:g} --actors {args.actors}")
    if args.json:
        Path(args.json).write_text(json.dumps(samples, indent=1) + "\n")


if __name__ == "__main__":
    main()
