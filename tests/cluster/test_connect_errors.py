"""Joining a cluster that cannot be joined: one line on stderr, exit code 2, nothing written, and
without ray.init's own waiting (20–30 s on a refused token, forever on a closed port): each line is
qdistill's own check, which comes before ray.init."""

import subprocess
import sys

import pytest

from tests.support.ray_head import RayHead, auth_env, free_port, new_token

pytestmark = pytest.mark.slow  # a real Ray head, and each case runs the CLI in a process of its own

TOKEN_HELP = ("set RAY_AUTH_MODE=token and the cluster's token in RAY_AUTH_TOKEN "
              "(or in ~/.ray/auth_token, or a file named by RAY_AUTH_TOKEN_PATH)")


def _refused(tmp_path, env: dict[str, str], *args: str, wrap: tuple[str, ...] = ()) -> str:
    """Run `qdistill run` against an address; check it is refused, with nothing written, and return
    its one line of stderr."""
    out = tmp_path / "run"
    result = subprocess.run([*wrap, sys.executable, "-m", "qdistill.cluster.cli", "run", "--env", "CartPole-v1", *args,
                             "--out", str(out)], check=False, capture_output=True, text=True, timeout=60,
                            env={**env, "HOME": str(tmp_path)})  # no ~/.ray/auth_token to fall back on
    assert result.returncode == 2, result.stderr[-3000:]
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1, result.stderr[-3000:]
    assert not out.exists()
    return result.stderr


def test_an_address_where_nothing_listens_is_refused_at_once(tmp_path):
    port = free_port()
    hint = "(start a head there with `ray start --head`, or omit --address for a local runtime)"
    assert _refused(tmp_path, auth_env(None), "--address", f"127.0.0.1:{port}") == \
        f"qdistill: error: Ray address '127.0.0.1:{port}' is unreachable: connection refused {hint}\n"
    assert _refused(tmp_path, auth_env(None), "--address", f"ray://127.0.0.1:{port}") == \
        f"qdistill: error: Ray address 'ray://127.0.0.1:{port}' is unreachable: connection refused {hint}\n"


def test_ray_address_from_the_environment_is_joined_and_checked(tmp_path):
    """As inside a Ray Job: no --address, RAY_ADDRESS set → that cluster, not an embedded runtime."""
    port = free_port()
    env = {**auth_env(None), "RAY_ADDRESS": f"127.0.0.1:{port}"}
    assert _refused(tmp_path, env) == (
        f"qdistill: error: Ray address '127.0.0.1:{port}' (from $RAY_ADDRESS) is unreachable: connection refused "
        "(start a head there with `ray start --head`, or unset RAY_ADDRESS for a local runtime)\n")
    assert _refused(tmp_path, env, "--address", "auto") == (
        f"qdistill: error: Ray address 'auto' (127.0.0.1:{port}) is unreachable: connection refused "
        "(start a head there with `ray start --head`, or omit --address and unset RAY_ADDRESS for a local runtime)\n")


# `auto` looks for a Ray head running on this machine (by its gcs_server process, then the address
# file of the latest `ray start` under $RAY_TMPDIR): in a PID namespace of its own, with a temp dir of
# its own, the command sees no other Ray on this shared machine
ALONE = ("unshare", "--pid", "--fork", "--mount-proc")


def test_auto_without_a_cluster_is_refused_at_once(tmp_path):
    env = {**auth_env(None), "RAY_TMPDIR": str(tmp_path)}
    assert _refused(tmp_path, env, "--address", "auto", wrap=ALONE) == (
        "qdistill: error: Ray address 'auto' found no running Ray cluster on this machine: start one with "
        "`ray start --head`, give its address, or omit --address for a local runtime\n")
    # the latest `ray start` left its address behind, and is gone
    port = free_port()
    (tmp_path / "ray").mkdir()
    (tmp_path / "ray" / "ray_current_cluster").write_text(f"127.0.0.1:{port}")
    assert _refused(tmp_path, env, "--address", "auto", wrap=ALONE) == (
        f"qdistill: error: Ray address 'auto' (127.0.0.1:{port}) is unreachable: connection refused "
        "(start a head there with `ray start --head`, or omit --address for a local runtime)\n")


def test_a_malformed_address_is_refused(tmp_path):
    assert _refused(tmp_path, auth_env(None), "--address", "127.0.0.1:notaport") == (
        "qdistill: error: Ray address '127.0.0.1:notaport' is not valid: expected HOST:PORT, ray://HOST:PORT or auto\n")


@pytest.fixture(scope="module")
def head():
    with RayHead(token=new_token(), num_cpus=1) as head:
        yield head
    assert head.leftovers == []  # `ray start --block` took its node's processes down with it


def _auth_failed(address: str, why: str) -> str:
    return f"qdistill: error: token authentication with the Ray cluster at {address!r} failed ({why}); {TOKEN_HELP}\n"


@pytest.mark.parametrize("client", [False, True], ids=["gcs", "ray-client"])
def test_a_wrong_token_is_refused_at_once(tmp_path, head, client):
    address = head.client_address if client else head.address
    other = new_token()
    line = _refused(tmp_path, head.client_env(token=other), "--address", address)
    assert line == _auth_failed(address, "the cluster refused the token given here")
    assert other not in line and head.token not in line


@pytest.mark.parametrize("client", [False, True], ids=["gcs", "ray-client"])
def test_no_token_is_refused_at_once(tmp_path, head, client):
    address = head.client_address if client else head.address
    assert _refused(tmp_path, head.client_env(token=None), "--address", address) == \
        _auth_failed(address, "RAY_AUTH_MODE is not 'token' here, so no token was sent")
    env = {**head.client_env(token=None), "RAY_AUTH_MODE": "token"}
    assert _refused(tmp_path, env, "--address", address) == \
        _auth_failed(address, "RAY_AUTH_MODE is 'token' but no token was found here")


def test_the_wrong_kind_of_port_is_named(tmp_path, head):
    """The GCS port given as ray://, or the Ray Client port as HOST:PORT (with the right token)."""
    gcs, client = head.address, f"127.0.0.1:{head.ports.ray_client}"
    assert _refused(tmp_path, head.client_env(), "--address", f"ray://{gcs}") == (
        f"qdistill: error: Ray address 'ray://{gcs}' does not answer as a Ray Client server "
        "(ray://HOST:PORT, port 10001 by default): unimplemented\n")
    assert _refused(tmp_path, head.client_env(), "--address", client) == (
        f"qdistill: error: Ray address '{client}' does not answer as a Ray head's GCS "
        "(HOST:PORT, port 6379 by default; ray://HOST:PORT for the Ray Client): unimplemented\n")
