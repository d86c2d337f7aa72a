"""The Redis buffer over TLS: a real redis-server that serves only TLS on a loopback port, with a
CA and certificates made by the test; each way of getting TLS wrong refused in one line."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import yaml

from qdistill.actors.redis_buffer import RedisBuffer, RedisSpec
from qdistill.actors.redis_connect import RedisBufferError, host_port, redact_url, with_tls
from qdistill.actors.wire import Schema
from qdistill.cluster.cli import build_parser, main
from qdistill.cluster.config import distill_config, teacher_config
from qdistill.cluster.config.resolve import distill_run, teacher_first
from tests.support.batches import sequence_batch
from tests.support.redis_server import RedisServer, TlsFiles, make_tls_files

SCHEMA = Schema(obs_shape=(2,), n_actions=2)
WRONG_CA = ("has a TLS certificate this client cannot verify (self-signed certificate in certificate chain): "
            "give the CA that signed the server's certificate with --buffer-ca")


@pytest.fixture(scope="module")
def tls(tmp_path_factory) -> TlsFiles:
    return make_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def other(tmp_path_factory) -> TlsFiles:
    """Another CA and its certificates: none of them is trusted by, or trusts, the server."""
    return make_tls_files(tmp_path_factory.mktemp("other-tls"), name="other")


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory, tls):
    """A redis-server that serves only TLS and asks every client for a certificate signed by `tls.ca`."""
    server = RedisServer(tmp_path_factory.mktemp("redis-tls"), tls=tls, tls_auth_clients=True).start()
    try:
        yield server
    finally:
        server.stop()


def _refusal(url: str, prefix: str) -> str:
    with pytest.raises(RedisBufferError) as refused:
        RedisBuffer(RedisSpec(url, prefix, 8, 4, SCHEMA))
    return str(refused.value)


def test_the_buffer_adds_samples_and_relabels_over_tls(tls_server, tls, redis_prefix):
    url = with_tls(tls_server.url, ca=tls.ca, cert=tls.client_cert, key=tls.client_key)
    buf = RedisBuffer(RedisSpec(url, redis_prefix, 8, 4, SCHEMA), seed=0)
    try:
        buf.add(sequence_batch(0, 12))  # three chunks of 4 into two: the first is evicted
        np.testing.assert_array_equal(buf.ids(), np.arange(4, 12))
        ids, batch = buf.sample(64)
        assert set(ids.tolist()) == set(range(4, 12))
        np.testing.assert_array_equal(batch.actions, ids)  # every field is the row's own
        np.testing.assert_array_equal(batch.teacher_q, np.stack([ids, 2 * ids], axis=1))
        assert buf.relabel(np.array([1, 5, 9]), np.array([[0, 0], [-1, -2], [-3, -4]], np.float32), 7) == 2
        got = buf.get(np.array([5, 9, 6]))
        np.testing.assert_array_equal(got.teacher_q, [[-1, -2], [-3, -4], [6, 12]])
        np.testing.assert_array_equal(got.label_version, [7, 7, 0])
        np.testing.assert_array_equal(got.actions, [5, 9, 6])
    finally:
        buf.close()


def test_a_wrong_ca_is_one_line(tls_server, tls, other, redis_prefix):
    url = with_tls(tls_server.url, ca=other.ca, cert=tls.client_cert, key=tls.client_key)
    assert _refusal(url, redis_prefix) == f"redis at 127.0.0.1:{tls_server.port} {WRONG_CA}"


def test_a_host_name_the_servers_certificate_does_not_hold(tls_server, tls, redis_prefix):
    url = with_tls(f"rediss://localhost:{tls_server.port}/0", ca=tls.ca, cert=tls.client_cert, key=tls.client_key)
    assert _refusal(url, redis_prefix) == (
        f"redis at localhost:{tls_server.port} has a TLS certificate for other names (Hostname mismatch, certificate "
        "is not valid for 'localhost'): connect by a host name or address the certificate holds")


def test_a_server_that_requires_a_client_certificate(tls_server, tls, other, redis_prefix):
    assert _refusal(with_tls(tls_server.url, ca=tls.ca), redis_prefix) == (
        f"redis at 127.0.0.1:{tls_server.port} closed the TLS connection, as a server that requires a client "
        "certificate does when it gets none: give one with --buffer-cert and --buffer-key")
    assert _refusal(with_tls(tls_server.url, ca=tls.ca, cert=other.client_cert, key=other.client_key),
                    redis_prefix) == (
        f"redis at 127.0.0.1:{tls_server.port} closed the TLS connection: it did not accept the client certificate "
        f"--buffer-cert '{other.client_cert}': expected one signed by a CA the server trusts (its tls-ca-cert-file)")


def test_a_client_certificate_with_another_key(tls_server, tls, other, redis_prefix):
    url = with_tls(tls_server.url, ca=tls.ca, cert=tls.client_cert, key=other.client_key)
    assert _refusal(url, redis_prefix) == (
        f"TLS with redis at 127.0.0.1:{tls_server.port} failed ([X509: KEY_VALUES_MISMATCH] key values mismatch): "
        "check the PEM files given with --buffer-ca, --buffer-cert and --buffer-key")


@pytest.mark.slow  # a TLS client waits out its 5 s handshake timeout on a plain port
def test_plain_redis_to_a_tls_port_and_tls_to_a_plain_port(tls_server, tls, redis_server, redis_prefix):
    assert _refusal(f"redis://127.0.0.1:{tls_server.port}/0", redis_prefix) == (
        f"redis at 127.0.0.1:{tls_server.port} reset the connection at once, as a port that serves only TLS does: "
        "for TLS, give a rediss:// URL (and the server's CA with --buffer-ca)")
    assert _refusal(with_tls(f"rediss://127.0.0.1:{redis_server.port}/0", ca=tls.ca), redis_prefix) == (
        f"redis at 127.0.0.1:{redis_server.port} did not answer the TLS handshake (a port without TLS waits for "
        "plain commands): without TLS, give a redis:// URL")


def test_the_tls_files_are_checked_before_any_contact(tmp_path, tls, redis_prefix):
    # port 1: nothing listens there, so each line below came before any connection was tried
    missing = tmp_path / "nope.pem"
    assert _refusal(with_tls("rediss://127.0.0.1:1/0", ca=missing), redis_prefix) == (
        f"--buffer-ca '{missing}' cannot be read (No such file or directory): expected a PEM file of the CA "
        "certificate that signed the server's certificate")
    assert _refusal(with_tls("rediss://127.0.0.1:1/0", ca=tls.ca, cert=tmp_path), redis_prefix) == (
        f"--buffer-cert '{tmp_path}' cannot be read (Is a directory): expected a PEM client certificate (its key "
        "too, unless --buffer-key gives it)")
    assert _refusal(with_tls("rediss://127.0.0.1:1/0", key=tls.client_key), redis_prefix) == (
        f"--buffer-key '{tls.client_key}' needs --buffer-cert: expected the client certificate that goes with the key")
    assert _refusal(f"redis://127.0.0.1:1/0?ssl_ca_certs={tls.ca}", redis_prefix) == (
        f"redis URL 'redis://127.0.0.1:1/0?ssl_ca_certs={tls.ca}' has TLS options (ssl_ca_certs) but is not "
        "rediss://: expected rediss://host:port/db for TLS, or no ssl_ options")
    with pytest.raises(RedisBufferError) as refused:
        with_tls("redis://:secret@127.0.0.1:6379/0", ca=tls.ca, cert=tls.client_cert)
    assert str(refused.value) == ("--buffer-ca and --buffer-cert need a rediss:// buffer (TLS), not "
                                  "'redis://:***@127.0.0.1:6379/0': give --buffer "
                                  "rediss://[user:password@]host:port/db")


def test_tls_files_travel_in_the_url_as_absolute_paths(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    url = with_tls("rediss://:p%40ss@redis.example:6380/2?socket_timeout=3&ssl_ca_certs=old.pem",
                   ca="certs/ca.pem", cert="my certs/client+1.pem", key=None)
    assert url == ("rediss://:p%40ss@redis.example:6380/2?socket_timeout=3"
                   f"&ssl_ca_certs={tmp_path}/certs/ca.pem&ssl_certfile={tmp_path}/my%20certs/client%2B1.pem")
    # the files a user writes in the URL are made absolute too; nothing else is touched
    assert with_tls("rediss://h:1/0?ssl_ca_certs=ca.pem") == f"rediss://h:1/0?ssl_ca_certs={tmp_path}/ca.pem"
    assert with_tls("rediss://h:1/0") == "rediss://h:1/0" and with_tls("ray") == "ray"
    assert redact_url(url) == url.replace(":p%40ss@", ":***@")
    assert redact_url("redis://h:1/0?socket_timeout=3&password=s3cr%26t&db=2") == \
        "redis://h:1/0?socket_timeout=3&password=***&db=2"
    assert host_port(url) == "redis.example:6380"
    from redis.connection import parse_url  # what redis-py's from_url will open

    assert {k: v for k, v in parse_url(url).items() if k.startswith("ssl_")} == {
        "ssl_ca_certs": f"{tmp_path}/certs/ca.pem", "ssl_certfile": f"{tmp_path}/my certs/client+1.pem"}


def _shown(capsys, *args: str) -> dict[str, object]:
    assert main(["config", "show", *args]) == 0
    return yaml.safe_load(capsys.readouterr().out)


def test_the_flags_and_a_config_file_compose_the_url(tmp_path, capsys, tls, other):
    base = "rediss://:secret@127.0.0.1:6380/0"
    shown = _shown(capsys, "--env", "CartPole-v1", "--buffer", base, "--buffer-ca", str(tls.ca),
                   "--buffer-cert", str(tls.client_cert), "--buffer-key", str(tls.client_key))
    assert shown["buffer"] == (f"rediss://:***@127.0.0.1:6380/0?ssl_ca_certs={tls.ca}"
                               f"&ssl_certfile={tls.client_cert}&ssl_keyfile={tls.client_key}")
    config = tmp_path / "run.toml"
    config.write_text(f'env = "CartPole-v1"\nbuffer = "{base}"\nbuffer_ca = "{other.ca}"\n'
                      f'buffer_cert = "{tls.client_cert}"\n')
    shown = _shown(capsys, "--config", str(config), "--buffer-ca", str(tls.ca))  # the flag over the file
    assert shown["buffer"] == f"rediss://:***@127.0.0.1:6380/0?ssl_ca_certs={tls.ca}&ssl_certfile={tls.client_cert}"
    # what `config show` prints is a config file: the URL keeps its TLS files
    again = tmp_path / "shown.yaml"
    again.write_text(yaml.safe_dump({**shown, "buffer": base + f"?ssl_ca_certs={tls.ca}"}))
    assert _shown(capsys, "--config", str(again))["buffer"] == f"rediss://:***@127.0.0.1:6380/0?ssl_ca_certs={tls.ca}"


def test_a_resumed_run_takes_new_tls_files(tmp_path, capsys, tls, other):
    """Certificates are rotated: --resume takes --buffer-ca/--buffer-cert/--buffer-key, for the run
    and for the teacher it was still training; the files not given stay as saved."""
    saved = with_tls("rediss://127.0.0.1:6380/0", ca=other.ca, cert=tls.client_cert, key=tls.client_key)
    run = tmp_path / "run"
    (run / "teacher").mkdir(parents=True)
    (run / "config.json").write_text(json.dumps(distill_config("CartPole-v1", str(run), buffer=saved).to_dict()))
    (run / "teacher" / "config.json").write_text(json.dumps(
        teacher_config("CartPole-v1", str(run / "teacher"), buffer=saved).to_dict()))
    rotated = saved.replace(str(other.ca), str(tls.ca))
    assert _shown(capsys, "--resume", str(run), "--buffer-ca", str(tls.ca))["buffer"] == rotated
    args = build_parser().parse_args(["run", "--resume", str(run), "--buffer-ca", str(tls.ca)])
    config, info = distill_run(args)
    assert config.buffer == rotated and teacher_first(args, config, info).buffer == rotated


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "qdistill.cluster.cli", *args], capture_output=True, text=True,
                          timeout=300)


@pytest.mark.slow  # trains a teacher for 3,000 env steps over TLS
def test_train_teacher_over_tls(tls_server, tls, redis_prefix, tmp_path):
    out = tmp_path / "run"
    result = _cli("train-teacher", "--env", "CartPole-v1", "--steps", "3000", "--no-target", "--actors", "1",
                  "--buffer", tls_server.url, "--buffer-prefix", redis_prefix, "--buffer-ca", str(tls.ca),
                  "--buffer-cert", str(tls.client_cert), "--buffer-key", str(tls.client_key),
                  "--quiet", "--out", str(out))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["stop_reason"] == "steps" and summary["env_steps"] >= 3_000
    assert "stopped        steps" in lines and lines[-1] == f"run directory  {out}"
    assert f"env steps      {summary['env_steps']:,}" in lines
    url = with_tls(tls_server.url, ca=tls.ca, cert=tls.client_cert, key=tls.client_key)
    assert json.loads((out / "config.json").read_text())["buffer"] == url
    # the actors wrote every step into the server, over TLS
    buf = RedisBuffer(RedisSpec(url, redis_prefix, 100_000, 256, Schema((4,), 2)))
    try:
        assert buf.stats()["buffer/inserted"] == summary["env_steps"]
    finally:
        buf.close()


@pytest.mark.slow  # a CLI run in a subprocess
def test_train_teacher_with_a_wrong_ca_is_refused_before_anything_starts(tls_server, tls, other, tmp_path):
    out = tmp_path / "run"
    result = _cli("train-teacher", "--env", "CartPole-v1", "--buffer", tls_server.url, "--buffer-ca", str(other.ca),
                  "--buffer-cert", str(tls.client_cert), "--buffer-key", str(tls.client_key), "--out", str(out))
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == f"qdistill: error: redis at 127.0.0.1:{tls_server.port} {WRONG_CA}\n"
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == []

