"""Run configuration: frozen dataclasses, validated in one place."""

from __future__ import annotations

import math
from pathlib import Path
from dataclasses import asdict, dataclass, field

from ...actors.evaluate import MAX_FINAL_EPISODES
from ...actors.ratelimit import SampleToInsertRatio
from ...actors.redis_connect import redact_url
from ...learners.configs import DistillConfig
from ...learners.configs import DQNConfig


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


def _check_capacity(capacity: int, batch_size: int) -> None:
    _check(capacity >= batch_size, f"buffer_capacity {capacity} is smaller than the batch size {batch_size}: "
                                   "expected a capacity of at least one batch")


TASK_BATCHES = ("mixed", "one")  # a multi-task run's minibatches: rows of every task, or of one task each


@dataclass(frozen=True)
class ExplorationConfig:
    """ε-greedy exploration: ε falls linearly from `start` to `end` over `steps` env steps."""

    start: float = 1.0
    end: float = 0.02
    steps: int = 10_000

    def __post_init__(self) -> None:
        for name in ("start", "end"):
            value = getattr(self, name)
            _check(0.0 <= value <= 1.0, f"epsilon {name} {value} is not valid: expected a number in [0, 1]")
        _check(self.steps >= 0, f"epsilon steps {self.steps} is not valid: expected an integer >= 0")


@dataclass(frozen=True)
class RunConfig:
    """What every run has: env, budget, placement of rollout actors and buffer, pacing."""

    env: str
    out: str
    steps: int | None = None  # env-step budget
    time: float | None = None  # wall-clock budget in seconds
    target_return: float | None = None  # stop once greedy evaluation reaches it
    seed: int = 0
    address: str | None = None  # None: an embedded local Ray runtime
    actors: int = 2
    envs_per_actor: int = 8
    steps_per_call: int = 32  # vector steps per collect call
    actor_cpus: float = 1.0
    actor_resources: dict[str, float] = field(default_factory=dict)  # custom resources per rollout actor
    buffer: str = "ray"  # "ray" (buffer shards) or redis://[user:password@]host:port/db, rediss://…?ssl_ca_certs=…
    buffer_prefix: str | None = None  # Redis key prefix (default: qdistill:<run directory>)
    chunk_size: int = 256  # Redis: transitions per chunk
    shards: int = 1
    buffer_capacity: int = 100_000
    buffer_bytes: int | None = None  # a cap on the buffer's memory: capacity = min(buffer_capacity, bytes // record)
    learning_starts: int = 1_000
    replay_ratio: float = 0.25  # learner steps per env step, kept by the buffer's rate limiter
    rate_tolerance: float | None = None  # sampled rows the learner may run ahead or behind that ratio (None: one actor call's and one sampled chunk's worth)
    updates_per_sample: int = 16  # minibatches fetched per buffer call
    publish_every: int = 32  # learner steps between weight versions
    learner_threads: int = 1  # torch threads for the learner; small MLPs lose to thread hand-offs
    eval_episodes: int = 20
    checkpoint_every_s: float = 60.0  # seconds between resumable state checkpoints (and one at the end)
    exploration: ExplorationConfig = field(default_factory=ExplorationConfig)
    # several tasks (a multi-task network): every task's env, `env` first; () for a one-task run
    tasks: tuple[str, ...] = ()
    task_balance: str = "equal"  # how samples divide between tasks: equal, or weights per task "2:1:1"
    task_batches: str = "mixed"  # each minibatch of rows of every task, or of one task ("one", Rusu et al. 2016)
    task_inputs: str = "per-task"  # the network's input layers: one per task, or observations zero-padded ("pad")
    task_actors: str | None = None  # rollout actors per task, "2:1:1" (None: `actors` split evenly over the tasks)

    def __post_init__(self) -> None:
        _check(self.steps is None or self.steps > 0,
               f"steps budget {self.steps} is not valid: expected an integer > 0")
        _check(self.time is None or (self.time > 0 and math.isfinite(self.time)),
               f"time budget {self.time} is not valid: expected a number of seconds > 0")
        _check(self.steps is not None or self.time is not None,
               "no budget: give steps (env steps) or time (seconds)")
        _check(self.target_return is None or math.isfinite(self.target_return),
               f"target return {self.target_return} is not valid: expected a finite number")
        _check(self.seed >= 0, f"seed {self.seed} is not valid: expected an integer >= 0")
        _check(self.buffer == "ray" or self.buffer.startswith(("redis://", "rediss://")),
               f"buffer {self.buffer!r} is not valid: expected 'ray' or redis://[user:password@]host:port/db "
               "(rediss:// for TLS)")
        for name in ("actors", "envs_per_actor", "steps_per_call", "shards", "buffer_capacity", "chunk_size",
                     "updates_per_sample", "publish_every", "learner_threads", "eval_episodes"):
            value = getattr(self, name)
            _check(isinstance(value, int) and value >= 1, f"{name} {value} is not valid: expected an integer >= 1")
        _check(self.buffer_bytes is None or (isinstance(self.buffer_bytes, int) and self.buffer_bytes >= 1),
               f"buffer_bytes {self.buffer_bytes} is not valid: expected a number of bytes >= 1")
        _check(self.learning_starts >= 0, f"learning_starts {self.learning_starts} is not valid: expected an integer >= 0")
        _check(self.checkpoint_every_s > 0,
               f"checkpoint_every_s {self.checkpoint_every_s} is not valid: expected seconds > 0")
        _check(self.replay_ratio > 0, f"replay_ratio {self.replay_ratio} is not valid: expected a number > 0")
        _check(self.rate_tolerance is None or self.rate_tolerance >= 0,
               f"rate_tolerance {self.rate_tolerance} is not valid: expected a number of rows >= 0")
        _check(self.actor_cpus >= 0, f"actor_cpus {self.actor_cpus} is not valid: expected a number >= 0")
        _check(isinstance(self.actor_resources, dict) and all(
            isinstance(k, str) and isinstance(v, (int, float)) and v >= 0 for k, v in self.actor_resources.items()),
            f"actor resources {self.actor_resources!r} are not valid: expected names with numbers >= 0, "
            "e.g. {\"rollout\": 1}")
        self._check_tasks()

    def _check_tasks(self) -> None:
        from ...actors.balance import parse_balance
        from ...learners.specs import INPUTS

        object.__setattr__(self, "tasks", tuple(self.tasks))
        if not self.tasks:
            _check(self.task_actors is None, f"task actors {self.task_actors!r} are for a run of several tasks (--env "
                                             "given more than once): give --actors")
            return
        seen: set[str] = set()
        for env in self.tasks:
            _check(env not in seen, f"env {env!r} is given twice: give each task's env once")
            seen.add(env)
        _check(len(self.tasks) >= 2 and self.tasks[0] == self.env,
               f"tasks {list(self.tasks)} are not valid: expected two envs or more, env ({self.env!r}) first")
        parse_balance(self.task_balance, len(self.tasks))
        _check(self.task_batches in TASK_BATCHES,
               f"task batches {self.task_batches!r} are not known: expected one of {', '.join(TASK_BATCHES)}")
        _check(self.task_inputs in INPUTS,
               f"task inputs {self.task_inputs!r} are not known: expected one of {', '.join(INPUTS)}")
        counts = self.actors_per_task
        _check(sum(counts) == self.actors, f"task actors {self.task_actors!r} make {sum(counts)} actors, not actors "
                                           f"{self.actors}: give one of --task-actors and --actors")
        _check(self.target_return is None, "a target return is for one task: a multi-task run stops on its budget "
                                           "(give --no-target, or one --env)")

    @property
    def actors_per_task(self) -> tuple[int, ...]:
        """Each task's rollout actors: `task_actors`, or `actors` split evenly (refused when they do
        not divide)."""
        n = len(self.envs)
        if self.task_actors is None:
            _check(self.actors % n == 0,
                   f"actors {self.actors} do not divide over {n} tasks: give --actors as a multiple of {n} (the actors "
                   f"are spread evenly over the tasks), or each task's with --task-actors, e.g. {':'.join(['1'] * n)}")
            return (self.actors // n,) * n
        try:
            counts = tuple(int(c) for c in str(self.task_actors).split(":"))
        except ValueError:
            counts = ()
        _check(len(counts) == n and all(c >= 1 for c in counts),
               f"task actors {self.task_actors!r} are not valid: expected {n} counts >= 1 joined by ':', one per task "
               f"(e.g. '{':'.join(['1'] * n)}')")
        return counts

    @property
    def envs(self) -> tuple[str, ...]:
        """Every task's env: (env,) for a one-task run."""
        return self.tasks or (self.env,)

    def to_dict(self) -> dict[str, object]:
        """The resolved config, with any password in the buffer URL masked."""
        d = asdict(self)
        d["buffer"] = redact_url(self.buffer)
        return d

    @property
    def batch_rows(self) -> int:
        """The most transitions one learner step samples: the buffer must hold at least that many."""
        return 1

    @property
    def update_rows(self) -> int:
        """Rows one of the learner updates the run is paced by trains on."""
        return 1

    @property
    def chunk_rows(self) -> int:
        """Rows the learner samples per buffer call: updates_per_sample updates' worth."""
        return self.update_rows * self.updates_per_sample

    @property
    def rate_limit(self) -> SampleToInsertRatio:
        """The buffer's rate limiter: replay_ratio updates of update_rows rows per env step,
        sampling from learning_starts rows on, within rate_tolerance; refused if an actor's insert
        and a sampled chunk could wait for each other (per Ray shard; an actor writes each collect's
        rows at once, to either buffer)."""
        spi = self.replay_ratio * self.update_rows
        insert = self.steps_per_call * self.envs_per_actor
        sample = -(-self.chunk_rows // self.shards) if self.buffer == "ray" else self.chunk_rows
        tolerance = insert * spi + sample if self.rate_tolerance is None else self.rate_tolerance
        limit = SampleToInsertRatio(spi, max(1, self.learning_starts), tolerance)
        limit.check_sizes(insert, sample)
        return limit

    @property
    def next_obs(self) -> bool:
        """Whether rows carry the next observation: only a learning teacher's TD target reads it."""
        return True

    @property
    def td_rows(self) -> dict[str, object]:
        """What rollout actors write into rows for a learning teacher's TD target (`Rollout`'s
        next_obs, n_step, gamma): the next observation, n-step returns of the run's DQN config."""
        dqn = self.dqn  # type: ignore[attr-defined]  # each kind of run config has its teacher's
        return {"next_obs": self.next_obs, "n_step": dqn.n_step, "gamma": dqn.gamma}

    def capacity_for(self, record_size: int) -> int:
        """Transitions the buffer keeps, records of `record_size` bytes: `buffer_capacity`, or fewer
        when `buffer_bytes` caps it."""
        if self.buffer_bytes is None:
            return self.buffer_capacity
        return min(self.buffer_capacity, self.buffer_bytes // record_size)

    @property
    def redis_prefix(self) -> str:
        return self.buffer_prefix or f"qdistill:{Path(self.out).resolve()}"


@dataclass(frozen=True)
class TeacherRunConfig(RunConfig):
    """`qdistill train-teacher`: the CLI maps its flags one-to-one onto these fields."""

    init: str | None = None  # start from this teacher checkpoint
    eval_every: int = 2_000  # env steps between greedy evaluations
    dqn: DQNConfig = field(default_factory=DQNConfig)

    def __post_init__(self) -> None:
        super().__post_init__()
        _check(self.eval_every >= 1, f"eval_every {self.eval_every} is not valid: expected an integer >= 1")
        _check_capacity(self.buffer_capacity, self.batch_rows)
        self.rate_limit  # noqa: B018 - refuses a tolerance too small here, before anything starts

    @property
    def batch_rows(self) -> int:
        return self.dqn.batch_size

    @property
    def update_rows(self) -> int:
        return self.dqn.batch_size


BEHAVIOURS = ("teacher", "student", "mixed")
REFRESH_MODES = ("periodic", "on-sample", "off")
MODES = ("online", "offline")


@dataclass(frozen=True)
class DistillRunConfig(RunConfig):
    """`qdistill run`: distill a teacher into students, online (or offline, the baseline)."""

    teacher: str | None = None  # teacher checkpoint; None: train one first (or, learning, start from scratch)
    mode: str = "online"
    distill: DistillConfig = field(default_factory=DistillConfig)
    teacher_learns: bool = False  # the teacher keeps learning by DQN on the same buffer, in the same run
    max_label_staleness: int = 2  # teacher versions a sampled label may lag before it is relabelled
    student_every: int = 1  # a learning teacher's run: the students step on one batch of its rows in this many
    dqn: DQNConfig = field(default_factory=DQNConfig)  # the learning teacher's
    behaviour: str = "teacher"
    beta_start: float = 1.0  # mixed: P(teacher acts) at the start ...
    beta_end: float = 0.0  # ... and after beta_steps env steps
    beta_steps: int = 20_000
    refresh: str = "periodic"
    refresh_every: int = 100  # learner steps between shard-side refresh passes
    refresh_chunk: int = 4_096  # records relabelled per shard per pass
    eval_every_s: float = 2.0  # seconds between evaluations (the evaluator runs beside the learner) ...
    eval_every: int | None = None  # ... and, if set, env steps (a learning teacher: its train-teacher preset's)
    eval_ci: float | None = None  # the final evaluation plays on until each % of teacher's 95% interval is this narrow (points)
    eval_max_episodes: int = MAX_FINAL_EPISODES  # ... or until each policy has played this many episodes
    search_keep: float | None = None  # `qdistill shrink`: the students are candidates, halved; the winner keeps this share
    samples: int = 50_000  # offline: teacher-labelled states, labelled once
    epochs: int = 10  # offline: passes over them
    change_at: int | None = None  # a changing task: the env step at which the dynamics change ...
    change: dict[str, float] = field(default_factory=dict)  # ... to these parameters, e.g. {"length": 1.0}
    teachers: dict[str, str] = field(default_factory=dict)  # several tasks: each one's teacher (env → checkpoint)

    def _check_search(self) -> None:
        if self.search_keep is None:
            return
        _check(0 < self.search_keep <= 1.5, f"keep {self.search_keep} is not valid: expected the share of the teacher's "
                                            "return the student must keep, a number in (0, 1.5] (e.g. 0.95)")
        _check(len(self.distill.students) >= 2, f"a size search needs two candidates or more, not "
                                                f"{list(self.distill.students)}: give --candidates A,B,…")
        _check(not self.teacher_learns and self.mode == "online",
               "a size search distils from a fixed teacher, online: drop --teacher-learns and --mode")

    def __post_init__(self) -> None:
        super().__post_init__()
        self._check_teachers()
        _check(self.mode in MODES, f"mode {self.mode!r} is not known: expected one of {', '.join(MODES)}")
        _check(self.behaviour in BEHAVIOURS,
               f"behaviour {self.behaviour!r} is not known: expected one of {', '.join(BEHAVIOURS)}")
        _check(self.refresh in REFRESH_MODES,
               f"refresh {self.refresh!r} is not known: expected one of {', '.join(REFRESH_MODES)}")
        for name in ("beta_start", "beta_end"):
            value = getattr(self, name)
            _check(0.0 <= value <= 1.0, f"{name} {value} is not valid: expected a number in [0, 1]")
        for name in ("beta_steps", "refresh_every", "refresh_chunk", "samples", "epochs"):
            value = getattr(self, name)
            _check(isinstance(value, int) and value >= 1, f"{name} {value} is not valid: expected an integer >= 1")
        _check(self.eval_every_s > 0, f"eval_every_s {self.eval_every_s} is not valid: expected seconds > 0")
        _check(self.eval_every is None or (isinstance(self.eval_every, int) and self.eval_every >= 1),
               f"eval_every {self.eval_every} is not valid: expected env steps, an integer >= 1, or none")
        self._check_search()
        _check(self.eval_ci is None or (self.eval_ci > 0 and math.isfinite(self.eval_ci)),
               f"eval_ci {self.eval_ci} is not valid: expected the widest 95% interval of % of teacher to accept, "
               "in points > 0 (e.g. 5)")
        _check(isinstance(self.eval_max_episodes, int) and self.eval_max_episodes >= self.eval_episodes,
               f"eval_max_episodes {self.eval_max_episodes} is not valid: expected an integer >= the evaluations' "
               f"episodes ({self.eval_episodes})")
        _check(isinstance(self.max_label_staleness, int) and self.max_label_staleness >= 0,
               f"max_label_staleness {self.max_label_staleness} is not valid: expected an integer >= 0 (versions)")
        _check(isinstance(self.student_every, int) and self.student_every >= 1,
               f"student_every {self.student_every} is not valid: expected an integer >= 1 (1: the students step "
               "on every batch of the learning teacher's rows)")
        _check(self.student_every == 1 or self.teacher_learns,
               f"student_every {self.student_every} is for a learning teacher's run: give --teacher-learns, or drop it "
               "(with a fixed teacher the students' steps follow --replay-ratio)")
        _check(not (self.teacher_learns and self.mode == "offline"),
               "teacher_learns needs mode online: offline labels a fixed teacher's states once")
        if self.mode == "online":
            _check_capacity(self.buffer_capacity, self.batch_rows)
            self.rate_limit  # noqa: B018 - refuses a tolerance too small here, before anything starts
        _check(self.change_at is None or (isinstance(self.change_at, int) and self.change_at >= 1),
               f"change_at {self.change_at} is not valid: expected an env step >= 1")
        _check(isinstance(self.change, dict) and all(
            isinstance(k, str) and isinstance(v, (int, float)) and math.isfinite(v) for k, v in self.change.items()),
            f"change {self.change!r} is not valid: expected parameter names with finite numbers, e.g. {{\"length\": 1.0}}")
        _check(self.change_at is None or self.change, "change_at needs a change: give --change NAME=VALUE, e.g. length=1.0")
        _check(not self.change or self.change_at is not None, "a change needs the step it happens at: give --change-at STEPS")
        _check(self.change_at is None or self.mode == "online",
               "a changing task needs mode online: offline labels the states of one task once")

    def _check_teachers(self) -> None:
        """A multi-task run's teachers, and what it cannot do yet, refused in one line each."""
        if not self.tasks:
            _check(not self.teachers, "teachers per task need several tasks: give --env once per task")
            return
        for env in self.teachers:
            _check(env in self.tasks, f"a teacher for {env!r}, which is not among the run's tasks "
                                      f"({', '.join(self.tasks)}): give --env {env}, or drop its teacher")
        missing = [e for e in self.tasks if e not in self.teachers]
        _check(not self.teachers or not missing,
               f"no teacher for {', '.join(missing)}: give --teacher ENV=PATH for every task")
        _check(not (self.teachers and self.teacher is not None),
               "a multi-task run takes a teacher for each task (--teacher ENV=PATH for every task) or one --teacher "
               "PATH of a multi-task network of all of them, not both")
        _check(self.mode == "online", "several tasks need mode online")
        for flag, given in (("--teacher-learns", self.teacher_learns), ("--change-at", self.change_at is not None),
                            ("--behaviour " + self.behaviour, self.behaviour != "teacher")):
            _check(not given, f"{flag} is for one-task runs: a multi-task run distills fixed teachers, each "
                              "acting in its own task")

    @property
    def batch_rows(self) -> int:
        return max(self.distill.batch_size, self.dqn.batch_size if self.teacher_learns else 0)

    @property
    def next_obs(self) -> bool:
        return self.teacher_learns

    @property
    def update_rows(self) -> int:
        """A learning teacher's minibatch paces the run when there is one, else the students'."""
        return self.dqn.batch_size if self.teacher_learns else self.distill.batch_size
