"""`qdistill ARGS` run from a test: in this process, or as a process of its own."""

from __future__ import annotations

import contextlib
import io
import subprocess
import sys


def in_process(*args: str) -> subprocess.CompletedProcess:
    """`qdistill ARGS` in this process, as `main` returns and prints it: for work that starts no Ray
    runtime of its own (refusals, exports), where a process would only add torch's import."""
    from qdistill.cluster.cli import main

    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = main(list(args))
    return subprocess.CompletedProcess(list(args), code, stdout.getvalue(), stderr.getvalue())


def as_process(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """`qdistill ARGS` as its own process: its exit status, stdout and stderr as a shell sees them."""
    return subprocess.run([sys.executable, "-m", "qdistill.cluster.cli", *args],
                          capture_output=True, text=True, timeout=timeout)
