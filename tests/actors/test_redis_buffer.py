"""What only the Redis backend has: chunks, the wire format, prefixes, failures and restarts."""

import json
import threading
import time
import zlib

import numpy as np
import pytest
import redis

from qdistill.actors.redis_buffer import RedisBuffer, RedisSpec
from qdistill.actors.redis_connect import PASSWORD_ENV, PASSWORD_FILE_ENV, RedisBufferError
from qdistill.actors.wire import WIRE_VERSION, Schema, SchemaError, decode, encode
from tests.support.redis_server import RedisServer, free_port
from tests.support.batches import sequence_batch as _batch

SCHEMA = Schema(obs_shape=(2,), n_actions=2)


def _buffer(url, prefix, capacity=100, chunk_size=4, schema=SCHEMA, seed=0):
    return RedisBuffer(RedisSpec(url, prefix, capacity, chunk_size, schema), seed=seed)


def test_wire_round_trip_is_raw_numpy_records():
    batch = _batch(3, 5)
    data = encode(batch, SCHEMA)
    assert len(data) == 5 * SCHEMA.record_size
    back = decode(data, SCHEMA)
    assert back.rejected == 0 and back.intact.tolist() == [True] * 5
    for name in batch.field_names():
        np.testing.assert_array_equal(getattr(back.batch, name), getattr(batch, name))
        assert getattr(back.batch, name).dtype == getattr(batch, name).dtype
    records = np.frombuffer(data, dtype=SCHEMA.dtype)  # no pickle: numpy and zlib alone read and check it
    np.testing.assert_array_equal(records["actions"], np.arange(3, 8))
    assert [zlib.crc32(data[i * SCHEMA.record_size:(i + 1) * SCHEMA.record_size], SCHEMA.start)
            for i in range(5)] == [SCHEMA.start] * 5


def test_a_cartpole_record_is_its_body_a_crc_its_labels_and_a_crc():
    schema = Schema(obs_shape=(4,), n_actions=2)
    assert [(name, schema.offset(name)) for name in schema.dtype.names] == [
        ("observations", 0), ("actions", 16), ("rewards", 24), ("next_observations", 28), ("terminations", 44),
        ("truncations", 45), ("behaviour", 46), ("actor_id", 47), ("task", 51), ("horizon", 53), ("body_crc", 54),
        ("teacher_q", 58), ("label_version", 66), ("label_crc", 74)]
    assert schema.record_size == 78 and schema.label_dtype.itemsize == 20  # relabel rewrites the last 20 bytes


def test_decode_refuses_damaged_records_and_counts_a_partial_one():
    data = bytearray(encode(_batch(3, 5), SCHEMA))
    R = SCHEMA.record_size
    data[R + 2] ^= 0x10  # row 1: a bit of its observation
    data[3 * R + SCHEMA.offset("label_crc")] ^= 0x01  # row 3: a bit of its label CRC
    back = decode(bytes(data) + b"x" * 7, SCHEMA)
    assert back.intact.tolist() == [True, False, True, False, True]
    assert back.rejected == 3  # two damaged records and the 7 bytes of a partial one
    np.testing.assert_array_equal(back.batch.actions, [3, 5, 7])
    junk = decode(b"x" * 7, SCHEMA)
    assert (len(junk.batch), junk.intact.size, junk.rejected) == (0, 0, 1)
    theirs = _batch(0, 2)
    theirs.observations, theirs.next_observations = theirs.observations[:, None], theirs.next_observations[:, None]
    other = decode(encode(theirs, Schema(obs_shape=(1, 2), n_actions=2)), SCHEMA)  # the same bytes a record, another schema
    assert (len(other.batch), other.rejected) == (0, 2)


def test_header_names_the_first_difference():
    with pytest.raises(SchemaError, match=r"^field observations is <f4 \(8,\), not <f4 \(2,\)$"):
        SCHEMA.check_header(Schema(obs_shape=(8,), n_actions=4).header())
    SCHEMA.check_header(Schema(obs_shape=(2,), n_actions=2).header())


def test_rows_are_written_in_whole_chunks_and_flush_writes_the_rest(redis_server, redis_prefix):
    buf = _buffer(redis_server.url, redis_prefix, capacity=10, chunk_size=4)
    assert buf.capacity == 12  # 3 chunks of 4
    buf.add(_batch(0, 3))
    assert buf.stats()["buffer/inserted"] == 0  # still accumulating
    buf.add(_batch(3, 3))
    assert buf.stats()["buffer/inserted"] == 4
    buf.flush()
    np.testing.assert_array_equal(buf.ids(), [0, 1, 2, 3, 4, 5])
    ids, batch = buf.sample(2_000)
    assert set(ids.tolist()) == {0, 1, 2, 3, 4, 5}  # never a row past the partial chunk's end
    np.testing.assert_array_equal(batch.actions, [{0: 0, 1: 1, 2: 2, 3: 3, 4: 4, 5: 5}[i] for i in ids])
    counts = np.bincount(ids, minlength=6)
    assert counts.min() > 260 and counts.max() < 410  # ~333 each: uniform over rows
    buf.add(_batch(6, 12))  # chunks 2, 3, 4: chunk 0 and 1 (ids 0..7) are evicted
    np.testing.assert_array_equal(buf.ids(), np.arange(8, 20))
    assert buf.stats()["buffer/size"] == 12 and buf.stats()["buffer/inserted"] == 18
    buf.close()


def test_a_write_through_buffer_writes_every_add_at_once(redis_server, redis_prefix):
    """A rollout actor's sink: the rows a collect reports are in Redis when it returns."""
    buf = RedisBuffer(RedisSpec(redis_server.url, redis_prefix, 12, 4, SCHEMA), write_through=True)
    buf.add(_batch(0, 3))  # a partial chunk, written now
    assert buf.stats()["buffer/inserted"] == 3 and buf.pending_rows == 0
    buf.add(_batch(3, 6))  # a whole chunk and a partial one
    assert buf.stats()["buffer/inserted"] == 9 and buf.pending_rows == 0
    np.testing.assert_array_equal(buf.ids(), [0, 1, 2, 4, 5, 6, 7, 8, 9])  # chunk n holds ids 4n …
    ids, batch = buf.sample(500)
    np.testing.assert_array_equal(batch.actions, [{0: 0, 1: 1, 2: 2, 4: 3, 5: 4, 6: 5, 7: 6, 8: 7, 9: 8}[i] for i in ids])
    buf.close()


def test_prefixes_keep_runs_apart_and_refuse_another_schema(redis_server, redis_prefix):
    a = _buffer(redis_server.url, redis_prefix + ":a", chunk_size=1)
    b = _buffer(redis_server.url, redis_prefix + ":b", chunk_size=1)
    a.add(_batch(0, 5))
    b.add(_batch(100, 2))
    assert len(a) == 5 and len(b) == 2
    _buffer(redis_server.url, redis_prefix + ":a", chunk_size=1)  # same schema: reopened
    with pytest.raises(RedisBufferError, match=(
            rf"^redis prefix '{redis_prefix}:a' at 127.0.0.1:{redis_server.port} holds another run's buffer "
            r"\(field observations is <f4 \(2,\), not <f4 \(8,\)\): use another prefix, or delete its keys$")):
        _buffer(redis_server.url, redis_prefix + ":a", chunk_size=1, schema=Schema((8,), 4))
    with pytest.raises(RedisBufferError, match=r"holds another run's buffer \(chunk_size 1, not 4\)"):
        _buffer(redis_server.url, redis_prefix + ":a", chunk_size=4)
    assert len(a) == 5  # nothing overwritten


def test_a_buffer_of_another_wire_version_is_refused_naming_it(redis_server, redis_prefix):
    old = json.loads(SCHEMA.header())
    old["wire_version"] = 1  # what a qdistill before record checksums wrote
    redis.Redis.from_url(redis_server.url).hset(redis_prefix + ":meta", mapping={
        "header": json.dumps(old), "chunk_size": "4", "capacity_chunks": "25"})
    with pytest.raises(RedisBufferError) as err:
        _buffer(redis_server.url, redis_prefix)
    assert str(err.value) == (f"redis prefix '{redis_prefix}' at 127.0.0.1:{redis_server.port} holds another run's "
                              f"buffer (wire version 1, not {WIRE_VERSION}): use another prefix, or delete its keys")


@pytest.mark.parametrize("meta, why", [
    ({"header": "not json", "chunk_size": "4"}, "no qdistill wire header"),
    ({"chunk_size": "4"}, "no qdistill wire header"),
    ({"header": '{"wire_version": %d, "fields": [1, 2]}' % WIRE_VERSION}, "a malformed wire header"),
    ("a string, not a hash", "no qdistill wire header"),
])
def test_a_garbage_meta_is_refused_in_one_line(redis_server, redis_prefix, meta, why):
    r = redis.Redis.from_url(redis_server.url)
    if isinstance(meta, str):
        r.set(redis_prefix + ":meta", meta)
    else:
        r.hset(redis_prefix + ":meta", mapping=meta)
    with pytest.raises(RedisBufferError) as err:
        _buffer(redis_server.url, redis_prefix)
    assert str(err.value) == (f"redis prefix '{redis_prefix}' at 127.0.0.1:{redis_server.port} holds another run's "
                              f"buffer ({why}): use another prefix, or delete its keys")


@pytest.mark.parametrize("url, message", [
    ("http://127.0.0.1:6379/0", "redis URL 'http://127.0.0.1:6379/0' is not valid: expected "
                                "redis://[user:password@]host:port/db (or rediss:// for TLS)"),
    ("redis://", "redis URL 'redis://' is not valid: expected"),
    ("redis://127.0.0.1:notaport/0", "redis URL 'redis://127.0.0.1:notaport/0' is not valid: "),
])
def test_malformed_url(url, message):
    with pytest.raises(RedisBufferError, match="^" + message.replace("[", r"\[").replace("]", r"\]")
                       .replace("(", r"\(").replace(")", r"\)")):
        _buffer(url, "p")


def test_unreachable_host_names_the_address():
    port = free_port()
    with pytest.raises(RedisBufferError, match=f"^cannot reach redis at 127.0.0.1:{port}: "):
        _buffer(f"redis://127.0.0.1:{port}/0", "p")


def test_passwords_from_the_url_the_environment_or_a_file(tmp_path, monkeypatch):
    server = RedisServer(tmp_path / "auth", password="s3cret").start()
    try:
        bad = f"redis://:wrong@127.0.0.1:{server.port}/0"
        with pytest.raises(RedisBufferError, match=(
                rf"^redis at 127.0.0.1:{server.port} refused the credentials \(.*\): check the password in "
                rf"the URL or in \${PASSWORD_ENV}$")):
            _buffer(bad, "p")
        with pytest.raises(RedisBufferError, match="refused the credentials"):
            _buffer(f"redis://127.0.0.1:{server.port}/0", "p")  # no password at all
        _buffer(server.url, "p").close()
        monkeypatch.setenv(PASSWORD_FILE_ENV, str(tmp_path / "missing"))
        with pytest.raises(RedisBufferError) as err:
            _buffer(f"redis://127.0.0.1:{server.port}/0", "p")
        assert str(err.value) == f"${PASSWORD_FILE_ENV} '{tmp_path / 'missing'}' cannot be read: No such file or directory"
        (tmp_path / "password").write_text("s3cret\n")
        monkeypatch.setenv(PASSWORD_FILE_ENV, str(tmp_path / "password"))
        _buffer(f"redis://127.0.0.1:{server.port}/0", "p1").close()  # from the file
        monkeypatch.setenv(PASSWORD_ENV, "s3cret")
        monkeypatch.setenv(PASSWORD_FILE_ENV, str(tmp_path / "missing"))  # the variable wins, the file is not read
        buf = _buffer(f"redis://127.0.0.1:{server.port}/0", "p2")
        buf.add(_batch(0, 4))
        assert len(buf) == 4
    finally:
        server.stop()


@pytest.mark.slow
def test_kill_9_with_aof_loses_nothing_acknowledged_two_seconds_before(tmp_path):
    """A writer keeps adding and a sampler keeps sampling while the server is killed and restarted on
    the same data directory: both ride out the restart, and every batch acknowledged > 2 s before
    the kill is still there, row for row. `appendfsync everysec` may lose what was acknowledged
    in the last 2 s (Redis defers its AOF write while a slow fsync runs): then the buffer's head
    steps back and the writes after the restart take over those ids, all shifted alike."""
    server = RedisServer(tmp_path / "aof", aof=True).start()
    spec = RedisSpec(server.url, "restart", 10_000_000, 64, SCHEMA)
    acked: list[tuple[int, float]] = []  # (first id of the batch, time its add returned)
    stop = threading.Event()
    errors: list[BaseException] = []

    def writer():
        buf = RedisBuffer(spec)
        n = 0
        try:
            while not stop.is_set():
                buf.add(_batch(n * 64, 64))  # exactly one chunk: written and acknowledged now
                acked.append((n * 64, time.monotonic()))
                n += 1
                time.sleep(0.002)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    sampled: list[tuple[float, np.ndarray, np.ndarray]] = []  # (time, ids, actions) of each sample

    def sampler():
        buf = RedisBuffer(spec, seed=1)
        while len(acked) < 2 and not stop.is_set():
            time.sleep(0.01)
        try:
            while not stop.is_set():
                ids, batch = buf.sample(256)
                sampled.append((time.monotonic(), ids, batch.actions))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer), threading.Thread(target=sampler)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(3.0)
        killed_at = time.monotonic()
        server.kill()
        time.sleep(0.5)
        server.start()  # same port, same directory: replays the AOF
        time.sleep(1.5)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
    try:
        assert not errors, errors
        before = [first for first, t in acked if t < killed_at - 2.0]
        after = [first for first, t in acked if t > killed_at + 0.5]
        assert len(before) > 50 and len(after) > 50  # it wrote before, and continued after the restart
        assert sum(t > killed_at + 0.5 for t, _, _ in sampled) > 10  # and the learner's side kept sampling
        reader = RedisBuffer(spec)
        stored = reader.ids()
        kept = set(stored.tolist())
        lost = [first for first in before if first not in kept]
        assert lost == []
        got = reader.get(np.array(before))
        np.testing.assert_array_equal(got.actions, before)  # the right rows, intact
        # what the AOF lost: the writer's next id less the buffer's, whole batches acknowledged in
        # the last 2 s before the kill
        shift = acked[-1][0] + 64 - (int(stored.max()) + 1)
        assert shift % 64 == 0 and 0 <= shift // 64 <= sum(killed_at - 2.0 <= t <= killed_at for _, t in acked)
        got = reader.get(np.array(after) - shift)
        np.testing.assert_array_equal(got.actions, after)  # every write after the restart, at its id
        # every sampled row was one the writer wrote at that id, or (after a loss) the shifted one
        ids, actions = (np.concatenate(x) for x in zip(*((i, a) for _, i, a in sampled)))
        assert set(np.unique(actions - ids).tolist()) <= {0, shift}
        assert np.all(actions[ids <= before[-1] + 63] == ids[ids <= before[-1] + 63])
    finally:
        server.stop()
