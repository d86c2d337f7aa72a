"""Per-env presets and the config makers: preset, then overrides; configs saved and read back."""

from __future__ import annotations

from dataclasses import asdict

from ...learners.configs import DistillConfig
from ...learners.configs import DQNConfig
from .runs import DistillRunConfig, ExplorationConfig, TeacherRunConfig


# Per-env presets, in the spirit of RL Baselines3 Zoo: measured on a 2-core machine
# (benchmarks/time_to_target.py, benchmarks/distill_quality.py). Flags override them.
TEACHER_PRESETS: dict[str, dict[str, object]] = {
    # RL-Zoo's CartPole DQN (lr, batch, ε, a target copy per 128 learner steps) with one learner
    # step per env step, not its 0.5, and 3-step returns: fewer env steps to 475 (benchmarks/teacher_vs_sb3.py)
    "CartPole-v1": {
        "steps": 300_000,
        "dqn": {"net": "256x256", "lr": 2.3e-3, "batch_size": 64, "target_update": 128, "n_step": 3},
        "exploration": {"end": 0.04, "steps": 8_000},
        "replay_ratio": 1.0,
        "eval_every": 2_000,
    },
    # RL-Zoo's Acrobot DQN (one learner step per env step, ε to 0.1 over 12,000 steps, a 50,000-row
    # buffer) with 3-step returns: fewer env steps to -100 than SB3's (benchmarks/teacher_vs_sb3.py)
    "Acrobot-v1": {
        "steps": 300_000,
        "buffer_capacity": 50_000,
        "dqn": {"net": "256x256", "lr": 6.3e-4, "batch_size": 128, "target_update": 250, "n_step": 3},
        "exploration": {"end": 0.1, "steps": 12_000},
        "replay_ratio": 1.0,
        "eval_every": 5_000,
    },
    # RL-Zoo's LunarLander DQN (lr, ε to 0.1 over 12,000 env steps, a 50,000-row buffer, a target copy
    # every 250 env steps) on a 128x128 network with minibatches of 256, not 128 (twice Zoo's rows per env step
    # in one step, about the time of one), 3-step returns, and 4 envs acting on weights about 64
    # learner steps old: fewer env steps to 200 than SB3's, in a third of its time (benchmarks/teacher_vs_sb3.py)
    "LunarLander-v3": {
        "steps": 1_500_000,
        "buffer_capacity": 50_000,
        "dqn": {"net": "128x128", "lr": 6.3e-4, "batch_size": 256, "target_update": 250, "n_step": 3},
        "exploration": {"end": 0.1, "steps": 12_000},
        "replay_ratio": 1.0,
        "actors": 1,
        "envs_per_actor": 4,
        "steps_per_call": 8,
        "eval_every": 10_000,
    },
    # MinAtar (Young & Tian 2019): their conv16-128 network; one update per 4 env steps
    "MinAtar/*": {
        "steps": 1_000_000,
        "buffer_capacity": 100_000,
        "learning_starts": 5_000,
        "dqn": {"net": "minatar", "lr": 2.5e-4, "batch_size": 64, "target_update": 1_000},
        "exploration": {"end": 0.01, "steps": 100_000},
        "replay_ratio": 0.25,
        "eval_every": 25_000,
    },
    # Atari, for GPU machines (Mnih et al. 2015 with Adam): rows carry two 84x84x4 frames (56 KB)
    "ALE/*": {
        "steps": 10_000_000,
        "buffer_capacity": 100_000,
        "learning_starts": 20_000,
        "dqn": {"net": "nature", "lr": 1e-4, "batch_size": 32, "target_update": 2_000},
        "exploration": {"end": 0.01, "steps": 1_000_000},
        "replay_ratio": 0.25,
        "eval_every": 250_000,
    },
}
PIXEL_UPDATES_PER_SAMPLE = 16  # pixel rows are large: an Atari sample of 4,096 rows is 115 MB
DISTILL_DEFAULTS: dict[str, object] = {
    "steps": 500_000,
    "actors": 1,
    "replay_ratio": 0.1,
    # 32,768-row samples of a 16x16 student's 256-row minibatches: a Ray call's cost spread over 128
    # updates (benchmarks/throughput.py --also-updates-per-sample 64 measures the two side by side;
    # 64 gave 0.95x the plain loop against 0.86x at 16 when a step took 0.4 ms, 0.87x once the
    # learners' Adam made it 0.33 ms); pixel rows keep PIXEL_UPDATES_PER_SAMPLE
    "updates_per_sample": 128,
    "exploration": {"start": 0.05, "end": 0.05, "steps": 0},
}
DISTILL_PRESETS: dict[str, dict[str, object]] = {
    "CartPole-v1": {"distill": {"students": ("16x16",)}},
    "Acrobot-v1": {"distill": {"students": ("16x16",)}},
    "LunarLander-v3": {"distill": {"students": ("64x64",)}, "buffer_capacity": 200_000, "eval_every_s": 5.0},
    "MinAtar/*": {"distill": {"students": ("c8k3s1-16",)}, "eval_every_s": 10.0,  # 6.5% of the teacher's parameters
                  "updates_per_sample": PIXEL_UPDATES_PER_SAMPLE},
    "ALE/*": {"distill": {"students": ("c16k8s4-c32k4s2-256",)}, "buffer_capacity": 50_000, "eval_every_s": 30.0,
              "updates_per_sample": PIXEL_UPDATES_PER_SAMPLE},
}


def preset(table: dict[str, dict[str, object]], env: str) -> dict[str, object]:
    """The env's own preset, else its family's (`MinAtar/*`, `ALE/*`), else none."""
    family = env.split("/")[0] + "/*" if "/" in env else None
    return table.get(env) or table.get(family or "", {})
_TEACHER_NESTED = {"dqn": DQNConfig, "exploration": ExplorationConfig}
_DISTILL_NESTED = {"distill": DistillConfig, "exploration": ExplorationConfig, "dqn": DQNConfig}
# a teacher learning in the run learns as `train-teacher` would: its preset's network, optimiser,
# exploration, replay ratio, buffer and rollout actors (LunarLander: one, of 4 envs acting on fresh
# weights); the students distill from each minibatch it trains on
_LEARNING_TEACHER_KEYS = ("steps", "dqn", "exploration", "replay_ratio", "buffer_capacity", "learning_starts",
                          "actors", "envs_per_actor", "steps_per_call")


def teacher_config(env: str, out: str, **overrides: object) -> TeacherRunConfig:
    """The env's preset, then `overrides` (None means "not given"); validated on construction.

    Overrides of nested fields go in dicts: `dqn={...}`, `exploration={...}`.
    """
    return _resolve(TeacherRunConfig, preset(TEACHER_PRESETS, env) or {"steps": 500_000}, _TEACHER_NESTED, env, out,
                    overrides)


def distill_config(env: str, out: str, **overrides: object) -> DistillRunConfig:
    """Like `teacher_config`; nested overrides in `distill={...}`, `exploration={...}`."""
    chosen = _merge(DISTILL_DEFAULTS, preset(DISTILL_PRESETS, env))
    if overrides.get("teacher_learns"):
        teacher = preset(TEACHER_PRESETS, env) or {"steps": 500_000}
        learning = {k: teacher[k] for k in _LEARNING_TEACHER_KEYS if k in teacher}
        learning["exploration"] = {**asdict(ExplorationConfig()), **teacher.get("exploration", {})}
        if overrides.get("teacher"):  # a trained teacher learning on explores as at the end of its schedule
            learning["exploration"].update(start=learning["exploration"]["end"], steps=0)
        # evaluated as often in env steps as `train-teacher` evaluates (`eval_every`, at most once a
        # second): a learning teacher's returns swing, and the run stops at the first evaluation
        # that finds teacher and students at the target; more often, the evaluator takes CPU from
        # the learner (LunarLander: 42% of a core every second, against every 20,000 env steps)
        # the students step once per 256 rows (four of the teacher's minibatches): a small student's
        # step costs about the same at any batch size, and they keep up (benchmarks/online_teacher.py)
        chosen = _merge(chosen, {"actors": 2, "updates_per_sample": 16, "eval_every_s": 1.0,
                                 "eval_every": teacher.get("eval_every", TeacherRunConfig.eval_every),
                                 "distill": {"batch_size": 256}, **learning})
    return _resolve(DistillRunConfig, chosen, _DISTILL_NESTED, env, out, overrides)


def _merge(base: dict[str, object], top: dict[str, object]) -> dict[str, object]:
    merged = dict(base)
    for k, v in top.items():
        merged[k] = {**merged[k], **v} if isinstance(v, dict) and isinstance(merged.get(k), dict) else v
    return merged


def _resolve(cls, preset: dict[str, object], nested: dict[str, type], env: str, out: str,
             overrides: dict[str, object]):
    flat = {k: v for k, v in preset.items() if k not in nested}
    given = {k: v for k, v in overrides.items() if v is not None and k not in nested}
    if given.get("time") is not None and "steps" not in given:
        flat.pop("steps", None)  # a time budget alone replaces the preset's step budget
    flat.update(given)
    subs = {name: sub(**{**preset.get(name, {}), **_given(overrides.get(name))}) for name, sub in nested.items()}
    return cls(env=env, out=out, **subs, **flat)


def _given(d: object) -> dict[str, object]:
    return {k: v for k, v in (d or {}).items() if v is not None}  # type: ignore[union-attr]
