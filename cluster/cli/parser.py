"""The `qdistill` command line's parser: every command and flag, and the flag value types."""

from __future__ import annotations

import argparse
import json

from ...actors.redis_connect import PASSWORD_ENV
from ..config.resolve import RESUME_FLAGS


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
    p.add_argument("--env", action="append",
                   help="Gymnasium env id with a Discrete action space, e.g. CartPole-v1 (required unless --resume); "
                        "give it once per task for a multi-task network")
    _task_flags(p)
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
    p.add_argument("--buffer-ca", metavar="PEM",
                   help="rediss:// buffer: the CA certificate that signed the Redis server's certificate (default: "
                        "the system's CAs). TLS files go into the buffer URL: each path must hold on every node")
    p.add_argument("--buffer-cert", metavar="PEM",
                   help="rediss:// buffer: a client certificate, for a server that asks for one "
                        "(tls-auth-clients yes)")
    p.add_argument("--buffer-key", metavar="PEM", help="rediss:// buffer: the client certificate's private key "
                                                       "(unless the --buffer-cert file holds it)")
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


def _normalize_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--normalize-obs", action="store_true",
                   help="networks normalise their vector observations (running mean and variance from the teacher's "
                        "training, clipped to ±10, frozen after it; students take their teacher's): the spec "
                        "gets 'norm-' in front, e.g. norm-256x256")


def _task_flags(p: argparse.ArgumentParser) -> None:
    """How a run of several tasks (--env given more than once) divides its samples and shapes its network."""
    p.add_argument("--task-balance", help="several tasks: how samples divide between them, 'equal' (default) or "
                                          "weights per task joined by ':', e.g. 2:1:1")
    p.add_argument("--task-batches", help="several tasks: each minibatch holds rows of every task ('mixed', "
                                          "default) or of one task ('one', tasks taking turns)")
    p.add_argument("--task-inputs", help="several tasks: the network's input layer, one per task ('per-task', "
                                         "default) or one over observations zero-padded to the widest task ('pad')")
    p.add_argument("--task-actors", help="several tasks: rollout actors per task joined by ':', e.g. 2:1:1 "
                                         "(default: --actors split evenly)")


def _config_flag(p: argparse.ArgumentParser, command: str, example: str) -> None:
    p.add_argument("--config", metavar="FILE",
                   help=f"a TOML or YAML file of settings, the keys of a `qdistill {command}` run's config.json "
                        f"(e.g. {example}); flags override it, it overrides the env's preset")


def _run_flags(r: argparse.ArgumentParser) -> None:
    """`qdistill run`'s flags (and `config show`'s, which resolves the same config)."""
    _common(r)
    _normalize_flag(r)
    _config_flag(r, "run", "deploy/configs/cartpole.toml")
    r.add_argument("--teacher", action="append", metavar="[ENV=]PATH",
                   help="teacher checkpoint, or sb3:PATH.zip for a Stable-Baselines3 DQN/QR-DQN model (default: train "
                        "one first, into RUN/teacher); several tasks: ENV=PATH once per task, or one multi-task network")
    r.add_argument("--teacher-steps", type=int, metavar="STEPS",
                   help="without --teacher: the env-step budget of the teacher trained first (default: its "
                        "train-teacher preset's; one teacher stops at its target return before, several tasks' "
                        "multi-task teacher trains to the budget)")

    r.add_argument("--teacher-learns", action="store_true",
                   help="the teacher keeps learning by DQN in this run (from --teacher, or from scratch) while "
                        "the students distill from it")
    r.add_argument("--student-every", type=int, metavar="N",
                   help="with --teacher-learns: the students step on one batch of the teacher's rows in N "
                        "(default 1: every batch; more makes the learner faster and the students follow less closely)")
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
    r.add_argument("--eval-ci", type=float, metavar="POINTS",
                   help="the final evaluation plays more rounds of episodes until each student's 95%% interval of %% "
                        "of its teacher is at most POINTS wide (at most --eval-max-episodes; default: one round, 20)")
    r.add_argument("--eval-max-episodes", type=int, metavar="N",
                   help="the most episodes --eval-ci's final evaluation plays per policy (default 1000)")
    r.add_argument("--mode", help="online (default) or offline (the seed's label-once-then-fit baseline)")
    r.add_argument("--samples", type=int, help="offline: teacher-labelled states (default 50000)")
    r.add_argument("--epochs", type=int, help="offline: passes over them (default 10)")


def _shrink_flags(sh: argparse.ArgumentParser) -> None:
    """`qdistill shrink`'s flags: `run`'s, the threshold and the candidates."""
    _run_flags(sh)
    sh.add_argument("--keep", type=float,
                    help="the share of the teacher's return the student must keep, its 95%% interval included "
                         "(default 0.95)")
    sh.add_argument("--candidates", help="candidate specs joined by ',' (default: MLPs 8 to 64 wide with one layer "
                                         "and 8x8 to 256x256 with two; conv nets c4k3s1-8 to c16k3s1-128, with one "
                                         "or two convolutions, on frames)")


def _teacher_flags(t: argparse.ArgumentParser) -> None:
    """`qdistill train-teacher`'s flags (and `config show-teacher`'s)."""
    _common(t)
    _normalize_flag(t)
    _config_flag(t, "train-teacher", "a `qdistill config show-teacher` output")
    t.add_argument("--net", help="teacher network spec, hidden widths joined by 'x' (default 256x256)")
    t.add_argument("--init", help="start from this teacher checkpoint")
    t.add_argument("--n-step", type=int, metavar="N",
                   help="TD targets from N-step returns: up to N rewards summed, discounted, before bootstrapping "
                        "(default: the env's preset, else 1)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="qdistill", description="Distill DQN teachers into small students, on Ray.")
    sub = parser.add_subparsers(dest="command", required=True)

    _run_flags(sub.add_parser("run", help="distill a teacher into students (training the teacher first unless "
                                          "--teacher)"))
    _shrink_flags(sub.add_parser("shrink", help="find the smallest student that keeps a share of the teacher's "
                                                 "return: candidates distilled side by side in one run, halved as it goes"))
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
    sc.add_argument("--actors", type=int, required=True, help="rollout actors wanted (in all, split evenly over a "
                                                              "multi-task run's tasks, or with --task that task's)")
    sc.add_argument("--task", metavar="ENV", help="a multi-task run: scale this task's rollout actors")
    sw = sub.add_parser("swap-teacher", help="hand a running run a new teacher checkpoint (its next version)")
    sw.add_argument("run", help="run name or run directory")
    sw.add_argument("checkpoint", help="teacher checkpoint: same env, observation shape, action count and network")
    sp = sub.add_parser("stop", help="stop a run cleanly: final checkpoints, report; then remove it")
    sp.add_argument("run", nargs="?", help="run name or run directory")
    sp.add_argument("--all", action="store_true", help="every run on the cluster (a pre-stop hook's command)")
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
    x.add_argument("--task", metavar="ENV", help="a multi-task run: write this task's student alone (the shared "
                                                "trunk and its head); without it the whole network, one input and "
                                                "output per task")
    x.add_argument("--format", required=True, help="onnx (opset 17, run with onnxruntime) or torchscript")
    x.add_argument("--int8", action="store_true", help="dynamic int8 quantisation of the inner layers (first and last stay float; MLP students only), inputs equalised and weights rounded on --states calibration states to keep the greedy action's margin")
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
