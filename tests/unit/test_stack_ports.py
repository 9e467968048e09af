"""Ports for test and benchmark stacks: never from the range the kernel gives outgoing connections."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from plenary_stack import processes
from plenary_stack.processes import free_port, listening_ports


def ephemeral_range() -> tuple[int, int]:
    low, high = (int(part) for part in processes.EPHEMERAL_PORTS.read_text().split())
    return low, high


def test_ports_are_chosen_outside_the_ephemeral_range_and_never_twice() -> None:
    low, high = ephemeral_range()
    ports = [free_port() for _ in range(50)]
    assert len(set(ports)) == len(ports)
    assert not [port for port in ports if low <= port <= high]


def test_a_port_held_by_an_outgoing_connection_is_never_chosen() -> None:
    """Open many client connections; none of their local ports can be handed to a server."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", free_port()))
        server.listen(64)
        clients = [socket.create_connection(server.getsockname()) for _ in range(40)]
        try:
            taken = {client.getsockname()[1] for client in clients}
            chosen = {free_port() for _ in range(200)}
            assert not taken & chosen
        finally:
            for client in clients:
                client.close()


def test_the_range_sits_below_the_ephemeral_range_when_there_is_room(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    setting = tmp_path / "ip_local_port_range"
    monkeypatch.setattr(processes, "EPHEMERAL_PORTS", setting)
    setting.write_text("32768\t60999\n")
    assert listening_ports() == range(10000, 32768)
    setting.write_text("10500 60999\n")
    assert listening_ports() == range(61000, 65536)
