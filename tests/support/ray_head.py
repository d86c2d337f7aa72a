"""A real Ray cluster for the tests, started with `ray start --block` (a head, and optionally worker
nodes joining it) with token authentication, every port given explicitly, and a temp dir of its
own, so it never touches the test session's Ray runtime or other people's.

    with RayHead(token=new_token(), dashboard=True) as head:
        subprocess.run([...], env=head.client_env())   # RAY_AUTH_MODE=token, RAY_AUTH_TOKEN
        head.address, head.dashboard_url

Stopping terminates each `ray start --block` process (which stops its node's processes), then kills
by PID whatever of that node is still running after a few seconds: its descendants as seen just
before (Ray's agents rename themselves) and anything with its temp dir on the command line.
Never `ray stop`: that kills every Ray process on the machine.

The argv builders (`head_argv`, `worker_argv`) and `NodePorts` are separate so that other tests (a
network namespace, a detached run) can start nodes their own way.
"""

from __future__ import annotations

import json
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from typing import Self

BIN = Path(sys.executable).parent  # the venv's bin: `ray`, and `qdistill` for Ray Jobs
RAY = str(BIN / "ray")
WORKER_PORTS = 200  # a node's range of worker ports: one per worker process (drivers, actors, tasks)


def new_token() -> str:
    return secrets.token_hex(32)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _free_range(n: int, host: str) -> int:
    """The first of n consecutive ports that are all free now, below the ephemeral range (so ports
    the kernel hands out for outgoing connections do not land in it). Probed by binding without
    listening (nothing can connect)."""
    for _ in range(200):
        start = random.randrange(20000, 32000 - n)
        socks = []
        try:
            for port in range(start, start + n):
                s = socket.socket()
                socks.append(s)
                s.bind((host, port))
            return start
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError(f"no {n} consecutive free ports on {host}")


@dataclass(frozen=True)
class NodePorts:
    """Every port a node listens on. `gcs` and `ray_client` matter on the head only.

    `free()` probes on all addresses (""), by binding without listening: Ray's GCS, raylet and
    workers listen on every interface whatever --node-ip-address says, so a port taken on any
    address would make the node fail to start."""

    gcs: int
    ray_client: int
    dashboard: int
    node_manager: int
    object_manager: int
    min_worker: int
    max_worker: int
    dashboard_agent_listen: int
    dashboard_agent_grpc: int
    metrics_export: int
    runtime_env_agent: int

    @classmethod
    def free(cls, host: str = "") -> NodePorts:
        socks = []
        try:  # held open together, so the nine are distinct
            for _ in range(9):
                s = socket.socket()
                s.bind((host, 0))
                socks.append(s)
            ports = [s.getsockname()[1] for s in socks]
        finally:
            for s in socks:
                s.close()
        start = _free_range(WORKER_PORTS, host)
        gcs, client, dash, nm, om, agent_http, agent_grpc, metrics, env_agent = ports
        return cls(gcs, client, dash, nm, om, start, start + WORKER_PORTS - 1, agent_http, agent_grpc, metrics,
                   env_agent)


def _node_args(ports: NodePorts, *, temp_dir: str, node_ip: str, num_cpus: float,
               resources: dict[str, float] | None) -> list[str]:
    args = [
        f"--node-ip-address={node_ip}", f"--temp-dir={temp_dir}", f"--num-cpus={num_cpus:g}",
        f"--node-manager-port={ports.node_manager}", f"--object-manager-port={ports.object_manager}",
        f"--min-worker-port={ports.min_worker}", f"--max-worker-port={ports.max_worker}",
        f"--dashboard-agent-listen-port={ports.dashboard_agent_listen}",
        f"--dashboard-agent-grpc-port={ports.dashboard_agent_grpc}",
        f"--metrics-export-port={ports.metrics_export}", f"--runtime-env-agent-port={ports.runtime_env_agent}",
        "--object-store-memory=100000000", "--disable-usage-stats", "--block",
    ]
    if resources:
        args.append(f"--resources={json.dumps(resources)}")
    return args


def head_argv(ports: NodePorts, *, temp_dir: str, node_ip: str = "127.0.0.1", num_cpus: float = 2,
              resources: dict[str, float] | None = None, dashboard: bool = False) -> list[str]:
    """`ray start --head --block` with every port given."""
    return [RAY, "start", "--head", f"--port={ports.gcs}", f"--ray-client-server-port={ports.ray_client}",
            f"--include-dashboard={str(dashboard).lower()}", f"--dashboard-host={node_ip}",
            f"--dashboard-port={ports.dashboard}",
            *_node_args(ports, temp_dir=temp_dir, node_ip=node_ip, num_cpus=num_cpus, resources=resources)]


def worker_argv(head_address: str, ports: NodePorts, *, temp_dir: str, node_ip: str = "127.0.0.1",
                num_cpus: float = 2, resources: dict[str, float] | None = None) -> list[str]:
    """`ray start --address HEAD --block`: a worker node joining the head at head_address (host:port)."""
    return [RAY, "start", f"--address={head_address}",
            *_node_args(ports, temp_dir=temp_dir, node_ip=node_ip, num_cpus=num_cpus, resources=resources)]


def auth_env(token: str | None, base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for a node or a client: the venv's bin first on PATH, token auth with this
    token (None: RAY_AUTH_MODE and RAY_AUTH_TOKEN* removed), no inherited RAY_ADDRESS."""
    env = dict(os.environ if base is None else base)
    for key in ("RAY_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        env.pop(key, None)
    env["PATH"] = os.pathsep.join([str(BIN), *(p for p in env.get("PATH", "").split(os.pathsep) if p and p != str(BIN))])
    if token is not None:
        env["RAY_AUTH_MODE"] = "token"
        env["RAY_AUTH_TOKEN"] = token
    return env


def _start_time(pid: int) -> int | None:
    """The process's start time in clock ticks (tells a PID apart from a later one reusing it);
    None once it is gone (or a zombie)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return None if fields[0] in ("Z", "X") else int(fields[19])


def _processes() -> dict[int, tuple[int, bytes]]:
    """pid -> (parent pid, command line) of every process we can see."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            found[int(entry.name)] = (ppid, (entry / "cmdline").read_bytes())
        except (OSError, IndexError, ValueError):
            continue
    return found


def pids_of(temp_dir: str, root: int | None = None) -> dict[int, int | None]:
    """A node's processes, pid -> start time: those with temp_dir on their command line, and the
    descendants of root (its `ray start` process: Ray's agents rename themselves, so their command
    lines do not always show the temp dir)."""
    procs = _processes()
    mine = {pid for pid, (_, cmd) in procs.items() if temp_dir.encode() in cmd and pid != os.getpid()}
    if root is not None and root in procs:
        seen, frontier = {root}, {root}
        while frontier:
            frontier = {pid for pid, (ppid, _) in procs.items() if ppid in frontier} - seen
            seen |= frontier
        mine |= seen - {root}
    return {pid: _start_time(pid) for pid in mine}


def _tcp_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


class RayNode:
    """One `ray start --block` process and its temp dir."""

    def __init__(self, argv: list[str], env: dict[str, str], temp_dir: str) -> None:
        self.argv, self.env, self.temp_dir = argv, env, temp_dir
        self.log = Path(temp_dir + ".log")
        self.proc: subprocess.Popen | None = None

    def start(self) -> RayNode:
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(self.argv, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL)
        return self

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(f"`{' '.join(self.argv[:3])}` exited with {self.proc.returncode}:\n"
                               f"{self.log.read_text(errors='replace')[-3000:]}")

    def stop(self, timeout: float = 30) -> list[int]:
        """Terminate the node; kill by PID what is left of it after a few seconds. Returns the PIDs
        that had to be killed."""
        if self.proc is None:
            return []
        procs = pids_of(self.temp_dir, self.proc.pid)  # before its children are orphaned
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

        def alive() -> list[int]:
            procs.update(pids_of(self.temp_dir))
            return [pid for pid, started in procs.items() if started is not None and _start_time(pid) == started]

        deadline = time.monotonic() + 10  # the node's processes go down with it, within seconds
        while alive() and time.monotonic() < deadline:
            time.sleep(0.1)
        leftovers = alive()
        for pid in leftovers:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        shutil.rmtree(self.temp_dir, ignore_errors=True)
        self.log.unlink(missing_ok=True)
        return leftovers


class RayHead:
    """A Ray head (and optional worker nodes) with token authentication on loopback ports."""

    def __init__(self, *, token: str | None, node_ip: str = "127.0.0.1", num_cpus: float = 2,
                 resources: dict[str, float] | None = None, dashboard: bool = False) -> None:
        self.token = token
        self.node_ip = node_ip
        self.ports = NodePorts.free()
        self.temp_dir = f"/tmp/qd-{secrets.token_hex(3)}"
        self.dashboard = dashboard
        argv = head_argv(self.ports, temp_dir=self.temp_dir, node_ip=node_ip, num_cpus=num_cpus,
                         resources=resources, dashboard=dashboard)
        self.head = RayNode(argv, auth_env(token), self.temp_dir)
        self.workers: list[RayNode] = []
        self.leftovers: list[int] = []  # PIDs that outlived their `ray start --block` and were killed

    @property
    def address(self) -> str:
        return f"{self.node_ip}:{self.ports.gcs}"

    @property
    def client_address(self) -> str:
        return f"ray://{self.node_ip}:{self.ports.ray_client}"

    @property
    def dashboard_url(self) -> str:
        return f"http://{self.node_ip}:{self.ports.dashboard}"

    def client_env(self, token: str | None = ..., base: dict[str, str] | None = None) -> dict[str, str]:
        """The env a client of this cluster needs (by default, with the cluster's token)."""
        return auth_env(self.token if token is ... else token, base)

    def start(self, timeout: float = 60) -> RayHead:
        self.head.start()
        try:
            self._wait(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait(self, timeout: float) -> None:
        """Ready: the GCS (and the dashboard's job API, if any) answer, and the node has registered
        (its ray_current_cluster file is written after that)."""
        deadline = time.monotonic() + timeout
        current = Path(self.temp_dir) / "ray_current_cluster"
        while not (current.exists() and _tcp_open(self.node_ip, self.ports.gcs)
                   and (not self.dashboard or self._jobs_api_up())):
            self.head.check_alive()
            if time.monotonic() > deadline:
                raise RuntimeError(f"Ray head did not come up within {timeout:.0f} s:\n"
                                   f"{self.head.log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.2)

    def _jobs_api_up(self) -> bool:
        import urllib.error
        import urllib.request

        request = urllib.request.Request(f"{self.dashboard_url}/api/version")
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=1) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def add_worker(self, *, num_cpus: float = 2, resources: dict[str, float] | None = None,
                   node_ip: str | None = None, timeout: float = 60) -> RayNode:
        """A worker node joining this head, started and waited for (its own ports and temp dir)."""
        ip = node_ip or self.node_ip
        temp_dir = f"/tmp/qd-{secrets.token_hex(3)}"
        node = RayNode(worker_argv(self.address, NodePorts.free(), temp_dir=temp_dir, node_ip=ip,
                                   num_cpus=num_cpus, resources=resources),
                       auth_env(self.token), temp_dir).start()
        self.workers.append(node)
        deadline = time.monotonic() + timeout
        while not (Path(temp_dir) / "ray_current_cluster").exists():
            node.check_alive()
            if time.monotonic() > deadline:
                raise RuntimeError(f"Ray worker node did not come up within {timeout:.0f} s:\n"
                                   f"{node.log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.2)
        return node

    def stop(self) -> None:
        for node in [*self.workers, self.head]:
            self.leftovers += node.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
