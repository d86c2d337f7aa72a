"""The wire format of TransitionBatch: raw numpy bytes, one fixed-size record per transition,
described by a small JSON header (schema version, field dtypes and shapes). Never pickle: a
buffer server must not be able to run code inside a learner.

A record is its body (the transition), `body_crc`, its labels (`teacher_q`, `label_version`) and
`label_crc`. Relabelling rewrites the labels and their CRC in place, without reading the body.
The CRCs chain, so a run of intact records is checked with one zlib.crc32 call:
  body_crc  = crc32(body, START)             the state after body + body_crc is then RESIDUE
  label_crc = crc32(labels, RESIDUE) ^ TAG   the state after labels + label_crc is then START
TAG is the CRC of the schema's header and START = crc32(TAG), so a record of another schema (or
wire version) fails as surely as a flipped byte. A record is intact iff crc32(record, START) ==
START; any damage confined to the body or to the labels is always caught (a CRC update is a
bijection of its state), damage to both at once escapes only by a 2^-32 coincidence."""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from ..learners.batch import TransitionBatch

WIRE_VERSION = 4  # 3: rows carry their task; 4: a learning teacher's rows, their horizon (n-step)
LABELS = ("teacher_q", "label_version")  # what relabelling rewrites
TD_ONLY = ("next_observations", "horizon")  # fields only a learning teacher's rows carry
RESIDUE = zlib.crc32(bytes(4))  # the CRC state after any bytes followed by their own CRC (little-endian)


class SchemaError(ValueError):
    """Bytes or a header that do not fit the schema they are read with."""


@dataclass(frozen=True)
class Schema:
    """The record layout for one env: observation shape and dtype, action count, and whether rows
    carry the next observation and horizon (only a learning teacher's TD target needs them) fix
    every field."""

    obs_shape: tuple[int, ...]
    n_actions: int
    obs_dtype: str = "float32"  # or "uint8": frames
    next_obs: bool = True

    @classmethod
    def of(cls, info, *, next_obs: bool) -> Schema:
        """The rows of an env (an actors.envs.EnvInfo)."""
        return cls(tuple(info.obs_shape), info.n_actions, info.obs_dtype.name, next_obs)

    @cached_property
    def body(self) -> tuple[str, ...]:
        return tuple(name for name in TransitionBatch.field_names()
                     if name not in LABELS and (self.next_obs or name not in TD_ONLY))

    def _field(self, name: str) -> tuple:
        obs, dtype = self.obs_shape, np.dtype(self.obs_dtype)
        return {
            "observations": (name, dtype, obs), "actions": (name, np.int64), "rewards": (name, np.float32),
            "next_observations": (name, dtype, obs), "terminations": (name, np.bool_),
            "truncations": (name, np.bool_), "behaviour": (name, np.int8), "actor_id": (name, np.int32),
            "task": (name, np.int16), "horizon": (name, np.int8),
            "teacher_q": (name, np.float32, (self.n_actions,)), "label_version": (name, np.int64),
        }[name]

    @cached_property
    def label_dtype(self) -> np.dtype:
        """What `relabel` writes over a record's tail: the labels and their CRC."""
        return np.dtype([self._field(name) for name in LABELS] + [("label_crc", "<u4")])

    @cached_property
    def dtype(self) -> np.dtype:
        return np.dtype([self._field(name) for name in self.body] + [("body_crc", "<u4")]
                        + [self._field(name) for name in LABELS] + [("label_crc", "<u4")])

    @property
    def record_size(self) -> int:
        return self.dtype.itemsize

    def offset(self, field: str) -> int:
        return self.dtype.fields[field][1]

    @cached_property
    def tag(self) -> int:
        return zlib.crc32(self.header().encode())

    @cached_property
    def start(self) -> int:
        """The CRC state every record starts from, and an intact one ends in."""
        return zlib.crc32(self.tag.to_bytes(4, "little"))

    def header(self) -> str:
        fields = [[name, self.dtype.fields[name][0].base.str, list(self.dtype.fields[name][0].shape)]
                  for name in self.dtype.names]
        return json.dumps({"wire_version": WIRE_VERSION, "record_size": self.record_size, "fields": fields})

    def check_header(self, header: str) -> None:
        """Refuse a header written for another schema, naming the first difference."""
        try:
            theirs = json.loads(header)
        except ValueError:
            theirs = None
        if not isinstance(theirs, dict):
            raise SchemaError("no qdistill wire header")
        if theirs.get("wire_version") != WIRE_VERSION:
            raise SchemaError(f"wire version {theirs.get('wire_version')}, not {WIRE_VERSION}")
        fields, mine = theirs.get("fields"), json.loads(self.header())["fields"]
        if not isinstance(fields, list) or not all(isinstance(f, list) and len(f) == 3 for f in fields):
            raise SchemaError("a malformed wire header")
        for a, b in zip(fields, mine):
            if a != b:
                raise SchemaError(f"field {a[0]} is {a[1]} {tuple(a[2])}, not {b[1]} {tuple(b[2])}")
        if len(fields) != len(mine):
            raise SchemaError(f"{len(fields)} fields, not {len(mine)}")


def _crcs(data: memoryview, size: int, length: int, value: int) -> np.ndarray:
    """zlib.crc32 from `value` of the first `length` bytes of each `size`-byte record."""
    return np.array([zlib.crc32(data[o:o + length], value) for o in range(0, len(data), size)], dtype=np.uint32)


def pack_labels(teacher_q: np.ndarray, label_version: np.ndarray, schema: Schema) -> np.ndarray:
    """Labels as the records' tails: teacher_q, label_version and label_crc (schema.label_dtype)."""
    rows = np.zeros(len(label_version), dtype=schema.label_dtype)
    rows["teacher_q"] = teacher_q
    rows["label_version"] = label_version
    crcs = _crcs(memoryview(rows.view(np.uint8)), rows.itemsize, rows.itemsize - 4, RESIDUE)
    rows["label_crc"] = crcs ^ np.uint32(schema.tag)
    return rows


def encode(batch: TransitionBatch, schema: Schema) -> bytes:
    records = np.empty(len(batch), dtype=schema.dtype)
    for name in schema.body:
        value = getattr(batch, name)
        records[name] = 1 if value is None and name == "horizon" else value  # rows without one: one step each
    records["body_crc"] = _crcs(memoryview(records.view(np.uint8)), schema.record_size, schema.offset("body_crc"),
                                schema.start)
    labels = pack_labels(batch.teacher_q, batch.label_version, schema)
    for name in labels.dtype.names:
        records[name] = labels[name]
    return records.tobytes()


def check(data: bytes, schema: Schema) -> np.ndarray:
    """Which whole records of `data` are intact (both CRCs hold); a partial record at the end is
    left out. Intact records chain, so one call checks them all and only damage costs a call a row."""
    view = memoryview(data)[:len(data) - len(data) % schema.record_size]
    if zlib.crc32(view, schema.start) == schema.start:
        return np.ones(len(view) // schema.record_size, dtype=bool)
    return _crcs(view, schema.record_size, schema.record_size, schema.start) == schema.start


@dataclass(frozen=True)
class Decoded:
    batch: TransitionBatch  # the intact records, in order
    intact: np.ndarray  # [whole records in the bytes] bool
    rejected: int  # records refused: each damaged one, and 1 for a partial record at the end


def decode(data: bytes, schema: Schema) -> Decoded:
    """The intact records of `data`; damaged ones (a wrong length or CRC) are refused and counted,
    never returned, never raised on."""
    intact = check(data, schema)
    records = np.frombuffer(data, dtype=schema.dtype, count=len(intact))
    if not intact.all():
        records = records[intact]
    batch = TransitionBatch.from_arrays({name: np.ascontiguousarray(records[name]) for name in schema.dtype.names
                                         if not name.endswith("_crc")})
    return Decoded(batch, intact, int((~intact).sum()) + (len(data) % schema.record_size > 0))
