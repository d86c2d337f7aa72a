"""Labels of a distillation run: the teacher's versions, how stale sampled labels are, and the
relabelling of stale rows just before they are trained on (written back to the buffer)."""

from __future__ import annotations

import time

import numpy as np
import ray
import torch

from ...actors.buffer_client import BufferClient
from ...actors.refresh import staleness
from ...learners import checkpoint
from ...learners.batch import TransitionBatch
from ...learners.networks import from_numpy, to_numpy
from ...learners.policy import GreedyPolicy

LAG_BINS = 1_000  # staleness histograms: lags of this many versions and more share the last bin
RELABEL_ROWS = 1_024  # rows per relabelling forward pass: a whole chunk of stale Atari frames at once would take a GB
Relabelled = list[tuple[np.ndarray, np.ndarray, int]]  # (ids, teacher_q, version) to write back


class Labels:
    """Owns the newest teacher (version, weights, a copy to relabel with) and publishes each new
    version to the run's teacher parameter server: the actors label with it, the buffer relabels
    with it. `bound`: how many versions a trained-on label may lag (0: on-sample refresh,
    max_label_staleness: periodic refresh in the buffer, None: refresh off)."""

    def __init__(self, teacher: checkpoint.Checkpoint, bound: int | None) -> None:
        self.net = teacher.net
        self.version = teacher.version
        self.weights = teacher.weights
        self.policy = GreedyPolicy(teacher.net, teacher.obs_shape, teacher.n_actions)
        self.policy.load(teacher.version, teacher.weights)
        self.published_at = {teacher.version: time.monotonic()}
        self.bound = bound
        self.params: ray.actor.ActorHandle | None = None  # the teacher parameter server, once the run is wired
        # how many versions each sampled label lagged, as sampled and as trained on
        self.lag_sampled = np.zeros(LAG_BINS, dtype=np.int64)
        self.lag_used = np.zeros(LAG_BINS, dtype=np.int64)
        self.counters = {"labels/relabelled_on_sample": 0, "labels/relabelled_in_shards": 0,
                         "labels/from_teacher_step": 0, "teacher/swaps": 0}
        self.refreshing: list[ray.ObjectRef] = []
        self.refreshed_at = 0  # learner steps at the last background refresh pass

    def publish(self, weights: dict[str, np.ndarray]) -> None:
        """A new teacher version: to the actors (who label with it), the buffer (which relabels
        with it) and the copy here (which relabels sampled rows)."""
        self.version += 1
        self.published_at[self.version] = time.monotonic()
        self.weights = weights
        self.policy.load(self.version, weights)
        self.params.publish.remote(self.version, weights)

    def sampled(self, batch: TransitionBatch) -> dict[str, float]:
        """How far a sampled chunk's labels lag the newest teacher: versions (mean, p95) and seconds."""
        lag, seconds = staleness(batch.label_version, self.version, self.published_at, time.monotonic())
        return {"buffer/label_staleness": float(lag.mean()), "buffer/label_staleness_p95": float(np.percentile(lag, 95)),
                "buffer/label_staleness_s": float(seconds.mean())}

    def within_bound(self, ids: np.ndarray, batch: TransitionBatch,
                     fresh: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[Relabelled, int]:
        """Relabel, just before training on them, the rows (a minibatch, or a fixed teacher's whole
        chunk) that lag the newest teacher by more than `bound`, RELABEL_ROWS per forward pass.
        `fresh`: a learning teacher's Q-values for these rows from its own step on them (and the
        version it had published then): the labels, unless refresh is off; no extra forward pass.
        Returns what to write back, and the most a trained-on label lagged."""
        lag = self.version - batch.label_version
        self.lag_sampled += np.bincount(np.minimum(lag, LAG_BINS - 1), minlength=LAG_BINS)
        if fresh is not None and self.bound is not None:
            batch.teacher_q[:], batch.label_version[:] = fresh
            self.counters["labels/from_teacher_step"] += len(lag)
            lag = self.version - batch.label_version
        stale = lag > self.bound if self.bound is not None else np.zeros(len(lag), dtype=bool)
        out = []
        if stale.any():
            rows = np.flatnonzero(stale)
            q = np.concatenate([self.policy.q_values(batch.observations[rows[i:i + RELABEL_ROWS]])
                                for i in range(0, len(rows), RELABEL_ROWS)])
            batch.teacher_q[rows] = q
            batch.label_version[rows] = self.version
            lag = np.where(stale, 0, lag)
            out.append((ids[rows], q, self.version))
            self.counters["labels/relabelled_on_sample"] += int(stale.sum())
        self.lag_used += np.bincount(np.minimum(lag, LAG_BINS - 1), minlength=LAG_BINS)
        return out, int(lag.max(initial=0))

    @staticmethod
    def write_back(buffer: BufferClient, relabelled: Relabelled) -> None:
        """New labels go back to the buffer, one call per version (not one per minibatch)."""
        for version in sorted({v for _, _, v in relabelled}):
            parts = [(i, q) for i, q, v in relabelled if v == version]
            buffer.relabel(np.concatenate([i for i, _ in parts]), np.concatenate([q for _, q in parts]), version)

    def refresh(self, buffer: BufferClient, learner_steps: int, *, every: int, chunk: int) -> None:
        """Every `every` learner steps, a background relabelling pass in the buffer, once the last is done."""
        if learner_steps - self.refreshed_at < every:
            return
        done, self.refreshing = ray.wait(self.refreshing, num_returns=len(self.refreshing), timeout=0)
        self.counters["labels/relabelled_in_shards"] += sum(ray.get(done))
        if not self.refreshing:
            self.refreshing = buffer.refresh_async(chunk)
            self.refreshed_at = learner_steps

    def summary(self) -> dict[str, object]:
        """How stale sampled labels were over the run (p95 as sampled and as trained on, in
        teacher versions) and how many were relabelled on sampling."""
        def p95(hist: np.ndarray) -> float | None:
            total = hist.sum()
            return int(np.searchsorted(np.cumsum(hist), 0.95 * total)) if total else None

        sampled = int(self.lag_sampled.sum())
        return {**self.counters, "teacher_versions": self.version, "sampled": sampled,
                "staleness_p95_sampled": p95(self.lag_sampled), "staleness_p95_used": p95(self.lag_used),
                "staleness_max_used": int(np.flatnonzero(self.lag_used).max()) if sampled else None,
                "relabelled_fraction": self.counters["labels/relabelled_on_sample"] / sampled if sampled else 0.0}

    def state(self) -> dict[str, object]:
        return {"teacher": {"version": self.version, "weights": from_numpy(self.weights)},
                "counters": dict(self.counters),
                "lag": {"sampled": torch.from_numpy(self.lag_sampled), "used": torch.from_numpy(self.lag_used)}}

    def restore(self, state: dict[str, object]) -> None:
        self.version = int(state["teacher"]["version"])
        self.weights = to_numpy(state["teacher"]["weights"])
        self.policy.load(self.version, self.weights)
        self.published_at = {self.version: time.monotonic()}
        self.counters.update(state["counters"])
        self.lag_sampled, self.lag_used = state["lag"]["sampled"].numpy(), state["lag"]["used"].numpy()
