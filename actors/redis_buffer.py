"""The Redis backend of the buffer contract: a shared, persistent FIFO ring outside Ray.

Layout under a run's key prefix P:
  P:meta       hash: the wire header (schema), chunk size, capacity in chunks
  P:head       chunks ever written (the next chunk number)
  P:size       transitions stored; P:inserted, P:sampled, P:relabelled: counters
  P:released   set while the rate limiter is off (a run ending hands over what its actors hold)
  P:c:<n>      chunk n: up to `chunk_size` transitions as packed wire records

Transition id = chunk number × chunk_size + row. Writes, reads and relabels are Lua scripts: one
round trip each, atomic on the server, no pickle anywhere.
"""

from __future__ import annotations

import math
import time
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass

import numpy as np

from ..learners.batch import TransitionBatch
from .buffer import check_capacity
from .ratelimit import SampleToInsertRatio
from .redis_connect import RedisBufferError, connect, host_port
from .wire import Schema, SchemaError, decode, encode

SAMPLE_BLOCK = 4  # rows read per server call when sampling
LIMIT_POLL_S = (0.001, 0.02)  # a write or sample held by the rate limiter looks again after 1 ms, up to 20 ms

# ARGV: prefix, capacity (chunks), rows, record size, chunk 1, chunk 2, …  Returns the first chunk number.
_ADD = """
local p, cap, rows, R = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local k = #ARGV - 4
local first = redis.call('INCRBY', p..':head', k) - k
local size = rows
for i = 1, k do
  local n = first + i - 1
  redis.call('SET', p..':c:'..n, ARGV[4 + i])
  if n >= cap then
    local old = p..':c:'..(n - cap)
    size = size - math.floor(redis.call('STRLEN', old) / R)
    redis.call('DEL', old)
  end
end
redis.call('INCRBY', p..':size', size)
redis.call('INCRBY', p..':inserted', rows)
return first
"""

# ARGV: prefix, record size, chunk size, capacity (chunks), sampling flag, block length L, start ids.
# Reads L consecutive rows from each start id (one GETRANGE per block). Returns {head, concatenated
# records, per-row '1' missing / '0' present} (a block past a partial chunk's end is cut short).
_FETCH = """
local p, R, C, cap = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local L = tonumber(ARGV[6])
local head = tonumber(redis.call('GET', p..':head') or '0')
local out, missing, got = {}, {}, 0
for id in string.gmatch(ARGV[7], '%d+') do
  local n = math.floor(tonumber(id) / C)
  local row = tonumber(id) - n * C
  local recs = ''
  if n >= head - cap and n < head then
    recs = redis.call('GETRANGE', p..':c:'..n, row * R, (row + L) * R - 1)
  end
  local rows = math.floor(#recs / R)
  out[#out + 1] = recs
  got = got + rows
  missing[#missing + 1] = string.rep('0', rows)..string.rep('1', L - rows)
end
if ARGV[5] == '1' then redis.call('INCRBY', p..':sampled', got) end
return {head, table.concat(out), table.concat(missing)}
"""

# ARGV: prefix, record size, chunk size, q offset, q size, version offset, packed version, ids, packed q.
_RELABEL = """
local p, R, C = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local qoff, qsize, voff, version = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6]), ARGV[7]
local i, done = 0, 0
for id in string.gmatch(ARGV[8], '%d+') do
  i = i + 1
  local n = math.floor(tonumber(id) / C)
  local row = tonumber(id) - n * C
  local key = p..':c:'..n
  if redis.call('STRLEN', key) >= (row + 1) * R then
    redis.call('SETRANGE', key, row * R + qoff, string.sub(ARGV[9], (i - 1) * qsize + 1, i * qsize))
    redis.call('SETRANGE', key, row * R + voff, version)
    done = done + 1
  end
end
redis.call('INCRBY', p..':relabelled', done)
return done
"""


# Claims a prefix atomically: writes the meta hash only where there is none; returns what is there.
_CLAIM = """
if redis.call('EXISTS', KEYS[1]) == 0 then redis.call('HSET', KEYS[1], unpack(ARGV)) end
return redis.call('HGETALL', KEYS[1])
"""


@dataclass(frozen=True)
class RedisSpec:
    """Everything a process needs to open the same Redis buffer (picklable: no connection)."""

    url: str
    prefix: str
    capacity: int
    chunk_size: int
    schema: Schema
    limit: SampleToInsertRatio | None = None  # the rate limiter every writer and the sampler obey


class RedisBuffer:
    """Bounded FIFO ring of transitions in Redis, with the same contract as ReplayRing.

    Capacity is counted in chunks (capacity / chunk_size, rounded up): eviction is FIFO by chunk.
    `add` accumulates rows until a chunk is full; `flush` writes a last, partial chunk.
    """

    def __init__(self, spec: RedisSpec, *, seed: int = 0) -> None:
        check_capacity(spec.capacity)
        if spec.chunk_size < 1:
            raise ValueError(f"chunk size {spec.chunk_size} is not valid: expected at least 1 transition")
        self.spec = spec
        self.schema = spec.schema
        self.p = spec.prefix
        self.chunk_size = spec.chunk_size
        self.cap_chunks = -(-spec.capacity // spec.chunk_size)
        self.capacity = self.cap_chunks * spec.chunk_size
        self.r = connect(spec.url)
        self._claim_prefix()
        self._add = self.r.register_script(_ADD)
        self._fetch = self.r.register_script(_FETCH)
        self._relabel = self.r.register_script(_RELABEL)
        self.rng = np.random.default_rng(seed)
        self.block = math.gcd(SAMPLE_BLOCK, self.chunk_size)
        self.pending: list[TransitionBatch] = []
        self.pending_rows = 0
        self.head = 0
        self._scan = (-1, 0)  # (label version, first chunk that may hold stale rows)
        self._prefetch: ThreadPoolExecutor | None = None

    def _claim_prefix(self) -> None:
        """Write this run's schema under the prefix, or check the one already there."""
        mine = {"header": self.schema.header(), "chunk_size": str(self.chunk_size),
                "capacity_chunks": str(self.cap_chunks)}
        flat = self.r.register_script(_CLAIM)(keys=[self.p + ":meta"], args=[x for kv in mine.items() for x in kv])
        theirs = {k.decode(): v.decode() for k, v in zip(flat[::2], flat[1::2])}
        try:
            self.schema.check_header(theirs["header"])
            for key in ("chunk_size", "capacity_chunks"):
                if theirs.get(key) != mine[key]:
                    raise SchemaError(f"{key} {theirs.get(key)}, not {mine[key]}")
        except SchemaError as exc:
            raise RedisBufferError(
                f"redis prefix {self.p!r} at {host_port(self.spec.url)} holds another run's buffer ({exc}): "
                "use another prefix, or delete its keys") from None

    # -- the contract --------------------------------------------------------------------------

    def add(self, batch: TransitionBatch) -> None:
        if len(batch) == 0:
            return
        self.pending.append(batch)
        self.pending_rows += len(batch)
        if self.pending_rows >= self.chunk_size:
            self._write(final=False)

    def flush(self) -> None:
        if self.pending_rows:
            self._write(final=True)

    def _wait_for(self, allowed) -> None:
        """Hold on while the rate limiter does not allow it: `allowed(limit, inserted, sampled)`.
        Writers check, then write: several writers checking at once can each get one write past
        the limit (an overshoot of one write per writer, never more)."""
        limit, pause = self.spec.limit, LIMIT_POLL_S[0]
        while limit is not None:
            inserted, sampled, released = self.r.mget([self.p + ":inserted", self.p + ":sampled", self.p + ":released"])
            if released is not None or allowed(limit, int(inserted or 0), int(sampled or 0)):
                return
            time.sleep(pause)
            pause = min(pause * 2, LIMIT_POLL_S[1])

    def release(self) -> None:
        """Stop rate limiting this buffer, for every writer and the sampler."""
        self.r.set(self.p + ":released", 1)

    def _write(self, *, final: bool) -> None:
        rows = TransitionBatch.concat(self.pending)
        whole = len(rows) - len(rows) % self.chunk_size if not final else len(rows)
        self._wait_for(lambda limit, inserted, sampled: limit.can_insert(inserted, sampled, whole))
        data = encode(rows.take(slice(0, whole)), self.schema)
        step = self.chunk_size * self.schema.record_size
        chunks = [data[i:i + step] for i in range(0, len(data), step)]
        self._add(args=[self.p, self.cap_chunks, whole, self.schema.record_size, *chunks])
        rest = rows.take(slice(whole, len(rows)))
        self.pending, self.pending_rows = ([rest], len(rest)) if len(rest) else ([], 0)

    def _fetch_ids(self, starts: np.ndarray, *, sampling: bool, block: int = 1) -> tuple[bytes, np.ndarray]:
        """Rows starts[i] … starts[i] + block − 1; returns their records and which were missing."""
        head, data, missing = self._fetch(args=[
            self.p, self.schema.record_size, self.chunk_size, self.cap_chunks, "1" if sampling else "0", block,
            " ".join(map(str, starts.tolist()))])
        self.head = int(head)
        return data, np.frombuffer(missing, dtype=np.uint8) == ord("1")

    def get(self, ids: np.ndarray) -> TransitionBatch:
        ids = np.asarray(ids, dtype=np.int64)
        data, missing = self._fetch_ids(ids, sampling=False)
        if missing.any():
            raise KeyError(f"ids not stored: {ids[missing][:5].tolist()}")
        return decode(data, self.schema)

    def sample(self, batch_size: int) -> tuple[np.ndarray, TransitionBatch]:
        """Uniform over stored rows, read in aligned blocks of `block` rows (one server call per
        block: each row is still equally likely) and shuffled. A row past the end of a partial
        chunk, or in a chunk evicted meanwhile, is drawn again."""
        if batch_size < 1:
            raise ValueError(f"batch size {batch_size} is not valid: expected at least 1")
        self._wait_for(lambda limit, inserted, sampled: limit.can_sample(inserted, sampled, batch_size))
        if self.head == 0:
            self.head = int(self.r.get(self.p + ":head") or 0)
        ids_out, parts, need = [], [], batch_size
        for _ in range(20):
            stored = min(self.head, self.cap_chunks)
            if stored == 0:
                raise ValueError("cannot sample from an empty buffer")
            blocks = -(-need // self.block)
            chunks = self.head - stored + self.rng.integers(0, stored, blocks)
            starts = chunks * self.chunk_size + self.block * self.rng.integers(0, self.chunk_size // self.block, blocks)
            data, missing = self._fetch_ids(starts, sampling=True, block=self.block)
            ids = (starts[:, None] + np.arange(self.block)).ravel()[~missing]
            ids_out.append(ids)
            parts.append(decode(data, self.schema))
            need -= len(ids)
            if need <= 0:
                ids = np.concatenate(ids_out)
                order = self.rng.permutation(len(ids))[:batch_size]  # mix the blocks across the batch
                return ids[order], TransitionBatch.concat(parts).take(order)
        raise RuntimeError(f"could not draw {batch_size} stored rows from redis prefix {self.p!r}")

    def sample_async(self, batch_size: int) -> Future:
        """Prefetch: a sample drawn on a background thread (redis-py releases the GIL on I/O)."""
        if self._prefetch is None:
            self._prefetch = ThreadPoolExecutor(max_workers=1, thread_name_prefix="qdistill-prefetch")
        return self._prefetch.submit(self.sample, batch_size)

    @staticmethod
    def ready(future: Future, timeout: float = 0.0) -> bool:
        """Whether a sample asked for with `sample_async` has come back (waiting up to `timeout`)."""
        return bool(wait([future], timeout=timeout).done)

    @staticmethod
    def gather(future: Future) -> tuple[np.ndarray, TransitionBatch]:
        return future.result()

    def relabel(self, ids: np.ndarray, teacher_q: np.ndarray, version: int) -> int:
        ids = np.asarray(ids, dtype=np.int64)
        if ids.size == 0:
            return 0
        q = np.ascontiguousarray(teacher_q, dtype=np.float32)
        return int(self._relabel(args=[
            self.p, self.schema.record_size, self.chunk_size, self.schema.offset("teacher_q"),
            q.shape[1] * 4, self.schema.offset("label_version"), np.int64(version).tobytes(),
            " ".join(map(str, ids.tolist())), q.tobytes()]))

    def _stored_chunks(self) -> range:
        self.head = int(self.r.get(self.p + ":head") or 0)
        return range(max(0, self.head - self.cap_chunks), self.head)

    def ids(self) -> np.ndarray:
        chunks = self._stored_chunks()
        pipe = self.r.pipeline(transaction=False)
        for n in chunks:
            pipe.strlen(f"{self.p}:c:{n}")
        lengths = pipe.execute()
        return np.concatenate([n * self.chunk_size + np.arange(length // self.schema.record_size)
                               for n, length in zip(chunks, lengths)] or [np.zeros(0, np.int64)]).astype(np.int64)

    def stale_ids(self, version: int, limit: int) -> np.ndarray:
        """Up to `limit` ids labelled by a teacher older than `version`, oldest first. Chunks found
        all fresh for this version are not read again."""
        chunks = self._stored_chunks()
        start = max(self._scan[1], chunks.start) if self._scan[0] == version else chunks.start
        found: list[np.ndarray] = []
        count = 0
        for n in range(start, chunks.stop):
            data = self.r.get(f"{self.p}:c:{n}")
            if data is None:
                continue
            lv = np.frombuffer(data, dtype=self.schema.dtype)["label_version"]
            stale = n * self.chunk_size + np.flatnonzero(lv < version)
            if stale.size == 0 and count == 0:
                self._scan = (version, n + 1)
            found.append(stale)
            count += stale.size
            if count >= limit:
                break
        else:
            if count == 0:
                self._scan = (version, chunks.stop)
        return np.concatenate(found or [np.zeros(0, np.int64)])[:limit].astype(np.int64)

    def __len__(self) -> int:
        return int(self.r.get(self.p + ":size") or 0)

    def stats(self) -> dict[str, float]:
        size, inserted, sampled, relabelled = (int(v or 0) for v in self.r.mget(
            [self.p + k for k in (":size", ":inserted", ":sampled", ":relabelled")]))
        return {
            "buffer/size": float(size),
            "buffer/capacity": float(self.capacity),
            "buffer/inserted": float(inserted),
            "buffer/sampled": float(sampled),
            "buffer/relabelled": float(relabelled),
            "buffer/bytes": float(size * self.schema.record_size),
        }

    def close(self) -> None:
        self.flush()
        if self._prefetch is not None:
            self._prefetch.shutdown(wait=False)
        self.r.close()
