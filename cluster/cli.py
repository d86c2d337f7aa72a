"""The `qdistill` command line."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from ..actors.dynamics import check_change
from ..actors.envs import EnvInfo, describe
from ..actors.redis_buffer import PASSWORD_ENV
from ..learners import checkpoint
from ..learners.distill import parse_students
from .config import DistillRunConfig, RunConfig, TeacherRunConfig, distill_config, teacher_config
from .jobs import Job
from . import manage
from .status import print_rows
from .rundir import check_writable


def _place(config: RunConfig, learner_resources: dict[str, float], info: EnvInfo) -> None:
    """Connect to Ray and refuse a rollout actor or learner no node can host, or a buffer the
    cluster's memory cannot hold, before anything is written."""
    from ..actors.wire import Schema
    from .connect import connect
    from .placement import check_feasible, check_memory

    connect(config.address, min_cpus=config.actors * config.actor_cpus + learner_resources.get("CPU", 0))
    check_feasible(config, learner_resources)
    check_memory(config, Schema(info.obs_shape, info.n_actions).record_size)


def _check_buffer(config: RunConfig, info: EnvInfo) -> None:
    """A Redis buffer is reached and its prefix claimed (or found compatible) before anything starts."""
    if config.buffer == "ray":
        return
    from ..actors.redis_buffer import RedisBuffer, RedisSpec, connect
    from ..actors.wire import Schema

    schema = Schema(info.obs_shape, info.n_actions)
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


def _resources(text: str) -> dict[str, float]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        value = None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"{text!r} is not a JSON object of resource names and amounts, "
                                         "e.g. '{\"rollout\": 1}'")
    return value


def _assignment(text: str) -> tuple[str, float]:
    name, eq, value = text.partition("=")
    try:
        return name.strip(), float(value) if eq and name.strip() else float("")
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME=VALUE with a number, e.g. length=1.0") from None


_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def _size(text: str) -> int:
    """Bytes: a number, optionally with K, M, G or T (powers of 1024; a trailing B or iB is allowed)."""
    t = text.strip().upper().removesuffix("IB").removesuffix("B")
    unit = t[-1:] if t[-1:] in _UNITS else ""
    try:
        value = float(t[: len(t) - len(unit)]) * _UNITS[unit]
    except ValueError:
        value = -1.0
    if not 1 <= value < 2**63:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size: expected bytes, or a number with K, M or G, "
                                         "e.g. 512M")
    return int(value)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--env", help="Gymnasium env id with a Discrete action space, e.g. CartPole-v1 (required "
                                 "unless --resume)")
    p.add_argument("--out", help="run directory (default: runs/<env>-<time>); must be new or empty. "
                                 "Its name is the run's name on the cluster")
    p.add_argument("--resume", metavar="RUN_DIR",
                   help="carry on with a run directory's run from its last checkpoint: networks, optimiser "
                        f"states and counters. Only {', '.join('--' + f.replace('_', '-') for f in RESUME_FLAGS)} "
                        "may be given with it; budgets count the whole run")
    p.add_argument("--detach", action="store_true",
                   help="start the run in the background on the cluster (needs --address) and return; "
                        "see `qdistill status`, `scale`, `stop`")
    p.add_argument("--learner-resources", type=_resources, default={},
                   help="Ray resources for the run's learner as JSON, e.g. '{\"GPU\": 1}' (default: this machine, "
                        "no reservation)")
    p.add_argument("--actors", type=int, help="rollout actors")
    p.add_argument("--envs-per-actor", type=int, help="vector env width per actor (default 8)")
    p.add_argument("--steps-per-call", type=int,
                   help="vector steps per collect call (default 32); envs-per-actor x steps-per-call rows go to "
                        "the buffer in one call: larger calls cost less per row (benchmarks/throughput.py), "
                        "smaller ones keep a learning policy's actors fresher")
    p.add_argument("--actor-cpus", type=float, help="CPUs each rollout actor reserves (default 1)")
    p.add_argument("--actor-resources", type=_resources,
                   help="custom Ray resources each rollout actor needs, as JSON, e.g. '{\"rollout\": 1}'")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--steps", type=int, help="env-step budget (default: the env's preset)")
    budget.add_argument("--time", type=float, help="wall-clock budget in seconds")
    p.add_argument("--target-return", type=float,
                   help="stop once the greedy mean return reaches this (default: the env's reward threshold)")
    p.add_argument("--no-target", action="store_true", help="use the whole budget")
    p.add_argument("--seed", type=int, help="random seed (default 0)")
    p.add_argument("--address", help="Ray address to join: auto, HOST:PORT or ray://HOST:PORT "
                                     "(default: an embedded local Ray runtime)")
    p.add_argument("--buffer", help="'ray' (default: Ray buffer shards) or redis://[user:password@]host:port/db "
                                    f"(rediss:// for TLS; the password may come from ${PASSWORD_ENV})")
    p.add_argument("--buffer-prefix", help="Redis key prefix: the run's namespace (default: qdistill:<run dir>)")
    p.add_argument("--lr", type=float, help="Adam learning rate")
    p.add_argument("--batch-size", type=int, help="learner minibatch size")
    p.add_argument("--replay-ratio", type=float, help="learner steps per env step (the buffer's rate limiter keeps it)")
    p.add_argument("--rate-tolerance", type=float, metavar="ROWS",
                   help="sampled rows the learner may run ahead of or behind the replay ratio before the buffer "
                        "holds samples or inserts (default: one actor call's and one sampled chunk's worth)")
    p.add_argument("--buffer-capacity", type=int, help="transitions the buffer keeps (default: the env's preset, "
                                                       "e.g. 100000)")
    p.add_argument("--checkpoint-every", type=float, metavar="SECONDS",
                   help="seconds between resumable state checkpoints (default 60; and one at the end)")
    p.add_argument("--buffer-bytes", type=_size, metavar="SIZE",
                   help="cap on the buffer's memory, e.g. 512M or 2G: it keeps at most this many bytes of "
                        "transitions (and at most --buffer-capacity of them)")
    p.add_argument("--quiet", action="store_true", help="no progress line")


def _config_flag(p: argparse.ArgumentParser, command: str, example: str) -> None:
    p.add_argument("--config", metavar="FILE",
                   help=f"a TOML or YAML file of settings, the keys of a `qdistill {command}` run's config.json "
                        f"(e.g. {example}); flags override it, it overrides the env's preset")


def _run_flags(r: argparse.ArgumentParser) -> None:
    """`qdistill run`'s flags (and `config show`'s, which resolves the same config)."""
    _common(r)
    _config_flag(r, "run", "deploy/configs/cartpole.toml")
    r.add_argument("--teacher", help="teacher checkpoint, or sb3:PATH.zip for a Stable-Baselines3 DQN/QR-DQN model "
                                      "(default: train one first, into RUN/teacher)")
    r.add_argument("--teacher-learns", action="store_true",
                   help="the teacher keeps learning by DQN in this run (from --teacher, or from scratch) while "
                        "the students distill from it")
    r.add_argument("--max-label-staleness", type=int,
                   help="teacher versions a sampled label may lag before it is relabelled (default 2)")
    r.add_argument("--change-at", type=int, metavar="STEPS",
                   help="a changing task: at this env step the dynamics change to --change")
    r.add_argument("--change", type=_assignment, action="append", metavar="NAME=VALUE",
                   help="a dynamics parameter set at --change-at, e.g. length=1.0 or gravity=15 (CartPole); "
                        "repeat for several")
    r.add_argument("--students", help="student network specs joined by ',' (default: the env's preset, e.g. 16x16)")
    r.add_argument("--loss", help="mse (the seed's), kl (default) or nll")
    r.add_argument("--tau", type=float, help="temperature of the kl loss (default 0.01)")
    r.add_argument("--behaviour", help="who acts: teacher (default), student, or mixed (β schedule)")
    r.add_argument("--refresh", help="label refresh: periodic (default, in the buffer shards), on-sample, off")
    r.add_argument("--refresh-every", type=int, help="learner steps between periodic refresh passes")
    r.add_argument("--mode", help="online (default) or offline (the seed's label-once-then-fit baseline)")
    r.add_argument("--samples", type=int, help="offline: teacher-labelled states (default 50000)")
    r.add_argument("--epochs", type=int, help="offline: passes over them (default 10)")


def _teacher_flags(t: argparse.ArgumentParser) -> None:
    """`qdistill train-teacher`'s flags (and `config show-teacher`'s)."""
    _common(t)
    _config_flag(t, "train-teacher", "a `qdistill config show-teacher` output")
    t.add_argument("--net", help="teacher network spec, hidden widths joined by 'x' (default 256x256)")
    t.add_argument("--init", help="start from this teacher checkpoint")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="qdistill", description="Distill DQN teachers into small students, on Ray.")
    sub = parser.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="distill a teacher into students (training the teacher first unless --teacher)")
    _run_flags(r)
    cf = sub.add_parser("config", help="config files: `qdistill config show [RUN FLAGS]` prints a run's resolved "
                                       "config, `qdistill config show-teacher [TRAIN-TEACHER FLAGS]` a teacher run's")
    cf_sub = cf.add_subparsers(dest="config_command", required=True)
    _run_flags(cf_sub.add_parser("show", help="print the config `qdistill run` would use with these flags, as YAML "
                                              "(a config file itself): presets, then --config, then flags"))
    _teacher_flags(cf_sub.add_parser("show-teacher", help="print the config `qdistill train-teacher` would use with "
                                                          "these flags, as YAML (a config file itself)"))

    _teacher_flags(sub.add_parser("train-teacher", help="train a DQN teacher with Ray rollout actors"))

    st = sub.add_parser("status", help="show the runs on a cluster, or one run's progress")
    st.add_argument("run", nargs="?", help="run name (its run directory's name) or run directory")
    st.add_argument("--json", action="store_true", help="the full status as JSON")
    sc = sub.add_parser("scale", help="add or remove rollout actors of a running run")
    sc.add_argument("run", help="run name or run directory")
    sc.add_argument("--actors", type=int, required=True, help="rollout actors wanted")
    sw = sub.add_parser("swap-teacher", help="hand a running run a new teacher checkpoint (its next version)")
    sw.add_argument("run", help="run name or run directory")
    sw.add_argument("checkpoint", help="teacher checkpoint: same env, observation shape, action count and network")
    sp = sub.add_parser("stop", help="stop a run cleanly: final checkpoints, report; then remove it")
    sp.add_argument("run", help="run name or run directory")
    sp.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for the run to finish")
    for q in (st, sc, sw, sp):
        q.add_argument("--address", help="Ray address of the cluster (default: $RAY_ADDRESS, else auto)")

    e = sub.add_parser("eval", help="re-evaluate a run directory's checkpoints (or one checkpoint file)")
    e.add_argument("path", help="a run directory, or a checkpoint file")
    e.add_argument("--episodes", type=int, default=20)
    e.add_argument("--seed", type=int, default=0)

    x = sub.add_parser("export", help="write a run's student as ONNX or TorchScript (optionally int8), verified "
                                      "against the float student, with a JSON sidecar")
    x.add_argument("path", metavar="RUN_DIR", help="a `qdistill run` directory")
    x.add_argument("--student", help="which student (default: the run's only one)")
    x.add_argument("--format", required=True, help="onnx (opset 17, run with onnxruntime) or torchscript")
    x.add_argument("--int8", action="store_true", help="dynamic int8 quantisation of the inner layers (first and last stay float), inputs equalised and weights rounded on --states calibration states to keep the greedy action's margin")
    x.add_argument("--out", help="directory to write into (default: RUN_DIR/export)")
    x.add_argument("--min-agreement", type=float, default=0.99,
                   help="refuse the export when it picks the float student's action on fewer held-out states "
                        "than this (default 0.99)")
    x.add_argument("--states", type=int, default=10_000, help="held-out states to compare actions on (default 10000)")
    x.add_argument("--episodes", type=int, default=20, help="greedy episodes of the exported student (default 20)")

    rp = sub.add_parser("report", help="draw a finished run's plots and report.md again from its metrics.jsonl "
                                       "and summary.json")
    rp.add_argument("path", metavar="RUN_DIR", help="a `qdistill run` directory")
    return parser


def _default_out(env: str) -> str:
    return str(Path("runs") / f"{env}-{time.strftime('%Y%m%d-%H%M%S')}")


def _target(args: argparse.Namespace, default: float | None) -> float | None:
    """--no-target, else --target-return, else `default` (the env's reward threshold, or a config file's)."""
    if args.no_target:
        return None
    return args.target_return if args.target_return is not None else default


def _teacher_rows(summary: dict[str, object], out: str) -> list[tuple[str, str]]:
    teacher = summary["teacher"]
    return [
        ("env", summary["env"]),
        ("stopped", summary["stop_reason"]),
        ("env steps", f"{summary['env_steps']:,}"),
        ("learner steps", f"{summary['learner_steps']:,}"),
        ("wall", f"{summary['wall_s']:.1f} s"),
        ("teacher", f"{teacher['net']}, {teacher['params']:,} params, version {teacher['version']}"),
        ("greedy return", f"{teacher['eval_return_mean']:.1f} ± {teacher['eval_return_std']:.1f} "
                          f"over {teacher['eval_episodes']} episodes"),
        ("checkpoint", teacher["checkpoint"]),
        ("run directory", out),
    ]


def _print_summary(summary: dict[str, object], out: str) -> None:
    from .report import table

    if "students" in summary:  # a distillation run
        print(table(summary))
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


RESUME_FLAGS = ("steps", "time", "actors", "address", "buffer", "detach", "learner_resources", "quiet")


def _resumed(args: argparse.Namespace, cls: type[RunConfig]) -> RunConfig:
    """The run directory's own config, with only the flags a resumed run may change."""
    from .config import config_from_dict, with_overrides

    path = Path(args.resume)
    if not (path / "config.json").is_file():
        raise ValueError(f"run directory {str(path)!r} has no config.json: expected a directory made by "
                         f"`qdistill {args.command}`")
    config = config_from_dict(cls, json.loads((path / "config.json").read_text()),
                              source=str(path / "config.json"))
    if args.env is not None and args.env != config.env:
        raise ValueError(f"run directory {str(path)!r} was made for {config.env}, not {args.env}")
    allowed = {"command", "config_command", "resume", "env", "out", *RESUME_FLAGS}
    given = sorted(k for k, v in vars(args).items() if k not in allowed and v not in (None, False))
    if given:
        raise ValueError(f"--resume carries on with the run's own config: {', '.join('--' + g.replace('_', '-') for g in given)} "
                         f"cannot be given with it (only {', '.join('--' + f.replace('_', '-') for f in RESUME_FLAGS)})")
    return with_overrides(config, out=str(path.absolute()), steps=args.steps, time=args.time, actors=args.actors,
                          address=args.address, buffer=args.buffer)


def _env(env: str | None) -> EnvInfo:
    if env is None:
        raise ValueError("no env: give --env (a Gymnasium id such as 'CartPole-v1'), or --resume RUN_DIR")
    return describe(env)


def _teacher_config(args: argparse.Namespace) -> tuple[TeacherRunConfig, EnvInfo]:
    """`qdistill train-teacher`'s config."""
    def own(init_path: str | None, file: dict[str, object], info: EnvInfo) -> dict[str, object]:
        net = args.net or file.get("dqn", {}).get("net")
        init = checkpoint.load(init_path, env_id=info.env_id, obs_shape=info.obs_shape, n_actions=info.n_actions,
                               net=net) if init_path else None
        return {"dqn": {"net": net or (init.net if init else None), "lr": args.lr, "batch_size": args.batch_size}}

    return _config(args, TeacherRunConfig, teacher_config, "init", own)


def _train_teacher(args: argparse.Namespace, started: float) -> int:
    config, info = _teacher_config(args)
    if not args.resume:
        check_writable(config.out)
    return _start(args, Job("train-teacher", config, resume=bool(args.resume), started_at=started,
                            device=_device(args)), info)


def _file_settings(args: argparse.Namespace, cls: type[RunConfig]) -> dict[str, object]:
    """--config FILE's settings, keys and types checked against the config class ({} without it)."""
    if not args.config:
        return {}
    from . import configfile

    return configfile.checked(cls, configfile.read(args.config), source=args.config)


def _layered(file: dict[str, object], flags: dict[str, object]) -> dict[str, object]:
    """The flags that were given (not None) over the file's settings; tables merged key by key."""
    out = dict(file)
    for key, value in flags.items():
        if isinstance(value, dict):
            out[key] = {**file.get(key, {}), **{k: v for k, v in value.items() if v is not None}}  # type: ignore[dict-item]
        elif value is not None:
            out[key] = value
    return out


def _distill_config(args: argparse.Namespace) -> tuple[DistillRunConfig, EnvInfo]:
    """`qdistill run`'s config."""
    def own(teacher: str | None, _file: dict[str, object], info: EnvInfo) -> dict[str, object]:
        teacher_net = checkpoint.load(teacher, env_id=info.env_id, obs_shape=info.obs_shape,
                                      n_actions=info.n_actions).net if teacher else None
        return dict(
            mode=args.mode, behaviour=args.behaviour, refresh=args.refresh, refresh_every=args.refresh_every,
            samples=args.samples, epochs=args.epochs, teacher_learns=args.teacher_learns or None,
            max_label_staleness=args.max_label_staleness, change_at=args.change_at,
            change=dict(args.change) if args.change else None, dqn={"net": teacher_net},
            distill={"students": parse_students(args.students) if args.students is not None else None,
                     "loss": args.loss, "tau": args.tau, "lr": args.lr, "batch_size": args.batch_size})

    config, info = _config(args, DistillRunConfig, distill_config, "teacher", own)
    if config.change:
        check_change(config.env, config.change)
    return config, info


def _config(args: argparse.Namespace, cls: type[RunConfig], make, checkpoint_key: str, own) -> tuple[RunConfig, EnvInfo]:
    """A command's config: with --resume the run's own; else the env's preset, then --config FILE,
    then the flags: those every command has, and `own(path, file, info)`'s for this one.
    `checkpoint_key` (teacher or init) is a checkpoint path, from the flag or else the file."""
    if args.resume:
        if args.config:
            raise ValueError("--resume carries on with the run's own config: --config cannot be given with it")
        config = _resumed(args, cls)
        return config, describe(config.env)
    file = _file_settings(args, cls)
    env, out, path = (getattr(args, k) or file.get(k) for k in ("env", "out", checkpoint_key))
    file = {k: v for k, v in file.items() if k not in ("env", "out", checkpoint_key)}
    info = _env(env)
    # set here, not as a flag over the file: None (no target) must win over the file's value
    file["target_return"] = _target(args, file.get("target_return", info.reward_threshold))
    flags = dict(
        steps=args.steps, time=args.time, seed=args.seed, address=args.address, actors=args.actors,
        envs_per_actor=args.envs_per_actor, steps_per_call=args.steps_per_call, actor_cpus=args.actor_cpus,
        actor_resources=args.actor_resources, replay_ratio=args.replay_ratio, rate_tolerance=args.rate_tolerance,
        buffer=args.buffer, buffer_prefix=args.buffer_prefix, buffer_capacity=args.buffer_capacity,
        buffer_bytes=args.buffer_bytes, checkpoint_every_s=args.checkpoint_every,
        **{checkpoint_key: checkpoint.absolute(path) if path else None}, **own(path, file, info))
    config = make(env, str(Path(out or _default_out(env)).absolute()), **_layered(file, flags))
    return config, info


def _run(args: argparse.Namespace, started: float) -> int:
    config, info = _distill_config(args)
    teacher_cfg = None
    if args.resume:
        teacher_dir = Path(config.out) / "teacher"
        if config.teacher is None and (teacher_dir / "config.json").is_file():
            from .config import config_from_dict, with_overrides

            teacher_cfg = with_overrides(config_from_dict(
                TeacherRunConfig, json.loads((teacher_dir / "config.json").read_text()),
                source=str(teacher_dir / "config.json")), address=args.address, buffer=args.buffer)
    else:
        check_writable(config.out)
    if config.teacher is None and teacher_cfg is None and not config.teacher_learns:
        teacher_cfg = teacher_config(
            config.env, str(Path(config.out) / "teacher"), seed=config.seed, address=config.address,
            target_return=info.reward_threshold, buffer=config.buffer,
            buffer_prefix=f"{config.buffer_prefix}:teacher" if config.buffer_prefix else None)
    return _start(args, Job("run", config, teacher_cfg, resume=bool(args.resume), started_at=started,
                            device=_device(args)), info)


def _config_show(args: argparse.Namespace) -> int:
    import yaml

    teacher = args.config_command == "show-teacher"
    config, _ = (_teacher_config if teacher else _distill_config)(args)
    command = "train-teacher" if teacher else "run"
    print(f"# qdistill {command}: resolved config (the env's preset, then --config, then flags); usable as --config")
    print(yaml.safe_dump(json.loads(json.dumps(config.to_dict())), sort_keys=False), end="")
    return 0


def _device(args: argparse.Namespace) -> str:
    return "cuda" if args.learner_resources.get("GPU", 0) > 0 else "cpu"


def _start(args: argparse.Namespace, job: Job, info: EnvInfo) -> int:
    """Check the buffer and placement, then start the run's actor: follow it, or leave it running."""
    import ray

    from .background import follow, launch, run_name, wait_started

    config = job.config
    if args.detach and config.address is None and "RAY_ADDRESS" not in os.environ:
        raise ValueError("--detach needs a running Ray cluster to outlive this command: start one with "
                         "`ray start --head` and give --address (e.g. --address auto)")
    _check_buffer(config, info)
    _place(config, args.learner_resources, info)
    actor, ref = launch(job, detach=args.detach, learner_resources=args.learner_resources)
    name = run_name(config.out)
    if args.detach:
        status = wait_started(actor)
        if status["state"] == "failed":
            ray.get(ref)  # raises the run's error
        print_rows([("run", f"{name} started in the background ({status['state']}, {status.get('phase')})"),
                     ("follow it", f"qdistill status {name}"),
                     ("scale it", f"qdistill scale {name} --actors N"),
                     ("stop it", f"qdistill stop {name}"),
                     ("run directory", config.out)])
        return 0
    try:
        summary = follow(actor, ref, show_progress=not args.quiet)
    except ray.exceptions.RayActorError:
        print(f"qdistill: error: the run's learner died and was not restarted (3 restarts at most): carry on "
              f"with `qdistill run --resume {config.out}`", file=sys.stderr)
        return 1
    finally:
        ray.kill(actor)
    _print_summary(summary, config.out)
    return 0


def _eval(args: argparse.Namespace) -> int:
    from ..actors.evaluate import evaluate
    from ..actors.evaluator import Evaluator
    from ..learners.networks import GreedyPolicy
    from .report import policy_summary, table

    path = Path(args.path)
    if path.is_file():
        ckpt = checkpoint.load(path)
        describe(ckpt.env_id)
        policy = GreedyPolicy(ckpt.net, ckpt.obs_shape, ckpt.n_actions)
        policy.load(ckpt.version, ckpt.weights)
        result = evaluate(ckpt.env_id, policy.act, episodes=args.episodes, seed=args.seed)
        print(f"{ckpt.env_id}  {ckpt.net}  greedy return {result.mean:.1f} ± {result.std:.1f} over {result.episodes} episodes")
        return 0
    teacher_path = path / "checkpoints" / "teacher.pt"
    if not teacher_path.is_file():
        raise ValueError(f"run directory {str(path)!r} has no checkpoints/teacher.pt: expected a `qdistill run` "
                         "directory, or a checkpoint file")
    teacher = checkpoint.load(teacher_path)
    names = sorted(p.name[len("student-"):-len("-best.pt")] for p in (path / "checkpoints").glob("student-*-best.pt"))
    if not names:
        raise ValueError(f"run directory {str(path)!r} holds no student checkpoints")
    students = {n: checkpoint.load(path / "checkpoints" / f"student-{n}-best.pt", env_id=teacher.env_id) for n in names}
    describe(teacher.env_id)
    ev = Evaluator(teacher.env_id, teacher_net=teacher.net, students=tuple(names), obs_shape=teacher.obs_shape,
                   n_actions=teacher.n_actions, episodes=args.episodes, seed=args.seed)
    ev.load_teacher(teacher.version, teacher.weights)
    for n, c in students.items():
        ev.load_students(c.version, {n: c.weights})
    print(table(policy_summary(teacher, students, ev.evaluate(final=True))))
    return 0


def _export(args: argparse.Namespace) -> int:
    from . import export

    req = export.Request(Path(args.path), args.student, args.format, args.int8, Path(args.out) if args.out else None,
                         args.min_agreement, args.states, args.episodes)
    sidecar = export.export(req, say=lambda text: print(f"qdistill export: {text}", file=sys.stderr, flush=True))
    check = sidecar["verification"]
    out = Path(args.out) if args.out else Path(args.path) / "export"
    print(f"wrote {out / sidecar['file']} and {sidecar['file']}.json")
    print(f"agreement with the float student: {check['agreement']:.2%} of {check['held_out_states']:,} held-out states; "
          f"greedy return {check['return_exported']['mean']:.1f} ± {check['return_exported']['std']:.1f} "
          f"(float student {check['return_float']['mean']:.1f} ± {check['return_float']['std']:.1f}) "
          f"over {check['episodes']} episodes")
    print(export.table(sidecar))
    return 0


def _report(args: argparse.Namespace) -> int:
    from .report import regenerate

    for path in regenerate(Path(args.path)):
        print(f"wrote {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    started = time.time()
    args = build_parser().parse_args(argv)
    commands = {"run": lambda: _run(args, started), "train-teacher": lambda: _train_teacher(args, started),
                "status": lambda: manage.status(args), "scale": lambda: manage.scale(args),
                "stop": lambda: manage.stop(args), "swap-teacher": lambda: manage.swap_teacher(args),
                "eval": lambda: _eval(args), "export": lambda: _export(args), "report": lambda: _report(args),
                "config": lambda: _config_show(args)}
    try:
        return commands[args.command]()
    except ValueError as exc:  # our errors: EnvError, CheckpointError, RunDirError, config
        print(f"qdistill: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        cause = getattr(exc, "cause", None)  # an error raised inside the run's actor
        if isinstance(cause, ValueError):
            print(f"qdistill: error: {cause}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
