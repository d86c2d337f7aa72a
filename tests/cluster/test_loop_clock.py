"""The run loop's clock: seconds per phase, nested phases counted in both."""

import itertools

from qdistill.cluster.driver import loop
from qdistill.cluster.driver.loop import LoopClock


def test_phases_add_up_and_nest(monkeypatch):
    ticks = itertools.count(0.0, 0.25)  # each reading of the clock is a quarter second after the last
    monkeypatch.setattr(loop.time, "perf_counter", lambda: next(ticks))
    clock = LoopClock()
    with clock("wait"):  # 0.0 → 0.25
        pass
    with clock("learn"):  # 0.5 → 1.75
        with clock("learn/teacher"):  # 0.75 → 1.0
            pass
        with clock("learn/students"):  # 1.25 → 1.5
            pass
    with clock("wait"):  # 2.0 → 2.25
        pass
    assert clock.facts() == {"wait": 0.5, "learn": 1.25, "learn/teacher": 0.25, "learn/students": 0.25}
