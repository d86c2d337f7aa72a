"""`qdistill config show` and `config show-teacher`: the resolved config, as a config file."""

from __future__ import annotations

import argparse
import json

from ...actors.envs import describe
from ..config.resolve import distill_run, teacher_run


def show(args: argparse.Namespace) -> int:
    import yaml

    teacher = args.config_command == "show-teacher"
    from ...actors.wire import Schema

    config, info = (teacher_run if teacher else distill_run)(args)
    command = "train-teacher" if teacher else "run"
    print(f"# qdistill {command}: resolved config (the env's preset, then --config, then flags); usable as --config")
    print(yaml.safe_dump(json.loads(json.dumps(config.to_dict())), sort_keys=False), end="")
    tasks = [info] if teacher or not config.tasks else [describe(env) for env in config.tasks]
    for task in tasks:  # a multi-task run: a buffer per task
        size = Schema.of(task, next_obs=config.next_obs).record_size
        capacity = config.capacity_for(size)
        print(f"# rows{f' of {task.env_id}' if len(tasks) > 1 else ''}: {size:,} bytes each ({task.obs_dtype.name} "
              f"observations {'x'.join(map(str, task.obs_shape))}, "
              f"{'with the next observation and horizon' if config.next_obs else 'without the next observation'}); "
              f"{capacity:,} rows in the buffer: {capacity * size / 2**20:,.1f} MiB")
    return 0
