"""Reaching a Redis server: URL checks, credentials, TLS files, retries, and URLs shown without passwords."""

from __future__ import annotations

import os
import re
import ssl
from urllib.parse import parse_qs, parse_qsl, quote, urlencode, urlparse

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

PASSWORD_ENV = "QDISTILL_REDIS_PASSWORD"
PASSWORD_FILE_ENV = "QDISTILL_REDIS_PASSWORD_FILE"  # a file holding the password (first line)
# The TLS files of a rediss:// URL: query options redis-py's from_url hands to its SSL connection,
# and the flags that put them there. In the URL they reach every Ray actor that opens the buffer.
TLS_FILES = {"ssl_ca_certs": "--buffer-ca", "ssl_certfile": "--buffer-cert", "ssl_keyfile": "--buffer-key"}
_TLS_EXPECTED = {"ssl_ca_certs": "a PEM file of the CA certificate that signed the server's certificate",
                 "ssl_certfile": "a PEM client certificate (its key too, unless --buffer-key gives it)",
                 "ssl_keyfile": "the PEM private key of the client certificate"}
_HOSTNAME_MISMATCH = 62  # X509_V_ERR_HOSTNAME_MISMATCH


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
    check_tls(url)
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
        raise RedisBufferError(_tls_failure(url, where, exc) or f"cannot reach redis at {where}: {exc}") from None
    finally:
        probe.close()
    return redis.Redis.from_url(
        url, password=password, socket_connect_timeout=3, socket_timeout=10,
        retry=Retry(ExponentialBackoff(cap=2.0, base=0.05), 30),
        retry_on_error=[redis.ConnectionError, redis.TimeoutError],
    )


def with_tls(url: str, *, ca: str | os.PathLike[str] | None = None, cert: str | os.PathLike[str] | None = None,
             key: str | os.PathLike[str] | None = None) -> str:
    """`url` with the TLS files given (in place of any it names) in its query string, and every TLS
    file it names made an absolute path: the URL travels to Ray actors with other working directories.
    Refused for a buffer that is not rediss://; a URL without TLS files is returned as it is."""
    given = {name: path for name, path in zip(TLS_FILES, (ca, cert, key)) if path}
    parsed = urlparse(url)
    if given and parsed.scheme != "rediss":
        flags = " and ".join(TLS_FILES[name] for name in given)
        raise RedisBufferError(f"{flags} {'needs' if len(given) == 1 else 'need'} a rediss:// buffer (TLS), not "
                               f"{redact_url(url)!r}: give --buffer rediss://[user:password@]host:port/db")
    query = parse_qsl(parsed.query, keep_blank_values=True)
    named = {**{k: v for k, v in query if k in TLS_FILES}, **given}
    if not named:
        return url
    query = [(k, v) for k, v in query if k not in TLS_FILES]
    query += [(k, os.path.abspath(os.path.expanduser(named[k]))) for k in TLS_FILES if k in named]
    return parsed._replace(query=urlencode(query, quote_via=quote, safe="/")).geturl()


def check_tls(url: str) -> None:
    """TLS options only in a rediss:// URL, a client key only with its certificate, and every TLS
    file the URL names readable here: refused in one line naming the flag and the path."""
    parsed = urlparse(url)
    if parsed.scheme not in ("redis", "rediss"):
        return
    options = {k: v[0] for k, v in parse_qs(parsed.query).items()}  # the first value, as redis-py takes it
    tls = [k for k in options if k.startswith("ssl_")]
    if tls and parsed.scheme != "rediss":
        raise RedisBufferError(f"redis URL {redact_url(url)!r} has TLS options ({', '.join(tls)}) but is not "
                               "rediss://: expected rediss://host:port/db for TLS, or no ssl_ options")
    if "ssl_keyfile" in options and "ssl_certfile" not in options:
        raise RedisBufferError(f"--buffer-key {options['ssl_keyfile']!r} needs --buffer-cert: expected the client "
                               "certificate that goes with the key")
    for name, flag in TLS_FILES.items():
        if name in options:
            try:
                with open(options[name], "rb"):
                    pass
            except OSError as exc:
                raise RedisBufferError(f"{flag} {options[name]!r} cannot be read ({exc.strerror}): expected "
                                       f"{_TLS_EXPECTED[name]}") from None


def _tls_failure(url: str, where: str, exc: Exception) -> str | None:
    """The one line for a first contact that failed over TLS, or over plain TCP to a TLS port; None
    for any other failure. redis-py wraps the socket's error: it is in the exception's context."""
    cause = exc.__cause__ or exc.__context__
    while cause is not None and not isinstance(cause, OSError):
        cause = cause.__cause__ or cause.__context__
    if urlparse(url).scheme == "redis":
        if isinstance(cause, ConnectionResetError):  # a TLS port drops a client that speaks plain RESP
            return (f"redis at {where} reset the connection at once, as a port that serves only TLS does: "
                    "for TLS, give a rediss:// URL (and the server's CA with --buffer-ca)")
        return None
    cert = parse_qs(urlparse(url).query).get("ssl_certfile", [None])[0]
    if isinstance(cause, ssl.SSLCertVerificationError):
        if cause.verify_code == _HOSTNAME_MISMATCH:
            return (f"redis at {where} has a TLS certificate for other names ({cause.verify_message.rstrip('.')}): "
                    "connect by a host name or address the certificate holds")
        return (f"redis at {where} has a TLS certificate this client cannot verify ({cause.verify_message}): "
                "give the CA that signed the server's certificate with --buffer-ca")
    if isinstance(cause, (ssl.SSLEOFError, ConnectionResetError)) or \
            (isinstance(cause, ssl.SSLError) and "ALERT" in (cause.reason or "")):
        # the server ended the handshake: with tls-auth-clients yes, for a missing or unknown client certificate
        if cert is None:
            return (f"redis at {where} closed the TLS connection, as a server that requires a client certificate "
                    "does when it gets none: give one with --buffer-cert and --buffer-key")
        return (f"redis at {where} closed the TLS connection: it did not accept the client certificate "
                f"--buffer-cert {cert!r}: expected one signed by a CA the server trusts (its tls-ca-cert-file)")
    if isinstance(cause, ssl.SSLError):  # the files themselves: not PEM, or a key for another certificate
        reason = re.sub(r"\s*\(_ssl\.c:\d+\)$", "", cause.strerror or str(cause))
        return (f"TLS with redis at {where} failed ({reason}): check the PEM files given with --buffer-ca, "
                "--buffer-cert and --buffer-key")
    if isinstance(cause, TimeoutError) and "handshake" in str(cause):
        return (f"redis at {where} did not answer the TLS handshake (a port without TLS waits for plain "
                "commands): without TLS, give a redis:// URL")
    return None


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
    """The URL with its password, if any (in its user part or as `?password=`), shown as ***."""
    password = urlparse(url).password
    url = url.replace(f":{password}@", ":***@") if password else url
    return re.sub(r"([?&]password=)[^&#]*", r"\1***", url)
