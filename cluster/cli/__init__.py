"""The `qdistill` command: one module per command group (run, show, manage, results), the parser
and the progress line."""

from __future__ import annotations

import logging
import os
import sys
import time

from . import manage, results, run, show
from .parser import build_parser
from .stopping import StopSignals, StopWaiting

__all__ = ["build_parser", "cli", "main"]


def main(argv: list[str] | None = None) -> int:
    started = time.time()
    args = build_parser().parse_args(argv)
    signals = StopSignals()
    commands = {"run": lambda: run.run(args, started, signals), "shrink": lambda: run.shrink(args, started, signals),
                "train-teacher": lambda: run.train_teacher(args, started, signals),
                "status": lambda: manage.status(args), "scale": lambda: manage.scale(args),
                "stop": lambda: manage.stop(args), "swap-teacher": lambda: manage.swap_teacher(args),
                "eval": lambda: results.evaluate(args), "export": lambda: results.export(args),
                "report": lambda: results.report(args), "config": lambda: show.show(args)}
    try:
        if args.command in ("run", "shrink", "train-teacher"):  # SIGTERM and SIGINT ask the run to stop
            with signals:
                return commands[args.command]()
        return commands[args.command]()
    except StopWaiting as exc:  # a second stop signal before the run's actor was there
        print(f"qdistill: stopped ({exc}) before the run started", file=sys.stderr)
        return exc.exit_status
    except ValueError as exc:  # our errors: EnvError, CheckpointError, RunDirError, config
        print(f"qdistill: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        cause = getattr(exc, "cause", None)  # an error raised inside the run's actor
        if isinstance(cause, ValueError):
            print(f"qdistill: error: {cause}", file=sys.stderr)
            return 2
        raise


def cli() -> None:
    """The console command: `main`, then Ray shut down, the output flushed, and the process ended
    without Python's own teardown of torch and Ray's modules (a second and more here, which a
    scheduler's stop would wait on). An error `main` does not handle leaves the usual way; a reader
    that went away (`qdistill config show | head`) ends it quietly, as a pipe's writer should."""
    try:
        code = main() or 0
        sys.stdout.flush()  # output to a pipe is buffered: a reader that went away shows here
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing more reaches the pipe
        code = 1
    if "ray" in sys.modules:
        import ray

        ray.shutdown()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
