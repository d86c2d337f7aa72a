"""What a `qdistill run` or `train-teacher` does once its input is checked: the job the run's actor
executes — train a teacher if needed, then distill (online or offline) — resuming from the run
directory's saved state when asked."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..actors.envs import EnvInfo, describe
from ..learners import checkpoint
from .config import DistillRunConfig, RunConfig, TeacherRunConfig
from .control import RunControl
from .rundir import RunDir, RunPaths


@dataclass(frozen=True)
class Job:
    command: str  # "run" or "train-teacher"
    config: RunConfig  # DistillRunConfig for "run", TeacherRunConfig for "train-teacher"
    teacher_config: TeacherRunConfig | None = None  # run without a teacher: train this one first
    resume: bool = False
    started_at: float = field(default_factory=time.time)  # epoch seconds: wall figures include start-up
    device: str = "cpu"


def execute(job: Job, control: RunControl) -> dict[str, object]:
    """Run the job to its end (budget, target, or a stop request); returns its summary."""
    info = describe(job.config.env)
    started = time.monotonic() - (time.time() - job.started_at)
    if job.command == "train-teacher":
        return _train_teacher(job.config, info, control, started, job)
    return _run(job, info, control, started)


def _train_teacher(cfg: TeacherRunConfig, info: EnvInfo, control: RunControl, started: float,
                   job: Job) -> dict[str, object]:
    from .driver.multitask_teacher import MultiTaskTeacherDriver
    from .driver.teacher import TeacherDriver

    control.publish(phase="teacher", progress=None)
    if cfg.tasks:  # one network for several tasks
        init = checkpoint.load_multitask(cfg.init) if cfg.init else None
        driver = MultiTaskTeacherDriver(cfg, [describe(env) for env in cfg.tasks], control=control, init=init,
                                        started=started, device=job.device, name=_teacher_name(job))
    else:
        init = checkpoint.load(cfg.init, env_id=info.env_id, obs_shape=info.obs_shape, n_actions=info.n_actions,
                               net=cfg.dqn.net) if cfg.init else None
        driver = TeacherDriver(cfg, info, control=control, init=init, started=started, device=job.device,
                               name=_teacher_name(job))
    state = RunPaths(cfg.out).state
    if job.resume and state.is_file():
        driver.restore(checkpoint.load_state(state))
    return driver.train()


def _teacher_name(job: Job) -> str:
    """What a teacher's Ray metrics are tagged with: its run's name, and RUN/teacher for a teacher
    trained inside a run (every such directory is called "teacher")."""
    name = Path(job.config.out).absolute().name
    return f"{name}/teacher" if job.command == "run" else name


def _teacher(job: Job, info: EnvInfo, control: RunControl, started: float) -> checkpoint.Checkpoint | None:
    """The run's teacher: kept in the run directory once known, else given, else trained first
    (or its interrupted training resumed). None when a stop came during teacher training."""
    cfg: DistillRunConfig = job.config  # type: ignore[assignment]
    kept = RunPaths(cfg.out).teacher
    if kept.is_file():
        return checkpoint.load(kept, env_id=info.env_id, obs_shape=info.obs_shape, n_actions=info.n_actions)
    if cfg.teacher:
        return checkpoint.load(cfg.teacher, env_id=info.env_id, obs_shape=info.obs_shape, n_actions=info.n_actions)
    if cfg.teacher_learns:  # a teacher learning from scratch in the run: version 0 is its initial network
        import torch

        from ..learners.networks import QNetwork, to_numpy

        torch.manual_seed(cfg.seed)
        net = QNetwork(cfg.dqn.net, info.obs_shape, info.n_actions)
        return checkpoint.Checkpoint(cfg.dqn.net, info.obs_shape, info.n_actions, cfg.env, 0, to_numpy(net.state_dict()))
    trained = _trained_teacher(job, info, control, started)
    return None if trained is None else checkpoint.load(trained)


def _trained_teacher(job: Job, info: EnvInfo, control: RunControl, started: float) -> Path | None:
    """The best checkpoint of the teacher a run without one trains first, into RUN/teacher (its
    interrupted training resumed); None when a stop came during that training."""
    tcfg = job.teacher_config
    done = RunPaths(tcfg.out).summary
    if not (done.is_file() and json.loads(done.read_text())["stop_reason"] != "stopped"):
        trained = _train_teacher(tcfg, info, control, started, job)
        if trained["stop_reason"] == "stopped":
            return None
    return RunPaths(tcfg.out).teacher_checkpoint("best")


def _run(job: Job, info: EnvInfo, control: RunControl, started: float) -> dict[str, object]:
    from .driver.distill import DistillDriver
    from .offline import run_offline

    cfg: DistillRunConfig = job.config  # type: ignore[assignment]
    run = RunDir(cfg.out)
    run.write_config(cfg.to_dict())
    if cfg.tasks:
        return _run_tasks(job, run, control, started)
    teacher = _teacher(job, info, control, started)
    if teacher is None:
        run.close()
        return {"env": cfg.env, "stop_reason": "stopped", "phase": "teacher",
                "teacher_dir": job.teacher_config.out}
    checkpoint.save(run.teacher, teacher)
    control.publish(phase=cfg.mode if cfg.mode == "offline" else "distill", progress=None)
    if cfg.mode == "offline":
        return run_offline(cfg, info, teacher, run=run, started=started)
    driver = DistillDriver(cfg, info, teacher, run=run, started=started, control=control, device=job.device)
    state = run.state
    if job.resume and state.is_file():
        driver.restore(checkpoint.load_state(state))
        run.log({"event": "resumed", **driver.counts(env_steps=driver.resumed_env_steps),
                 "buffer/lost": _last_buffer_size(run.metrics) if cfg.buffer == "ray" else 0})
    return driver.train()


def _run_tasks(job: Job, run: RunDir, control: RunControl, started: float) -> dict[str, object]:
    """A multi-task run: each task's teacher (its own checkpoint, or its part of a multi-task one, given
    or trained first)."""
    from .driver.multitask import MultiTaskDistillDriver

    cfg: DistillRunConfig = job.config  # type: ignore[assignment]
    infos = [describe(env) for env in cfg.tasks]
    whole = cfg.teacher
    if not cfg.teachers and whole is None:  # no teachers given: one multi-task teacher trained first
        whole = _trained_teacher(job, infos[0], control, started)
        if whole is None:
            run.close()
            return {"env": cfg.env, "tasks": list(cfg.tasks), "stop_reason": "stopped", "phase": "teacher",
                    "teacher_dir": job.teacher_config.out}
    teachers = [checkpoint.load(cfg.teachers.get(i.env_id, whole), env_id=i.env_id, obs_shape=i.obs_shape,
                                n_actions=i.n_actions) for i in infos]
    control.publish(phase="distill", progress=None)
    driver = MultiTaskDistillDriver(cfg, infos, teachers, run=run, started=started, control=control,
                                    device=job.device)
    if job.resume and run.state.is_file():
        driver.restore(checkpoint.load_state(run.state))
        run.log({"event": "resumed", **driver.counts(env_steps=driver.resumed_env_steps)})
    return driver.train()


def _last_buffer_size(metrics: Path) -> int:
    """The Ray buffer's size as last logged (every 2 s) before a resume: what its restart dropped,
    at least. A Redis buffer keeps its contents, and holds every row the actors reported (their
    sinks write each collect's rows before it returns); what a Redis crash lost in the segment
    the learner's death ended is not counted (the last segment's is, in summary.json)."""
    for line in reversed(metrics.read_text().splitlines()):
        record = json.loads(line)
        if "buffer/size" in record:
            return int(record["buffer/size"])
    return 0
