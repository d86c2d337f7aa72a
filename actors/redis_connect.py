"""Reaching a Redis server: URL checks, credentials, retries, and URLs shown without passwords."""

from __future__ import annotations

import os
from urllib.parse import urlparse

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

PASSWORD_ENV = "QDISTILL_REDIS_PASSWORD"
PASSWORD_FILE_ENV = "QDISTILL_REDIS_PASSWORD_FILE"  # a file holding the password (first line)


class RedisBufferError(ValueError):
    """A Redis buffer that cannot be reached or used as asked."""


def host_port(url: str) -> str:
    parsed = urlparse(url)
    return f"{parsed.hostname}:{parsed.port or 6379}"


def connect(url: str) -> redis.Redis:
    """A client for `url` (password from the URL, $QDISTILL_REDIS_PASSWORD or the file named by
    $QDISTILL_REDIS_PASSWORD_FILE), checked with a ping.

    Operations retry with exponential backoff (about 30 s in all), so a restarting server is
    ridden out; the first contact does not, so a wrong address fails at once.
    """
    parsed = urlparse(url)
    if parsed.scheme not in ("redis", "rediss") or not parsed.hostname:
        raise RedisBufferError(f"redis URL {redact_url(url)!r} is not valid: expected "
                               "redis://[user:password@]host:port/db (or rediss:// for TLS)")
    password = None if parsed.password else _password()
    try:
        parsed.port  # noqa: B018 - raises on a bad port
        probe = redis.Redis.from_url(url, password=password, socket_connect_timeout=3, socket_timeout=5)
    except ValueError as exc:
        raise RedisBufferError(f"redis URL {redact_url(url)!r} is not valid: {exc}") from None
    where = host_port(url)
    try:
        probe.ping()
    except redis.AuthenticationError as exc:
        raise RedisBufferError(f"redis at {where} refused the credentials ({exc}): check the password in "
                               f"the URL or in ${PASSWORD_ENV}") from None
    except redis.ResponseError as exc:
        raise RedisBufferError(f"redis at {where} refused the connection: {exc}") from None
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise RedisBufferError(f"cannot reach redis at {where}: {exc}") from None
    finally:
        probe.close()
    return redis.Redis.from_url(
        url, password=password, socket_connect_timeout=3, socket_timeout=10,
        retry=Retry(ExponentialBackoff(cap=2.0, base=0.05), 30),
        retry_on_error=[redis.ConnectionError, redis.TimeoutError],
    )


def _password() -> str | None:
    """$QDISTILL_REDIS_PASSWORD, else the first line of the file named by $QDISTILL_REDIS_PASSWORD_FILE."""
    if os.environ.get(PASSWORD_ENV):
        return os.environ[PASSWORD_ENV]
    path = os.environ.get(PASSWORD_FILE_ENV)
    if not path:
        return None
    try:
        with open(path, encoding="utf-8") as f:
            return f.readline().rstrip("\r\n")
    except OSError as exc:
        raise RedisBufferError(f"${PASSWORD_FILE_ENV} {path!r} cannot be read: {exc.strerror}") from None


def redact_url(url: str) -> str:
    """The URL with its password, if any, shown as ***."""
    password = urlparse(url).password
    return url.replace(f":{password}@", ":***@") if password else url
