"""The commands that manage a run already on the cluster, by name: status, scale, swap-teacher, stop."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from ...actors.envs import describe
from ...learners import checkpoint
from ..rundir.tables import print_rows


def _control_address(args: argparse.Namespace) -> None:
    from ..connect import connect

    connect(args.address or (None if "RAY_ADDRESS" in os.environ else "auto"))


def status(args: argparse.Namespace) -> int:
    import ray

    from ..background import find, runs

    _control_address(args)
    names = [args.run] if args.run else runs()
    statuses = [ray.get(find(n).status.remote()) for n in names]
    if args.json:
        print(json.dumps(statuses if not args.run else statuses[0], indent=2, default=float))
    elif not statuses:
        print("no qdistill runs on this cluster")
    for status in statuses if not args.json else []:
        print_rows(status_rows(status))
        print()
    return 0


def scale(args: argparse.Namespace) -> int:
    import ray

    if args.actors < 1:
        raise ValueError(f"--actors {args.actors} is not valid: expected an integer >= 1")
    actor, status = _running(args)
    fleet = status.get("actors", {})
    per_task = fleet.get("per_task")
    if args.task is not None and per_task is None:
        raise ValueError(f"--task {args.task!r}: run {status['run']!r} " + (
            "is still starting: scale a task's actors once it runs" if status["state"] == "starting" else
            "has one task: drop --task"))
    if args.task is not None and args.task not in per_task:
        raise ValueError(f"--task {args.task!r} is not a task of run {status['run']!r}: expected one of "
                         f"{', '.join(per_task)}")
    if args.task is None and per_task and args.actors % len(per_task):
        raise ValueError(f"--actors {args.actors} do not divide over run {status['run']!r}'s {len(per_task)} tasks: "
                         f"give a multiple of {len(per_task)}, or one task's with --task ENV")
    ray.get(actor.scale.remote(args.actors, args.task))
    was = per_task[args.task] if args.task else fleet.get("wanted", "?")
    print(f"run {status['run']}: rollout actors{f' of {args.task}' if args.task else ''} {was} → {args.actors} "
          f"(actors waiting for a node show as pending in `qdistill status {status['run']}`)")
    return 0


def _running(args: argparse.Namespace):
    """The run named on the command line, and its status; refused unless it is running."""
    import ray

    from ..background import find

    _control_address(args)
    actor = find(args.run)
    status = ray.get(actor.status.remote())
    if status["state"] not in ("starting", "running"):
        raise ValueError(f"run {status['run']!r} is {status['state']}: only a running run can be "
                         f"{'scaled' if args.command == 'scale' else 'given a new teacher'}")
    return actor, status


def swap_teacher(args: argparse.Namespace) -> int:
    import ray

    actor, status = _running(args)
    if status.get("phase") != "distill" or "teacher" not in status:
        raise ValueError(f"run {status['run']!r} is in its {status.get('phase')} phase: a teacher can be swapped "
                         "once it distills")
    info = describe(status["env"])
    teacher = checkpoint.load(args.checkpoint, env_id=info.env_id, obs_shape=info.obs_shape,
                              n_actions=info.n_actions, net=status["teacher"]["net"])
    ray.get(actor.swap_teacher.remote(teacher))
    print(f"run {status['run']}: teacher {args.checkpoint} handed over; it becomes version "
          f"{status['teacher']['version'] + 1} or later, and labels older than it are refreshed")
    return 0


def stop(args: argparse.Namespace) -> int:
    """Stop one run, or with --all every run on the cluster (a Kubernetes pre-stop hook's command):
    each is asked at once, then waited for."""
    import ray

    from ..background import find, runs

    if args.all == bool(args.run):
        raise ValueError("qdistill stop takes a run name or --all, not " + ("both" if args.all else "neither"))
    _control_address(args)
    names = runs() if args.all else [args.run]
    if not names:
        print_rows([("runs", "none on this cluster")])
        return 0
    actors = [find(name) for name in names]
    ray.get([actor.stop.remote() for actor in actors])
    deadline = time.monotonic() + args.timeout
    return max(_stopped(actor, deadline, args.timeout) for actor in actors)


def _stopped(actor, deadline: float, timeout: float) -> int:
    """Wait for a run asked to stop to finish; its rows, and 0 once it finished cleanly."""
    import ray

    status = ray.get(actor.status.remote())
    while status["state"] not in ("finished", "failed") and time.monotonic() < deadline:
        time.sleep(0.5)
        status = ray.get(actor.status.remote())
    if status["state"] not in ("finished", "failed"):
        print(f"qdistill: run {status['run']!r} did not finish within {timeout:g} s; it is still stopping "
              f"(see `qdistill status {status['run']}`)", file=sys.stderr)
        return 1
    if status["detached"]:
        ray.kill(actor)  # an attached run's own command ends it
    print_rows([("run", f"{status['run']} {status['state']} ({status.get('stop_reason') or status.get('error')})"),
                 ("run directory", status["out"]),
                 ("resume it", f"qdistill {status['command']} --resume {status['out']}")])
    return 0 if status["state"] == "finished" else 1


def _num(value: object, fmt: str = ".1f") -> str:
    return "-" if value is None else format(value, fmt)


def status_rows(status: dict[str, object]) -> list[tuple[str, str]]:
    age = time.time() - float(status["updated"])
    rows = [("run", f"{status['run']}: {status['state']}"
                    + (f", {status['phase']} phase" if status.get("phase") else "")
                    + (" (detached)" if status.get("detached") else "") + f", updated {age:.0f} s ago"),
            ("run directory", str(status["out"])),
            ("learner", f"on {status['node']} ({status['device']})")]
    if status.get("error"):
        rows.append(("error", str(status["error"])))
    if status.get("stop_reason"):
        rows.append(("stopped", str(status["stop_reason"])))
    progress = status.get("progress")
    if progress:
        total = progress["total"]
        rows.append(("progress", f"{progress['done']:,.0f}/{total:,.0f} {progress['unit']}"
                                 + (f" ({100 * progress['done'] / total:.0f}%)" if total else "")))
        rows.append(("env steps", f"{status['env_steps']:,} ({_num(status.get('steps_per_s'), ',.0f')}/s)"))
        rows.append(("learner steps", f"{status['learner_steps']:,}"))
        rows.append(("greedy return", "  ".join(f"{name} {_num(ret)}" for name, ret in status["returns"].items())))
    actors = status.get("actors")
    if actors:
        where = ", ".join(f"{node}: {n}" for node, n in actors["per_node"].items()) or "none yet"
        rows.append(("rollout actors", f"{actors['alive']} of {actors['wanted']} running ({where}); "
                                       f"{actors['pending']} pending, {actors['restarting']} restarting, "
                                       f"{actors['restarts']} restarts, {actors['collect_failures']} lost collects"))
        if actors.get("per_task"):
            rows.append(("actors per task", ", ".join(f"{env}: {n}" for env, n in actors["per_task"].items())))
    buffer = status.get("buffer")
    if buffer:
        rows.append(("buffer", f"{buffer['size']:,} of {buffer['capacity']:,} transitions"))
    if status.get("label_staleness") is not None:
        rows.append(("label staleness", f"{status['label_staleness']:.2f} teacher versions (mean, sampled)"))
    return rows
