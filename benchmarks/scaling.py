"""Scaling of the collection path: 1, 2, 4, … rollout actors into one Ray buffer shard (learner
idle), env steps per second and efficiency against linear (rate with N actors / (N x rate with 1)).

    python -m benchmarks.scaling --env CartPole-v1      # from the repository root

Runs on any machine: by default up to as many actors as it has CPUs (--max-actors to go beyond,
oversubscribing). Each actor reserves one CPU of an embedded Ray runtime with max(N, CPUs) CPUs.
Each figure is the median of --repeats windows of --seconds after a warm-up window; the actors are
those of benchmarks/throughput.py's collection row. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics

from benchmarks.throughput import collection  # (also sets one BLAS thread per process)


def main() -> None:
    cpus = len(os.sched_getaffinity(0))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--env", default="CartPole-v1")
    parser.add_argument("--max-actors", type=int, default=cpus, help=f"largest actor count (default: the CPUs, {cpus})")
    parser.add_argument("--envs", type=int, default=32, help="sub-envs per actor")
    parser.add_argument("--steps-per-call", type=int, default=2048, help="vector steps per collect call")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of a timed window")
    parser.add_argument("--repeats", type=int, default=5, help="timed windows per actor count (median)")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()
    if args.max_actors < 1:
        parser.error(f"--max-actors {args.max_actors} is not valid: expected an integer >= 1")
    counts = [n for n in (2 ** k for k in range(args.max_actors.bit_length())) if n <= args.max_actors]
    if counts[-1] != args.max_actors:
        counts.append(args.max_actors)
    rates = {n: collection(args.env, n, args.envs, args.steps_per_call, args.seconds, args.repeats, cpus=max(n, cpus))
             for n in counts}
    med = {n: statistics.median(r) for n, r in rates.items()}
    print(f"{args.env}, 256x256 teacher, {cpus} CPUs, {args.envs} envs per actor, {args.steps_per_call} steps per call; "
          f"median of {args.repeats} windows of {args.seconds:g} s\n")
    print(f"{'actors':>6} {'env steps/s':>14} {'per actor':>12} {'efficiency':>11}   windows")
    for n in counts:
        print(f"{n:>6} {med[n]:>14,.0f} {med[n] / n:>12,.0f} {med[n] / (n * med[1]):>11.2f}   "
              + ", ".join(f"{r:,.0f}" for r in rates[n]))
    print(f"\nreproduce: python -m benchmarks.scaling --env {args.env} --max-actors {args.max_actors} --envs {args.envs} "
          f"--steps-per-call {args.steps_per_call} --seconds {args.seconds:g} --repeats {args.repeats}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "cpus": cpus, "rates": rates, "median": med,
                       "efficiency": {n: med[n] / (n * med[1]) for n in counts}}, f, indent=2)


if __name__ == "__main__":
    main()
