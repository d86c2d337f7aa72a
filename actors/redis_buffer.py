"""The Redis backend of the buffer contract: a shared, persistent FIFO ring outside Ray.

Layout under a run's key prefix P:
  P:meta       hash: the wire header (schema), chunk size, capacity in chunks
  P:head       chunks ever written (the next chunk number)
  P:size       transitions stored; P:inserted, P:sampled, P:relabelled: counters
  P:rejected   rows refused on reading (a wrong length or CRC), counted by every reader, each read
  P:released   set while the rate limiter is off (a run ending hands over what its actors hold)
  P:c:<n>      chunk n: up to `chunk_size` transitions as packed wire records

Transition id = chunk number × chunk_size + row. Writes, reads and relabels are Lua scripts: one
round trip each, atomic on the server, no pickle anywhere. Anything else written under the prefix
is never trained on and never raised on: every record read is checked (actors/wire.py), damaged
ones are refused and counted, garbage counters read 0, chunks of another type read as missing.
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
from .wire import Schema, SchemaError, decode, encode, pack_labels

SAMPLE_BLOCK = 4  # rows read per server call when sampling
LIMIT_POLL_S = (0.001, 0.02)  # a write or sample held by the rate limiter looks again after 1 ms, up to 20 ms
INTACT, MISSING, DAMAGED = 0, 1, 2  # what a read found at an id

# What every script starts with: bytes under the prefix are read as counters and chunks without
# ever raising, however they were written. A counter is 1 to 15 ASCII digits; anything else
# (another type included) reads 0, and `add` restarts it at the increment.
_PRELUDE = """
local function count(key)
  local v = redis.pcall('GET', key)
  if type(v) ~= 'string' or #v > 15 or not string.match(v, '^%d+$') then return 0 end
  return tonumber(v)
end
local function add(key, n)
  if type(redis.pcall('INCRBY', key, n)) ~= 'number' then redis.call('SET', key, n) end
end
local function strlen(key)
  local v = redis.pcall('STRLEN', key)
  if type(v) ~= 'number' then return 0 end
  return v
end
"""

# ARGV: prefix, capacity (chunks), rows, record size, chunk 1, chunk 2, …  Returns the first chunk number.
_ADD = _PRELUDE + """
local p, cap, rows, R = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local k = #ARGV - 4
local first = count(p..':head')
redis.call('SET', p..':head', first + k)
local size = rows
for i = 1, k do
  local n = first + i - 1
  redis.call('SET', p..':c:'..n, ARGV[4 + i])
  if n >= cap then
    local old = p..':c:'..(n - cap)
    size = size - math.floor(strlen(old) / R)
    redis.call('DEL', old)
  end
end
add(p..':size', size)
add(p..':inserted', rows)
return first
"""

# ARGV: prefix, record size, chunk size, capacity (chunks), sampling flag, block length L, start ids.
# Reads L consecutive rows from each start id (one GETRANGE per block). Returns {head, concatenated
# whole records, per row '0' read / '1' missing / '2' a partial record}; a block past a chunk's
# end is cut short, a chunk of another type is missing. Sampling counts the whole records read.
_FETCH = _PRELUDE + """
local p, R, C, cap = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local L = tonumber(ARGV[6])
local head = count(p..':head')
local out, status, got = {}, {}, 0
for id in string.gmatch(ARGV[7], '%d+') do
  local n = math.floor(tonumber(id) / C)
  local row = tonumber(id) - n * C
  local recs = ''
  if n >= head - cap and n < head then
    recs = redis.pcall('GETRANGE', p..':c:'..n, row * R, (row + L) * R - 1)
    if type(recs) ~= 'string' then recs = '' end
  end
  local rows = math.floor(#recs / R)
  local cut = (#recs > rows * R) and 1 or 0
  out[#out + 1] = (cut == 1) and string.sub(recs, 1, rows * R) or recs
  got = got + rows
  status[#status + 1] = string.rep('0', rows)..string.rep('2', cut)..string.rep('1', L - rows - cut)
end
if ARGV[5] == '1' then add(p..':sampled', got) end
return {head, table.concat(out), table.concat(status)}
"""

# ARGV: prefix, rows refused, how many of them the read counted as sampled.
_REJECT = _PRELUDE + """
add(ARGV[1]..':rejected', tonumber(ARGV[2]))
if tonumber(ARGV[3]) > 0 then add(ARGV[1]..':sampled', -tonumber(ARGV[3])) end
"""

# ARGV: prefix, record size, chunk size, labels' offset, labels' size, ids, packed labels (with their CRCs).
_RELABEL = _PRELUDE + """
local p, R, C, off, size = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local i, done = 0, 0
for id in string.gmatch(ARGV[6], '%d+') do
  i = i + 1
  local n = math.floor(tonumber(id) / C)
  local row = tonumber(id) - n * C
  local key = p..':c:'..n
  if strlen(key) >= (row + 1) * R then
    redis.call('SETRANGE', key, row * R + off, string.sub(ARGV[7], (i - 1) * size + 1, i * size))
    done = done + 1
  end
end
add(p..':relabelled', done)
return done
"""


# Claims a prefix atomically: writes the meta hash only where there is none; returns what is there
# (nothing, where the key is of another type).
_CLAIM = """
if redis.call('EXISTS', KEYS[1]) == 0 then redis.call('HSET', KEYS[1], unpack(ARGV)) end
local meta = redis.pcall('HGETALL', KEYS[1])
if meta.err then return {} end
return meta
"""


def _number(value: bytes | None) -> int:
    """A counter as the scripts read it: 1 to 15 ASCII digits, anything else 0."""
    return int(value) if value is not None and 0 < len(value) <= 15 and value.isdigit() else 0


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
    `write_through`: `add` writes every row at once, whole chunks and a last partial one (a rollout
    actor's sink: every row a collect reports is in Redis when the collect returns, so the actor's
    death, or the learner's, which takes its actors with it, loses only the collect in flight).
    """

    def __init__(self, spec: RedisSpec, *, seed: int = 0, write_through: bool = False) -> None:
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
        self._reject = self.r.register_script(_REJECT)
        self.rng = np.random.default_rng(seed)
        self.block = math.gcd(SAMPLE_BLOCK, self.chunk_size)
        self.write_through = write_through
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
        theirs = {k.decode(errors="replace"): v.decode(errors="replace") for k, v in zip(flat[::2], flat[1::2])}
        try:
            self.schema.check_header(theirs.get("header", ""))
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
        if self.write_through or self.pending_rows >= self.chunk_size:
            self._write(final=self.write_through)

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
            if released is not None or allowed(limit, _number(inserted), _number(sampled)):
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

    def _read(self, starts: np.ndarray, *, sampling: bool, block: int = 1
              ) -> tuple[np.ndarray, np.ndarray, TransitionBatch]:
        """Rows starts[i] … starts[i] + block − 1: (their ids, what was found at each: INTACT,
        MISSING or DAMAGED, the intact rows in order). Damaged rows are counted in P:rejected."""
        head, data, found = self._fetch(args=[
            self.p, self.schema.record_size, self.chunk_size, self.cap_chunks, "1" if sampling else "0", block,
            " ".join(map(str, starts.tolist()))])
        self.head = int(head)
        found = np.frombuffer(found, dtype=np.uint8) - ord("0")
        decoded = decode(data, self.schema)
        found[np.flatnonzero(found == INTACT)[~decoded.intact]] = DAMAGED
        rejected = int((found == DAMAGED).sum())
        if rejected:
            self._reject(args=[self.p, rejected, decoded.rejected if sampling else 0])
        return (starts[:, None] + np.arange(block)).ravel(), found, decoded.batch

    def get(self, ids: np.ndarray) -> TransitionBatch:
        """The rows at these ids, in order; KeyError where one is not stored or is damaged."""
        ids, found, rows = self._read(np.asarray(ids, dtype=np.int64), sampling=False)
        if (found == MISSING).any():
            raise KeyError(f"ids not stored: {ids[found == MISSING][:5].tolist()}")
        if (found == DAMAGED).any():
            raise KeyError(f"ids refused as damaged (a wrong length or checksum): {ids[found == DAMAGED][:5].tolist()}")
        return rows

    def sample(self, batch_size: int) -> tuple[np.ndarray, TransitionBatch]:
        """Uniform over stored intact rows, read in aligned blocks of `block` rows (one server call
        per block: each row is still equally likely) and shuffled. A row past the end of a partial
        chunk, in a chunk evicted meanwhile, or damaged, is drawn again; where few rows served, the
        next draw is larger in proportion."""
        if batch_size < 1:
            raise ValueError(f"batch size {batch_size} is not valid: expected at least 1")
        self._wait_for(lambda limit, inserted, sampled: limit.can_sample(inserted, sampled, batch_size))
        if self.head == 0:
            self.head = self._counter(":head")
        ids_out, parts, need, drawn = [], [], batch_size, 0
        for _ in range(20):
            stored = min(self.head, self.cap_chunks)
            if stored == 0:
                raise ValueError("cannot sample from an empty buffer")
            share = max((batch_size - need) / drawn, 1 / 16) if drawn else 1.0  # of the rows drawn, how many served
            blocks = -(-math.ceil(need / share) // self.block)
            chunks = self.head - stored + self.rng.integers(0, stored, blocks)
            starts = chunks * self.chunk_size + self.block * self.rng.integers(0, self.chunk_size // self.block, blocks)
            ids, found, rows = self._read(starts, sampling=True, block=self.block)
            ids_out.append(ids[found == INTACT])
            parts.append(rows)
            need, drawn = need - len(rows), drawn + len(ids)
            if need <= 0:
                ids = np.concatenate(ids_out)
                order = self.rng.permutation(len(ids))[:batch_size]  # mix the blocks across the batch
                return ids[order], TransitionBatch.concat(parts).take(order)
        raise RuntimeError(f"could not draw {batch_size} stored intact rows from redis prefix {self.p!r}")

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
        labels = pack_labels(teacher_q, np.full(len(ids), version, dtype=np.int64), self.schema)
        return int(self._relabel(args=[
            self.p, self.schema.record_size, self.chunk_size, self.schema.offset("teacher_q"), labels.itemsize,
            " ".join(map(str, ids.tolist())), labels.tobytes()]))

    def _counter(self, key: str) -> int:
        return _number(self.r.mget([self.p + key])[0])  # MGET, unlike GET, reads a key of another type as nil

    def _stored_chunks(self) -> range:
        self.head = self._counter(":head")
        return range(max(0, self.head - self.cap_chunks), self.head)

    def _rows_in(self, length: object) -> int:
        """Rows a chunk of this length holds (no more than a chunk's; a key of another type, none)."""
        return min(length // self.schema.record_size, self.chunk_size) if isinstance(length, int) else 0

    def ids(self) -> np.ndarray:
        """Ids of the stored rows, oldest first, by the chunks' lengths alone: damaged rows are
        listed too (`get` refuses them)."""
        chunks = self._stored_chunks()
        pipe = self.r.pipeline(transaction=False)
        for n in chunks:
            pipe.strlen(f"{self.p}:c:{n}")
        lengths = pipe.execute(raise_on_error=False)
        return np.concatenate([n * self.chunk_size + np.arange(self._rows_in(length))
                               for n, length in zip(chunks, lengths)] or [np.zeros(0, np.int64)]).astype(np.int64)

    def stale_ids(self, version: int, limit: int) -> np.ndarray:
        """Up to `limit` intact ids labelled by a teacher older than `version`, oldest first (damaged
        rows are refused and counted). Chunks found all fresh for this version are not read again."""
        chunks = self._stored_chunks()
        start = max(self._scan[1], chunks.start) if self._scan[0] == version else chunks.start
        found: list[np.ndarray] = []
        count = rejected = 0
        for n in range(start, chunks.stop):
            data = self.r.mget([f"{self.p}:c:{n}"])[0]
            if data is None:
                continue
            decoded = decode(data[:self.chunk_size * self.schema.record_size], self.schema)  # past that: no ids
            rejected += decoded.rejected
            stale = n * self.chunk_size + np.flatnonzero(decoded.intact)[decoded.batch.label_version < version]
            if stale.size == 0 and count == 0:
                self._scan = (version, n + 1)
            found.append(stale)
            count += stale.size
            if count >= limit:
                break
        else:
            if count == 0:
                self._scan = (version, chunks.stop)
        if rejected:
            self._reject(args=[self.p, rejected, 0])
        return np.concatenate(found or [np.zeros(0, np.int64)])[:limit].astype(np.int64)

    def __len__(self) -> int:
        return self._counter(":size")

    def stats(self) -> dict[str, float]:
        size, inserted, sampled, relabelled, rejected = (_number(v) for v in self.r.mget(
            [self.p + k for k in (":size", ":inserted", ":sampled", ":relabelled", ":rejected")]))
        return {
            "buffer/size": float(size),
            "buffer/capacity": float(self.capacity),
            "buffer/inserted": float(inserted),
            "buffer/sampled": float(sampled),
            "buffer/relabelled": float(relabelled),
            "buffer/rejected": float(rejected),
            "buffer/bytes": float(size * self.schema.record_size),
        }

    def close(self) -> None:
        self.flush()
        if self._prefetch is not None:
            self._prefetch.shutdown(wait=False)
        self.r.close()
