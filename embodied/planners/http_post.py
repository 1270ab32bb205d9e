"""JSON POSTs for the remote planners, with the limits a shared evaluation needs.

Written on ``http.client`` (stdlib) rather than ``urllib.request`` because urllib cannot do
what is needed here: its timeout is per socket read (a server sending one byte every 0.5 s
keeps a 1 s-timeout call busy for as long as it likes), it reads replies with no size limit,
it follows redirects itself and forwards the ``Authorization`` header to whatever host a
redirect names, and a header value with a newline makes it raise an error quoting the key.

- ``post_json``: one request under a ``Deadline`` (the whole request: connect, send, status,
  headers, body). Each socket operation gets the time left as its timeout, and a timer shuts
  the socket down at the deadline, so a slow drip cannot stretch it. The reply is read with
  a byte limit (a bigger one is cut off). Redirects (301/302/303/307/308) are followed up
  to ``MAX_REDIRECTS`` times re-posting the same body; the ``Authorization`` header goes only
  to the origin (scheme, host, port) of the first URL.
- ``RequestFailed``: why a request failed, as one of the harness's failure columns (timeout,
  http_error, connection, parse_error) plus whether a retry may help.
- ``check_key`` / ``check_endpoint``: a key with a control character (a trailing newline)
  and an ``http://`` endpoint on a non-loopback host with a key are refused up front.
- ``Scrubber``: replaces every occurrence of the secrets (also JSON- and URL-escaped) in
  strings and in a whole ``Plan``.
"""

from __future__ import annotations

import dataclasses
import http.client
import ipaddress
import json
import socket
import threading
import time
import urllib.parse
from collections.abc import Iterable

from embodied.types import Plan, PlanError, PlanStep
from vlx.config import ConfigError

MAX_REDIRECTS = 5
REDIRECTS = {301, 302, 303, 307, 308}
RETRY_STATUS = {408, 409, 429, 500, 502, 503, 504}
DEFAULT_MAX_REPLY_BYTES = 16 * 2**20
_CHUNK = 64 * 1024


class RequestFailed(Exception):
    """A failed request: ``kind`` is timeout | http_error | connection | parse_error;
    ``retryable`` whether another attempt may succeed; ``retry_after`` a server's hint (s)."""

    def __init__(self, kind: str, message: str, retryable: bool = False, retry_after: float | None = None):
        super().__init__(message)
        self.kind, self.retryable, self.retry_after = kind, retryable, retry_after


class Deadline:
    """A point in time (``time.monotonic``); ``None`` seconds -> never."""

    def __init__(self, seconds: float | None):
        self.end = None if seconds is None else time.monotonic() + seconds

    def remaining(self) -> float:
        return float("inf") if self.end is None else self.end - time.monotonic()

    def earlier(self, seconds: float) -> Deadline:
        d = Deadline(seconds)
        if self.end is not None and self.end < d.end:
            d.end = self.end
        return d


# ----------------------------------------------------------------------------- secrets


def check_key(key: str, env_name: str) -> None:
    """Refuse a key that cannot be a header value; the message never contains the key."""
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in key):
        raise ConfigError(
            f"planner: environment variable {env_name!r} holds a key with a control character "
            "(e.g. a trailing newline); remove it (the key is not shown)"
        )
    if not key.isascii():
        raise ConfigError(f"planner: environment variable {env_name!r} holds a key with non-ASCII characters")


def is_loopback(host: str) -> bool:
    if host.lower() in ("localhost", "localhost.localdomain") or host.lower().endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_endpoint(url: str, has_key: bool, allow_insecure_http: bool, who: str) -> None:
    """An http(s) URL with a host; ``http://`` to a non-loopback host with a key needs
    ``allow_insecure_http`` (anyone on the path, proxies included, would read the key)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{who}: key 'base_url': expected an http(s) URL with a host, got {url!r}")
    if parts.scheme == "http" and has_key and not is_loopback(parts.hostname) and not allow_insecure_http:
        raise ConfigError(
            f"{who}: key 'base_url': {url!r} is plain http to a non-loopback host and would send the API key "
            "unencrypted; use https, or set allow_insecure_http=true if the network is trusted"
        )


class Scrubber:
    """Replaces each secret (and its JSON- and URL-escaped forms) with ``***``."""

    def __init__(self, secrets: Iterable[str] = ()):
        forms: set[str] = set()
        for s in secrets:
            if s:
                forms |= {s, json.dumps(s)[1:-1], urllib.parse.quote(s, safe=""), urllib.parse.quote_plus(s)}
        self.forms = sorted(forms, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for f in self.forms:
            text = text.replace(f, "***")
        return text

    def plan(self, plan: Plan) -> Plan:
        """A copy of ``plan`` with every string scrubbed (texts, steps, error details)."""
        if not self.forms:
            return plan
        steps = [
            PlanStep(skill=self(s.skill), args=tuple((self(k), self(v)) for k, v in s.args), raw=self(s.raw))
            for s in plan.steps
        ]
        errors = [PlanError(e.kind, e.step_index, self(e.detail)) for e in plan.errors]
        return dataclasses.replace(
            plan, steps=steps, errors=errors, raw_text=self(plan.raw_text), reasoning=self(plan.reasoning)
        )


# ----------------------------------------------------------------------------- requests


def _origin(url: str) -> tuple[str, str, int]:
    p = urllib.parse.urlsplit(url)
    return p.scheme, (p.hostname or "").lower(), p.port or (443 if p.scheme == "https" else 80)


class Connections:
    """The sockets of the requests in flight, so that ``cancel_all`` can cut them (a timed-out
    call abandoned by the harness stops at once instead of running on in its thread)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._socks: set[socket.socket] = set()
        self.cancelled = threading.Event()

    def add(self, sock: socket.socket) -> None:
        with self._lock:
            self._socks.add(sock)
        if self.cancelled.is_set():
            _shutdown(sock)

    def discard(self, sock: socket.socket | None) -> None:
        with self._lock:
            self._socks.discard(sock)

    def cancel_all(self) -> None:
        self.cancelled.set()
        with self._lock:
            socks = list(self._socks)
        for s in socks:
            _shutdown(s)


def _shutdown(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)  # wakes a thread blocked in recv (close() alone may not)
    except OSError:
        pass


def _read_limited(resp: http.client.HTTPResponse, sock: socket.socket, deadline: Deadline, max_bytes: int) -> bytes:
    length = resp.getheader("Content-Length")
    if length and length.isdigit() and int(length) > max_bytes:
        raise RequestFailed("parse_error", f"reply of {int(length)} bytes is over the limit of {max_bytes}; not read")
    chunks, n = [], 0
    while True:
        left = deadline.remaining()
        if left <= 0:
            raise TimeoutError
        sock.settimeout(left)
        chunk = resp.read1(_CHUNK)  # at most one recv: a drip cannot hold one read open
        if not chunk:
            if deadline.remaining() <= 0:
                raise TimeoutError  # the deadline timer shut the socket: an end, not a whole reply
            if length and length.isdigit() and n < int(length):
                raise RequestFailed("connection", f"reply cut short: {n} of {int(length)} bytes", retryable=True)
            return b"".join(chunks)
        n += len(chunk)
        if n > max_bytes:
            raise RequestFailed("parse_error", f"reply over the limit of {max_bytes} bytes; cut off")
        chunks.append(chunk)


def _one_request(
    url: str, data: bytes, headers: dict[str, str], deadline: Deadline, max_bytes: int, conns: Connections
) -> tuple[int, str, str | None, bytes]:
    """(status, reason, Location header, body) of one POST, all of it before ``deadline``."""
    left = deadline.remaining()
    if left <= 0:
        raise TimeoutError
    parts = urllib.parse.urlsplit(url)
    cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    conn = cls(parts.hostname, parts.port, timeout=min(left, 3600.0))
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    sock = None
    timer = None
    try:
        conn.connect()
        sock = conn.sock
        conns.add(sock)
        if deadline.end is not None:
            timer = threading.Timer(max(deadline.remaining(), 0.0), _shutdown, (sock,))
            timer.daemon = True
            timer.start()
        conn.request("POST", path, body=data, headers=headers)
        sock.settimeout(max(deadline.remaining(), 1e-3))
        resp = conn.getresponse()
        if resp.status in REDIRECTS:
            return resp.status, resp.reason, resp.getheader("Location"), b""
        body = _read_limited(resp, sock, deadline, max_bytes)
        retry_after = resp.getheader("Retry-After")
        return resp.status, resp.reason, retry_after, body
    finally:
        if timer is not None:
            timer.cancel()
        conns.discard(sock)
        conn.close()


def post_json(
    url: str,
    body: dict,
    deadline: Deadline,
    auth: str | None = None,
    max_bytes: int = DEFAULT_MAX_REPLY_BYTES,
    conns: Connections | None = None,
) -> bytes:
    """The body of a 2xx reply to POSTing ``body`` as JSON to ``url`` (see the module
    docstring); raises ``RequestFailed``. Messages hold no header values."""
    conns = conns or Connections()
    data = json.dumps(body).encode()
    origin = _origin(url)
    for _hop in range(MAX_REDIRECTS + 1):
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if auth is not None and _origin(url) == origin:
            headers["Authorization"] = auth  # never to another origin a redirect names
        try:
            status, reason, extra, reply = _one_request(url, data, headers, deadline, max_bytes, conns)
        except RequestFailed:
            raise
        except TimeoutError:
            raise RequestFailed("timeout", "deadline passed") from None
        except (OSError, http.client.HTTPException) as e:
            if deadline.remaining() <= 0 or conns.cancelled.is_set():
                raise RequestFailed("timeout", "deadline passed") from None
            raise RequestFailed("connection", f"connection failed: {type(e).__name__}: {e}", retryable=True) from None
        if status in REDIRECTS:
            if not extra:
                raise RequestFailed("http_error", f"HTTP {status} {reason} without a Location header")
            url = urllib.parse.urljoin(url, extra)
            if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
                raise RequestFailed("http_error", f"HTTP {status} redirect to a non-http URL")
            continue
        if 200 <= status < 300:
            return reply
        hint = float(extra) if extra and extra.replace(".", "", 1).isdigit() else None
        raise RequestFailed("http_error", f"HTTP {status} {reason}", retryable=status in RETRY_STATUS, retry_after=hint)
    raise RequestFailed("http_error", f"more than {MAX_REDIRECTS} redirects")


__all__ = [
    "DEFAULT_MAX_REPLY_BYTES",
    "Connections",
    "Deadline",
    "RequestFailed",
    "Scrubber",
    "check_endpoint",
    "check_key",
    "is_loopback",
    "post_json",
]
