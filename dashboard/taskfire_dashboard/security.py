"""The dashboard's defences that are not about jobs: who may see it (Basic, bearer, the
application's own check, else loopback only), login throttling, the security headers
of every response, and where an action may send the browser back to.
"""

from __future__ import annotations

import hmac
import ipaddress
import math
import threading
import time
from collections import OrderedDict
from typing import Any, Callable
from urllib.parse import urlsplit

from flask import Response, request

#: No script or style but the dashboard's own files; nobody may frame it (a framed page
#: could be clicked through: "clickjacking"); forms post only to the dashboard.
CONTENT_SECURITY_POLICY = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                           "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
                           "frame-ancestors 'none'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


def secure(response: Response) -> Response:
    """Adds the security headers to a response (kept if a view set its own)."""
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


def local_target(url: str | None, root: str) -> str | None:
    """`url` as a path under the dashboard's `root` (with its query), if it is one: a
    relative URL, or one on this very host. Anything else (another site, `//host`, a
    scheme such as javascript:) is None, so an action never redirects off the dashboard."""
    if not url or "\\" in url or any(ord(ch) < 32 for ch in url):
        return None
    parts = urlsplit(url)
    if parts.scheme or parts.netloc:
        if parts.scheme not in ("http", "https") or parts.netloc != request.host:
            return None
    path = parts.path or "/"
    if path.startswith("//") or not (path == root.rstrip("/") or path.startswith(root.rstrip("/") + "/")):
        return None
    return path + (f"?{parts.query}" if parts.query else "")


class LoginThrottle:
    """Refuses a client address for a while after repeated failed logins: after
    `max_failures` wrong credentials within `window_s`, every request from it gets 429
    (Retry-After) until `lockout_s` have passed, right credentials or not, which turns
    guessing a password from minutes into years. Remembers at most `max_clients`
    addresses, the least recently seen forgotten first, so a flood of addresses costs
    bounded memory. Per process: each gunicorn worker keeps its own."""

    def __init__(self, max_failures: int = 10, window_s: float = 60.0, lockout_s: float = 300.0,
                 max_clients: int = 10_000, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_failures, self.window_s, self.lockout_s = max_failures, window_s, lockout_s
        self.max_clients = max_clients
        self.clock = clock
        self._clients: OrderedDict[str, list[float]] = OrderedDict()  # address -> [first failure, count, until]
        self._lock = threading.Lock()

    def retry_after(self, address: str) -> int:
        """Seconds this address must wait before it may try again (0: it may now)."""
        with self._lock:
            entry = self._clients.get(address)
            if entry is None:
                return 0
            wait = entry[2] - self.clock()
            if wait <= 0 and entry[2]:
                del self._clients[address]  # served its time: starts afresh
                return 0
            return max(0, math.ceil(wait))

    def failed(self, address: str) -> None:
        now = self.clock()
        with self._lock:
            entry = self._clients.pop(address, None)
            if entry is None or now - entry[0] > self.window_s:
                entry = [now, 0, 0.0]
            entry[1] += 1
            if entry[1] >= self.max_failures:
                entry[2] = now + self.lockout_s
            self._clients[address] = entry  # most recently seen last
            while len(self._clients) > self.max_clients:
                self._clients.popitem(last=False)

    def succeeded(self, address: str) -> None:
        with self._lock:
            self._clients.pop(address, None)

    def __len__(self) -> int:
        return len(self._clients)


def throttled(retry_after: int) -> Response:
    return secure(Response(f"Too many failed logins from your address: try again in {retry_after} s.", 429,
                           {"Retry-After": str(retry_after)}, mimetype="text/plain"))


def authorization(authorize: Callable[[Any], bool] | None, basic_auth: tuple[str, str] | None,
                  bearer_token: str | None) -> Callable[[], bool | None]:
    """Whether this request may see the dashboard: True; False for credentials that
    were given and are wrong (a failed login, which the throttle counts); None for none
    given, or not allowed otherwise. By the application's own check, Basic credentials
    or a bearer token; with none of them configured, loopback requests only."""
    configured = authorize is not None or basic_auth is not None or bearer_token is not None

    def allowed() -> bool | None:
        if authorize is not None and authorize(request):
            return True
        tried = False
        if basic_auth is not None and request.authorization is not None and request.authorization.type == "basic":
            tried = True
            user, password = basic_auth
            # Compared as UTF-8 bytes: compare_digest refuses non-ASCII str.
            given_user = (request.authorization.username or "").encode()
            given_password = (request.authorization.password or "").encode()
            if (hmac.compare_digest(given_user, user.encode())
                    and hmac.compare_digest(given_password, password.encode())):
                return True
        if bearer_token is not None:
            header = request.headers.get("Authorization", "")
            if header.startswith("Bearer "):
                tried = True
                if hmac.compare_digest(header[7:].encode(), bearer_token.encode()):
                    return True
        if not configured:
            try:
                return ipaddress.ip_address(request.remote_addr or "").is_loopback or None
            except ValueError:
                return None
        return False if tried else None

    return allowed
