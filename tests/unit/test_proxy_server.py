"""The proxy's listening socket: connections it accepts send small writes at once (TCP_NODELAY),
so a reply written as headers then body does not wait for the client's delayed ACK."""

from __future__ import annotations

import socket

from pruner_service.proxy.server import bind


def test_accepted_connections_have_nagle_off() -> None:
    listener = bind("127.0.0.1", 0)
    try:
        with socket.create_connection(listener.getsockname()[:2]):
            accepted, _ = listener.accept()
            with accepted:
                assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    finally:
        listener.close()
