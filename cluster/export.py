"""`qdistill export`: a run's student as ONNX or TorchScript, optionally int8, verified against the
float student before anything is written, with a JSON sidecar and a size and latency table."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ..actors.envs import as_stored, describe, make_vector_env
from ..actors.evaluate import evaluate
from ..learners import checkpoint
from ..learners import export as formats
from ..learners.networks import GreedyPolicy, action_latency_us, count_params, input_dtype, is_conv
from .rundir import RunPaths, tables

EXPORT_SEED = 30_000  # held-out states and episodes: not the seeds training or evaluation use
CALIBRATION_SEED = 40_000  # the states int8 rounds its weights on, apart from those it is verified on
EXPLORE = 0.1  # random actions among the held-out states' behaviour, so they are not only the student's path


class ExportError(ValueError):
    """A run directory, student or export that cannot be used; nothing was written."""


@dataclass(frozen=True)
class Request:
    run: Path
    student: str | None
    fmt: str
    int8: bool
    out: Path | None
    min_agreement: float
    states: int
    episodes: int


def check(req: Request) -> None:
    if req.fmt not in formats.FORMATS:
        raise ExportError(f"format {req.fmt!r} is not known: expected one of {', '.join(formats.FORMATS)}")
    if not 0 < req.min_agreement <= 1:
        raise ExportError(f"min agreement {req.min_agreement} is not valid: expected a fraction in (0, 1], e.g. 0.99")
    if req.states < 1:
        raise ExportError(f"states {req.states} is not valid: expected an integer >= 1")
    if req.episodes < 1:
        raise ExportError(f"episodes {req.episodes} is not valid: expected an integer >= 1")
    needed = ["onnxruntime", "onnx"] if req.fmt == "onnx" else []
    for module in needed:
        try:
            __import__(module)
        except ImportError:
            raise ExportError(f"--format onnx needs {module}, which is not installed: pip install 'qdistill[export]'") \
                from None


def find_student(run: Path, name: str | None) -> tuple[str, checkpoint.Checkpoint, checkpoint.Checkpoint]:
    """The run's (student name, student, teacher) checkpoints: its best student checkpoint."""
    paths = RunPaths(run)
    names = paths.students()
    if (paths.checkpoints / "tasks").is_dir():
        raise ExportError(f"run directory {str(run)!r} is a multi-task run: exporting its students is not built yet; "
                          "each task's part is an ordinary checkpoint under checkpoints/tasks/ENV/")
    if not names:
        raise ExportError(f"run directory {str(run)!r} has no students: expected the directory of a `qdistill run` "
                          "(checkpoints/student-NAME-best.pt)")
    if name is None and len(names) > 1:
        raise ExportError(f"run directory {str(run)!r} holds students {', '.join(names)}: choose one with --student")
    name = names[0] if name is None else name
    if name not in names:
        raise ExportError(f"student {name!r} is not in run directory {str(run)!r}: it holds {', '.join(names)}")
    teacher = checkpoint.load(paths.teacher)
    return name, paths.load_student(name, teacher), teacher


def held_out_states(env_id: str, act, n: int, seed: int) -> np.ndarray:
    """`n` states the student meets when it acts (ε = 0.1), from seeds no training or evaluation used."""
    env = make_vector_env(env_id, 16)
    rng = np.random.default_rng(seed)
    try:
        obs = as_stored(env.reset(seed=seed)[0])
        states = []
        while sum(len(s) for s in states) < n:
            states.append(obs)
            random = rng.integers(0, env.single_action_space.n, len(obs))
            obs = as_stored(env.step(np.where(rng.random(len(obs)) < EXPLORE, random, act(obs)))[0])
    finally:
        env.close()
    return np.concatenate(states)[:n]


def _measure(label: str, ckpt: checkpoint.Checkpoint, path: Path, fmt: str) -> dict[str, object]:
    run = formats.runner(path, fmt)
    us = action_latency_us(lambda obs: run(obs).argmax(axis=1), ckpt.obs_shape, dtype=input_dtype(ckpt.net))
    return {"policy": label, "params": count_params(ckpt.network()), "file_bytes": path.stat().st_size,
            "us_per_action": round(us, 2)}


def input_description(net: str, obs_shape: tuple[int, ...]) -> dict[str, object]:
    """The sidecar's "input": what the file takes, as the run stored it. A conv net takes uint8
    frames, channels first, and scales them itself; an MLP takes float32 vectors as they are."""
    if is_conv(net):
        return {"name": formats.INPUT, "shape": ["batch", *obs_shape], "dtype": "uint8",
                "channel_order": "channels_first", "scaling": "x / 255 inside the model"}
    return {"name": formats.INPUT, "shape": ["batch", *obs_shape], "dtype": "float32", "scaling": "none"}


def _quiet(_text: str) -> None:
    pass


def export(req: Request, say: Callable[[str], None] = _quiet) -> dict[str, object]:
    """Write and verify; returns the sidecar. Raises ExportError, writing nothing, when the exported
    student picks the float student's action on fewer than `min_agreement` of the held-out states."""
    check(req)
    name, student, teacher = find_student(req.run, req.student)
    if req.int8 and (refusal := formats.int8_refusal(student.network(), name)):
        raise ExportError(refusal)
    info = describe(student.env_id)
    out = req.out or RunPaths(req.run).export
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        return _write_verified(req, name, student, teacher, info, out, say)
    except BaseException:
        if created:
            shutil.rmtree(out, ignore_errors=True)
        raise


def _write_verified(req: Request, name: str, student: checkpoint.Checkpoint, teacher: checkpoint.Checkpoint,
                    info, out: Path, say: Callable[[str], None]) -> dict[str, object]:
    target = out / f"student-{name}{'-int8' if req.int8 else ''}{formats.SUFFIX[req.fmt]}"
    float_student = GreedyPolicy(student.net, student.obs_shape, student.n_actions)
    float_student.load(student.version, student.weights)
    summary_path = RunPaths(req.run).summary
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    int8_how = f"int8, rounded on {req.states:,} calibration states, two tries" if req.int8 else "float"
    say(f"writing student {name} as {req.fmt} ({int8_how})")
    calibration = held_out_states(student.env_id, float_student.act, req.states, CALIBRATION_SEED) if req.int8 else None
    with tempfile.TemporaryDirectory(dir=out, prefix=".export-") as tmp:
        written = Path(tmp) / target.name
        int8_choice = formats.write(student.network(), written, req.fmt, int8=req.int8,
                                    obs_shape=student.obs_shape, calibration=calibration)
        act = formats.one_at_a_time(formats.runner(written, req.fmt))
        say(f"verifying on {req.states:,} held-out states")
        states = held_out_states(student.env_id, float_student.act, req.states, EXPORT_SEED)
        agreement = float(np.mean(act(states) == float_student.act(states)))
        if agreement < req.min_agreement:
            raise ExportError(
                f"the exported student {name} ({req.fmt}{', int8' if req.int8 else ''}) picks the float student's action "
                f"on {agreement:.2%} of {req.states:,} held-out states: below --min-agreement {req.min_agreement:.2%}; "
                "nothing written")
        say(f"playing {req.episodes} greedy episodes with the exported and the float student")
        exported_eval = evaluate(student.env_id, act, episodes=req.episodes, seed=EXPORT_SEED)
        float_eval = evaluate(student.env_id, float_student.act, episodes=req.episodes, seed=EXPORT_SEED)
        # the size and latency table: teacher, float student and int8 student in this format, the
        # exported file among them
        say(f"measuring size and latency: teacher, float student{', int8 student' if _int8_row(student) else ''} "
            f"({req.fmt})")
        files = _sizes(req, name, student, teacher, written, Path(tmp))
        sidecar = {
            "file": target.name, "format": req.fmt, "int8": req.int8,
            **({"int8_calibration": {"states": req.states, "seed": CALIBRATION_SEED, **int8_choice}}
               if req.int8 else {}),
            **({"onnx_opset": formats.ONNX_OPSET} if req.fmt == "onnx" else {}),
            "input": input_description(student.net, info.obs_shape),
            "output": {"name": formats.OUTPUT, "shape": ["batch", info.n_actions], "meaning": "Q-value per action; "
                       "act with argmax"},
            "env_id": student.env_id, "obs_shape": list(student.obs_shape),
            "obs_dtype": str(input_dtype(student.net)), "n_actions": student.n_actions,
            "obs_normalisation": None,  # raw observations, as stored: a conv net's / 255 is inside the file
            "student": {"net": student.net, "version": student.version},
            "teacher": {"net": teacher.net, "version": teacher.version},
            "evaluation": summary.get("students", {}).get(name),
            "verification": {
                "held_out_states": req.states, "agreement": round(agreement, 6), "min_agreement": req.min_agreement,
                "episodes": req.episodes, "seed": EXPORT_SEED,
                "return_exported": {"mean": exported_eval.mean, "std": exported_eval.std},
                "return_float": {"mean": float_eval.mean, "std": float_eval.std},
            },
            "size_and_latency": files,
        }
        sidecar_tmp = Path(tmp) / "sidecar.json"
        sidecar_tmp.write_text(json.dumps(sidecar, indent=2) + "\n")
        os.replace(written, target)
        os.replace(sidecar_tmp, out / f"{target.name}.json")
    return sidecar


def table(sidecar: dict[str, object]) -> str:
    rows = [("policy", "params", "file", "µs/action")] + [
        (r["policy"], f"{r['params']:,}", f"{r['file_bytes'] / 1024:.1f} KiB", f"{r['us_per_action']:.1f}")
        for r in sidecar["size_and_latency"]]
    return tables.table(rows, right=(1, 2, 3))


def _sizes(req: Request, name: str, student: checkpoint.Checkpoint, teacher: checkpoint.Checkpoint,
           written: Path, tmp: Path) -> list[dict[str, object]]:
    """The size and latency table: teacher, float student and int8 student (MLP students only) in
    this format, the exported file among them."""
    rows = []
    policies = [("teacher", teacher, False), (f"student {name}", student, False)]
    for label, ckpt, int8 in policies + ([(f"student {name} int8", student, True)] if _int8_row(student) else []):
        path = tmp / f"{len(rows)}{formats.SUFFIX[req.fmt]}"
        if ckpt is student and int8 == req.int8:
            path = written
        else:  # only size and latency are read: the int8 row of a float export needs no calibrated rounding
            formats.write(ckpt.network(), path, req.fmt, int8=int8, obs_shape=ckpt.obs_shape)
        rows.append(_measure(label, ckpt, path, req.fmt))
    return rows


def _int8_row(student: checkpoint.Checkpoint) -> bool:
    """Whether the table has an int8 student: not for conv students, which int8 refuses."""
    return not is_conv(student.net)
