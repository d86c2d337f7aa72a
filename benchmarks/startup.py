"""What a process pays to start: the import of each process's entry module, in a fresh Python,
and whether it brings torch in. The `qdistill` command, rollout actors with MLP teachers, buffer
shards and parameter servers (`qdistill.actors.remote`) import no torch; the run's learner does.
The last row also builds a learner (CartPole's 256x256 DQNLearner, its optimiser with it): torch's
own first optimiser imported torch._dynamo, which the learners' Adam does not.

    python benchmarks/startup.py --repeats 7

Prints the median and range of each import's wall time over --repeats fresh interpreters, taken
in turn, and the command. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

LEARNER = ("from qdistill.learners.configs import DQNConfig\nfrom qdistill.learners.dqn import DQNLearner\n"
           "DQNLearner(DQNConfig(net='256x256'), [((4,), 2)])")
ENTRIES = {  # what each process runs first
    "python alone": "",
    "torch": "import torch",
    "the qdistill command (qdistill.cluster.cli)": "import qdistill.cluster.cli",
    "an acting process's actors (qdistill.actors.remote)": "import qdistill.actors.remote",
    "a rollout, MLP teacher (qdistill.actors.rollout)": "import qdistill.actors.rollout",
    "the run's learner (qdistill.cluster.driver.teacher)": "import qdistill.cluster.driver.teacher",
    "a learner built (qdistill.learners.dqn, a 256x256 DQNLearner)": LEARNER,
}


def once(entry: str) -> tuple[float, bool]:
    code = f"import sys\n{entry}\nprint('torch' in sys.modules)"
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return time.monotonic() - start, done.stdout.strip() == "True"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    times: dict[str, list[float]] = {name: [] for name in ENTRIES}
    torch_in: dict[str, bool] = {}
    for _ in range(args.repeats):  # in turn, so all share the machine's moments alike
        for name, entry in ENTRIES.items():
            wall, imported = once(entry)
            times[name].append(wall)
            torch_in[name] = imported
    print(f"Wall time of each entry in a fresh Python, median [min-max] of {args.repeats}\n")
    print("| process's entry | wall s | imports torch |\n|---|---|---|")
    for name, walls in times.items():
        print(f"| {name} | {statistics.median(walls):.2f} [{min(walls):.2f}-{max(walls):.2f}] | "
              f"{'yes' if torch_in[name] else 'no'} |")
    print(f"\nreproduce: python benchmarks/startup.py --repeats {args.repeats}")


if __name__ == "__main__":
    main()
