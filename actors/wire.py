"""The wire format of TransitionBatch: raw numpy bytes, one fixed-size record per transition,
described by a small JSON header (schema version, field dtypes and shapes). Never pickle: a
buffer server must not be able to run code inside a learner."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from ..learners.batch import TransitionBatch

WIRE_VERSION = 1


class SchemaError(ValueError):
    """Bytes or a header that do not fit the schema they are read with."""


@dataclass(frozen=True)
class Schema:
    """The record layout for one env: observation shape and action count fix every field."""

    obs_shape: tuple[int, ...]
    n_actions: int

    @property
    def dtype(self) -> np.dtype:
        return np.dtype([
            ("observations", np.float32, self.obs_shape),
            ("actions", np.int64),
            ("rewards", np.float32),
            ("next_observations", np.float32, self.obs_shape),
            ("terminations", np.bool_),
            ("truncations", np.bool_),
            ("teacher_q", np.float32, (self.n_actions,)),
            ("label_version", np.int64),
            ("behaviour", np.int8),
            ("actor_id", np.int32),
        ])

    @property
    def record_size(self) -> int:
        return self.dtype.itemsize

    def offset(self, field: str) -> int:
        return self.dtype.fields[field][1]

    def header(self) -> str:
        fields = [[name, self.dtype.fields[name][0].base.str, list(self.dtype.fields[name][0].shape)]
                  for name in self.dtype.names]
        return json.dumps({"wire_version": WIRE_VERSION, "record_size": self.record_size, "fields": fields})

    def check_header(self, header: str) -> None:
        """Refuse a header written for another schema, naming the first difference."""
        theirs = json.loads(header)
        mine = json.loads(self.header())
        if theirs.get("wire_version") != WIRE_VERSION:
            raise SchemaError(f"wire version {theirs.get('wire_version')}, not {WIRE_VERSION}")
        for a, b in zip(theirs["fields"], mine["fields"]):
            if a != b:
                raise SchemaError(f"field {a[0]} is {a[1]} {tuple(a[2])}, not {b[1]} {tuple(b[2])}")
        if len(theirs["fields"]) != len(mine["fields"]):
            raise SchemaError(f"{len(theirs['fields'])} fields, not {len(mine['fields'])}")


def encode(batch: TransitionBatch, schema: Schema) -> bytes:
    records = np.empty(len(batch), dtype=schema.dtype)
    for name in schema.dtype.names:
        records[name] = getattr(batch, name)
    return records.tobytes()


def decode(data: bytes, schema: Schema) -> TransitionBatch:
    if len(data) % schema.record_size:
        raise SchemaError(f"{len(data)} bytes is not a whole number of {schema.record_size}-byte records")
    records = np.frombuffer(data, dtype=schema.dtype)
    return TransitionBatch(**{name: np.ascontiguousarray(records[name]) for name in schema.dtype.names})
