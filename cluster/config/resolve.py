"""The one config resolver: the env's preset, then a config file, then flags; or a run's own
config when it resumes. Every command that starts a run (and `config show`) resolves here."""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable

from ...actors.dynamics import check_change
from ...actors.envs import EnvInfo, describe
from ...actors.redis_connect import check_tls, with_tls
from ...learners import checkpoint
from ...learners.configs import parse_students
from ...learners.specs import check_shares
from ...learners.specs import check_fits, normalized, parse_spec
from . import files
from .presets import distill_config, teacher_config
from .runs import DistillRunConfig, RunConfig, TeacherRunConfig

# a rediss:// buffer's CA, client certificate and key: flags (and config-file keys) that go into its URL
TLS_FLAGS = ("buffer_ca", "buffer_cert", "buffer_key")
# certificates are rotated and a buffer may move: a resumed run may be given its files again
RESUME_FLAGS = ("steps", "time", "actors", "address", "buffer", *TLS_FLAGS, "detach", "learner_resources", "quiet")


def teacher_run(args: argparse.Namespace) -> tuple[TeacherRunConfig, EnvInfo]:
    """`qdistill train-teacher`'s config."""
    def own(init_path: str | None, file: dict[str, object], info: EnvInfo) -> dict[str, object]:
        net, tasks = args.net or file.get("dqn", {}).get("net"), _tasks(args, file)
        if tasks and init_path:  # a multi-task network of these tasks, in this order
            init = checkpoint.load_multitask(init_path)
            if list(init.env_ids) != list(tasks) or (net and init.net != net):
                raise ValueError(f"checkpoint {init_path!r} is a network {init.net!r} of {', '.join(init.env_ids)}, "
                                 f"not {net or init.net!r} of {', '.join(tasks)}")
        else:
            init = checkpoint.load(init_path, env_id=info.env_id, obs_shape=info.obs_shape, n_actions=info.n_actions,
                                   net=net) if init_path else None
        return {"dqn": {"net": net or (init.net if init else None), "lr": args.lr, "batch_size": args.batch_size,
                        "n_step": args.n_step}}

    config, info = _resolve(args, TeacherRunConfig, teacher_config, "init", own)
    if getattr(args, "normalize_obs", False) and not args.resume:
        _check_normalizable(config, "--normalize-obs")
        config = replace(config, dqn=replace(config.dqn, net=normalized(config.dqn.net)))
        check_networks(config, info)
    return config, info


def distill_run(args: argparse.Namespace) -> tuple[DistillRunConfig, EnvInfo]:
    """`qdistill run`'s config."""
    def own(teacher: str | None, file: dict[str, object], info: EnvInfo) -> dict[str, object]:
        tasks = _tasks(args, file)
        teacher_net = checkpoint.load(teacher, env_id=info.env_id, obs_shape=info.obs_shape,
                                      n_actions=info.n_actions).net if teacher and not tasks else None
        return dict(
            teachers=_teachers(args.teacher, tasks) or None,
            mode=args.mode, behaviour=args.behaviour, refresh=args.refresh, refresh_every=args.refresh_every,
            samples=args.samples, epochs=args.epochs, teacher_learns=args.teacher_learns or None,
            max_label_staleness=args.max_label_staleness, student_every=args.student_every, change_at=args.change_at,
            change=dict(args.change) if args.change else None, dqn={"net": teacher_net}, eval_ci=args.eval_ci,
            eval_max_episodes=args.eval_max_episodes,
            distill={"students": parse_students(args.students) if args.students is not None else None,
                     "loss": args.loss, "tau": args.tau, "lr": args.lr, "batch_size": args.batch_size})

    config, info = _resolve(args, DistillRunConfig, distill_config, "teacher", own)
    if not args.resume:
        if args.normalize_obs and config.tasks:
            _check_normalizable(config, "--normalize-obs")
        config = _normalized_students(config, args.normalize_obs)
    if config.change:
        check_change(config.env, config.change)
    for env in config.tasks if config.teachers or config.teacher else ():  # each task's teacher read and checked
        task = describe(env)
        checkpoint.load(config.teachers.get(env, config.teacher), env_id=env, obs_shape=task.obs_shape,
                        n_actions=task.n_actions)
    return config, info


def teacher_first(args: argparse.Namespace, config: DistillRunConfig, info: EnvInfo) -> TeacherRunConfig | None:
    """The teacher a `qdistill run` without --teacher trains first, into RUN/teacher (a resumed
    run's own, as it was saved); None when the run has a teacher or its teacher learns in the run."""
    teacher_dir = Path(config.out) / "teacher"
    if args.resume and config.teacher is None and (teacher_dir / "config.json").is_file():
        saved = config_from_dict(TeacherRunConfig, json.loads((teacher_dir / "config.json").read_text()),
                                 source=str(teacher_dir / "config.json"))
        return _tls(with_overrides(saved, address=args.address, buffer=args.buffer), args)
    if config.teacher is not None or config.teachers or config.teacher_learns:
        if args.teacher_steps is not None:
            raise ValueError("--teacher-steps is the budget of a teacher the run trains first: the run has its teacher "
                             "(--teacher or --teacher-learns), drop --teacher-steps")
        return None
    # several tasks: one multi-task teacher, trained on its budget (a target return is for one task)
    tasks = dict(tasks=config.tasks, task_balance=config.task_balance, task_inputs=config.task_inputs,
                 actors=config.actors, task_actors=config.task_actors) if config.tasks else {}
    if args.teacher_steps is not None and args.teacher_steps < 1:
        raise ValueError(f"--teacher-steps {args.teacher_steps} is not valid: expected an integer >= 1")
    teacher = teacher_config(config.env, str(teacher_dir), seed=config.seed, address=config.address,
                             steps=args.teacher_steps,
                             target_return=None if config.tasks else _teacher_target(config, info), buffer=config.buffer,
                             buffer_prefix=f"{config.buffer_prefix}:teacher" if config.buffer_prefix else None, **tasks)
    if any(parse_spec(s).normalize for s in config.distill.students):  # students take their teacher's statistics
        teacher = replace(teacher, dqn=replace(teacher.dqn, net=normalized(teacher.dqn.net)))
    return teacher


def _teacher_target(config: DistillRunConfig, info: EnvInfo) -> float | None:
    """The return a teacher trained first stops at: the run's target, or (without one) the env's
    reward threshold, so `--no-target` spends the budget distilling, not training the teacher."""
    return config.target_return if config.target_return is not None else info.reward_threshold


def _check_normalizable(config: RunConfig, what: str) -> None:
    """Observation normalisation is for one task's vector observations."""
    if config.tasks:
        raise ValueError(f"{what}: a run of several tasks does not normalise observations; drop it (or run each "
                         "task alone)")
    if describe(config.env).pixels:
        raise ValueError(f"{what}: {config.env}'s observations are frames, which a conv net scales to [0, 1] itself; "
                         "drop it")


def _normalized_students(config: DistillRunConfig, flag: bool) -> DistillRunConfig:
    """Students normalise their observations with their teacher's statistics: with --normalize-obs,
    a `norm-` student, or a `norm-` teacher checkpoint, every student is `norm-` and the teacher
    must have statistics (a teacher trained first gets them)."""
    if config.tasks:
        return config  # check_networks refuses `norm-` students; --normalize-obs is refused here
    teacher_net = config.dqn.net if config.teacher else None  # the checkpoint's, as `own` read it (a task's part)
    teacher_has = teacher_net is not None and parse_spec(teacher_net).normalize
    students = config.distill.students
    if not (flag or teacher_has or any(parse_spec(s).normalize for s in students)):
        return config
    what = "--normalize-obs" if flag else f"students {', '.join(students)}" if not teacher_has else \
        f"teacher {config.teacher!r} (net {teacher_net!r}, normalised observations)"
    _check_normalizable(config, what)
    if config.teacher_learns:
        raise ValueError(f"{what}: a learning teacher's observation statistics move while its students train on "
                         "theirs; drop --teacher-learns, or normalisation")
    if teacher_net is not None and not teacher_has:
        raise ValueError(f"{what}: students normalise their observations with their teacher's statistics, and teacher "
                         f"{config.teacher!r} (net {teacher_net!r}) has none: train one with `qdistill train-teacher "
                         "--normalize-obs`, or drop normalisation")
    return replace(config, distill=replace(config.distill, students=tuple(normalized(s) for s in students)))


def config_from_dict(cls, data: dict[str, object], *, source: str):
    """A config saved with `to_dict` (a run directory's config.json), read back and validated;
    an unknown key or a field of the wrong kind is refused, naming it."""
    data = dict(data)
    if isinstance(data.get("buffer"), str):
        data["buffer"] = data["buffer"].replace(":***@", "@")  # the saved URL's password was masked
    return files.build(cls, data, source=source)


def with_overrides(config, **overrides: object):
    """The config with the given (not None) fields replaced, validated again."""
    given = {k: v for k, v in overrides.items() if v is not None}
    if given.get("time") is not None and "steps" not in given:
        given["steps"] = None  # a time budget alone replaces the step budget
    return replace(config, **given)


def _tls(config: RunConfig, args: argparse.Namespace, file: dict[str, str] | None = None) -> RunConfig:
    """The config with --buffer-ca, --buffer-cert and --buffer-key (or the config file's buffer_ca,
    buffer_cert and buffer_key) in its buffer URL, and every TLS file the URL names checked readable."""
    given = {k: getattr(args, k) or (file or {}).get(k) for k in TLS_FLAGS}
    url = with_tls(config.buffer, ca=given["buffer_ca"], cert=given["buffer_cert"], key=given["buffer_key"])
    check_tls(url)
    return config if url == config.buffer else replace(config, buffer=url)


Own = Callable[[str | None, dict[str, object], EnvInfo], dict[str, object]]


def _resolve(args: argparse.Namespace, cls: type[RunConfig], make, checkpoint_key: str,
             own: Own) -> tuple[RunConfig, EnvInfo]:
    """A command's config: with --resume the run's own; else the env's preset, then --config FILE,
    then the flags: those every command has, and `own(path, file, info)`'s for this one.
    `checkpoint_key` (teacher or init) is a checkpoint path, from the flag or else the file."""
    if args.resume:
        if args.config:
            raise ValueError("--resume carries on with the run's own config: --config cannot be given with it")
        config = _resumed(args, cls)
        return config, describe(config.env)
    file = files.read(args.config) if args.config else {}
    file_tls = files.take(file, TLS_FLAGS, source=args.config)  # not fields: they go into the buffer URL
    file = files.checked(cls, file, source=args.config) if args.config else {}
    given = {"env": _envs(args.env)[0] if args.env else None, "out": args.out,
             checkpoint_key: _plain_path(getattr(args, checkpoint_key))}
    env, out, path = (given[k] or file.get(k) for k in ("env", "out", checkpoint_key))
    if env is None and file.get("tasks"):
        env = file["tasks"][0]
    file = {k: v for k, v in file.items() if k not in ("env", "out", checkpoint_key)}
    if env is None:
        raise ValueError("no env: give --env (a Gymnasium id such as 'CartPole-v1'), or --resume RUN_DIR")
    info = describe(env)
    # set here, not as a flag over the file: None (no target) must win over the file's value
    tasks = _tasks(args, file)
    # several tasks have no one target: none unless given (and then refused, in one line)
    file["target_return"] = None if args.no_target else args.target_return if args.target_return is not None else \
        file.get("target_return", None if tasks else info.reward_threshold)
    flags = dict(
        steps=args.steps, time=args.time, seed=args.seed, address=args.address, actors=args.actors,
        envs_per_actor=args.envs_per_actor, steps_per_call=args.steps_per_call, actor_cpus=args.actor_cpus,
        actor_resources=args.actor_resources, replay_ratio=args.replay_ratio, rate_tolerance=args.rate_tolerance,
        buffer=args.buffer, buffer_prefix=args.buffer_prefix, buffer_capacity=args.buffer_capacity,
        buffer_bytes=args.buffer_bytes, checkpoint_every_s=args.checkpoint_every,
        **{checkpoint_key: checkpoint.absolute(path) if path else None},
        tasks=tuple(tasks) if tasks else None, task_balance=args.task_balance, task_batches=args.task_batches,
        task_inputs=args.task_inputs, task_actors=args.task_actors)
    if tasks and not (args.actors or file.get("actors")):  # one rollout actor per task, unless told otherwise
        given = args.task_actors or file.get("task_actors")
        flags["actors"] = sum(int(c) for c in given.split(":") if c.strip().isdigit()) if given else len(tasks)
    flags.update(own(path, file, info))
    out = out or str(Path("runs") / f"{env.replace('/', '-')}-{time.strftime('%Y%m%d-%H%M%S')}")
    config = make(env, str(Path(out).absolute()), **_layered(file, flags))
    check_networks(config, info)
    return _tls(config, args, file_tls), info


def check_networks(config: RunConfig, info: EnvInfo) -> None:
    """Every network the run trains fits the env's observations (a conv net for frames, an MLP for
    vectors); a multi-task student, every task's."""
    nets = [config.dqn.net] if isinstance(config, TeacherRunConfig) or config.teacher_learns else []
    if isinstance(config, DistillRunConfig):
        nets += list(config.distill.students)
    infos = [describe(env) for env in config.envs] if config.tasks else [info]
    for net in nets:
        if config.tasks and parse_spec(net).normalize:
            _check_normalizable(config, f"network spec {net!r}")
        for task in infos:
            try:
                check_fits(net, task.obs_shape, pixels=task.pixels)
            except ValueError as exc:
                raise ValueError(f"{exc} ({task.env_id})" if len(infos) > 1 else str(exc)) from None
        if config.tasks:
            check_shares(net, config.task_inputs)


def _tasks(args: argparse.Namespace, file: dict[str, object]) -> list[str] | None:
    """A multi-task run's envs: --env given more than once, or the config file's tasks."""
    return _envs(args.env) if args.env and len(args.env) > 1 else file.get("tasks")


def _envs(given: list[str]) -> list[str]:
    return [e.strip() for e in given]


def _plain_path(given: list[str] | str | None) -> str | None:
    """The one checkpoint given without an ENV= in front (a one-task run's, or a multi-task network's)."""
    if not isinstance(given, list):
        return given
    plain = [g for g in given if "=" not in g]
    if len(plain) > 1:
        raise ValueError(f"--teacher is given {len(plain)} times without ENV=: give one checkpoint, or ENV=PATH "
                         "once per task")
    return plain[0] if plain else None


def _teachers(given: list[str] | None, tasks: list[str] | None) -> dict[str, str]:
    """--teacher ENV=PATH, once per task: env → absolute path."""
    pairs = [g.split("=", 1) for g in given or [] if "=" in g]
    if pairs and not tasks:
        raise ValueError(f"--teacher {given[0]} names an env, but the run has one task: give --teacher PATH")
    out: dict[str, str] = {}
    for env, path in pairs:
        if env in out:
            raise ValueError(f"--teacher gives {env!r} twice: give each task's teacher once")
        out[env] = checkpoint.absolute(path)
    return out


def _layered(file: dict[str, object], flags: dict[str, object]) -> dict[str, object]:
    """The flags that were given (not None) over the file's settings; tables merged key by key."""
    out = dict(file)
    for key, value in flags.items():
        if isinstance(value, dict):
            out[key] = {**file.get(key, {}), **{k: v for k, v in value.items() if v is not None}}  # type: ignore[dict-item]
        elif value is not None:
            out[key] = value
    return out


def _resumed(args: argparse.Namespace, cls: type[RunConfig]) -> RunConfig:
    """The run directory's own config, with only the flags a resumed run may change."""
    path = Path(args.resume)
    if not (path / "config.json").is_file():
        raise ValueError(f"run directory {str(path)!r} has no config.json: expected a directory made by "
                         f"`qdistill {args.command}`")
    config = config_from_dict(cls, json.loads((path / "config.json").read_text()), source=str(path / "config.json"))
    if args.env is not None and tuple(_envs(args.env)) != config.envs:
        raise ValueError(f"run directory {str(path)!r} was made for {', '.join(config.envs)}, "
                         f"not {', '.join(_envs(args.env))}")
    allowed = {"command", "config_command", "resume", "env", "out", *RESUME_FLAGS}
    given = sorted(k for k, v in vars(args).items() if k not in allowed and v not in (None, False))
    if given:
        raise ValueError(f"--resume carries on with the run's own config: {', '.join('--' + g.replace('_', '-') for g in given)} "
                         f"cannot be given with it (only {', '.join('--' + f.replace('_', '-') for f in RESUME_FLAGS)})")
    if args.actors is not None and config.tasks:  # --actors on resume: split evenly over the tasks
        config = replace(config, task_actors=None, actors=args.actors)
    return _tls(with_overrides(config, out=str(path.absolute()), steps=args.steps, time=args.time, actors=args.actors,
                               address=args.address, buffer=args.buffer), args)
