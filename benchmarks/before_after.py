"""Before and after a change that must not change behaviour, in one run on the same machine: time to
a CartPole student from one teacher, and throughput.py's collection and learner rows, per tree.

    python benchmarks/before_after.py --before f4866e8 --seeds 0 1 2 --json benchmarks/results/before_after.json

--before: a git revision; --after: a revision or a directory (default: this working tree, as it is at
the start). Each tree is copied to a temporary directory and run with PYTHONPATH=D, D holding only
`qdistill -> copy`, so `import qdistill` finds it before the editable install, in the driver and in its
Ray workers (checked first). One teacher is trained, by --before; then per seed, trees interleaved
(who goes first alternates): `qdistill run --teacher T --seed S` timed as a whole command to the
env's target, and the tree's own throughput.py rows (the seed only repeats them). Not in the tests.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
KINDS = ("student", "throughput")
CLI = [sys.executable, "-m", "qdistill.cluster.cli"]
STUDENT = [("wall_s", "wall s", ".1f"), ("student_return", "student return", ".1f"), ("env_steps", "env steps", ",.0f")]
THROUGHPUT = [("collection", "collection env steps/s", ",.0f"), ("plain loop", "learner plain loop rows/s", ",.0f"),
              ("from buffer", "learner from buffer rows/s", ",.0f")]
# What each tree's throughput measurement runs: its throughput.py's own functions for those rows (its
# main would also run the limit and full rows, which take as long again and are not asked for), with
# one more warm-up window for collection: its one warm-up window is also the actors' start-up.
MEASURE = ("import json, os, sys\nsys.path.insert(0, sys.argv[1])\nfrom benchmarks import throughput as t\n"
           "env, cores, seconds, windows = sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])\n"
           "os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:cores])  # as its main does\n"
           "collection = t.collection(env, cores, 32, 2048, seconds, windows + 1)[1:]\n"
           "plain, buffer, setup = t.learner(env, cores, seconds, windows, None)\n"
           "print(json.dumps({'collection': collection, 'plain loop': plain, 'from buffer': buffer, 'setup': setup}))\n")
# Where `qdistill` comes from in a tree's driver and in a Ray worker it starts.
WHERE = ("import json, logging, os, ray, qdistill\n"
         "ray.init(address='local', num_cpus=1, include_dashboard=False, logging_level=logging.ERROR)\n"
         "where = ray.remote(lambda: os.path.realpath(__import__('qdistill').__file__))\n"
         "print(json.dumps([os.path.realpath(qdistill.__file__), ray.get(where.remote())]))\n")


@dataclass(frozen=True)
class Tree:
    name: str  # "before" or "after"
    label: str  # the revision, or the working tree copied
    src: Path  # the copy: the repository root, i.e. the package
    path: Path  # PYTHONPATH: a directory holding only `qdistill -> src`


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def git(*args: str, repo: Path = REPO) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True).stdout.strip()


def call(cmd: list[str], tree: Tree, *, timeout: float) -> str:
    """Run `cmd` with `tree` as `qdistill` and an embedded Ray runtime (RAY_ADDRESS dropped), in a process
    group of its own (its Ray processes go with it on a timeout); its stdout, or RuntimeError."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | {"PYTHONPATH": str(tree.path)}
    proc = subprocess.Popen(cmd, cwd=tree.path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"timed out after {timeout:.0f} s: {' '.join(cmd)}") from None
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    if proc.returncode:
        raise RuntimeError(f"exit {proc.returncode}: {' '.join(cmd)}\n{err[-3000:]}")
    return out


def make_tree(name: str, rev_or_dir: str | None, tmp: Path) -> Tree:
    """A revision's files, or a working tree's (tracked and untracked but not ignored, as they are now:
    edits during the run change nothing), under `tmp`; checked to be what a driver and its Ray workers import."""
    src = tmp / f"src-{name}"
    if rev_or_dir is None or Path(rev_or_dir).is_dir():
        repo = Path(rev_or_dir or REPO).resolve()
        for file in filter(None, git("ls-files", "-z", "-co", "--exclude-standard", repo=repo).split("\0")):
            if (repo / file).is_file():  # not a deletion yet to be committed
                (src / file).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(repo / file, src / file)
        dirty = " + uncommitted changes" if git("status", "--porcelain", repo=repo) else ""
        label = f"{repo} at {git('rev-parse', '--short', 'HEAD', repo=repo)}{dirty}"
    else:
        label = git("rev-parse", "--short", f"{rev_or_dir}^{{commit}}")  # the same commit all run long
        git("archive", "--output", str(tmp / f"{name}.tar"), label)
        shutil.unpack_archive(tmp / f"{name}.tar", src)
    (tmp / f"path-{name}").mkdir()
    (tmp / f"path-{name}" / "qdistill").symlink_to(src, target_is_directory=True)
    tree = Tree(name, label, src.resolve(), tmp / f"path-{name}")
    driver, worker = json.loads(call([sys.executable, "-c", WHERE], tree, timeout=180).splitlines()[-1])
    for who, file in (("driver", driver), ("Ray worker", worker)):
        if Path(file).parent != tree.src:
            raise RuntimeError(f"{tree.name} ({tree.label}): the {who} imported qdistill from {file}, not from {tree.src}")
    log(f"{tree.name} ({tree.label}): qdistill from {tree.src} in the driver and in a Ray worker")
    return tree


def train_teacher(tree: Tree, args: argparse.Namespace, tmp: Path) -> tuple[Path, float]:
    """One teacher for every student run (teacher_best.pt before the refactor, teacher-best.pt after)."""
    out = tmp / "teacher"
    log(f"training a {args.env} teacher with {tree.name} ({tree.label}) (at most {args.teacher_time:g} s)")
    call([*CLI, "train-teacher", "--env", args.env, "--seed", "0", "--time", str(args.teacher_time), "--out", str(out),
          "--quiet"], tree, timeout=args.teacher_time + 300)
    summary = json.loads((out / "summary.json").read_text())
    for path in (out / "checkpoints" / "teacher_best.pt", out / "checkpoints" / "teacher-best.pt"):
        if path.is_file():
            log(f"teacher {path}: greedy return {summary['teacher']['eval_return_mean']:.1f}")
            return path, summary["teacher"]["eval_return_mean"]
    raise RuntimeError(f"no teacher checkpoint in {out / 'checkpoints'}: {sorted(os.listdir(out / 'checkpoints'))}")


def student(tree: Tree, seed: int, args: argparse.Namespace, tmp: Path) -> dict[str, object]:
    """Wall seconds of the whole `qdistill run` from the teacher to the target, and its summary's figures."""
    out = tmp / f"run-{tree.name}-{seed}"
    start = time.monotonic()
    call([*CLI, "run", "--env", args.env, "--teacher", str(args.teacher), "--seed", str(seed), "--time", str(args.time),
          "--out", str(out), "--quiet"], tree, timeout=args.time + 300)
    wall, summary = time.monotonic() - start, json.loads((out / "summary.json").read_text())
    name, figures = next(iter(summary["students"].items()))
    return {"wall_s": wall, "student_return": figures["eval_return_mean"], "env_steps": summary["env_steps"],
            "student": name, "stop_reason": summary["stop_reason"], "distill_wall_s": summary["distill_wall_s"]}


def throughput(tree: Tree, seed: int, args: argparse.Namespace, tmp: Path) -> dict[str, object]:
    """The tree's own benchmarks/throughput.py collection and learner measurements, at its default
    envs and steps per call; each figure the median of its windows."""
    out = json.loads(call([sys.executable, "-c", MEASURE, str(tree.src), args.env, str(args.cores),
                           str(args.seconds), str(args.repeats)], tree,
                          timeout=300 + 6 * args.seconds * (args.repeats + 1)).splitlines()[-1])
    if 0 in out["collection"]:
        log(f"throughput, {tree.name} ({tree.label}), seed {seed}: collection windows {out['collection']}: "
            "in a window of 0 no actor call finished; use longer --seconds")
    return {**{k: statistics.median(v) for k, v in out.items() if k != "setup"}, "windows": out}


def measure(kind: str, tree: Tree, seed: int, args: argparse.Namespace, tmp: Path) -> dict[str, object]:
    log(f"{kind}, {tree.name} ({tree.label}), seed {seed}: start")
    start = time.monotonic()
    try:
        row = (student if kind == "student" else throughput)(tree, seed, args, tmp)
        log(f"{kind}, {tree.name} ({tree.label}), seed {seed}: done in {time.monotonic() - start:.1f} s")
    except Exception as exc:  # noqa: BLE001 -- one failed run is a figure missing, not a benchmark lost
        row = {"error": str(exc)}
        log(f"{kind}, {tree.name} ({tree.label}), seed {seed}: FAILED after {time.monotonic() - start:.1f} s: {exc}")
    return {"kind": kind, "tree": tree.name, "seed": seed, **row}


def table(title: str, figures: list[tuple[str, str, str]], rows: list[dict], trees: list[Tree]) -> dict:
    """Per figure and tree: median (min–max) over the seeds that ran, and the after/before ratio."""
    print(f"{title}\n{'figure':<28}" + "".join(f"{t.name:>32}" for t in trees) + f"{'after/before':>14}")
    medians: dict[str, dict[str, float]] = {}
    for key, name, fmt in figures:
        cells = []
        for tree in trees:
            values = [r[key] for r in rows if r["tree"] == tree.name and key in r]
            if values:
                medians.setdefault(key, {})[tree.name] = med = statistics.median(values)
                cells.append(f"{med:{fmt}} ({min(values):{fmt}}–{max(values):{fmt}}) n={len(values)}")
            else:
                cells.append("no runs")
        m = medians.get(key, {})
        ratio = f"{m['after'] / m['before']:.3f}" if len(m) == 2 and m["before"] else "-"
        print(f"{name:<28}" + "".join(f"{c:>32}" for c in cells) + f"{ratio:>14}")
    return medians


def report(args: argparse.Namespace, trees: list[Tree], rows: list[dict], teacher_return: float | None) -> None:
    students = [r for r in rows if r["kind"] == "student"]
    teacher = f"teacher return {teacher_return:.1f}" if teacher_return is not None else f"teacher {args.teacher}"
    print(f"\nbefore: {trees[0].label}; after: {trees[1].label}\nseeds {' '.join(map(str, args.seeds))}, "
          "trees interleaved per seed, alternating which goes first\n")
    med_s = table(f"Time to a {args.env} student (`qdistill run --teacher`, whole command, {teacher}, "
                  f"cap {args.time:g} s)", STUDENT, students, trees)
    reached = {t.name: sum(r.get("stop_reason") == "target" for r in students if r["tree"] == t.name) for t in trees}
    print("stopped on reaching the target: " + ", ".join(f"{n} {k}/{len(args.seeds)}" for n, k in reached.items()) + "\n")
    med_t = table(f"throughput.py ({args.cores} cores, median of {args.repeats} windows of {args.seconds:g} s per run)",
                  THROUGHPUT, [r for r in rows if r["kind"] == "throughput"], trees)
    print("failed runs (their errors are in --json): " + (", ".join(f"{r['kind']} {r['tree']} seed {r['seed']}"
                                                                    for r in rows if "error" in r) or "none"))
    print(f"\nreproduce: python benchmarks/before_after.py --before {args.before}"
          + (f" --after {args.after}" if args.after else "") + f" --seeds {' '.join(map(str, args.seeds))}"
          + f" --env {args.env} --teacher-time {args.teacher_time:g} --time {args.time:g} --cores {args.cores}"
          + f" --seconds {args.seconds:g} --repeats {args.repeats} --kinds {' '.join(args.kinds)}"
          + (" --teacher TEACHER.pt" if teacher_return is None and "student" in args.kinds else ""))
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"args": vars(args), "trees": {t.name: t.label for t in trees}, "teacher_return": teacher_return,
             "median": {"student": med_s, "throughput": med_t}, "runs": rows}, indent=2, default=str) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", required=True, help="git revision")
    parser.add_argument("--after", help="git revision or directory (default: this working tree, as it is)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--env", default="CartPole-v1")
    parser.add_argument("--teacher", type=Path, help="teacher checkpoint (default: train one with --before)")
    parser.add_argument("--teacher-time", type=float, default=300, help="train-teacher's wall-clock budget, s")
    parser.add_argument("--time", type=float, default=300, help="each student run's wall-clock budget, s")
    parser.add_argument("--cores", type=int, default=len(os.sched_getaffinity(0)), help="throughput.py --cores")
    parser.add_argument("--seconds", type=float, default=5.0, help="throughput.py --seconds")
    parser.add_argument("--repeats", type=int, default=5, help="throughput.py --repeats")
    parser.add_argument("--kinds", nargs="+", choices=KINDS, default=list(KINDS), help="what to measure (default both)")
    parser.add_argument("--json", help="also write every run's figures here")
    args = parser.parse_args()
    if args.teacher is not None and not args.teacher.is_file():
        parser.error(f"--teacher {args.teacher} is not a file")
    with tempfile.TemporaryDirectory(prefix="before_after-") as tmp_dir:  # removed at the end, on an error or Ctrl-C too
        tmp = Path(tmp_dir)
        trees = [make_tree("before", args.before, tmp), make_tree("after", args.after, tmp)]
        teacher_return = None
        if args.teacher is None and "student" in args.kinds:
            args.teacher, teacher_return = train_teacher(trees[0], args, tmp)
        args.teacher = args.teacher.resolve() if args.teacher else None
        rows = []
        for i, seed in enumerate(args.seeds):
            for tree in (trees if i % 2 == 0 else trees[::-1]):
                rows += [measure(kind, tree, seed, args, tmp) for kind in args.kinds]
    report(args, trees, rows, teacher_return)


if __name__ == "__main__":
    main()
