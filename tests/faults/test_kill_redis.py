"""kill -9 of the Redis server a run's buffer lives in, at a random moment after the run's first
evaluation, and the same server started again a second later on the same port and data directory
(AOF, fsync every second): actors, refresher and learner ride out the restart, the run reports the
rows the server lost (`summary.json`'s `buffer`: rows the actors handed over less the rows the
buffer counts inserted), and the student ends within 5% of an undisturbed run's return on a Redis
buffer with the same flags.
"""

import json
import random
import threading
import time

import pytest
import redis
from tests.support.redis_server import RedisServer

from qdistill.cluster.cli import main

pytestmark = pytest.mark.slow  # fault injection: redis-server killed under whole runs

PREFIX = "fault"  # each run has a server of its own
SEED = 5
PAUSE_S = 1.0  # the server is down this long
# what the server held this long before the kill survives it: appendfsync everysec loses the last
# second of writes at most (two, when a background fsync is slow)
SAFE_S = 2.0
# long enough that the run outlasts the kill (up to SAFE_S + 2 s after its first evaluation), the
# restart and two more evaluations
STEPS = 150_000


def _evaluations(out):
    metrics = out / "metrics.jsonl"
    if not metrics.exists():
        return []
    return [r for r in map(json.loads, metrics.read_text().splitlines()) if "eval/return/teacher" in r]


def _inserted(server: RedisServer) -> int:
    """The buffer's own count of rows inserted, as the server has it now (a fresh connection)."""
    client = redis.Redis(port=server.port)
    try:
        return int(client.get(f"{PREFIX}:inserted") or 0)
    finally:
        client.close()


def _kill(server: RedisServer, out, delay: float, killed: dict) -> None:
    """Once the run has evaluated, note the rows inserted; SAFE_S + `delay` seconds later kill -9
    the server, and start it again PAUSE_S later (it replays its AOF)."""
    deadline = time.monotonic() + 120
    while not _evaluations(out) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _evaluations(out), "the run never evaluated"
    killed["inserted_early"] = _inserted(server)
    time.sleep(SAFE_S + delay)
    killed["evaluations_before"] = len(_evaluations(out))
    killed["inserted_before"] = _inserted(server)
    server.kill()
    try:
        time.sleep(PAUSE_S)
    finally:
        server.start()
    killed["inserted_after"] = _inserted(server)


def _run(teacher: str, out, server: RedisServer) -> dict:
    assert main(["run", "--env", "CartPole-v1", "--teacher", teacher, "--steps", str(STEPS), "--no-target",
                 "--seed", "5", "--buffer", server.url, "--buffer-prefix", PREFIX, "--out", str(out),
                 "--quiet"]) == 0
    return json.loads((out / "summary.json").read_text())


@pytest.fixture(scope="module")
def undisturbed(steady_teacher, tmp_path_factory):
    base = tmp_path_factory.mktemp("undisturbed")
    server = RedisServer(base / "redis", aof=True).start()
    try:
        summary = _run(steady_teacher, base / "run", server)
        assert _inserted(server) == summary["buffer"]["inserted"]
    finally:
        server.stop()
    return steady_teacher, summary


def test_a_run_rides_out_a_redis_restart_and_reports_the_rows_lost(undisturbed, tmp_path):
    teacher, reference = undisturbed
    delay = random.Random(SEED).uniform(0, 2)
    print(f"seed {SEED}: redis-server killed {SAFE_S + delay:.2f} s after the run's first evaluation")
    server = RedisServer(tmp_path / "redis", aof=True).start()
    out, killed = tmp_path / "killed", {}
    killer = threading.Thread(target=_kill, args=(server, out, delay, killed))
    killer.start()
    try:
        summary = _run(teacher, out, server)
        killer.join()
        inserted_now = _inserted(server)
    finally:
        killer.join()
        server.stop()
    print(f"rows inserted: {killed}; run: {summary['buffer']} of {summary['env_steps']} env steps")
    assert "inserted_after" in killed  # killed and started again
    # undisturbed: every row the actors collected is in the buffer
    assert reference["buffer"] == {"inserted": reference["env_steps"], "lost": 0, "rejected": 0, "bytes_per_row": 61}
    # the restarted server replayed its AOF: what it held SAFE_S before the kill is still counted
    assert killed["inserted_after"] >= killed["inserted_early"] > 0, killed
    # what it counted just before the kill and not after is lost to the run (and any write it
    # acknowledged between that count and the kill and then lost too)
    lost = summary["buffer"]["lost"]
    assert lost >= max(killed["inserted_before"] - killed["inserted_after"], 0), (killed, summary["buffer"])
    assert summary["buffer"]["inserted"] == summary["env_steps"] - lost == inserted_now
    assert inserted_now > killed["inserted_after"]  # the actors wrote on to the restarted server
    assert len(_evaluations(out)) >= killed["evaluations_before"] + 2  # and the run went on evaluating
    assert summary["stop_reason"] == "steps" and summary["env_steps"] >= STEPS
    ret, ref = summary["students"]["16x16"]["eval_return_mean"], reference["students"]["16x16"]["eval_return_mean"]
    assert ret >= 0.95 * ref, (delay, ret, ref)
