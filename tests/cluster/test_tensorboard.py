"""Error bars in TensorBoard: each figure logged with its 95% interval is a margin chart of the
Custom Scalars tab (its value, lower and upper series), one-task and per-task keys alike, and the
layout is written once, at the first evaluation."""

from __future__ import annotations

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.custom_scalar import layout_pb2, metadata

from qdistill.cluster.rundir.tensorboard import ERROR_BARS, TensorBoardLog, margins

EVAL = {"env_steps": 2000, "eval/return/teacher": 500.0, "eval/return_ci_low/teacher": 480.0,
        "eval/return_ci_high/teacher": 500.0, "eval/return/16x16": 450.0, "eval/return_ci_low/16x16": 400.0,
        "eval/return_ci_high/16x16": 490.0, "eval/pct_of_teacher/16x16": 90.0,
        "eval/pct_of_teacher_ci_low/16x16": 80.0, "eval/pct_of_teacher_ci_high/16x16": 98.0,
        "eval/agreement/16x16": 0.9}


def test_margins_pair_each_figure_with_its_interval():
    assert margins(EVAL) == {
        "eval/pct_of_teacher/16x16": ["eval/pct_of_teacher/16x16", "eval/pct_of_teacher_ci_low/16x16",
                                      "eval/pct_of_teacher_ci_high/16x16"],
        "eval/return/16x16": ["eval/return/16x16", "eval/return_ci_low/16x16", "eval/return_ci_high/16x16"],
        "eval/return/teacher": ["eval/return/teacher", "eval/return_ci_low/teacher", "eval/return_ci_high/teacher"],
    }
    task = {"eval/Acrobot-v1/return/64x64": -90.0, "eval/Acrobot-v1/return_ci_low/64x64": -95.0,
            "eval/Acrobot-v1/return_ci_high/64x64": -85.0}
    assert margins(task) == {"eval/Acrobot-v1/return/64x64": list(task)}
    # an interval without its figure, or half an interval, draws nothing
    assert margins({"eval/return_ci_low/a": 1.0, "eval/return_ci_high/a": 2.0}) == {}
    assert margins({"eval/return/a": 1.0, "eval/return_ci_low/a": 0.5}) == {}
    assert margins({"learner/steps": 10}) == {}


def test_the_layout_is_written_once_with_the_first_evaluation(tmp_path):
    log = TensorBoardLog(tmp_path)
    log.scalars({"env_steps": 1000, "learner/steps": 10})
    log.scalars(EVAL)
    log.scalars({**EVAL, "env_steps": 4000, "eval/return/32x32": 1.0, "eval/return_ci_low/32x32": 0.0,
                 "eval/return_ci_high/32x32": 2.0})
    log.close()

    events = EventAccumulator(str(tmp_path), size_guidance={"scalars": 0, "tensors": 0})
    events.Reload()
    (point,) = events.Tensors(metadata.CONFIG_SUMMARY_TAG)
    layout = layout_pb2.Layout.FromString(point.tensor_proto.string_val[0])
    (category,) = layout.category
    assert category.title == ERROR_BARS
    charts = {c.title: [(s.value, s.lower, s.upper) for s in c.margin.series] for c in category.chart}
    assert charts == {key: [tuple(keys)] for key, keys in margins(EVAL).items()}
    # and the series it draws are the scalars themselves
    assert [(e.step, e.value) for e in events.Scalars("eval/return_ci_low/16x16")] == [(2000, 400.0), (4000, 400.0)]
