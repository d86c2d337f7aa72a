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
from ..learners.networks import action_latency_us, count_params, input_dtype
from ..learners.specs import NORM_CLIP, NORM_EPS, is_conv, parse_spec
from .rundir import RunPaths, tables
from .rundir.multitask import task_dir

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
    task: str | None = None  # a multi-task run's task to write alone (its student's trunk and head)


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


@dataclass(frozen=True)
class Part:
    """One task's student as the export verifies it: a plain network, its teacher, and its
    evaluation in the run's summary."""
    student: checkpoint.Checkpoint
    teacher: checkpoint.Checkpoint
    evaluation: dict[str, object] | None


@dataclass(frozen=True)
class Found:
    """What `export` writes: student `name`'s parts, one per task it verifies; `whole` when a
    multi-task student is written whole (one file, every task), `task` when one task's part is."""
    name: str
    parts: list[Part]
    whole: checkpoint.MultiTaskCheckpoint | None = None
    task: str | None = None

    def on(self, env: str, fmt: str) -> str:
        """`fmt` with the env filled in where the export is of a multi-task run (whole or one task's
        part), so messages and rows name the task; "" for a one-task run."""
        return fmt.format(env) if self.whole is not None or self.task else ""


def find_student(run: Path, name: str | None, task: str | None = None) -> Found:
    """The run's student (its best checkpoint), whole or, of a multi-task run, task `task`'s part."""
    paths = RunPaths(run)
    names = paths.students()
    if not names:
        raise ExportError(f"run directory {str(run)!r} has no students: expected the directory of a `qdistill run` "
                          "(checkpoints/student-NAME-best.pt)")
    if name is None and len(names) > 1:
        raise ExportError(f"run directory {str(run)!r} holds students {', '.join(names)}: choose one with --student")
    name = names[0] if name is None else name
    if name not in names:
        raise ExportError(f"student {name!r} is not in run directory {str(run)!r}: it holds {', '.join(names)}")
    summary = json.loads(paths.summary.read_text()) if paths.summary.is_file() else {}
    if not (paths.checkpoints / "tasks").is_dir():
        if task is not None:
            raise ExportError(f"--task {task!r}: run directory {str(run)!r} is a one-task run; --task chooses a "
                              "multi-task run's task: drop it")
        teacher = checkpoint.load(paths.teacher)
        return Found(name, [Part(paths.load_student(name, teacher), teacher, summary.get("students", {}).get(name))])
    whole = checkpoint.load_multitask(paths.student_checkpoint(name, "best"))
    if task is not None and task not in whole.env_ids:
        raise ExportError(f"--task {task!r} is not a task of run directory {str(run)!r}: expected one of "
                          f"{', '.join(whole.env_ids)}")
    parts = []
    for env in [task] if task else whole.env_ids:
        folder = task_dir(paths, env)
        teacher = checkpoint.load(folder / "teacher.pt")
        student = checkpoint.load(folder / paths.student_checkpoint(name, "best").name, env_id=env)
        parts.append(Part(student, teacher, summary.get("per_task", {}).get(env, {}).get("students", {}).get(name)))
    return Found(name, parts, None if task else whole, task)


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


def _measure(label: str, params: int, path: Path, run: formats.Runner, ckpt: checkpoint.Checkpoint) -> dict[str, object]:
    us = action_latency_us(lambda obs: run(obs).argmax(axis=1), ckpt.obs_shape, dtype=input_dtype(ckpt.net))
    return {"policy": label, "params": params, "file_bytes": path.stat().st_size, "us_per_action": round(us, 2)}


def input_description(net: str, obs_shape: tuple[int, ...], name: str = formats.INPUT,
                      weights: dict[str, np.ndarray] | None = None) -> dict[str, object]:
    """The sidecar's "input": what the file takes, as the run stored it. A conv net takes uint8
    frames, channels first, and scales them itself; an MLP takes float32 vectors as they are (a
    `norm-` one normalises them itself)."""
    if is_conv(net):
        return {"name": name, "shape": ["batch", *obs_shape], "dtype": "uint8",
                "channel_order": "channels_first", "scaling": "x / 255 inside the model"}
    scaling = "normalised inside the model (obs_normalisation)" if normalisation(net, weights or {}) else "none"
    return {"name": name, "shape": ["batch", *obs_shape], "dtype": "float32", "scaling": scaling}


def normalisation(net: str, weights: dict[str, np.ndarray]) -> dict[str, object] | None:
    """The sidecar's "obs_normalisation": a `norm-` network's statistics (its teacher's), applied
    inside the file; None for raw observations (a conv net's / 255 is inside the file too)."""
    if not parse_spec(net).normalize:
        return None
    stats = {k.rsplit(".", 1)[1]: np.asarray(v) for k, v in weights.items() if k.endswith((".mean", ".var", ".count"))}
    return {"in_graph": True, "formula": f"clip((obs - mean) / sqrt(var + {NORM_EPS:g}), -{NORM_CLIP:g}, {NORM_CLIP:g})",
            "mean": stats["mean"].tolist(), "var": stats["var"].tolist(), "count": int(stats["count"]),
            "source": "the teacher's running statistics, frozen when its training stopped"}


def _quiet(_text: str) -> None:
    pass


def export(req: Request, say: Callable[[str], None] = _quiet) -> dict[str, object]:
    """Write and verify; returns the sidecar. Raises ExportError, writing nothing, when the exported
    student picks the float student's action on fewer than `min_agreement` of the held-out states
    (of any task, for a whole multi-task student)."""
    check(req)
    found = find_student(req.run, req.student, req.task)
    if req.int8 and found.whole is not None:
        raise ExportError(f"student {found.name} is a multi-task network: --int8 writes one task's part; add --task "
                          f"(one of {', '.join(found.whole.env_ids)}), or export it whole without --int8")
    if req.int8 and (refusal := formats.int8_refusal(found.parts[0].student.network(), found.name)):
        raise ExportError(refusal)
    out = req.out or RunPaths(req.run).export
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        return _write_verified(req, found, out, say)
    except BaseException:
        if created:
            shutil.rmtree(out, ignore_errors=True)
        raise


def _write_verified(req: Request, found: Found, out: Path, say: Callable[[str], None]) -> dict[str, object]:
    name, whole = found.name, found.whole
    task = f"-{found.task.replace('/', '-')}" if found.task else ""
    target = out / f"student-{name}{task}{'-int8' if req.int8 else ''}{formats.SUFFIX[req.fmt]}"
    int8_how = f"int8, rounded on {req.states:,} calibration states, two tries" if req.int8 else "float"
    what = f"student {name}" + (f" (all {len(found.parts)} tasks in one file)" if whole else
                                f" for {found.task}" if found.task else "")
    say(f"writing {what} as {req.fmt} ({int8_how})")
    with tempfile.TemporaryDirectory(dir=out, prefix=".export-") as tmp:
        written = Path(tmp) / target.name
        int8_choice = None
        if whole is not None:
            formats.write_all(whole.network(), written, req.fmt)
            shapes = list(whole.obs_shapes)
            runners = [formats.task_runner(written, req.fmt, t, shapes, input_dtype(whole.net))
                       for t in range(len(shapes))]
        else:
            student = found.parts[0].student
            calibration = held_out_states(student.env_id, student.policy().act, req.states, CALIBRATION_SEED) \
                if req.int8 else None
            int8_choice = formats.write(student.network(), written, req.fmt, int8=req.int8,
                                        obs_shape=student.obs_shape, calibration=calibration)
            runners = [formats.runner(written, req.fmt)]
        sections = [_verified(req, found, part, run, t, say) for t, (part, run) in enumerate(zip(found.parts, runners))]
        say(f"measuring size and latency: teacher, float student{', int8 student' if _int8_row(found) else ''} "
            f"({req.fmt})")
        header = {
            "file": target.name, "format": req.fmt, "int8": req.int8,
            **({"int8_calibration": {"states": req.states, "seed": CALIBRATION_SEED, **int8_choice}}
               if req.int8 else {}),
            **({"onnx_opset": formats.ONNX_OPSET} if req.fmt == "onnx" else {}),
        }
        sizes = {"size_and_latency": _sizes(req, found, written, runners, Path(tmp))}
        if whole is not None:
            sidecar = {**header, "student": {"net": whole.net, "version": whole.version, "inputs": whole.inputs,
                                             "params": count_params(whole.network())}, "tasks": sections, **sizes}
        else:
            sidecar = {**header, **({"task": found.task} if found.task else {}), **sections[0], **sizes}
        sidecar_tmp = Path(tmp) / "sidecar.json"
        sidecar_tmp.write_text(json.dumps(sidecar, indent=2) + "\n")
        os.replace(written, target)
        os.replace(sidecar_tmp, out / f"{target.name}.json")
    return sidecar


def _verified(req: Request, found: Found, part: Part, run: formats.Runner, t: int,
              say: Callable[[str], None]) -> dict[str, object]:
    """One task's part of the sidecar, once the file picks its float student's actions: its input
    and output, teacher, evaluation and verification."""
    student, teacher = part.student, part.teacher
    where = found.on(student.env_id, " on {}")
    float_student = student.policy()
    act = formats.one_at_a_time(run)
    say(f"verifying{where} on {req.states:,} held-out states")
    states = held_out_states(student.env_id, float_student.act, req.states, EXPORT_SEED)
    agreement = float(np.mean(act(states) == float_student.act(states)))
    if agreement < req.min_agreement:
        raise ExportError(
            f"the exported student {found.name} ({req.fmt}{', int8' if req.int8 else ''}){where} picks the float "
            f"student's action on {agreement:.2%} of {req.states:,} held-out states: below --min-agreement "
            f"{req.min_agreement:.2%}; nothing written")
    say(f"playing {req.episodes} greedy episodes{where} with the exported and the float student")
    exported_eval = evaluate(student.env_id, act, episodes=req.episodes, seed=EXPORT_SEED)
    float_eval = evaluate(student.env_id, float_student.act, episodes=req.episodes, seed=EXPORT_SEED)
    info = describe(student.env_id)
    names = formats.task_io(t) if found.whole is not None else (formats.INPUT, formats.OUTPUT)
    return {
        "input": input_description(student.net, info.obs_shape, names[0], student.weights),
        "output": {"name": names[1], "shape": ["batch", info.n_actions], "meaning": "Q-value per action; act with "
                   "argmax"},
        "env_id": student.env_id, "obs_shape": list(student.obs_shape),
        "obs_dtype": str(input_dtype(student.net)), "n_actions": student.n_actions,
        "obs_normalisation": normalisation(student.net, student.weights),
        "student": {"net": student.net, "version": student.version},
        "teacher": {"net": teacher.net, "version": teacher.version},
        "evaluation": part.evaluation,
        "verification": {
            "held_out_states": req.states, "agreement": round(agreement, 6), "min_agreement": req.min_agreement,
            "episodes": req.episodes, "seed": EXPORT_SEED,
            "return_exported": {"mean": exported_eval.mean, "std": exported_eval.std},
            "return_float": {"mean": float_eval.mean, "std": float_eval.std},
        },
    }


def verifications(sidecar: dict[str, object]) -> list[tuple[str, dict[str, object]]]:
    """(env id, verification) of each task the sidecar's file holds."""
    return [(t["env_id"], t["verification"]) for t in sidecar.get("tasks", [sidecar])]


def table(sidecar: dict[str, object]) -> str:
    rows = [("policy", "params", "file", "µs/action")] + [
        (r["policy"], f"{r['params']:,}", f"{r['file_bytes'] / 1024:.1f} KiB", f"{r['us_per_action']:.1f}")
        for r in sidecar["size_and_latency"]]
    return tables.table(rows, right=(1, 2, 3))


def _sizes(req: Request, found: Found, written: Path, runners: list[formats.Runner],
           tmp: Path) -> list[dict[str, object]]:
    """The size and latency table: each task's teacher and float student and, for MLP students, int8
    student in this format, the exported file among them (a whole multi-task file: its latency per
    task, every head computed)."""
    rows = []
    whole_params = count_params(found.whole.network()) if found.whole is not None else 0

    def own_file(label: str, ckpt: checkpoint.Checkpoint, int8: bool) -> None:
        path = tmp / f"{len(rows)}{formats.SUFFIX[req.fmt]}"
        # only size and latency are read: the int8 row of a float export needs no calibrated rounding
        formats.write(ckpt.network(), path, req.fmt, int8=int8, obs_shape=ckpt.obs_shape)
        rows.append(_measure(label, count_params(ckpt.network()), path, formats.runner(path, req.fmt), ckpt))

    for part, run in zip(found.parts, runners):
        on = found.on(part.student.env_id, " ({})")
        own_file(f"teacher{on}", part.teacher, False)
        if found.whole is not None:
            rows.append(_measure(f"student {found.name}, whole{on}", whole_params, written, run, part.student))
            continue
        exported = _measure(f"student {found.name}{' int8' if req.int8 else ''}{on}",
                            count_params(part.student.network()), written, run, part.student)
        if req.int8:
            own_file(f"student {found.name}{on}", part.student, False)
        rows.append(exported)
        if _int8_row(found) and not req.int8:
            own_file(f"student {found.name} int8{on}", part.student, True)
    return rows


def _int8_row(found: Found) -> bool:
    """Whether the table has an int8 student: not for conv students, which int8 refuses, nor for a
    whole multi-task network."""
    return found.whole is None and not is_conv(found.parts[0].student.net)
