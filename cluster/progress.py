"""A live progress line on a terminal; periodic plain lines when output is not a terminal."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    def __init__(self, total: float, unit: str, *, stream: TextIO = sys.stderr, every_s: float = 0.25) -> None:
        self.total = total
        self.unit = unit
        self.stream = stream
        self.tty = stream.isatty()
        self.every_s = every_s if self.tty else 10.0
        self.last = 0.0

    def update(self, done: float, fields: dict[str, str], *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last < self.every_s:
            return
        self.last = now
        frac = min(1.0, done / self.total) if self.total else 0.0
        bar = "#" * int(frac * 24) + "-" * (24 - int(frac * 24))
        text = f"[{bar}] {done:,.0f}/{self.total:,.0f} {self.unit}  " + "  ".join(f"{k} {v}" for k, v in fields.items())
        if self.tty:
            self.stream.write("\r\x1b[2K" + text)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()
