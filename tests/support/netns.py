"""Two hosts on one machine: two network namespaces joined by a veth pair, each with its own
private address, and a Ray node started in each with `ray start --block` and token auth.

Ray processes are stopped by PID — never with `ray stop`, which kills every Ray process on the
machine. A process counts as ours when it lives in one of our namespaces or its command line
mentions one of our temp dirs (Ray's agents rename themselves, e.g. `ray::DashboardAgent`, so the
command line alone misses them). Needs root and iproute2.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.ray_head import NodePorts, auth_env, head_argv, worker_argv

VENV_BIN = Path(sys.executable).parent
# Every port a node listens on, given explicitly. Each namespace has a port space of its own, so
# both nodes use the same numbers, all free, and nothing can collide with the machine's ports.
PORTS = NodePorts(gcs=6379, ray_client=10001, dashboard=8265, node_manager=6380, object_manager=6381,
                  min_worker=11000, max_worker=11199, dashboard_agent_listen=6384, dashboard_agent_grpc=6383,
                  metrics_export=6385, runtime_env_agent=6382)


class NetnsError(RuntimeError):
    """A namespace, link or Ray node could not be set up or torn down."""


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["ip", *args], check=False, capture_output=True, text=True, timeout=30)
    if check and proc.returncode != 0:
        raise NetnsError(f"`ip {' '.join(args)}` failed with exit code {proc.returncode}: {proc.stderr.strip()} "
                         "(this test needs root and iproute2 with network namespace support)")
    return proc


@dataclass(frozen=True)
class Host:
    """One "host": a network namespace whose only interfaces are `lo` and its end of the veth pair."""

    netns: str
    ip: str

    def argv(self, *argv: str | Path) -> list[str]:
        """A command line run inside this host's namespace."""
        return ["ip", "netns", "exec", self.netns, *map(str, argv)]


@contextmanager
def two_hosts() -> Iterator[tuple[Host, Host]]:
    """Namespaces qd-<6 hex>-a and -b, joined by a veth pair (its ends named like the namespaces)
    with a random private 10.x.y.1/24 and .2/24; removed on exit, with any process left in them."""
    tag = secrets.token_hex(3)
    subnet = f"10.{secrets.randbelow(150) + 100}.{secrets.randbelow(256)}"
    a, b = Host(f"qd-{tag}-a", f"{subnet}.1"), Host(f"qd-{tag}-b", f"{subnet}.2")
    made: list[str] = []
    try:
        for host in (a, b):
            _ip("netns", "add", host.netns)
            made.append(host.netns)
        # created straight inside the namespaces: no end ever lives in the machine's own namespace
        _ip("link", "add", a.netns, "netns", a.netns, "type", "veth", "peer", "name", b.netns, "netns", b.netns)
        for host in (a, b):
            _ip("-n", host.netns, "addr", "add", f"{host.ip}/24", "dev", host.netns)
            _ip("-n", host.netns, "link", "set", "lo", "up")
            _ip("-n", host.netns, "link", "set", host.netns, "up")
        yield a, b
    finally:
        leftover = kill_and_wait(our_pids(made, []), timeout=10)
        for netns in made:
            _ip("netns", "delete", netns, check=False)  # deleting a namespace deletes its veth end
        for name in (a.netns, b.netns):  # a half-made link in the machine's namespace (should not happen)
            if _ip("link", "show", name, check=False).returncode == 0:
                _ip("link", "delete", name, check=False)
        still = [ns for ns in made if ns in _ip("netns", "list").stdout.split()]
        if leftover or still:
            raise NetnsError(f"teardown left processes {leftover} and namespaces {still}")


# --- processes ------------------------------------------------------------------------------------


def _netns_id(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:  # the process is gone (or a zombie)
        return None
    return st.st_dev, st.st_ino


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def our_pids(namespaces: list[str], needles: list[str]) -> dict[int, str]:
    """Live processes in one of these namespaces or whose command line mentions one of these strings:
    pid → command line (for messages)."""
    ids = {i for i in (_netns_id(f"/run/netns/{ns}") for ns in namespaces) if i is not None}
    found: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        pid = int(entry.name)
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        if (_netns_id(f"/proc/{pid}/ns/net") in ids or any(n in cmdline for n in needles)) and _alive(pid):
            found[pid] = cmdline[:160]
    return found


def _wait_gone(pids: dict[int, str], timeout: float) -> dict[int, str]:
    deadline = time.monotonic() + timeout
    while True:
        left = {p: c for p, c in pids.items() if _alive(p)}
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.1)


def kill_and_wait(pids: dict[int, str], timeout: float) -> dict[int, str]:
    """SIGKILL these processes; the ones still alive after `timeout` s."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return _wait_gone(pids, timeout)


# --- Ray nodes ------------------------------------------------------------------------------------


def ray_start_argv(host: Host, temp_dir: Path, *, head_address: str | None, num_cpus: int,
                   resources: dict[str, float]) -> list[str]:
    """`ray start --block` inside host's namespace, for a head (head_address None, no dashboard) or a
    worker joining head_address; the command lines themselves come from ray_head.py."""
    if head_address is None:
        argv = head_argv(PORTS, temp_dir=str(temp_dir), node_ip=host.ip, num_cpus=num_cpus, resources=resources)
    else:
        argv = worker_argv(head_address, PORTS, temp_dir=str(temp_dir), node_ip=host.ip, num_cpus=num_cpus,
                           resources=resources)
    return host.argv(*argv)


@dataclass
class RayNode:
    host: Host
    temp_dir: Path
    log: Path
    proc: subprocess.Popen[bytes]

    def log_tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""


@dataclass
class TwoHostCluster:
    head: RayNode
    worker: RayNode
    env: dict[str, str]
    # filled in by the teardown: what did not exit on SIGTERM and had to be killed
    killed: dict[int, str] = field(default_factory=dict)

    @property
    def address(self) -> str:
        return f"{self.head.host.ip}:{PORTS.gcs}"


def _launch(host: Host, logs: Path, env: dict[str, str], *, head_address: str | None, num_cpus: int,
            resources: dict[str, float]) -> RayNode:
    temp_dir = Path(f"/tmp/{host.netns}")  # short: Ray's socket paths under it must stay < 108 chars
    if temp_dir.exists():
        raise NetnsError(f"{temp_dir} already exists")
    log = logs / f"ray-{host.netns}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(ray_start_argv(host, temp_dir, head_address=head_address, num_cpus=num_cpus,
                                               resources=resources),
                                env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    return RayNode(host, temp_dir, log, proc)


def _wait_ready(node: RayNode, timeout: float) -> None:
    """`ray start` writes TEMP_DIR/ray_current_cluster once it has started the node's processes (that
    the worker joined the head is for the caller to check, e.g. with ray.nodes())."""
    ready = node.temp_dir / "ray_current_cluster"
    deadline = time.monotonic() + timeout
    while not ready.exists():
        if node.proc.poll() is not None:
            raise NetnsError(f"`ray start` in {node.host.netns} exited with {node.proc.returncode}:\n{node.log_tail()}")
        if time.monotonic() > deadline:
            raise NetnsError(f"`ray start` in {node.host.netns} not up after {timeout} s:\n{node.log_tail()}")
        time.sleep(0.1)


def _stop(nodes: list[RayNode], namespaces: list[str], timeout: float) -> dict[int, str]:
    """SIGTERM each `ray start --block` (it takes its node's processes down), wait, then SIGKILL what is
    left of ours; raises if anything survives. Returns what had to be killed."""
    for node in reversed(nodes):  # the worker first
        if node.proc.poll() is None:
            node.proc.send_signal(signal.SIGTERM)
    needles = [str(n.temp_dir) for n in nodes]
    deadline = time.monotonic() + timeout
    for node in nodes:
        try:
            node.proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            pass
    left = _wait_gone(our_pids(namespaces, needles), max(deadline - time.monotonic(), 0.1))
    survivors = kill_and_wait(left, timeout=10)
    for node in nodes:
        if node.proc.poll() is None:
            node.proc.wait(timeout=5)
    survivors |= our_pids(namespaces, needles)
    if survivors:
        raise NetnsError(f"Ray processes still alive after SIGKILL: {survivors}")
    for node in nodes:
        shutil.rmtree(node.temp_dir, ignore_errors=True)
    return left


@contextmanager
def ray_cluster(head: Host, worker: Host, logs: Path, *, token: str, num_cpus: int = 2,
                resources: dict[str, float] | None = None, timeout: float = 60) -> Iterator[TwoHostCluster]:
    """A Ray head in `head`'s namespace and a worker node in `worker`'s, token auth with `token`; on
    exit every process of theirs is stopped (see _stop) and their temp dirs removed."""
    env = auth_env(token)  # venv first on PATH, RAY_AUTH_MODE=token, RAY_AUTH_TOKEN, no RAY_ADDRESS
    nodes: list[RayNode] = []
    cluster = None
    try:
        for host, address in ((head, None), (worker, f"{head.ip}:{PORTS.gcs}")):
            nodes.append(_launch(host, logs, env, head_address=address, num_cpus=num_cpus,
                                 resources=resources or {}))
            _wait_ready(nodes[-1], timeout)
        cluster = TwoHostCluster(nodes[0], nodes[1], env)
        yield cluster
    finally:
        killed = _stop(nodes, [head.netns, worker.netns], timeout=20)
        if cluster is not None:
            cluster.killed = killed
