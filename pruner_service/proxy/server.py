"""Runs the proxy under uvicorn on a socket bound here, so ``--port 0`` works and the address
is printed (``listening on HOST:PORT``) before serving; SIGINT/SIGTERM stop it gracefully."""

from __future__ import annotations

import asyncio
import socket

import structlog
import uvicorn

from pruner_service.proxy.app import build_app
from pruner_service.proxy.settings import ProxySettings

log = structlog.get_logger(__name__)


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0: any free port). Raises ``OSError``."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted connections inherit it (Linux): without it a reply written as headers then body
    # waits for the client's delayed ACK (Nagle's algorithm), about 40 ms per request.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port))
    sock.listen(1024)
    sock.set_inheritable(True)
    return sock


def serve(settings: ProxySettings) -> int:
    """Serves until stopped; returns the exit status."""
    sock = bind(settings.host, settings.port)
    host, port = sock.getsockname()[:2]
    config = uvicorn.Config(
        build_app(settings),
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=30,
        lifespan="on",
    )
    print(f"listening on {host}:{port}", flush=True)
    log.info("proxy started", address=f"{host}:{port}", upstream=settings.upstream,
             pruner=settings.pruner, prune_every_tokens=settings.prune_every_tokens)  # fmt: skip
    asyncio.run(uvicorn.Server(config).serve(sockets=[sock]))
    return 0
