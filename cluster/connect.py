"""Connect to Ray: an embedded local runtime by default, or an existing cluster by address.

Joining a cluster is checked first, so that a wrong address or token fails at once with one line
(ray.init itself waits 20–30 s, or forever, logging a line a second): a TCP connect to the address,
then one gRPC call to the head (the GCS for HOST:PORT, the Ray Client server for ray://) with the
token Ray would send, which the head refuses at once when token authentication fails.
"""

from __future__ import annotations

import logging
import os
import socket

import ray

PROBE_TIMEOUT_S = 3.0
TOKEN_HELP = ("set RAY_AUTH_MODE=token and the cluster's token in RAY_AUTH_TOKEN "
              "(or in ~/.ray/auth_token, or a file named by RAY_AUTH_TOKEN_PATH)")


class ConnectError(ValueError):
    """The Ray cluster at an address cannot be joined: unreachable, not a Ray head, or refused."""


def connect(address: str | None, *, min_cpus: float = 0) -> None:
    """No address → start an embedded local Ray runtime (no dashboard, quiet logs), unless
    $RAY_ADDRESS names a cluster (as inside a Ray Job's entrypoint): then join that one."""
    if ray.is_initialized():
        return
    source = "--address"
    if address is None and os.environ.get("RAY_ADDRESS"):
        address, source = os.environ["RAY_ADDRESS"], "RAY_ADDRESS"
    if address is None or address == "local":
        _init(
            address="local",  # a runtime of its own, even where a `ray start` cluster runs on this machine
            num_cpus=max(os.cpu_count() or 1, int(-(-min_cpus // 1))),
            include_dashboard=False,
            logging_level=logging.ERROR,  # the embedded runtime's start-up notices are not the user's concern
        )
        return
    _init(address=_check(address, source), logging_level=logging.WARNING)


def _init(**options: object) -> None:
    """ray.init, keeping this process's SIGTERM and SIGINT handlers (those of `qdistill run`: a stop
    signal while Ray starts asks the run to stop once it is there). ray.init would set a SIGTERM
    handler that exits at once, and Ray's core worker a crash handler that aborts with a stack dump
    on SIGTERM: both are left out for this process (Ray's own switch for the second,
    RAY_DISABLE_FAILURE_SIGNAL_HANDLER, is read when ray is imported, so it is set on the module).
    Ray is started from the main thread: the processes it starts are tied to the thread that
    started them, and die when it ends."""
    from ray._private import ray_constants
    from ray._private import utils as ray_utils

    ray_constants.RAY_DISABLE_FAILURE_SIGNAL_HANDLER = True
    set_handler = ray_utils.set_sigterm_handler
    ray_utils.set_sigterm_handler = lambda handler: None
    try:
        ray.init(**options)
    finally:
        ray_utils.set_sigterm_handler = set_handler


def _check(address: str, source: str) -> str:
    """The address to join (`auto` resolved); ConnectError unless the head there answers and
    accepts this process's token."""
    where = repr(address) + (" (from $RAY_ADDRESS)" if source == "RAY_ADDRESS" else "")
    local = "unset RAY_ADDRESS" if source == "RAY_ADDRESS" else \
        "omit --address and unset RAY_ADDRESS" if os.environ.get("RAY_ADDRESS") else "omit --address"
    target = address
    if address == "auto":
        target = _auto(where, local)
        where += f" ({target})"
    client = target.startswith("ray://")
    host, _, port = target.removeprefix("ray://").rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdigit():
        raise ConnectError(f"Ray address {where} is not valid: expected HOST:PORT, ray://HOST:PORT or auto")
    try:
        socket.create_connection((host, int(port)), timeout=PROBE_TIMEOUT_S).close()
    except OSError as exc:
        why = f"no answer within {PROBE_TIMEOUT_S:g} s" if isinstance(exc, socket.timeout) else \
            (exc.strerror or str(exc)).lower()
        raise ConnectError(f"Ray address {where} is unreachable: {why} "
                           f"(start a head there with `ray start --head`, or {local} for a local runtime)") from None
    _call_head(where, f"{host}:{port}", client)
    return target


def _auto(where: str, local: str) -> str:
    """The cluster `auto` finds as ray.init would ($RAY_ADDRESS, else a Ray head running on this
    machine), with token auth switched on as ray.init does when a token file is there. Ray's
    warnings on the way ("found multiple active Ray instances", "token authentication is enabled")
    are left out: an error names the address found, a success connects to it."""
    from ray._private import services

    try:
        from ray._private.authentication import authentication_token_setup as setup
    except ImportError:  # a Ray without token authentication
        setup = None
    loggers = [logging.getLogger(m.__name__) for m in (services, setup) if m is not None]
    for logger in loggers:
        logger.disabled = True
    try:
        found = services.get_ray_address_from_environment("auto", None)
        if setup is not None:
            setup.maybe_enable_token_auth_if_token_available(warn_if_disabled=False)
    except ConnectionError:
        raise ConnectError(f"Ray address {where} found no running Ray cluster on this machine: start one with "
                           f"`ray start --head`, give its address, or {local} for a local runtime") from None
    finally:
        for logger in loggers:
            logger.disabled = False
    return found


def _call_head(where: str, target: str, client: bool) -> None:
    import grpc

    try:
        from ray._private.authentication import authentication_utils
        from ray._private.grpc_utils import init_grpc_channel
    except ImportError:  # an older Ray, without token authentication: the TCP check is all
        return
    from ray.core.generated import (
        gcs_service_pb2,
        gcs_service_pb2_grpc,
        ray_client_pb2,
        ray_client_pb2_grpc,
    )
    from ray.exceptions import AuthenticationError

    def refused(why: str) -> ConnectError:
        return ConnectError(f"token authentication with the Ray cluster at {where} failed ({why}); {TOKEN_HELP}")

    channel = init_grpc_channel(target)  # sends the token as ray.init would (when RAY_AUTH_MODE=token)
    try:
        if client:
            request = ray_client_pb2.ClusterInfoRequest(type=ray_client_pb2.ClusterInfoType.PING)
            ray_client_pb2_grpc.RayletDriverStub(channel).ClusterInfo(request, timeout=PROBE_TIMEOUT_S)
        else:
            gcs_service_pb2_grpc.NodeInfoGcsServiceStub(channel).GetClusterId(
                gcs_service_pb2.GetClusterIdRequest(), timeout=PROBE_TIMEOUT_S)
    except AuthenticationError:  # token mode, and no token to send
        raise refused("RAY_AUTH_MODE is 'token' but no token was found here") from None
    except grpc.RpcError as exc:
        if exc.code() == grpc.StatusCode.UNAUTHENTICATED:
            raise refused("the cluster refused the token given here" if authentication_utils.is_token_auth_enabled() else
                          "RAY_AUTH_MODE is not 'token' here, so no token was sent") from None
        server = "a Ray Client server (ray://HOST:PORT, port 10001 by default)" if client else \
            "a Ray head's GCS (HOST:PORT, port 6379 by default; ray://HOST:PORT for the Ray Client)"
        raise ConnectError(f"Ray address {where} does not answer as {server}: {exc.code().name.lower()}") from None
    finally:
        channel.close()
