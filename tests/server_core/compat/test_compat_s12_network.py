"""SDK-0.2-API.md §12: network utilities (format checks only; nothing here goes on the network)."""

from __future__ import annotations

import inspect

import pytest

from server_core import (
    PublicIPDetectionError,
    detect_public_ip,
    is_private_ip,
    is_valid_hostname_or_ip,
    validate_ipv4,
)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1.2.3.4", True),
        ("255.255.255.255", True),
        ("0.0.0.0", True),
        ("256.1.1.1", False),
        ("1.2.3", False),
        ("::1", False),
        ("2001:db8::1", False),
        (" 1.2.3.4", False),
        ("1.2.3.4 ", False),
        ("example.com", False),
        ("", False),
    ],
)
def test_validate_ipv4(value, expected):
    assert validate_ipv4(value) is expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("example.com", True),
        ("localhost", True),
        ("my-host.internal", True),
        ("under_score.example", True),
        ("10.0.0.1", True),
        ("10.0.0.1:8080", True),
        ("example.com:99999", True),  # the port range is not checked
        ("a" * 63 + ".com", True),
        ("a" * 64 + ".com", False),
        ("-leading.example", False),
        ("trailing-.example", False),
        ("has space.example", False),
        ("[::1]", False),
        ("[::1]:80", False),
        ("", False),
        ("a" * 261, False),
        (".".join(["a" * 63] * 4) + "x", False),  # over 253 chars
    ],
)
def test_is_valid_hostname_or_ip(value, expected):
    assert is_valid_hostname_or_ip(value) is expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("127.0.0.1", True),
        ("10.1.2.3", True),
        ("192.168.0.1", True),
        ("172.16.0.1", True),
        ("fd00::1", True),
        ("::1", True),
        ("8.8.8.8", False),
        ("2001:4860:4860::8888", False),
        ("not an ip", False),
        ("", False),
    ],
)
def test_is_private_ip(value, expected):
    assert is_private_ip(value) is expected


def test_public_ip_detection_error_is_a_plain_exception():
    assert issubclass(PublicIPDetectionError, Exception)
    from server_core import OsmosisRolloutError

    assert not issubclass(PublicIPDetectionError, OsmosisRolloutError)


def test_detect_public_ip_takes_no_arguments():
    assert callable(detect_public_ip)
    assert list(inspect.signature(detect_public_ip).parameters) == []
