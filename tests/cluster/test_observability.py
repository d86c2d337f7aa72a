"""A CartPole-v1 run's TensorBoard event files and Ray metrics carry its metrics.jsonl keys: read
back with TensorBoard's own event reader, and from Ray's Prometheus endpoint on this node."""

from __future__ import annotations

import json
import time
import urllib.request
import uuid
from collections import defaultdict

import pytest
import ray
from prometheus_client.parser import text_string_to_metric_families
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from qdistill.cluster.cli import main
from tests.support.records import read_records

pytestmark = pytest.mark.slow  # a whole run, read back from TensorBoard and Ray's metrics

STUDENT = "16x16"
# the keys, in metrics.jsonl and as TensorBoard scalars
KEYS = {"rollout/steps_per_s", "buffer/size", "buffer/label_staleness", "learner/steps",
        f"learner/distill_loss/{STUDENT}", "eval/return/teacher", f"eval/return/{STUDENT}",
        f"eval/agreement/{STUDENT}"}
TAGS = ("run", "actor", "student", "policy")


@pytest.fixture(scope="module")
def observed_run(ray_session, steady_teacher, tmp_path_factory):
    """One short run with two rollout actors, under a name no other run of the session has (Ray's
    metrics outlive a run, tagged with its name)."""
    out = tmp_path_factory.mktemp("observability") / f"observed-{uuid.uuid4().hex[:6]}"
    code = main(["run", "--env", "CartPole-v1", "--teacher", steady_teacher, "--students", STUDENT,
                 "--actors", "2", "--steps", "30000", "--no-target", "--eval-ci", "5", "--out", str(out),
                 "--quiet"])
    assert code == 0
    return out


def _scrape() -> dict[str, dict[tuple, float]]:
    """Every qdistill series on the Prometheus endpoints of the cluster's nodes: sample name ->
    {its qdistill tags (sorted pairs): value}."""
    series: dict[str, dict[tuple, float]] = defaultdict(dict)
    for node in ray.nodes():
        if not node["Alive"]:
            continue
        url = f"http://{node['NodeManagerAddress']}:{node['MetricsExportPort']}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode()
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name.startswith("ray_qdistill_"):
                    tags = tuple(sorted((k, v) for k, v in sample.labels.items() if k in TAGS))
                    series[sample.name][tags] = sample.value
    return series


def test_ray_metrics_carry_the_runs_figures(observed_run):
    """Read first: a gauge of an exited process leaves the endpoint two export intervals after
    its last report (the run's learner and actors are gone once the run returns; they report
    what they recorded when they exit, so no value is lost, only time to read it)."""
    run = observed_run.name
    records = read_records(observed_run)
    steps = max(r["learner/steps"] for r in records if "learner/steps" in r)
    want = {
        "ray_qdistill_rollout_env_steps_total": [{"run": run, "actor": "0"}, {"run": run, "actor": "1"}],
        "ray_qdistill_rollout_steps_per_s": [{"run": run}],
        "ray_qdistill_buffer_size": [{"run": run}],
        "ray_qdistill_buffer_label_staleness_count": [{"run": run}],
        "ray_qdistill_learner_steps_total": [{"run": run}],
        "ray_qdistill_learner_distill_loss": [{"run": run, "student": STUDENT}],
        "ray_qdistill_eval_return": [{"run": run, "policy": "teacher"}, {"run": run, "policy": STUDENT}],
        "ray_qdistill_eval_agreement": [{"run": run, "student": STUDENT}],
    }
    want = {name: {tuple(sorted(tags.items())) for tags in all_tags} for name, all_tags in want.items()}
    learner_steps = (("run", run),)

    def missing(series) -> dict[str, set]:
        gaps = {name: tags - set(series.get(name, {})) for name, tags in want.items()}
        if series.get("ray_qdistill_learner_steps_total", {}).get(learner_steps) != steps:
            gaps["learner steps counted"] = {steps}
        return {name: tags for name, tags in gaps.items() if tags}

    deadline = time.monotonic() + 20  # metrics are exported every 10 s by default
    series = _scrape()
    while missing(series) and time.monotonic() < deadline:
        time.sleep(0.5)
        series = _scrape()
    assert not missing(series), (missing(series), dict(series))
    # every step the run's actors collected is counted, under their own actor tag
    collected = sum(v for tags, v in series["ray_qdistill_rollout_env_steps_total"].items() if ("run", run) in tags)
    summary = json.loads((observed_run / "summary.json").read_text())
    assert collected >= summary["env_steps"]
    assert series["ray_qdistill_eval_return"][(("policy", "teacher"), ("run", run))] == 500.0  # the steady teacher


def test_eval_ci_narrows_the_final_intervals(observed_run):
    """--eval-ci 5: the final evaluation played rounds of 20 episodes until the student's interval
    of % of teacher was at most 5 points wide (or 1000 episodes)."""
    summary = json.loads((observed_run / "summary.json").read_text())
    episodes = summary["teacher"]["eval_episodes"]
    low, high = summary["students"][STUDENT]["pct_of_teacher_ci"]
    assert episodes % 20 == 0 and (high - low <= 5 or episodes == 1000)
    periodic = [r["eval/episodes"] for r in read_records(observed_run) if "eval/episodes" in r]
    assert periodic and set(periodic) == {20}  # the evaluations during the run play one round each


def test_tensorboard_events_carry_the_runs_figures(observed_run):
    records = read_records(observed_run)
    logged = defaultdict(list)  # key -> [(env step, value)], in logging order
    for r in records:
        for key, value in r.items():
            if key not in ("time", "env_steps") and isinstance(value, (int, float)):
                logged[key].append((r["env_steps"], float(value)))
    assert KEYS <= set(logged)

    events = EventAccumulator(str(observed_run / "tensorboard"), size_guidance={"scalars": 0, "tensors": 0})
    events.Reload()
    # every numeric key as a scalar of the same name, at the same env steps, with the same values
    assert set(events.Tags()["scalars"]) == set(logged)
    for key, points in logged.items():
        scalars = [(e.step, e.value) for e in events.Scalars(key)]
        assert [s for s, _ in scalars] == [s for s, _ in points], key
        assert [v for _, v in scalars] == pytest.approx([v for _, v in points], rel=1e-6), key

    # the resolved config, as config.json holds it, in a JSON block of the text tab
    (config,) = events.Tensors("config/text_summary")
    text = config.tensor_proto.string_val[0].decode()
    assert text.startswith("```json\n") and text.endswith("```")
    assert text[len("```json\n"):-len("```")] == (observed_run / "config.json").read_text()
