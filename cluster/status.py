"""`qdistill status`: one run's status as aligned rows."""

from __future__ import annotations

import time


def _num(value: object, fmt: str = ".1f") -> str:
    return "-" if value is None else format(value, fmt)


def status_rows(status: dict[str, object]) -> list[tuple[str, str]]:
    age = time.time() - float(status["updated"])
    rows = [("run", f"{status['run']}: {status['state']}"
                    + (f", {status['phase']} phase" if status.get("phase") else "")
                    + (" (detached)" if status.get("detached") else "") + f", updated {age:.0f} s ago"),
            ("run directory", str(status["out"])),
            ("learner", f"on {status['node']} ({status['device']})")]
    if status.get("error"):
        rows.append(("error", str(status["error"])))
    if status.get("stop_reason"):
        rows.append(("stopped", str(status["stop_reason"])))
    progress = status.get("progress")
    if progress:
        total = progress["total"]
        rows.append(("progress", f"{progress['done']:,.0f}/{total:,.0f} {progress['unit']}"
                                 + (f" ({100 * progress['done'] / total:.0f}%)" if total else "")))
        rows.append(("env steps", f"{status['env_steps']:,} ({_num(status.get('steps_per_s'), ',.0f')}/s)"))
        rows.append(("learner steps", f"{status['learner_steps']:,}"))
        rows.append(("greedy return", "  ".join(f"{name} {_num(ret)}" for name, ret in status["returns"].items())))
    actors = status.get("actors")
    if actors:
        where = ", ".join(f"{node}: {n}" for node, n in actors["per_node"].items()) or "none yet"
        rows.append(("rollout actors", f"{actors['alive']} of {actors['wanted']} running ({where}); "
                                       f"{actors['pending']} pending, {actors['restarting']} restarting, "
                                       f"{actors['restarts']} restarts, {actors['collect_failures']} lost collects"))
    buffer = status.get("buffer")
    if buffer:
        rows.append(("buffer", f"{buffer['size']:,} of {buffer['capacity']:,} transitions"))
    if status.get("label_staleness") is not None:
        rows.append(("label staleness", f"{status['label_staleness']:.2f} teacher versions (mean, sampled)"))
    return rows


def print_rows(rows: list[tuple[str, str]]) -> None:
    width = max(len(k) for k, _ in rows)
    print("\n".join(f"{k:<{width}}  {v}" for k, v in rows))
