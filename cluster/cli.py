"""The `qdistill` command line."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from ..actors.envs import EnvInfo, describe
from ..actors.redis_buffer import PASSWORD_ENV
from ..learners import checkpoint
from ..learners.distill import parse_students
from .config import RunConfig, distill_config, teacher_config
from .rundir import check_writable


def _place(config: RunConfig) -> None:
    """Connect to Ray and refuse a rollout actor no node can host, before anything is written."""
    from .connect import connect
    from .placement import check_feasible

    connect(config.address, min_cpus=config.actors * config.actor_cpus)
    check_feasible(config)


def _check_buffer(config: RunConfig, info: EnvInfo) -> None:
    """A Redis buffer is reached and its prefix claimed (or found compatible) before anything starts."""
    if config.buffer == "ray":
        return
    from ..actors.redis_buffer import RedisBuffer, RedisSpec
    from ..actors.wire import Schema

    RedisBuffer(RedisSpec(config.buffer, config.redis_prefix, config.buffer_capacity, config.chunk_size,
                          Schema(info.obs_shape, info.n_actions))).close()


def _resources(text: str) -> dict[str, float]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        value = None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"{text!r} is not a JSON object of resource names and amounts, "
                                         "e.g. '{\"rollout\": 1}'")
    return value


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--env", required=True, help="Gymnasium env id with a Discrete action space, e.g. CartPole-v1")
    p.add_argument("--out", help="run directory (default: runs/<env>-<time>); must be new or empty")
    p.add_argument("--actors", type=int, help="rollout actors")
    p.add_argument("--envs-per-actor", type=int, help="vector env width per actor (default 8)")
    p.add_argument("--actor-cpus", type=float, help="CPUs each rollout actor reserves (default 1)")
    p.add_argument("--actor-resources", type=_resources,
                   help="custom Ray resources each rollout actor needs, as JSON, e.g. '{\"rollout\": 1}'")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--steps", type=int, help="env-step budget (default: the env's preset)")
    budget.add_argument("--time", type=float, help="wall-clock budget in seconds")
    p.add_argument("--target-return", type=float,
                   help="stop once the greedy mean return reaches this (default: the env's reward threshold)")
    p.add_argument("--no-target", action="store_true", help="use the whole budget")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--address", help="Ray address to join (default: an embedded local Ray runtime)")
    p.add_argument("--buffer", help="'ray' (default: Ray buffer shards) or redis://[user:password@]host:port/db "
                                    f"(rediss:// for TLS; the password may come from ${PASSWORD_ENV})")
    p.add_argument("--buffer-prefix", help="Redis key prefix: the run's namespace (default: qdistill:<run dir>)")
    p.add_argument("--lr", type=float, help="Adam learning rate")
    p.add_argument("--batch-size", type=int, help="learner minibatch size")
    p.add_argument("--replay-ratio", type=float, help="learner steps per env step")
    p.add_argument("--quiet", action="store_true", help="no progress line")


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="qdistill", description="Distill DQN teachers into small students, on Ray.")
    sub = parser.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="distill a teacher into students (training the teacher first unless --teacher)")
    _common(r)
    r.add_argument("--teacher", help="teacher checkpoint (default: train one first, into RUN/teacher)")
    r.add_argument("--students", help="student network specs joined by ',' (default: the env's preset, e.g. 16x16)")
    r.add_argument("--loss", help="mse (the seed's), kl (default) or nll")
    r.add_argument("--tau", type=float, help="temperature of the kl loss (default 0.01)")
    r.add_argument("--behaviour", help="who acts: teacher (default), student, or mixed (β schedule)")
    r.add_argument("--refresh", help="label refresh: periodic (default, in the buffer shards), on-sample, off")
    r.add_argument("--refresh-every", type=int, help="learner steps between periodic refresh passes")
    r.add_argument("--mode", help="online (default) or offline (the seed's label-once-then-fit baseline)")
    r.add_argument("--samples", type=int, help="offline: teacher-labelled states (default 50000)")
    r.add_argument("--epochs", type=int, help="offline: passes over them (default 10)")

    t = sub.add_parser("train-teacher", help="train a DQN teacher with Ray rollout actors")
    _common(t)
    t.add_argument("--net", help="teacher network spec, hidden widths joined by 'x' (default 256x256)")
    t.add_argument("--init", help="start from this teacher checkpoint")

    e = sub.add_parser("eval", help="re-evaluate a run directory's checkpoints (or one checkpoint file)")
    e.add_argument("path", help="a run directory, or a checkpoint file")
    e.add_argument("--episodes", type=int, default=20)
    e.add_argument("--seed", type=int, default=0)
    return parser


def _out(args: argparse.Namespace) -> str:
    return args.out or str(Path("runs") / f"{args.env}-{time.strftime('%Y%m%d-%H%M%S')}")


def _target(args: argparse.Namespace, info: EnvInfo) -> float | None:
    if args.no_target:
        return None
    return args.target_return if args.target_return is not None else info.reward_threshold


def _print_rows(rows: list[tuple[str, str]]) -> None:
    width = max(len(k) for k, _ in rows)
    print("\n".join(f"{k:<{width}}  {v}" for k, v in rows))


def _train_teacher(args: argparse.Namespace, started: float) -> int:
    info = describe(args.env)
    init = checkpoint.load(args.init, env_id=info.env_id, obs_shape=info.obs_shape, n_actions=info.n_actions,
                           net=args.net) if args.init else None
    config = teacher_config(
        args.env, _out(args),
        steps=args.steps, time=args.time, target_return=_target(args, info), seed=args.seed, init=args.init,
        address=args.address, actors=args.actors, envs_per_actor=args.envs_per_actor,
        actor_cpus=args.actor_cpus, actor_resources=args.actor_resources,
        replay_ratio=args.replay_ratio, buffer=args.buffer, buffer_prefix=args.buffer_prefix,
        dqn={"net": args.net or (init.net if init else None), "lr": args.lr, "batch_size": args.batch_size},
    )
    check_writable(config.out)
    _check_buffer(config, info)
    _place(config)

    from .teacher import TeacherDriver

    summary = TeacherDriver(config, info, init=init, started=started, show_progress=not args.quiet).train()
    teacher = summary["teacher"]
    _print_rows([
        ("env", summary["env"]),
        ("stopped", summary["stop_reason"]),
        ("env steps", f"{summary['env_steps']:,}"),
        ("learner steps", f"{summary['learner_steps']:,}"),
        ("wall", f"{summary['wall_s']:.1f} s"),
        ("teacher", f"{teacher['net']}, {teacher['params']:,} params, version {teacher['version']}"),
        ("greedy return", f"{teacher['eval_return_mean']:.1f} ± {teacher['eval_return_std']:.1f} "
                          f"over {teacher['eval_episodes']} episodes"),
        ("checkpoint", teacher["checkpoint"]),
        ("run directory", config.out),
    ])
    return 0


def _run(args: argparse.Namespace, started: float) -> int:
    info = describe(args.env)
    teacher = checkpoint.load(args.teacher, env_id=info.env_id, obs_shape=info.obs_shape,
                              n_actions=info.n_actions) if args.teacher else None
    out = _out(args)
    config = distill_config(
        args.env, out,
        steps=args.steps, time=args.time, target_return=_target(args, info), seed=args.seed,
        teacher=args.teacher, address=args.address, actors=args.actors, envs_per_actor=args.envs_per_actor,
        actor_cpus=args.actor_cpus, actor_resources=args.actor_resources,
        replay_ratio=args.replay_ratio, buffer=args.buffer, buffer_prefix=args.buffer_prefix, mode=args.mode, behaviour=args.behaviour, refresh=args.refresh,
        refresh_every=args.refresh_every, samples=args.samples, epochs=args.epochs,
        distill={"students": parse_students(args.students) if args.students is not None else None,
                 "loss": args.loss, "tau": args.tau, "lr": args.lr, "batch_size": args.batch_size},
    )
    teacher_cfg = None if teacher else teacher_config(
        args.env, str(Path(out) / "teacher"), seed=args.seed, address=args.address,
        target_return=info.reward_threshold, buffer=args.buffer,
        buffer_prefix=f"{args.buffer_prefix}:teacher" if args.buffer_prefix else None)
    check_writable(out)
    _check_buffer(config, info)
    _place(config)

    from .distill import DistillDriver
    from .offline import run_offline
    from .report import table
    from .rundir import RunDir
    from .teacher import TeacherDriver

    if teacher is None:
        print(f"training a teacher first ({teacher_cfg.dqn.net}) into {teacher_cfg.out}", file=sys.stderr)
        trained = TeacherDriver(teacher_cfg, info, started=started, show_progress=not args.quiet).train()
        teacher = checkpoint.load(trained["teacher"]["checkpoint"])
    run = RunDir(out)
    run.write_json("config.json", config.to_dict())
    if config.mode == "offline":
        summary = run_offline(config, info, teacher, run=run, started=started)
    else:
        summary = DistillDriver(config, info, teacher, run=run, started=started, show_progress=not args.quiet).train()
    print(table(summary))
    _print_rows([
        ("stopped", f"{summary['stop_reason']} after {summary['distill_wall_s']:.1f} s of distillation "
                    f"({summary['wall_s']:.1f} s in all), {summary['env_steps']:,} env steps"),
        ("run directory", out),
    ])
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


def main(argv: list[str] | None = None) -> int:
    started = time.monotonic()
    args = _build_parser().parse_args(argv)
    commands = {"run": lambda: _run(args, started), "train-teacher": lambda: _train_teacher(args, started),
                "eval": lambda: _eval(args)}
    try:
        return commands[args.command]()
    except ValueError as exc:  # our errors: EnvError, CheckpointError, RunDirError, config
        print(f"qdistill: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
