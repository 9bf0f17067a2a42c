"""The consumers' /health and /metrics listen on loopback unless told otherwise
(EDFI_IM_HEALTH_HOST, default 127.0.0.1): a host's other interfaces do not expose them."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.stack import Stack

pytestmark = pytest.mark.e2e

LISTEN = "0A"  # TCP_LISTEN in /proc/net/tcp


def _listening_addresses(port: int) -> set[str]:
    """The IPv4 and IPv6 addresses a socket listens on at this port, read from the kernel."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            address, hex_port = fields[1].rsplit(":", 1)
            if int(hex_port, 16) == port and fields[3] == LISTEN:
                found.add(address)
    return found


def test_the_consumers_health_ports_listen_on_loopback_only(stack: Stack) -> None:
    assert set(stack.health_ports) >= {"status", "provisioner", "scheduler"}
    for name, port in stack.health_ports.items():
        addresses = _listening_addresses(port)
        # 127.0.0.1 in /proc/net/tcp's little-endian hex; nothing on 0.0.0.0 or ::
        assert addresses == {"0100007F"}, (name, port, addresses)
