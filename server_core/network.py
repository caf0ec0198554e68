"""Host and IP helpers for registering a server with the platform.

Nothing here runs at start-up: ``osmosis serve`` uses ``--public-host`` (or
``OSMOSIS_PUBLIC_HOST``) and never looks up its address unless asked. ``detect_public_ip`` is
kept for 0.2 code that calls it; it makes blocking outbound calls.
"""

from __future__ import annotations

import concurrent.futures
import functools
import ipaddress
import re
import urllib.request
from collections.abc import Callable, Sequence

from server_core.errors import PublicIPDetectionError

_LABEL = re.compile(r"^[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?$")
_PORT_SUFFIX = re.compile(r":\d+$")

#: Per-request and overall limits of the two detection rounds (seconds).
_METADATA_TIMEOUT_S, _METADATA_TOTAL_S = 2.0, 6.0
_ECHO_TIMEOUT_S, _ECHO_TOTAL_S = 5.0, 10.0
_ECHO_SERVICES = (
    "https://checkip.amazonaws.com",
    "https://api.ipify.org",
    "https://icanhazip.com",
    "https://ifconfig.me/ip",
)


def validate_ipv4(ip: str) -> bool:
    """Whether ``ip`` is an IPv4 address (no spaces, each octet 0-255)."""
    try:
        ipaddress.IPv4Address(ip)
    except (ValueError, TypeError):
        return False
    return True


def is_valid_hostname_or_ip(value: str) -> bool:
    """Whether ``value`` looks like a host name or IPv4 address, with an optional ``:port``.

    A format check only (no DNS).
    """
    if not value or len(value) > 260:
        return False
    host = _PORT_SUFFIX.sub("", value)
    if validate_ipv4(host):
        return True
    if not host or len(host) > 253:
        return False
    return all(_LABEL.match(label) for label in host.split("."))


def is_private_ip(ip: str) -> bool:
    """Whether ``ip`` (IPv4 or IPv6) is in a private, loopback or link-local range."""
    try:
        return ipaddress.ip_address(ip).is_private
    except ValueError:
        return False


def _fetch(
    url: str, timeout: float, headers: dict[str, str] | None = None, method: str = "GET"
) -> str:
    request = urllib.request.Request(url, headers=headers or {}, method=method)
    with urllib.request.urlopen(request, timeout=timeout) as response:
        raw: bytes = response.read(256)
        return raw.decode("ascii", "replace").strip()


def _aws() -> str:
    token = _fetch(
        "http://169.254.169.254/latest/api/token",
        _METADATA_TIMEOUT_S,
        {"X-aws-ec2-metadata-token-ttl-seconds": "60"},
        method="PUT",
    )
    return _fetch(
        "http://169.254.169.254/latest/meta-data/public-ipv4",
        _METADATA_TIMEOUT_S,
        {"X-aws-ec2-metadata-token": token},
    )


def _gcp() -> str:
    return _fetch(
        "http://169.254.169.254/computeMetadata/v1/instance/network-interfaces/0/"
        "access-configs/0/external-ip",
        _METADATA_TIMEOUT_S,
        {"Metadata-Flavor": "Google"},
    )


def _azure() -> str:
    return _fetch(
        "http://169.254.169.254/metadata/instance/network/interface/0/ipv4/ipAddress/0/"
        "publicIpAddress?api-version=2021-02-01&format=text",
        _METADATA_TIMEOUT_S,
        {"Metadata": "true"},
    )


def _first_ipv4(calls: Sequence[Callable[[], str]], total_s: float) -> str | None:
    """The first valid IPv4 any of ``calls`` returns within ``total_s`` seconds."""
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=len(calls))
    try:
        futures = [pool.submit(call) for call in calls]
        for future in concurrent.futures.as_completed(futures, timeout=total_s):
            try:
                candidate: str = future.result()
            except Exception:  # one source failing is expected; try the others
                continue
            if validate_ipv4(candidate):
                return candidate
    except concurrent.futures.TimeoutError:
        return None
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    return None


def detect_public_ip() -> str:
    """This machine's public IPv4: cloud metadata first, then public echo services.

    Blocking, and it calls out to the network; raises ``PublicIPDetectionError``.
    """
    found = _first_ipv4([_aws, _gcp, _azure], _METADATA_TOTAL_S)
    if found is None:
        echoes = [functools.partial(_fetch, url, _ECHO_TIMEOUT_S) for url in _ECHO_SERVICES]
        found = _first_ipv4(echoes, _ECHO_TOTAL_S)
    if found is None:
        raise PublicIPDetectionError(
            "Failed to detect public IP address. Give the host the platform should reach "
            "explicitly (osmosis serve --public-host HOST, or OSMOSIS_PUBLIC_HOST)."
        )
    return found
