"""Load is only ever sent to this machine: every target address must be loopback."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

LOOPBACK_NAMES = {"localhost"}


class TargetNotAllowed(ValueError):
    """The target is not a loopback address; the load test refuses to send traffic there."""


def loopback_host(url: str, field: str) -> tuple[str, int | None]:
    """(host, port) of `url` ("127.0.0.1:8001" or "http://127.0.0.1:8000"), refusing non-loopback hosts."""
    if not url or not url.strip():
        raise TargetNotAllowed(f"{field} is empty; give a 127.0.0.1 address")
    parts = urlsplit(url if "://" in url else f"//{url}")
    if parts.scheme not in {"", "http"}:
        raise TargetNotAllowed(f"{field}={url!r}: only plain http:// (or host:port for gRPC) is supported")
    host = parts.hostname or ""
    try:
        port = parts.port
    except ValueError:
        raise TargetNotAllowed(f"{field}={url!r}: the port is not a number in [0, 65535]") from None
    if host.lower() in LOOPBACK_NAMES:
        return host, port
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise TargetNotAllowed(f"{field}={url!r}: {host!r} is not a loopback address; "
                               "the load test only targets 127.0.0.1 (or localhost, ::1)") from None
    if not address.is_loopback:
        raise TargetNotAllowed(f"{field}={url!r}: {host} is not a loopback address; "
                               "the load test only targets 127.0.0.1 (or localhost, ::1)")
    return host, port
