"""Chaos soak: two distillation runs side by side for a given time, one left alone and one whose
rollout actors, evaluator, learner and Redis server are killed (SIGKILL) on a seeded schedule; what
the disturbed run lost, as it counted it and as this script measured it, and its student against
the undisturbed one's.

    python -m benchmarks.chaos_soak --minutes 60 --seed 0

Set-up: a `ray start --head` of its own (token auth; tests/support/ray_head.py), two redis-servers
of its own on free loopback ports (AOF, `appendfsync everysec` as deploy/kuberay/redis.yaml), a
CartPole teacher (`train-teacher` on that cluster, or --teacher), then per arm `qdistill run --env
CartPole-v1 --teacher T --time S --no-target --seed SEED --actors N --buffer redis://…
--buffer-prefix chaos-soak:ARM --address HEAD --quiet`, same flags, both at once on the same cores.
Each arm has a Redis server of its own: a shared one would take the undisturbed run down with
every Redis kill.

The schedule (numpy Generator from --seed): --kills per kind (default per hour: rollout 12,
evaluator 8, learner 8, redis 8; at least one each), kinds shuffled, moments uniform over the run
less a tenth (at least 30 s) at each end, timed from the disturbed run's first record; a kill waits
until the run has recovered from the one before. Actors are found in the cluster's actor table
(the GCS) by class, among the actors of the job of the disturbed run's learner (`run:NAME`), and
killed by PID once /proc/PID/cmdline shows that class's Ray worker; its title also says what it
was doing (`ray::RolloutActor.collect` while collecting, `ray::RolloutActor` between calls).

- rollout: one live RolloutActor of the run, at random; Ray restarts it.
- evaluator: the run's EvaluatorActor; Ray restarts it.
- learner: the run's RunActor. Its Redis writes are paused first (CLIENT PAUSE WRITE: inserts and
  samples wait, reads go on) until two records of its log agree on env and learner steps (it has
  stopped stepping, so the log holds its counts); Redis's counters are read, the learner killed,
  state.pt read, and the pause lifted once its actors have gone with it. Ray restarts it
  (max_restarts=3) and it resumes from state.pt; once Ray gives up (the command exits 1: "carry on
  with `qdistill run --resume DIR`") the soak runs that, as a user would, and counts it.
- redis: writes paused, counters read, kill -9, started again at once on the same port and data
  dir; paused again and, if no script has run on it yet, its counters read as it replayed them.
  What a kill -9 loses: rows Redis acknowledged and no longer counts. AOF everysec writes the AOF
  before replying and fsyncs every second, so a killed process (not a lost machine) loses nothing
  the kernel holds, unless a slow fsync had Redis hold its AOF write back (up to 2 s).

A run counts what it loses since it last (re)started, so the disturbed run is cut into segments at
its learner kills. Per segment (E env steps the actors reported, from the run; I rows Redis counts
inserted, read by the soak): rows lost = (E_end - E_start) - (I_end - I_start). Counted by the run:
summary.json `buffer.lost` for the last segment, the `resumed` event's `buffer/lost` for one ended
by a learner kill. Independent on the Redis side only: both take the env steps from the run.
Learner steps lost at a learner kill: counted, the last `learner/steps` logged before it less the
`resumed` event's; measured, its steps when killed less those in state.pt as the soak read it
(Redis's count of rows sampled, / 256 per step, is printed as a cross-check: an upper bound).
Evaluations and collects lost: counted, `evaluator/evaluations_lost` and `rollout/actor_failures`
per segment; measured, one per kill (the call in flight, or the next one sent before Ray saw the
death; the run sends none again until Ray has the actor up). Pairs that differ are listed. Then the students' final greedy return
(summary.json): disturbed against undisturbed. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests.support.ray_head import RayHead, new_token
from tests.support.redis_server import RedisServer

REPO = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "qdistill.cluster.cli"]
KINDS = ("rollout", "evaluator", "learner", "redis")
PER_HOUR = {"rollout": 12, "evaluator": 8, "learner": 8, "redis": 8}
GAVE_UP = "carry on with `qdistill run --resume"
BATCH = 256  # the students' minibatch (DistillConfig.batch_size): rows sampled per learner step
PAUSE_MS = 30_000  # CLIENT PAUSE's own limit: lifted by the soak well before


class RunEnded(RuntimeError):
    """The disturbed run reached its budget while a kill waited for something."""


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- the runs --------------------------------------------------------------------------------------


class Tail:
    """metrics.jsonl as it grows: whole lines only (a learner killed mid-line leaves a torn one)."""

    def __init__(self, path: Path) -> None:
        self.path, self.offset, self.records, self.torn = path, 0, [], 0

    def update(self) -> list[dict]:
        if not self.path.exists():
            return self.records
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            data = f.read()
        end = data.rfind(b"\n") + 1
        self.offset += end
        for line in data[:end].splitlines():
            try:
                self.records.append(json.loads(line))
            except ValueError:
                self.torn += 1
        return self.records

    def periodic(self) -> list[dict]:
        return [r for r in self.update() if "rollout/steps_per_s" in r]

    def resumed(self) -> list[dict]:
        return [r for r in self.update() if r.get("event") == "resumed"]


@dataclass
class Run:
    name: str  # its directory's name, and so its learner's actor name, `run:NAME`
    out: Path
    server: RedisServer
    prefix: str
    argv: list[str]
    env: dict[str, str]
    proc: subprocess.Popen | None = None
    resumes: int = 0  # `qdistill run --resume` after Ray gave up on the learner
    outputs: list[Path] = field(default_factory=list)
    wall: list[float] = field(default_factory=list)  # monotonic: launched, ended

    def __post_init__(self) -> None:
        self.log = Tail(self.out / "metrics.jsonl")
        self.connect()

    def connect(self) -> None:
        """A client of the run's server that fails at once when it is down (redis-py retries 10 times by default)."""
        self.redis = redis.Redis(port=self.server.port, socket_timeout=10, retry=Retry(NoBackoff(), 0))

    def start(self, resume: bool = False) -> None:
        argv = [*CLI, "run", "--resume", str(self.out), *self.argv[self.argv.index("--address"):][:2], "--quiet"] \
            if resume else [*CLI, "run", *self.argv, "--out", str(self.out)]
        self.wall = self.wall or [time.monotonic()]
        output = self.out.parent / f"{self.name}.{len(self.outputs)}.log"
        self.outputs.append(output)
        with open(output, "wb") as f:
            self.proc = subprocess.Popen(argv, cwd=REPO, env=self.env, stdout=f, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL)

    def check(self) -> bool:
        """Whether the run is over (its command exited 0); resumes it when Ray gave up on its learner."""
        code = self.proc.poll()
        if code is None:
            return False
        text = self.outputs[-1].read_text(errors="replace")
        if code == 1 and GAVE_UP in text:
            self.resumes += 1
            log(f"{self.name}: Ray gave up on the learner; `qdistill run --resume` ({self.resumes})")
            self.start(resume=True)
            return False
        if code != 0:
            raise RuntimeError(f"{self.name}: `qdistill run` exited {code}:\n{text[-3000:]}")
        self.wall.append(time.monotonic())
        return True

    def counters(self) -> dict[str, int]:
        inserted, sampled = self.redis.mget([f"{self.prefix}:inserted", f"{self.prefix}:sampled"])
        return {"inserted": int(inserted or 0), "sampled": int(sampled or 0)}

    def pause(self) -> None:
        self.redis.execute_command("CLIENT", "PAUSE", PAUSE_MS, "WRITE")

    def unpause(self) -> None:
        self.redis.execute_command("CLIENT", "UNPAUSE")

    def summary(self) -> dict:
        return json.loads((self.out / "summary.json").read_text())

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # the run stops as after Ctrl-C: final files written
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# -- the cluster's actors --------------------------------------------------------------------------


def actors_of(run: Run) -> dict[str, list[dict]]:
    """The run's live actors by class, from the GCS actor table: its learner (`run:NAME`, not dead)
    and the actors of the learner's job."""
    from ray._private import state

    table = list(state.actors().values())
    learner = [a for a in table if a["Name"] == f"run:{run.name}" and a["State"] != "DEAD"]
    out: dict[str, list[dict]] = {"RunActor": learner}
    if learner:
        job = learner[0]["JobID"]
        for a in table:
            if a["JobID"] == job and a["State"] == "ALIVE" and a["ActorClassName"] != "RunActor":
                out.setdefault(a["ActorClassName"], []).append(a)
    return out


def kill_pid(pid: int, actor_class: str) -> str:
    """SIGKILL `pid` once it is seen to be that actor's Ray worker; returns the method it was running
    ("" when idle): a Ray worker's process title is `ray::Class.method` while it runs a call, `ray::Class`
    between calls."""
    title = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
    if not (title == f"ray::{actor_class}" or title.startswith(f"ray::{actor_class}.")):
        raise RuntimeError(f"PID {pid} is not a {actor_class}: {title[:80]!r}")
    os.kill(pid, signal.SIGKILL)
    return title.partition(".")[2]


# -- the soak --------------------------------------------------------------------------------------


@dataclass
class Segment:
    """The disturbed run from one (re)start of its learner to the next, or to its end."""

    start: dict[str, int]  # env_steps, learner_steps, inserted, sampled
    end: dict[str, int] | None = None  # the same, and evaluations_lost
    redis_lost: dict[str, int] = field(default_factory=lambda: {"inserted": 0, "sampled": 0})
    kills: list[str] = field(default_factory=list)


class Soak:
    def __init__(self, calm: Run, run: Run, plan: list[tuple[float, str]], rng: np.random.Generator,
                 seconds: float, progress_s: float) -> None:
        self.calm, self.run, self.plan, self.rng = calm, run, plan, rng
        self.seconds, self.progress_s = seconds, progress_s
        self.kills: list[dict] = []
        self.segments = [Segment({"env_steps": 0, "learner_steps": 0, "inserted": 0, "sampled": 0})]
        self.started = time.monotonic()
        self.clock = False  # the schedule's clock: started at the disturbed run's first record
        self.said = self.started
        self.done = {"calm": False, "run": False}

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def tick(self) -> None:
        """Keep both commands going (a resume where Ray gave up) and say where things stand."""
        for key, run in (("calm", self.calm), ("run", self.run)):
            if not self.done[key]:
                self.done[key] = run.check()
        if time.monotonic() - self.said >= self.progress_s:
            self.said = time.monotonic()
            by_kind = ", ".join(f"{k} {sum(x['kind'] == k for x in self.kills)}" for k in KINDS)

            def where(run: Run) -> str:
                last = (run.log.periodic() or [{}])[-1]
                return f"{last.get('env_steps', 0):,} env / {last.get('learner/steps', 0):,} learner steps"

            clock = f"{self.elapsed() / 60:5.1f} of {self.seconds / 60:g} min" if self.clock else "starting"
            log(f"{clock}; kills {len(self.kills)} of "
                f"{len(self.plan)} ({by_kind}); disturbed {where(self.run)}; undisturbed {where(self.calm)}")

    def wait(self, until, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not until():
            self.tick()
            if self.done["run"]:
                raise RunEnded(f"the disturbed run ended while waiting for {what}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")
            time.sleep(0.05)

    def execute(self) -> None:
        """The schedule, timed from the disturbed run's first record (its distillation under way),
        then both runs to their end."""
        self.wait(lambda: bool(self.run.log.periodic()), 600, "the disturbed run's first record")
        self.started, self.clock = time.monotonic(), True
        log("the disturbed run is distilling: the schedule's clock starts")
        for at, kind in self.plan:
            while self.elapsed() < at:
                self.tick()
                time.sleep(0.1)
            if self.done["run"]:
                log(f"the disturbed run is over: {kind} kill at {at:.0f} s not done")
                continue
            record = {"kind": kind, "scheduled_s": round(at, 1), "at_s": None}
            try:
                getattr(self, f"_kill_{kind}")(record)
            except RunEnded as exc:
                if record["at_s"] is not None:
                    raise  # killed, and the run ended before it had recovered: its figures would be wrong
                log(f"{exc}: {kind} kill at {at:.0f} s not done")
                continue
            self.kills.append(record)
            self.segments[-1].kills.append(kind)
            log(f"killed {kind} at {record['at_s']:.0f} s: " +
                ", ".join(f"{k} {v}" for k, v in record.items() if k not in ("kind", "scheduled_s", "at_s")))
            time.sleep(5)  # the next kill no sooner
        while not all(self.done.values()):
            self.tick()
            time.sleep(0.5)

    def _actor(self, actor_class: str) -> dict:
        found: list[dict] = []

        def alive() -> bool:
            found[:] = sorted(actors_of(self.run).get(actor_class, []), key=lambda a: a["ActorID"])
            return bool(found)

        self.wait(alive, 120, f"a live {actor_class}")
        return found[int(self.rng.integers(len(found)))]

    def _restarted(self, actor: dict, record: dict) -> None:
        """Wait until Ray has the killed actor up again (same actor, another process)."""
        from ray._private import state

        def up() -> bool:
            now = state.actors(actor_id=actor["ActorID"])
            return now.get("State") == "ALIVE" and now.get("Pid") != actor["Pid"]

        self.wait(up, 300, f"{actor['ActorClassName']} to restart")
        record["restart_s"] = round(self.elapsed() - record["at_s"], 1)

    def _kill_rollout(self, record: dict) -> None:
        self._kill_restarted("RolloutActor", "collect", "collecting", record)

    def _kill_evaluator(self, record: dict) -> None:
        self._kill_restarted("EvaluatorActor", "evaluate", "evaluating", record)

    def _kill_restarted(self, cls: str, method: str, key: str, record: dict) -> None:
        """Kill -9 one of the run's `cls` (one Ray restarts); `key`: whether it was running `method`."""
        actor = self._actor(cls)
        record["at_s"] = round(self.elapsed(), 1)
        running = kill_pid(actor["Pid"], cls)
        record.update(pid=actor["Pid"], **{key: running == method})
        self._restarted(actor, record)

    def _kill_redis(self, record: dict) -> None:
        run, server = self.run, self.run.server
        run.pause()
        before = run.counters()
        record["at_s"] = round(self.elapsed(), 1)
        pid = server.proc.pid
        server.kill()
        run.redis.close()
        run.connect()
        # the restarted server paused the moment it answers, before the run's clients (retrying with
        # backoff) write again
        pausing = threading.Thread(target=self._pause_when_up, daemon=True)
        pausing.start()
        server.start()
        pausing.join(30)
        record["down_s"] = round(self.elapsed() - record["at_s"], 2)
        pipe = run.redis.pipeline(transaction=True)
        pipe.info("commandstats")
        pipe.mget([f"{run.prefix}:inserted", f"{run.prefix}:sampled"])
        stats, (inserted, sampled) = pipe.execute()
        run.unpause()
        scripts = sum(v["calls"] for k, v in stats.items() if k in ("cmdstat_eval", "cmdstat_evalsha"))
        after = {"inserted": int(inserted or 0), "sampled": int(sampled or 0)}
        lost = {k: before[k] - after[k] for k in before}
        record.update(pid=pid, rows_lost=lost["inserted"], samples_lost=lost["sampled"],
                      exact=scripts == 0)  # no script had run on the restarted server before the read
        for k in lost:
            self.segments[-1].redis_lost[k] += lost[k]
        steps = self._env_steps()
        self.wait(lambda: self._env_steps() > steps, 120, "the run to write to the restarted redis")

    def _pause_when_up(self) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                return self.run.pause()
            except (redis.ConnectionError, redis.TimeoutError):  # not up, or loading its AOF
                time.sleep(0.001)

    def _env_steps(self) -> int:
        return (self.run.log.periodic() or [{}])[-1].get("env_steps", 0)

    def _kill_learner(self, record: dict) -> None:
        from qdistill.learners import checkpoint

        run = self.run
        state_file = run.out / "checkpoints" / "state.pt"
        self.wait(state_file.exists, 300, "the run's first saved state")
        learner = self._actor("RunActor")
        resumed_before, resumes_before = len(run.log.resumed()), run.resumes
        paused_at = self.elapsed()
        run.pause()
        try:
            # quiet: two records after the pause agree on env and learner steps
            seen = len(run.log.periodic())
            quiet: list[tuple] = []

            def still() -> bool:
                records = run.log.periodic()[seen:]
                if len(records) >= 2 and all(
                        (a["env_steps"], a["learner/steps"]) == (records[-1]["env_steps"], records[-1]["learner/steps"])
                        for a in records[-2:]):
                    quiet[:] = [records[-1]]
                    return True
                return False

            try:
                self.wait(still, 20, "the learner to stop stepping")
            except RuntimeError:
                quiet[:] = run.log.periodic()[-1:]
                record["quiet"] = False
            last = quiet[0]
            end = {"env_steps": last["env_steps"], "learner_steps": last["learner/steps"], **run.counters(),
                   "evaluations_lost": last["evaluator/evaluations_lost"],
                   "collects_lost": last["rollout/actor_failures"]}
            children = [a for k, v in actors_of(run).items() if k != "RunActor" for a in v]
            learner = actors_of(run)["RunActor"][0]
            record["at_s"] = round(self.elapsed(), 1)
            kill_pid(learner["Pid"], "RunActor")
            state = checkpoint.load_state(state_file)  # what it resumes from: no new state while paused
            from ray._private import state as gcs

            self.wait(lambda: all(gcs.actors(actor_id=a["ActorID"]).get("State") == "DEAD" for a in children),
                      60, "the learner's actors to go with it")
            boundary = run.counters()
        finally:
            run.unpause()
        segment = self.segments[-1]
        segment.end = end
        start = {"env_steps": int(state["env_steps"]), "learner_steps": int(state["learner"]["steps"]), **boundary}
        self.segments.append(Segment(start))
        # a cross-check from Redis: every learner step trains on BATCH sampled rows; an upper bound, as
        # `sampled` also counts rows a re-drawing sample read and dropped, and a sample half read at the pause
        sampled_steps = segment.start["learner_steps"] + \
            (end["sampled"] - segment.start["sampled"] + segment.redis_lost["sampled"]) // BATCH
        record.update(pid=learner["Pid"], paused_s=round(record["at_s"] - paused_at, 1),
                      logged_env_steps=end["env_steps"], logged_learner_steps=end["learner_steps"],
                      sampled_steps=sampled_steps, state_env_steps=start["env_steps"],
                      state_learner_steps=start["learner_steps"], quiet=record.get("quiet", True))
        self.wait(lambda: len(run.log.resumed()) > resumed_before, 300, "the learner to resume")
        resumed = run.log.resumed()[-1]
        record.update(resumed_env_steps=resumed["env_steps"], resumed_learner_steps=resumed["learner/steps"],
                      resumed_rows_lost=resumed["buffer/lost"],
                      resumed_by="--resume" if run.resumes > resumes_before else "ray")
        periodic = len(run.log.periodic())
        self.wait(lambda: len(run.log.periodic()) > periodic, 300, "the resumed run's first record")
        record["restart_s"] = round(self.elapsed() - record["at_s"], 1)


# -- the report ------------------------------------------------------------------------------------


def report(soak: Soak, calm: dict, disturbed: dict, final: dict[str, int], calm_inserted: int) -> dict:
    segments = soak.segments
    segments[-1].end = {"env_steps": disturbed["env_steps"], "learner_steps": disturbed["learner_steps"], **final,
                        "evaluations_lost": disturbed["evaluator"]["evaluations_lost"],
                        "collects_lost": disturbed["actors"]["actor_failures"]}

    def rows_lost(s: Segment) -> int:
        return (s.end["env_steps"] - s.start["env_steps"]) - (s.end["inserted"] - s.start["inserted"])

    kills = {kind: [k for k in soak.kills if k["kind"] == kind] for kind in KINDS}
    learner = kills["learner"]
    last_rows, killed_rows = disturbed["buffer"]["lost"], sum(k["resumed_rows_lost"] for k in learner)
    pairs = [
        ("rows lost, last segment (since the learner last started)", last_rows, rows_lost(segments[-1]),
         "summary.json buffer.lost",
         "env steps the actors reported (summary.json less the resumed event) less the rows Redis gained (read by the soak)"),
        ("rows lost, segments ended by a learner kill", killed_rows, sum(rows_lost(s) for s in segments[:-1]),
         "the resumed events' buffer/lost",
         "env steps logged at the kill (the learner paused first) less the segment's start, less the rows Redis gained"),
        ("rows lost in all", last_rows + killed_rows, sum(map(rows_lost, segments)), "the two above", "the two above"),
        ("  of which Redis lost in its kills", None, sum(k["rows_lost"] for k in kills["redis"]), "not counted apart",
         "rows inserted before the kill (writes paused) less those the restarted server replayed"),
        ("learner steps lost at learner kills (since the last state)",
         sum(k["logged_learner_steps"] - k["resumed_learner_steps"] for k in learner),
         sum(k["logged_learner_steps"] - k["state_learner_steps"] for k in learner),
         "the last learner/steps logged before each kill less the resumed event's",
         "the learner's steps when killed (it had stopped stepping: writes paused, two records alike, so the log "
         "held its count) less the steps in state.pt, read by the soak at the kill"),
        ("learner steps resumed from", sum(k["resumed_learner_steps"] for k in learner),
         sum(k["state_learner_steps"] for k in learner), "the resumed events' learner/steps",
         "state.pt, read at each kill"),
        ("env steps rolled back at learner kills (their rows stay in Redis)",
         sum(k["logged_env_steps"] - k["resumed_env_steps"] for k in learner),
         sum(k["logged_env_steps"] - k["state_env_steps"] for k in learner),
         "the last env_steps logged before each kill less the resumed event's",
         "the same log, less state.pt's env steps (not independent: one log)"),
        ("evaluations lost at evaluator kills", sum(s.end["evaluations_lost"] for s in segments),
         len(kills["evaluator"]),
         "evaluator/evaluations_lost per segment (summary.json; the last record before a learner kill)",
         "evaluator kills: each loses the call in flight (`evaluate` in its process title at the kill) or, idle, the "
         "next one, sent before Ray saw the death; none is sent again until Ray has it up"),
        ("collects lost at rollout kills", sum(s.end["collects_lost"] for s in segments),
         len(kills["rollout"]),
         "rollout/actor_failures per segment (summary.json actors.actor_failures; the last record before a learner kill)",
         "rollout kills: each loses the collect in flight or, idle, the next one (as for the evaluator)"),
    ]
    notes = [f"{what}: counted {c:,}, measured {m:,}" for what, c, m, _, _ in pairs if c is not None and c != m]
    student = {name: (calm["students"][name]["eval_return_mean"], disturbed["students"][name]["eval_return_mean"])
               for name in calm["students"]}
    return {
        "kills": {kind: len(kills[kind]) for kind in KINDS},
        "learner_resumed_by": {"ray": sum(k["resumed_by"] == "ray" for k in learner), "--resume": soak.run.resumes},
        "collects_lost": sum(s.end["collects_lost"] for s in segments),
        "pairs": [{"what": w, "counted": c, "measured": m, "counted_how": ch, "measured_how": mh,
                   "equal": None if c is None else c == m} for w, c, m, ch, mh in pairs],
        "notes": notes,
        "kill_log": soak.kills,
        "segments": [{"start": s.start, "end": s.end, "redis_lost": s.redis_lost, "kills": s.kills} for s in segments],
        "students": {name: {"undisturbed": a, "disturbed": b, "ratio": b / a if a else None}
                     for name, (a, b) in student.items()},
        "undisturbed": {"env_steps": calm["env_steps"], "learner_steps": calm["learner_steps"], "buffer": calm["buffer"],
                        "redis_inserted": calm_inserted, "wall_s": calm["wall_s"], "evaluator": calm["evaluator"]},
        "disturbed": {"env_steps": disturbed["env_steps"], "learner_steps": disturbed["learner_steps"],
                      "buffer": disturbed["buffer"], "wall_s": disturbed["wall_s"], "evaluator": disturbed["evaluator"]},
        "sampled_over_log": sum(k["sampled_steps"] - k["logged_learner_steps"] for k in learner),
        "command_wall_s": {"undisturbed": round(soak.calm.wall[1] - soak.calm.wall[0], 1),
                           "disturbed": round(soak.run.wall[1] - soak.run.wall[0], 1)},
        "torn_log_lines": soak.run.log.torn,
    }


def show(result: dict, args: argparse.Namespace, teacher_return: float | None) -> None:
    from qdistill.cluster.rundir.tables import table

    def num(v) -> str:
        return "—" if v is None else f"{v:,}" if isinstance(v, int) else f"{v:.1f}"

    log_ = result["kill_log"]

    def restart(kind: str) -> str:
        times = [k["restart_s"] for k in log_ if k["kind"] == kind]
        return f"back in {min(times):.0f}–{max(times):.0f} s" if times else "—"

    k = result["kills"]
    print(f"\nchaos soak: {args.minutes:g} min, seed {args.seed}, {args.actors} rollout actors per run, CartPole-v1 "
          f"(teacher {num(teacher_return)}), Redis AOF everysec\n")
    rows = [["killed (SIGKILL)", "count", "what followed"],
            ["rollout actor", str(k["rollout"]),
             f"restarted by Ray, {restart('rollout')}; {sum(x.get('collecting', False) for x in log_)} found collecting"],
            ["evaluator", str(k["evaluator"]),
             f"restarted by Ray, {restart('evaluator')}; {sum(x.get('evaluating', False) for x in log_)} found evaluating"],
            ["learner (RunActor)", str(k["learner"]),
             f"restarted by Ray {result['learner_resumed_by']['ray']}, `qdistill run --resume` "
             f"{result['learner_resumed_by']['--resume']}; distilling again {restart('learner')}"],
            ["redis-server", str(k["redis"]), "started again at once on its port and AOF"]]
    print(table(rows, markdown=True, right=[1]) + "\n")
    rows = [["lost", "counted by the run", "measured by the soak", "equal"]]
    for p in result["pairs"]:
        rows.append([p["what"], num(p["counted"]), num(p["measured"]),
                     "—" if p["equal"] is None else "yes" if p["equal"] else "**no**"])
    print(table(rows, markdown=True, right=[1, 2]) + "\n")
    for p in result["pairs"]:
        print(f"- {p['what'].strip()}: counted = {p['counted_how']}; measured = {p['measured_how']}")
    if k["learner"]:
        print(f"\nCross-check of the learner's steps at its kills from Redis (rows counted sampled / {BATCH}): "
              f"{result['sampled_over_log']:+,} steps over the log in all; an upper bound, as `sampled` also counts "
              "rows that a sample drawing again read and dropped, and a sample half read when the writes were paused")
    for note in result["notes"]:
        print(f"\n**Not equal**: {note}.")
    rows = [["student", "undisturbed return", "disturbed return", "disturbed / undisturbed", "within 5%"]]
    for name, s in result["students"].items():
        rows.append([name, f"{s['undisturbed']:.1f}", f"{s['disturbed']:.1f}",
                     "—" if s["ratio"] is None else f"{s['ratio']:.3f}",
                     "—" if s["ratio"] is None else "yes" if s["ratio"] >= 0.95 else "**no**"])
    print("\n" + table(rows, markdown=True, right=[1, 2, 3]))
    u, d = result["undisturbed"], result["disturbed"]
    wall = result["command_wall_s"]
    print(f"\nundisturbed: {u['env_steps']:,} env steps, {u['learner_steps']:,} learner steps, buffer {u['buffer']} "
          f"(Redis counts {u['redis_inserted']:,} inserted); the command took {wall['undisturbed']:.0f} s")
    print(f"disturbed: {d['env_steps']:,} env steps, {d['learner_steps']:,} learner steps (both since its last state); "
          f"the command took {wall['disturbed']:.0f} s (with its resumes); the kills (s from its first record):")
    for x in log_:
        extra = ", ".join(f"{a} {b}" for a, b in x.items() if a not in ("kind", "scheduled_s", "at_s"))
        print(f"  {x['at_s']:7.1f} s  {x['kind']:<9} {extra}")
    print(f"\nreproduce: python -m benchmarks.chaos_soak --minutes {args.minutes:g} --seed {args.seed} "
          f"--actors {args.actors} --kills {','.join(f'{a}={b}' for a, b in k.items())}"
          + (f" --checkpoint-every {args.checkpoint_every:g}" if args.checkpoint_every else "")
          + (f" --teacher {args.teacher}" if args.teacher else ""))


# -- set-up and teardown ---------------------------------------------------------------------------


def kill_counts(spec: str | None, minutes: float) -> dict[str, int]:
    counts = {k: max(1, round(PER_HOUR[k] * minutes / 60)) for k in KINDS}
    for item in filter(None, (spec or "").split(",")):
        kind, _, n = item.partition("=")
        if kind not in KINDS or not n.isdigit():
            raise SystemExit(f"--kills {item!r} is not valid: expected KIND=N with KIND one of {', '.join(KINDS)}")
        counts[kind] = int(n)
    return counts


def plan(rng: np.random.Generator, seconds: float, counts: dict[str, int]) -> list[tuple[float, str]]:
    kinds = [k for k in KINDS for _ in range(counts[k])]
    kinds = [kinds[i] for i in rng.permutation(len(kinds))]
    margin = max(30.0, 0.1 * seconds)
    times = np.sort(rng.uniform(margin, seconds - margin, len(kinds)))
    return [(float(t), k) for t, k in zip(times, kinds)]


def train_teacher(work: Path, env: dict[str, str], address: str, seed: int) -> tuple[Path, float]:
    out = work / "teacher"
    log(f"training a CartPole teacher ({out})")
    subprocess.run([*CLI, "train-teacher", "--env", "CartPole-v1", "--seed", str(seed), "--address", address,
                    "--out", str(out), "--quiet"], cwd=REPO, env=env, check=True, stdout=subprocess.DEVNULL)
    summary = json.loads((out / "summary.json").read_text())
    return Path(summary["teacher"]["checkpoint"]), summary["teacher"]["eval_return_mean"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=60.0, help="each run's time budget")
    parser.add_argument("--seed", type=int, default=0, help="the kill schedule's, and both runs' --seed")
    parser.add_argument("--kills", help="kills per kind, e.g. rollout=12,evaluator=8,learner=8,redis=8 "
                                        "(default: that per hour, at least one each)")
    parser.add_argument("--actors", type=int, default=2, help="rollout actors per run")
    parser.add_argument("--checkpoint-every", type=float, help="both runs' --checkpoint-every (default: the run's, 60 s)")
    parser.add_argument("--teacher", help="a teacher checkpoint (default: train one with train-teacher first)")
    parser.add_argument("--progress", type=float, default=30.0, help="seconds between progress lines")
    parser.add_argument("--workdir", help="where runs, Redis data and logs go (default: a temporary directory, "
                                          "removed at the end)")
    parser.add_argument("--json", default=str(REPO / "benchmarks" / "results" / "chaos_soak.json"))
    args = parser.parse_args()
    seconds = args.minutes * 60
    counts = kill_counts(args.kills, args.minutes)
    rng = np.random.default_rng(args.seed)
    schedule = plan(rng, seconds, counts)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="chaos-soak-"))
    work.mkdir(parents=True, exist_ok=True)
    began = time.monotonic()
    head = RayHead(token=new_token(), num_cpus=2 * args.actors + 2)
    servers: list[RedisServer] = []
    runs: list[Run] = []
    connected = False
    try:
        head.start()
        env = head.client_env()
        os.environ.update({k: env[k] for k in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN")})
        os.environ.pop("RAY_ADDRESS", None)
        log(f"Ray head {head.address} ({head.temp_dir}); work in {work}")
        import ray

        ray.init(address=head.address, logging_level="WARNING")
        connected = True
        if args.teacher:
            teacher, teacher_return = Path(args.teacher), None
        else:
            teacher, teacher_return = train_teacher(work, env, head.address, args.seed)
            log(f"teacher: greedy return {teacher_return:.1f}")
        flags = ["--env", "CartPole-v1", "--teacher", str(teacher), "--time", f"{seconds:g}", "--no-target",
                 "--seed", str(args.seed), "--actors", str(args.actors), "--quiet",
                 *(["--checkpoint-every", f"{args.checkpoint_every:g}"] if args.checkpoint_every else [])]
        for name in ("undisturbed", "disturbed"):
            server = RedisServer(work / f"redis-{name}", aof=True).start()
            servers.append(server)
            prefix = f"chaos-soak:{name}"
            runs.append(Run(name, work / name, server, prefix, [
                *flags, "--buffer", server.url, "--buffer-prefix", prefix, "--address", head.address], env))
        log("schedule: " + ", ".join(f"{kind} at {at:.0f} s" for at, kind in schedule))
        setup_s = time.monotonic() - began
        for run in runs:
            run.start()
        soak = Soak(runs[0], runs[1], schedule, rng, seconds, args.progress)
        soak.execute()
        calm, disturbed = runs[0].summary(), runs[1].summary()
        result = report(soak, calm, disturbed, runs[1].counters(), runs[0].counters()["inserted"])
        result.update(minutes=args.minutes, seed=args.seed, actors=args.actors, teacher_return=teacher_return,
                      schedule=schedule, setup_s=round(setup_s, 1), runs_s=round(time.monotonic() - began - setup_s, 1),
                      wall_s=round(time.monotonic() - began, 1))
        show(result, args, teacher_return)
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
        print(f"\n{args.json} written; set-up (Ray head, Redis, teacher) {result['setup_s'] / 60:.1f} min, the runs "
              f"{result['runs_s'] / 60:.1f} min")
    finally:
        for run in runs:
            run.stop()
        if connected:
            import ray

            ray.shutdown()
        head.stop()
        for server in servers:
            server.stop()
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
        log(f"torn down; {(time.monotonic() - began) / 60:.1f} min in all")


if __name__ == "__main__":
    main()
