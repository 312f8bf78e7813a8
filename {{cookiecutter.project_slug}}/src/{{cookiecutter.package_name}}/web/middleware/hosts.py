"""Only requests addressed to this service's own host names are served (ALLOWED_HOSTS).

Unlike Starlette's TrustedHostMiddleware, it answers JSON and exempts probes (Kubernetes probes the IP).
"""

from __future__ import annotations

from starlette.responses import Response
from starlette.types import Scope

from ..responses import error_response

REMEMBERED_HOSTS = 64


def host_name(header: bytes) -> str | None:
    """The host of a Host header, lowercased and without its port; None if it is not one."""
    try:
        value = header.decode("ascii").strip().lower()
    except UnicodeDecodeError:
        return None
    if value.startswith("["):  # an IPv6 address: [::1]:8000
        end = value.find("]") + 1
        host, rest = value[:end], value[end:]
        port = rest[1:] if rest.startswith(":") else rest
    else:
        host, _, port = value.partition(":")
    if not host or (port and not port.isdigit()):
        return None
    return host


def is_allowed(host: str, allowed: tuple[str, ...]) -> bool:
    return any(
        host == pattern or (pattern.startswith("*.") and host.endswith(pattern[1:])) for pattern in allowed
    )


class AllowedHosts:
    def __init__(self, allowed_hosts: tuple[str, ...], exempt_paths: frozenset[str]) -> None:
        self.allowed_hosts = allowed_hosts
        self.allow_any = "*" in allowed_hosts
        self.exempt_paths = exempt_paths
        # Nearly every request repeats a known Host header: most checks are a lookup.
        self.known_good: set[bytes] = set()

    def allows(self, header: bytes) -> bool:
        if header in self.known_good:
            return True
        host = host_name(header)
        if host is None or not is_allowed(host, self.allowed_hosts):
            return False
        if len(self.known_good) < REMEMBERED_HOSTS:  # bounded: ports make endless variants of one host
            self.known_good.add(header)
        return True

    def refusal(self, scope: Scope) -> Response | None:
        """The 400 unless the request has one Host header, naming an allowed host; else None."""
        if self.allow_any or scope["path"] in self.exempt_paths:
            return None
        headers = [value for name, value in scope["headers"] if name == b"host"]
        if len(headers) == 1 and self.allows(headers[0]):
            return None
        return error_response(400, "The Host header names no host this service answers to (ALLOWED_HOSTS).")
