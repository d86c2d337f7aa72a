"""The house rules of the package, checked on its source: small modules and functions, the one
run loop short, and dependencies pointing one way (cluster/cli → cluster → actors → learners)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("cluster", "actors", "learners")
MODULE_LINES, FUNCTION_LINES, LOOP_LINES = 400, 60, 40
HOT_LOOPS = {("actors/rollout.py", "collect")}  # the rollout's hot loop may run longer, kept in one piece


def _modules() -> list[Path]:
    return sorted(p for package in PACKAGES for p in (ROOT / package).rglob("*.py"))


def _imports(path: Path) -> set[str]:
    """Every module `path` imports, absolute, relative ones resolved against the package `qdistill`."""
    parts = ["qdistill", *path.relative_to(ROOT).with_suffix("").parts]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = parts[:len(parts) - node.level] if node.level else []
            found.add(".".join([*base, *([node.module] if node.module else [])]))
    return found


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_modules_and_functions_are_small(path):
    source = path.read_text()
    assert len(source.splitlines()) <= MODULE_LINES
    rel = str(path.relative_to(ROOT))
    long = [f"{node.name} ({node.end_lineno - node.lineno + 1} lines)" for node in ast.walk(ast.parse(source))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.end_lineno - node.lineno + 1 > FUNCTION_LINES and (rel, node.name) not in HOT_LOOPS]
    assert long == []


def test_the_run_loop_skeleton_fits_on_a_screen():
    tree = ast.parse((ROOT / "cluster/driver/loop.py").read_text())
    loop = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "run_loop")
    assert loop.end_lineno - loop.lineno + 1 <= LOOP_LINES


@pytest.mark.parametrize("package, forbidden", [
    ("learners", ("ray", "redis", "qdistill.actors", "qdistill.cluster")),
    ("actors", ("qdistill.cluster",)),
    ("cluster/config", ("qdistill.cluster.cli", "qdistill.cluster.driver", "qdistill.cluster.rundir")),
    ("cluster/rundir", ("qdistill.cluster.cli", "qdistill.cluster.driver")),
    ("cluster/driver", ("qdistill.cluster.cli",)),
])
def test_dependencies_point_one_way(package, forbidden):
    wrong = {f"{p.relative_to(ROOT)}: {name}" for p in (ROOT / package).rglob("*.py") for name in _imports(p)
             if any(name == f or name.startswith(f + ".") for f in forbidden)}
    assert wrong == set()


def test_cluster_outside_cli_does_not_import_the_command_line():
    outside = [p for p in (ROOT / "cluster").rglob("*.py") if "cli" not in p.relative_to(ROOT / "cluster").parts]
    wrong = {f"{p.relative_to(ROOT)}: {n}" for p in outside for n in _imports(p) if n.startswith("qdistill.cluster.cli")}
    assert wrong == set()


def test_acting_and_the_command_line_never_import_torch():
    """Rollout actors with MLP teachers, buffer shards and parameter servers (all of actors/remote.py)
    and the `qdistill` command, resolving and refusing a configuration, start without torch: a
    process saves its import (1-2 s here) and its memory."""
    code = ("import sys\n"
            "from qdistill.actors import remote\n"
            "from qdistill.cluster.cli import main\n"
            "assert main(['config', 'show-teacher', '--env', 'CartPole-v1', '--n-step', '3']) == 0\n"
            "assert main(['config', 'show-teacher', '--env', 'CartPole-v1', '--n-step', '0']) == 2\n"
            "from qdistill.actors.rollout import Rollout\n"
            "rollout = Rollout('CartPole-v1', net='256x256', obs_shape=(4,), n_actions=2, num_envs=2, n_step=3)\n"
            "batch, _ = rollout.collect(16, 0.1)\n"
            "print(len(batch) > 0, 'torch' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "True False"  # rows collected; torch never imported
