"""A synchronous gRPC client of the pruning service."""

from __future__ import annotations

from typing import Any

import grpc
from freelm.pruner.v1 import pruner_pb2 as pb
from freelm.pruner.v1 import pruner_pb2_grpc as pb_grpc

from freelm_pruner_client.errors import from_rpc_error


class PrunerClient:
    """Calls one server; raises ``PrunerClientError`` subclasses on failure."""

    def __init__(self, address: str, timeout: float = 300.0) -> None:
        self.address = address
        self.timeout = timeout
        self._channel = grpc.insecure_channel(address)
        self._stub = pb_grpc.PrunerStub(self._channel)

    def prune(
        self,
        trace: str,
        question: str = "",
        request_id: str = "",
        timeout: float | None = None,
        **options: Any,
    ) -> pb.PruneResponse:
        """Prunes ``trace``; ``options`` are ``PruneOptions`` fields (unset: server defaults)."""
        request = pb.PruneRequest(
            request_id=request_id,
            trace=trace,
            question=question,
            options=pb.PruneOptions(**options),
        )
        try:
            response: pb.PruneResponse = self._stub.Prune(request, timeout=timeout or self.timeout)
        except grpc.RpcError as exc:
            raise from_rpc_error(exc) from None
        return response

    def model_info(self, timeout: float | None = None) -> pb.ModelInfo:
        try:
            info: pb.ModelInfo = self._stub.GetModelInfo(
                pb.GetModelInfoRequest(), timeout=timeout or self.timeout
            )
        except grpc.RpcError as exc:
            raise from_rpc_error(exc) from None
        return info

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> PrunerClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
