"""Building and running the gRPC server: servicer, health, reflection, interceptors, shutdown.

``build_server`` wires a service into a server bound to a port (0 picks a free one) and returns
it unstarted, so tests run the real server in-process. ``serve`` is the process entry point:
it starts the server, loads the model in the background, and shuts down in a fixed order on
SIGTERM or SIGINT: health NOT_SERVING → stop admitting → drain → stop the server → release.
"""

from __future__ import annotations

import signal
import sys
import threading
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path

import grpc
import structlog
from freelm.pruner.v1 import pruner_pb2 as pb
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from pruner_service.auth import AuthInterceptor, TokenFile
from pruner_service.config import Settings
from pruner_service.interceptors import interceptors as own_interceptors
from pruner_service.metrics import Metrics
from pruner_service.service import PrunerService
from pruner_service.servicer import PrunerServicer
from pruner_service.wire import add_pruner_servicer

log = structlog.get_logger(__name__)

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Pruner"].full_name


@dataclass
class Running:
    """A built server and the parts tests and ``serve`` need to reach."""

    server: grpc.Server
    port: int
    service: PrunerService
    health: health.HealthServicer
    tokens: TokenFile | None = None

    def stop(self, grace: float | None = None) -> None:
        """The shutdown sequence: not serving → stop admitting → drain → stop server → release."""
        self.health.enter_graceful_shutdown()
        self.service.shutdown(grace)
        self.server.stop(grace=1.0).wait()


def build_server(
    settings: Settings, service: PrunerService, metrics: Metrics | None = None
) -> Running:
    """A server for ``service`` bound to ``settings.host:port``, not started; health NOT_SERVING.

    With ``auth_token_file`` every call but health and reflection needs a bearer token
    (``auth.AuthInterceptor``, checked before the error mapping). Raises ``ValueError`` for
    settings that contradict each other or a token file that cannot be used (``TokenFileError``)
    and ``OSError`` when the port or a TLS file cannot be used."""
    if settings.reflection not in ("on", "off"):
        raise ValueError(f"--reflection must be on or off, got {settings.reflection!r}")
    if settings.max_calls_per_caller and not settings.auth_token_file:
        raise ValueError("--max-calls-per-caller needs --auth-token-file (callers are tokens)")
    tokens = TokenFile(settings.auth_token_file) if settings.auth_token_file else None
    interceptors: list[grpc.ServerInterceptor] = (
        [AuthInterceptor(tokens, settings.max_calls_per_caller)] if tokens else []
    )
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=settings.grpc_threads),
        interceptors=[*interceptors, *own_interceptors(metrics)],
        options=[
            ("grpc.max_receive_message_length", settings.max_message_bytes),
            ("grpc.max_send_message_length", settings.max_message_bytes),
        ],
    )
    add_pruner_servicer(PrunerServicer(service), server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    if settings.reflection == "on":
        names = (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME)
        reflection.enable_server_reflection(names, server)
    for name in ("", SERVICE_NAME):
        health_servicer.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)

    def report(ready: bool) -> None:
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if ready
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in ("", SERVICE_NAME):
            health_servicer.set(name, status)

    service.on_ready_change(report)
    port = _bind(server, settings)
    if port == 0:
        raise OSError(f"cannot bind {settings.host}:{settings.port}")
    return Running(server, port, service, health_servicer, tokens)


def _bind(server: grpc.Server, settings: Settings) -> int:
    """Binds the port, with TLS when a certificate and key are configured, and mutual TLS
    (a client certificate signed by ``tls_client_ca_file`` required) when that is set too."""
    address = f"{settings.host}:{settings.port}"
    if bool(settings.tls_cert_file) != bool(settings.tls_key_file):
        raise ValueError("TLS needs both --tls-cert-file and --tls-key-file")
    if settings.tls_client_ca_file and not settings.tls_cert_file:
        raise ValueError("--tls-client-ca-file needs --tls-cert-file and --tls-key-file")
    if not settings.tls_cert_file:
        return int(server.add_insecure_port(address))
    key = Path(settings.tls_key_file).read_bytes()
    chain = Path(settings.tls_cert_file).read_bytes()
    client_ca = (
        Path(settings.tls_client_ca_file).read_bytes() if settings.tls_client_ca_file else None
    )
    credentials = grpc.ssl_server_credentials(
        [(key, chain)], root_certificates=client_ca, require_client_auth=client_ca is not None
    )
    return int(server.add_secure_port(address, credentials))


def _stop_event() -> threading.Event:
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    return stop


def _reload_on_sighup(tokens: TokenFile | None) -> None:
    """SIGHUP rereads the token file (where the platform has SIGHUP)."""
    if tokens is not None and hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, lambda *_: tokens.reload())


def serve(settings: Settings, service: PrunerService, metrics: Metrics | None = None) -> int:
    """Runs the process's role until SIGTERM or SIGINT; returns the process exit code (2 when
    the settings cannot be served: a bad token file, TLS file or port, said on stderr)."""
    if metrics is not None and settings.metrics_port:
        metrics.serve(settings.metrics_port, settings.metrics_host or settings.host)
    if settings.role == "worker":
        return _serve_worker(settings, service)
    try:
        running = build_server(settings, service, metrics)
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    _reload_on_sighup(running.tokens)
    running.server.start()
    address = f"{settings.host}:{running.port}"
    log.info("listening", address=address, profile=settings.profile, role=settings.role)
    print(_how_to_call(address, tls=bool(settings.tls_cert_file)), flush=True)
    stop = _stop_event()
    service.lifecycle.on_failure(stop.set)
    service.start()
    stop.wait()
    if service.failure:
        log.error("not_serving", reason=service.failure)
        running.stop(grace=0)
        return 1
    log.info("stopping", grace_s=settings.grace_s)
    running.stop(settings.grace_s)
    return 0


def _serve_worker(settings: Settings, service: PrunerService) -> int:
    """A worker process: no gRPC port; computes from the shared queue until signalled."""
    stop = _stop_event()
    service.lifecycle.on_failure(stop.set)
    print(f"FreeLM Pruner worker on {settings.redis} (namespace {settings.namespace})", flush=True)
    service.start()
    stop.wait()
    if service.failure:
        log.error("not_serving", reason=service.failure)
        return 1
    log.info("stopping", grace_s=settings.grace_s)
    service.shutdown(settings.grace_s)
    return 0


def _how_to_call(address: str, tls: bool = False) -> str:
    flag = "" if tls else "-plaintext "
    return (
        f"FreeLM Pruner listening on {address} (health NOT_SERVING until ready)\n"
        f"  freelm-pruner prune TRACE.txt --server {address}\n"
        f'  grpcurl {flag}-d \'{{"trace": "..."}}\' {address} {SERVICE_NAME}/Prune\n'
        f"  grpcurl {flag}{address} grpc.health.v1.Health/Check"
    )
