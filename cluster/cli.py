"""The `qdistill` command line."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ..actors.envs import describe
from ..learners import checkpoint
from .config import teacher_config
from .rundir import check_writable


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="qdistill", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train-teacher", help="train a DQN teacher with Ray rollout actors")
    t.add_argument("--env", required=True, help="Gymnasium env id with a Discrete action space, e.g. CartPole-v1")
    t.add_argument("--out", help="run directory (default: runs/<env>-<time>); must be new or empty")
    t.add_argument("--actors", type=int, help="rollout actors (default 2)")
    t.add_argument("--envs-per-actor", type=int, help="vector env width per actor (default 8)")
    t.add_argument("--net", help="teacher network spec, hidden widths joined by 'x' (default 256x256)")
    budget = t.add_mutually_exclusive_group()
    budget.add_argument("--steps", type=int, help="env-step budget (default: the env's preset)")
    budget.add_argument("--time", type=float, help="wall-clock budget in seconds, Ray start-up included")
    t.add_argument("--target-return", type=float,
                   help="stop once the greedy mean return reaches this (default: the env's reward threshold)")
    t.add_argument("--no-target", action="store_true", help="train for the whole budget")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--init", help="start from this teacher checkpoint")
    t.add_argument("--address", help="Ray address to join (default: an embedded local Ray runtime)")
    t.add_argument("--lr", type=float, help="Adam learning rate")
    t.add_argument("--batch-size", type=int, help="learner minibatch size")
    t.add_argument("--replay-ratio", type=float, help="learner steps per env step")
    t.add_argument("--quiet", action="store_true", help="no progress line")

    e = sub.add_parser("evaluate", help="greedy episodes of a teacher checkpoint")
    e.add_argument("checkpoint")
    e.add_argument("--episodes", type=int, default=20)
    e.add_argument("--seed", type=int, default=0)
    return parser


def _train_teacher(args: argparse.Namespace, started: float) -> int:
    info = describe(args.env)
    init = checkpoint.load(args.init, env_id=info.env_id, obs_shape=info.obs_shape, n_actions=info.n_actions,
                           net=args.net) if args.init else None
    out = args.out or str(Path("runs") / f"{args.env}-{time.strftime('%Y%m%d-%H%M%S')}")
    target = None if args.no_target else (args.target_return if args.target_return is not None else info.reward_threshold)
    config = teacher_config(
        args.env, out,
        steps=args.steps, time=args.time, target_return=target, seed=args.seed, init=args.init,
        address=args.address, actors=args.actors, envs_per_actor=args.envs_per_actor,
        replay_ratio=args.replay_ratio,
        dqn={"net": args.net or (init.net if init else None), "lr": args.lr, "batch_size": args.batch_size},
    )
    check_writable(config.out)

    from .teacher import TeacherDriver  # imports Ray: only once the input is known to be good

    summary = TeacherDriver(config, info, init=init, started=started, show_progress=not args.quiet).train()
    teacher = summary["teacher"]
    rows = [
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
    ]
    width = max(len(k) for k, _ in rows)
    print("\n".join(f"{k:<{width}}  {v}" for k, v in rows))
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from ..actors.evaluate import evaluate
    from ..learners.networks import greedy_actions

    ckpt = checkpoint.load(args.checkpoint)
    describe(ckpt.env_id)
    net = ckpt.network()
    result = evaluate(ckpt.env_id, lambda obs: greedy_actions(net, obs), episodes=args.episodes, seed=args.seed)
    print(f"{ckpt.env_id}  {ckpt.net}  greedy return {result.mean:.1f} ± {result.std:.1f} over {result.episodes} episodes")
    return 0


def main(argv: list[str] | None = None) -> int:
    started = time.monotonic()
    args = _build_parser().parse_args(argv)
    try:
        if args.command == "train-teacher":
            return _train_teacher(args, started)
        return _evaluate(args)
    except ValueError as exc:  # our errors: EnvError, CheckpointError, RunDirError, config
        print(f"qdistill: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
