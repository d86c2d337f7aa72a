"""Hostile bytes under a Redis buffer's prefix (truncated records, other schemas, flipped bits,
random bytes, other key types, garbage counters) are refused, counted and never trained on, and
no reader raises on them."""

from __future__ import annotations

import numpy as np
import pytest
import redis
import torch

from qdistill.actors.buffer import ReplayRing
from qdistill.actors.redis_buffer import RedisBuffer, RedisSpec
from qdistill.actors.wire import Schema, encode
from qdistill.learners.batch import TransitionBatch
from qdistill.learners.configs import DistillConfig
from qdistill.learners.distill import DistillLearner

SCHEMA = Schema(obs_shape=(4,), n_actions=2)  # CartPole's
R = SCHEMA.record_size
C = 16  # rows a chunk
CRC_BYTES = [*range(SCHEMA.offset("body_crc"), SCHEMA.offset("body_crc") + 4),
             *range(SCHEMA.offset("label_crc"), SCHEMA.offset("label_crc") + 4)]
VALID_MARK, SPARE_MARK = 1_000, 500_000  # actor_id of the valid rows and of the rows mutations start from


def _rows(n: int, mark: int, rng: np.random.Generator, schema: Schema = SCHEMA) -> TransitionBatch:
    """n random transitions; actor_id = mark + their index, the marker a learner's batch is checked by."""
    obs = lambda: rng.normal(size=(n, *schema.obs_shape)).astype(np.float32)  # noqa: E731
    return TransitionBatch(
        observations=obs(), actions=rng.integers(0, schema.n_actions, n), rewards=rng.normal(size=n).astype(np.float32),
        next_observations=obs(), terminations=rng.random(n) < 0.1, truncations=rng.random(n) < 0.1,
        teacher_q=rng.normal(size=(n, schema.n_actions)).astype(np.float32),
        label_version=np.zeros(n, np.int64), behaviour=rng.integers(0, 2, n).astype(np.int8),
        actor_id=(mark + np.arange(n)).astype(np.int32), task=np.zeros(n, np.int16))


def _split(data: bytes, size: int = R) -> list[bytes]:
    return [data[i:i + size] for i in range(0, len(data), size)]


class Mutations:
    """Chunk values nobody should train on, from a seeded RNG and a pool of intact records."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.spare = _split(encode(_rows(4_000, SPARE_MARK, rng), SCHEMA))
        self.used = 0

    def record(self) -> bytes:
        self.used += 1
        return self.spare[self.used - 1]

    def flip(self, record: bytes, positions: np.ndarray) -> bytes:
        """One bit flipped at each byte position."""
        out = bytearray(record)
        for pos in positions:
            out[pos] ^= 1 << int(self.rng.integers(0, 8))
        return bytes(out)

    def flipped(self, rows: int, flips: tuple[int, int]) -> bytes:
        """`rows` records, each with flips[0] to flips[1] bits flipped anywhere (CRCs included)."""
        return b"".join(self.flip(self.record(), self.rng.choice(R, self.rng.integers(*flips), replace=False))
                        for _ in range(rows))

    def crc_flipped(self) -> bytes:
        return b"".join(self.flip(self.record(), self.rng.choice(CRC_BYTES, self.rng.integers(1, 3), replace=False))
                        for _ in range(C))

    def truncated(self) -> bytes:
        """Damaged records, then a record cut short."""
        return self.flipped(int(self.rng.integers(0, C)), (1, 2)) + self.record()[:self.rng.integers(1, R)]

    def random_bytes(self) -> bytes:
        return self.rng.bytes(int(self.rng.integers(1, C * R + 1)))

    def other_schema(self, schema: Schema) -> bytes:
        """Intact records of another run's schema, as many as a chunk's bytes hold."""
        data = encode(_rows(C * R // schema.record_size + 1, SPARE_MARK, self.rng, schema), schema)
        return data[:C * R - int(self.rng.integers(0, 2)) * int(self.rng.integers(1, R))]

    def overlong(self) -> bytes:
        """A chunk's worth of damaged records and garbage past them (rows past a chunk have no ids)."""
        return self.flipped(C, (1, 2)) + self.rng.bytes(100)

    def chunks(self) -> list[bytes]:
        return ([self.flipped(C, (1, 2)) for _ in range(40)] + [self.flipped(C, (2, 9)) for _ in range(30)]
                + [self.crc_flipped() for _ in range(20)] + [self.truncated() for _ in range(30)]
                + [self.random_bytes() for _ in range(20)] + [self.overlong() for _ in range(4)] + [b""] * 4
                + [self.other_schema(s) for s in (Schema((6,), 3), Schema((4,), 3), Schema((2, 2), 2))
                   for _ in range(10)])


def _expected(value: bytes | None) -> list[str]:
    """What each row of a chunk holding `value` is (None: a key of another type): a damaged whole
    record, a partial one, or missing."""
    length = -1 if value is None else len(value)
    return ["damaged" if (r + 1) * R <= length else "partial" if r * R < length else "missing" for r in range(C)]


def _outcome(buf: RedisBuffer, i: int) -> bytes | str:
    """The record `get` returns at id i, or why it refused it."""
    try:
        return encode(buf.get(np.array([i])), SCHEMA)
    except KeyError as exc:
        return "missing" if exc.args[0].startswith("ids not stored") else "damaged"


def _write_hostile(r: redis.Redis, prefix: str, valid: dict[int, bytes], rng: np.random.Generator
                   ) -> dict[int, str]:
    """Writes hostile bytes under the prefix past the valid chunks and into some valid rows, as
    something other than qdistill would; returns the expected outcome of every id that is not valid."""
    mutations = Mutations(rng)
    expected: dict[int, str] = {}
    first = len(valid) // C
    values: list[bytes | None] = [*mutations.chunks(), None, None, None, None]
    for n, value in enumerate(values, start=first):
        key = f"{prefix}:c:{n}"
        if value is not None:
            r.set(key, value)
        expected.update({n * C + row: what for row, what in enumerate(_expected(value))})
    r.hset(f"{prefix}:c:{first + len(values) - 4}", "a", "b")  # chunk keys of other types
    r.rpush(f"{prefix}:c:{first + len(values) - 3}", "a")
    r.sadd(f"{prefix}:c:{first + len(values) - 2}", "a")
    r.zadd(f"{prefix}:c:{first + len(values) - 1}", {"a": 1.0})
    r.set(f"{prefix}:head", first + len(values))
    for i in rng.choice(sorted(valid), 80, replace=False).tolist():  # in place, into valid rows
        n, row = divmod(i, C)
        if len(expected) % 5:
            bad = mutations.flip(valid.pop(i), rng.choice(R, rng.integers(1, 4), replace=False))
        else:  # labels from a foreign relabel: random bytes, CRC included
            bad = valid.pop(i)[:SCHEMA.offset("teacher_q")] + rng.bytes(R - SCHEMA.offset("teacher_q"))
        r.setrange(f"{prefix}:c:{n}", row * R, bad)
        expected[i] = "damaged"
    r.set(f"{prefix}:size", "NaN")  # garbage counters
    r.set(f"{prefix}:relabelled", "many")
    return expected


@pytest.fixture
def hostile(redis_server, redis_prefix):
    """A buffer of 1,024 valid rows (64 chunks), then thousands of hostile records beside and among
    them; (reader, valid records by id, expected outcome of every other id)."""
    rng = np.random.default_rng(20)
    spec = RedisSpec(redis_server.url, redis_prefix, 1_024 * C, C, SCHEMA)
    writer = RedisBuffer(spec)
    rows = _rows(1_024, VALID_MARK, rng)
    writer.add(rows)
    writer.close()
    valid = dict(enumerate(_split(encode(rows, SCHEMA))))
    r = redis.Redis.from_url(redis_server.url)
    expected = _write_hostile(r, redis_prefix, valid, rng)
    reader = RedisBuffer(spec, seed=1)
    yield reader, valid, expected
    reader.close()
    r.close()


def test_every_hostile_record_is_refused_counted_and_never_returned(hostile):
    reader, valid, expected = hostile
    damaged = sorted(i for i, what in expected.items() if what != "missing")  # whole or partial
    assert len(damaged) >= 2_000 and len(valid) == 1_024 - 80
    head = int(reader.r.get(reader.p + ":head"))
    outcome = {i: _outcome(reader, i) for i in range(head * C)}  # every id read once
    assert {i: o for i, o in outcome.items() if isinstance(o, bytes)} == valid  # byte for byte, at their ids
    assert {i: o for i, o in outcome.items() if isinstance(o, str)} == {
        i: "damaged" if what == "partial" else what for i, what in expected.items()}
    assert reader.stats()["buffer/rejected"] == len(damaged)

    stale = reader.stale_ids(1, limit=10**6)  # every chunk read once, whole
    np.testing.assert_array_equal(stale, sorted(valid))
    assert reader.stats()["buffer/rejected"] == 2 * len(damaged)

    listed = reader.ids()  # by the chunks' lengths alone: every whole record, damaged or not
    assert listed.tolist() == sorted([*valid, *(i for i, what in expected.items() if what == "damaged")])


@pytest.fixture
def one_torch_thread():
    """As rollout and refresh actors run: on shared cores, more threads make small steps slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.slow  # it trains
def test_a_learner_sampling_among_hostile_records_sees_only_valid_rows(hostile, one_torch_thread):
    reader, valid, _ = hostile
    learner = DistillLearner(DistillConfig(students=("8",), batch_size=64), [(SCHEMA.obs_shape, SCHEMA.n_actions)])
    markers = {VALID_MARK + i for i in valid}
    seen: set[int] = set()
    for _ in range(60):
        ids, batch = reader.sample(64)
        assert len(ids) == 64 and set(batch.actor_id.tolist()) <= markers
        assert _split(encode(batch, SCHEMA)) == [valid[i] for i in ids.tolist()]
        learner.step(batch)
        seen |= set(ids.tolist())
    assert learner.steps == 60 and len(seen) > 850  # most of the 944 valid rows, none other
    rejected = reader.stats()["buffer/rejected"]
    assert rejected >= 1_000  # sampling met ~2.5 damaged rows for each intact one, and refused each

    some = np.array(sorted(valid)[:100])
    q = np.full((100, 2), 7.0, np.float32)
    assert reader.relabel(some, q, 2) == 100
    relabelled = reader.get(some)
    np.testing.assert_array_equal(relabelled.teacher_q, q)
    np.testing.assert_array_equal(relabelled.label_version, np.full(100, 2))
    stats = reader.stats()
    assert (stats["buffer/relabelled"], stats["buffer/size"], len(reader)) == (100.0, 0.0, 0)  # garbage restarts, reads 0
    assert stats["buffer/rejected"] == rejected  # the relabelled rows were all intact


def test_relabelling_a_damaged_row_does_not_revive_it(redis_server, redis_prefix):
    buf = RedisBuffer(RedisSpec(redis_server.url, redis_prefix, 64, 4, SCHEMA))
    buf.add(_rows(4, VALID_MARK, np.random.default_rng(0)))
    buf.r.setrange(f"{redis_prefix}:c:0", R + 3, b"\x00\xff")  # row 1's observation
    assert buf.relabel(np.arange(4), np.ones((4, 2), np.float32), 1) == 4  # labels and their CRCs rewritten
    with pytest.raises(KeyError, match=r"^'ids refused as damaged \(a wrong length or checksum\): \[1\]'$"):
        buf.get(np.arange(4))
    np.testing.assert_array_equal(buf.get(np.array([0, 2, 3])).label_version, [1, 1, 1])
    assert buf.stats()["buffer/rejected"] == 1
    buf.close()


def test_a_garbage_head_reads_as_an_empty_buffer_and_a_writer_starts_it_again(redis_server, redis_prefix):
    spec = RedisSpec(redis_server.url, redis_prefix, 64, 4, SCHEMA)
    buf = RedisBuffer(spec)
    buf.add(_rows(8, VALID_MARK, np.random.default_rng(0)))
    for garbage in ("x1", "-3", "1e5", "9" * 16):
        buf.r.set(f"{redis_prefix}:head", garbage)
        assert (buf.ids().size, buf.stale_ids(1, 10).size) == (0, 0)
        sampler = RedisBuffer(spec)
        with pytest.raises(ValueError, match="^cannot sample from an empty buffer$"):
            sampler.sample(4)
        sampler.close()
        with pytest.raises(KeyError, match=r"^'ids not stored: \[0\]'$"):
            buf.get(np.array([0]))
    buf.r.delete(f"{redis_prefix}:head")
    buf.r.hset(f"{redis_prefix}:head", "a", "b")  # another type
    assert buf.ids().size == 0
    buf.add(_rows(4, VALID_MARK + 100, np.random.default_rng(1)))  # the writer carries on, from chunk 0
    np.testing.assert_array_equal(buf.get(np.arange(4)).actor_id, VALID_MARK + 100 + np.arange(4))
    assert buf.r.get(f"{redis_prefix}:head") == b"1"
    buf.close()


def test_both_backends_report_the_same_stats(redis_server, redis_prefix):
    ring = ReplayRing(8)
    ring.add(_rows(2, VALID_MARK, np.random.default_rng(0)))
    buf = RedisBuffer(RedisSpec(redis_server.url, redis_prefix, 8, 1, SCHEMA))
    assert ring.stats().keys() == buf.stats().keys()
    assert ring.stats()["buffer/rejected"] == buf.stats()["buffer/rejected"] == 0.0
    buf.close()
