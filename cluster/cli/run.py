"""`qdistill run` and `qdistill train-teacher`: resolve, check, start the run's actor, follow it."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import threading
import time

from ...actors.envs import EnvInfo
from ..config.resolve import distill_run, teacher_first, teacher_run
from ..config.runs import RunConfig
from ..jobs import Job
from ..rundir import check_writable
from ..rundir.tables import print_rows
from .stopping import StopSignals, StopWaiting


def train_teacher(args: argparse.Namespace, started: float, signals: StopSignals) -> int:
    config, info = teacher_run(args)
    if not args.resume:
        check_writable(config.out)
    return _start(args, Job("train-teacher", config, resume=bool(args.resume), started_at=started,
                            device=_device(args)), info, signals)


def run(args: argparse.Namespace, started: float, signals: StopSignals) -> int:
    config, info = distill_run(args)
    if not args.resume:
        check_writable(config.out)
    return _start(args, Job("run", config, teacher_first(args, config, info), resume=bool(args.resume),
                            started_at=started, device=_device(args)), info, signals)


# conv: two small convolutions before a narrow layer keep more per parameter than one before a wide
# one (MinAtar Breakout, benchmarks/README.md: c8k3s1-c8k3s1-16 kept 94.9% at 4.2% of the teacher's
# parameters, c8k3s1-16 88.1% at 6.5%)
CANDIDATES = {"mlp": ("8", "16", "32", "64", "8x8", "16x16", "32x32", "64x64", "128x128", "256x256"),
              "conv": ("c4k3s1-8", "c4k3s1-16", "c8k3s1-c8k3s1-16", "c8k3s1-c8k3s1-32", "c16k3s1-c16k3s1-16",
                       "c16k3s1-32", "c16k3s1-128")}


SEARCH_EVAL_CI = 5.0  # a search's final evaluation plays on until each % of teacher's interval is this narrow


def shrink(args: argparse.Namespace, started: float, signals: StopSignals) -> int:
    """`qdistill shrink`: a `run` whose students are the candidates of a size search."""
    from dataclasses import replace

    from ...learners.specs import shares
    from ...learners.specs import normalized, parse_spec
    from ..config.resolve import check_networks

    if args.students is not None:
        raise ValueError("shrink distils candidates, not students: give them with --candidates A,B,…")
    args.students = args.candidates
    config, info = distill_run(args)
    if not args.resume:
        candidates = config.distill.students if args.candidates else \
            tuple(normalized(c) if parse_spec(config.distill.students[0]).normalize else c
                  for c in CANDIDATES["conv" if info.pixels else "mlp"]
                  if not config.tasks or shares(c, config.task_inputs))  # several tasks: candidates that share a layer
        config = replace(config, search_keep=0.95 if args.keep is None else args.keep,
                         eval_ci=SEARCH_EVAL_CI if config.eval_ci is None else config.eval_ci, distill=replace(config.distill, students=candidates))
        check_networks(config, info)
        check_writable(config.out)
    elif config.search_keep is None:
        raise ValueError(f"run directory {config.out!r} is not a size search's: resume it with `qdistill run --resume`")
    return _start(args, Job("run", config, teacher_first(args, config, info), resume=bool(args.resume),
                            started_at=started, device=_device(args)), info, signals)


def _place(config: RunConfig, learner_resources: dict[str, float], info: EnvInfo) -> None:
    """Connect to Ray and refuse a rollout actor or learner no node can host, or a buffer the
    cluster's memory cannot hold, before anything is written."""
    from ...actors.wire import Schema
    from ..connect import connect
    from ..placement import check_feasible, check_memory

    connect(config.address, min_cpus=config.actors * config.actor_cpus + learner_resources.get("CPU", 0))
    check_feasible(config, learner_resources)
    check_memory(config, Schema.of(info, next_obs=config.next_obs).record_size)


def _check_buffer(config: RunConfig, info: EnvInfo) -> None:
    """A Redis buffer is reached and its prefix claimed (or found compatible) before anything starts."""
    if config.buffer == "ray":
        return
    from ...actors.redis_buffer import RedisBuffer, RedisSpec
    from ...actors.redis_connect import connect
    from ...actors.wire import Schema

    schema = Schema.of(info, next_obs=config.next_obs)
    capacity = config.capacity_for(schema.record_size)
    client = connect(config.buffer)  # reached and authenticated, or a one-line error
    try:
        limit = int(client.info("memory").get("maxmemory", 0))
    finally:
        client.close()
    need = capacity * schema.record_size
    if limit and need > limit:
        raise ValueError(f"a buffer of {capacity:,} transitions of {schema.record_size} bytes needs {need / 2**20:.1f} MiB: "
                         f"the redis server's maxmemory is {limit / 2**20:.1f} MiB; lower --buffer-capacity, cap it "
                         "with --buffer-bytes, or raise the server's maxmemory")
    RedisBuffer(RedisSpec(config.buffer, config.redis_prefix, capacity, config.chunk_size, schema)).close()


def _teacher_rows(summary: dict[str, object], out: str) -> list[tuple[str, str]]:
    teacher = summary["teacher"]
    tasks = summary.get("per_task", {"": teacher})  # a multi-task teacher: a greedy return per task
    returns = [(f"greedy return{f' {env}' if env else ''}", f"{t['eval_return_mean']:.1f} ± {t['eval_return_std']:.1f} "
                f"over {t['eval_episodes']} episodes") for env, t in tasks.items()]
    return [
        ("env", ", ".join(summary.get("tasks", [summary["env"]]))),
        ("stopped", summary["stop_reason"]),
        ("env steps", f"{summary['env_steps']:,}"),
        ("learner steps", f"{summary['learner_steps']:,}"),
        ("wall", f"{summary['wall_s']:.1f} s"),
        ("teacher", f"{teacher['net']}, {teacher['params']:,} params, version {teacher['version']}"),
        *returns,
        ("checkpoint", teacher["checkpoint"]),
        ("run directory", out),
    ]


def _print_summary(summary: dict[str, object], out: str) -> None:
    if "students" in summary:  # a distillation run
        from ..rundir.multitask import task_tables
        from ..rundir.report import table

        print(task_tables(summary) if "per_task" in summary else table(summary))
        if "search" in summary:
            from ..rundir.search import search_table

            search = summary["search"]
            whose = "every task's teacher's" if "per_task" in summary else "the teacher's"
            print(f"\nsize search, keeping {search['threshold_pct']:g}% of {whose} return:")
            print(search_table(summary))
            print_rows([("smallest that keeps it", f"{search['winner']} ({search['winner_checkpoint']})"
                         if search["winner"] else "none of the candidates left (see report.md)")])
        print_rows([
            ("stopped", f"{summary['stop_reason']} after {summary['distill_wall_s']:.1f} s of distillation "
                        f"({summary['wall_s']:.1f} s in all), {summary['env_steps']:,} env steps"),
            ("run directory", out),
        ])
    elif "teacher" in summary:  # train-teacher
        print_rows(_teacher_rows(summary, out))
    else:  # stopped while its teacher trained
        print_rows([("stopped", "while training the teacher; `qdistill run --resume` carries on"),
                     ("run directory", out)])


def _device(args: argparse.Namespace) -> str:
    return "cuda" if args.learner_resources.get("GPU", 0) > 0 else "cpu"


def _finish_stopped(job: Job) -> dict[str, object]:
    """A teacher run asked to stop before it began: it needs no actor (it starts none when asked to
    stop first), so its checkpoints, state and summary are written in this process."""
    from dataclasses import replace

    from ..control import RunControl
    from ..jobs import execute

    control = RunControl()
    control.request_stop()
    return execute(replace(job, device="cpu"), control)  # nothing trains


class FinishBeside:
    """A context manager around Ray's start: a thread that watches for a stop signal, and finishes a
    teacher run stopped then beside `ray.init` (which cannot be interrupted, and has seconds to go),
    so the command can exit as soon as Ray is up and shut down again. (The signal handler only
    takes note: starting a thread from it could deadlock on a lock the main thread holds.)"""

    POLL_S = 0.05

    def __init__(self, job: Job, signals: StopSignals) -> None:
        self.job, self.signals = job, signals
        self.over = False  # Ray is up (or failed to start): the watch ends
        self.finishing = False
        self.summary: dict[str, object] | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._watch, name="qdistill-stop-watch", daemon=True)

    def __enter__(self) -> FinishBeside:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.over = True
        if exc[0] is not None and not issubclass(exc[0], StopWaiting):
            self.thread.join()  # Ray did not start (or the run was refused): what a stop began is finished first

    def _watch(self) -> None:
        while not self.over:
            if self.signals.requested:
                self.finishing = True
                # below Ray's starting processes: ray.init is what the exit waits on first
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
                try:
                    self.summary = _finish_stopped(self.job)
                except BaseException as exc:  # raised in the main thread by `result`
                    self.error = exc
                return
            time.sleep(self.POLL_S)

    def result(self) -> dict[str, object]:
        """The summary: from the thread, or (the stop came as Ray's start ended) written now."""
        self.thread.join()
        if not self.finishing:
            return _finish_stopped(self.job)
        if self.error is not None:
            raise self.error
        return self.summary


def _start(args: argparse.Namespace, job: Job, info: EnvInfo, signals: StopSignals) -> int:
    """Check the buffer and placement, then start the run's actor: follow it, or leave it running.
    A stop signal from the start on asks that run to stop once it is there (so that its directory
    is complete and resumable); a second one stops waiting."""
    import ray

    from ..background import launch, run_name, wait_started
    from .progress import follow

    config = job.config
    if args.detach and config.address is None and "RAY_ADDRESS" not in os.environ:
        raise ValueError("--detach needs a running Ray cluster to outlive this command: start one with "
                         "`ray start --head` and give --address (e.g. --address auto)")
    _check_buffer(config, info)
    beside = FinishBeside(job, signals) if job.command == "train-teacher" and not args.detach else None
    with beside or contextlib.nullcontext():
        _place(config, args.learner_resources, info)
    if signals.requested and beside:
        signals.announce()
        _print_summary(beside.result(), config.out)
        return 0
    actor, ref = launch(job, detach=args.detach, learner_resources=args.learner_resources)
    name = run_name(config.out)
    if args.detach:
        status = wait_started(actor)
        if status["state"] == "failed":
            ray.get(ref)  # raises the run's error
        if signals.requested:  # stopped while it started: it stops too, and says so where it is followed
            signals.announce()
            actor.stop.remote()
        print_rows([("run", f"{name} started in the background ({status['state']}, {status.get('phase')})"),
                     ("follow it", f"qdistill status {name}"),
                     ("scale it", f"qdistill scale {name} --actors N"),
                     ("stop it", f"qdistill stop {name}"),
                     ("run directory", config.out)])
        return 0
    try:
        summary = follow(actor, ref, signals, show_progress=not args.quiet)
    except ray.exceptions.RayActorError:
        print(f"qdistill: error: the run's learner died and was not restarted (3 restarts at most): carry on "
              f"with `qdistill {job.command} --resume {config.out}`", file=sys.stderr)
        return 1
    except StopWaiting as exc:
        print(f"qdistill: stopped waiting ({exc}): `qdistill {job.command} --resume {config.out}` carries on "
              "from the run's last saved state", file=sys.stderr)
        return exc.exit_status
    finally:
        ray.kill(actor)
    _print_summary(summary, config.out)
    return 0
