"""`qdistill eval`, `export` and `report`: what a finished run directory holds."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ...actors.envs import describe
from ...learners import checkpoint
from ..rundir import RunPaths


def evaluate(args: argparse.Namespace) -> int:
    """`qdistill eval`: a checkpoint file's greedy return, or a run directory's teacher and students."""
    from ...actors.evaluate import evaluate
    from ...actors.evaluator import Evaluator
    from ..rundir.report import policy_summary, table

    path = Path(args.path)
    if path.is_file():
        ckpt = checkpoint.load(path)
        describe(ckpt.env_id)
        result = evaluate(ckpt.env_id, ckpt.policy().act, episodes=args.episodes, seed=args.seed)
        print(f"{ckpt.env_id}  {ckpt.net}  greedy return {result.mean:.1f} ± {result.std:.1f} over {result.episodes} episodes")
        return 0
    paths = RunPaths(path)
    if not paths.teacher.is_file():
        raise ValueError(f"run directory {str(path)!r} has no checkpoints/teacher.pt: expected a `qdistill run` "
                         "directory, or a checkpoint file")
    teacher = checkpoint.load(paths.teacher)
    names = paths.students()
    if not names:
        raise ValueError(f"run directory {str(path)!r} holds no student checkpoints")
    students = {n: paths.load_student(n, teacher) for n in names}
    describe(teacher.env_id)
    ev = Evaluator(teacher.env_id, teacher_net=teacher.net, students=tuple(names), obs_shape=teacher.obs_shape,
                   n_actions=teacher.n_actions, episodes=args.episodes, seed=args.seed)
    ev.load_teacher(teacher.version, teacher.weights)
    for n, c in students.items():
        ev.load_students(c.version, {n: c.weights})
    print(table(policy_summary(teacher, students, ev.evaluate(final=True))))
    return 0


def export(args: argparse.Namespace) -> int:
    """`qdistill export`: a run's student for a device, verified against the float student."""
    from .. import export

    req = export.Request(Path(args.path), args.student, args.format, args.int8, Path(args.out) if args.out else None,
                         args.min_agreement, args.states, args.episodes, args.task)
    sidecar = export.export(req, say=lambda text: print(f"qdistill export: {text}", file=sys.stderr, flush=True))
    out = Path(args.out) if args.out else RunPaths(args.path).export
    print(f"wrote {out / sidecar['file']} and {sidecar['file']}.json")
    checks = export.verifications(sidecar)
    for env, check in checks:
        print(f"{env + ': ' if len(checks) > 1 else ''}agreement with the float student: {check['agreement']:.2%} of "
              f"{check['held_out_states']:,} held-out states; greedy return {check['return_exported']['mean']:.1f} ± "
              f"{check['return_exported']['std']:.1f} (float student {check['return_float']['mean']:.1f} ± "
              f"{check['return_float']['std']:.1f}) over {check['episodes']} episodes")
    print(export.table(sidecar))
    return 0


def report(args: argparse.Namespace) -> int:
    """`qdistill report`: a finished run's plots and report.md, drawn again."""
    from ..rundir.report import regenerate

    for path in regenerate(Path(args.path)):
        print(f"wrote {path}")
    return 0
