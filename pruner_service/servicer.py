"""The gRPC servicer: each RPC converts proto → domain, calls the service once, converts back.

Errors are raised as domain exceptions and mapped to status codes by
``interceptors.ErrorInterceptor``; every request arrives with an id (``LogContextInterceptor``).
A stream item whose bytes did not decode (``wire.Undecodable``) is answered with its error, as an
item that fails validation is.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator

import grpc
import structlog
from freelm.pruner.v1 import pruner_pb2 as pb
from freelm.pruner.v1 import pruner_pb2_grpc as pb_grpc

from pruner_service import convert
from pruner_service.auth import CALLER
from pruner_service.domain import PruneRequest, PruneResult
from pruner_service.errors import PrunerError
from pruner_service.service import PrunerService, Rejected
from pruner_service.wire import Undecodable, decoded

log = structlog.get_logger(__name__)


class PrunerServicer(pb_grpc.PrunerServicer):  # type: ignore[misc]
    """Translates the ``freelm.pruner.v1.Pruner`` RPCs to ``PrunerService`` calls."""

    def __init__(self, service: PrunerService) -> None:
        self.service = service

    def Prune(self, request: pb.PruneRequest, context: grpc.ServicerContext) -> pb.PruneResponse:
        domain = convert.request_from_proto(request, self.service.limits)
        domain = dataclasses.replace(domain, caller=CALLER.get())
        deadline = self.service.deadline_for(context.time_remaining(), len(domain.trace))
        job = self.service.submit(domain, deadline)
        context.add_callback(job.future.cancel)
        result = self.service.wait(job)
        _log_result(result)
        return convert.result_to_proto(result, domain.options.return_pruned_trace)

    def PruneStream(
        self,
        request_iterator: Iterator[pb.PruneRequest | Undecodable],
        context: grpc.ServicerContext,
    ) -> Iterator[pb.PruneStreamResponse]:
        remaining = context.time_remaining()
        call_deadline = None if remaining is None else time.time() + remaining
        caller = CALLER.get()  # read here, in the call's thread: items may be read in another
        items = (self._stream_item(message, caller) for message in request_iterator)
        for answer in self.service.prune_stream(items, call_deadline):
            if isinstance(answer.outcome, PrunerError):
                log.info("prune", request_id=answer.request_id,
                         outcome=type(answer.outcome).__name__)  # fmt: skip
            else:
                _log_result(answer.outcome)
            yield convert.stream_item_to_proto(
                answer.request_id, answer.outcome, answer.return_pruned_trace
            )

    def _stream_item(
        self, message: pb.PruneRequest | Undecodable, caller: str
    ) -> PruneRequest | Rejected:
        try:
            request = convert.request_from_proto(decoded(message), self.service.limits)
            return dataclasses.replace(request, caller=caller)
        except PrunerError as exc:
            return Rejected(message.request_id, exc)

    def GetModelInfo(
        self, request: pb.GetModelInfoRequest, context: grpc.ServicerContext
    ) -> pb.ModelInfo:
        return convert.info_to_proto(
            self.service.info(), self.service.settings, self.service.limits
        )


def _log_result(result: PruneResult) -> None:
    applied = sum(c.status.value == "APPLIED" for c in result.outcome.commands)
    log.info(
        "prune",
        request_id=result.request_id,
        outcome="ok",
        commands=len(result.outcome.commands),
        applied=applied,
        deletions=len(result.outcome.deletions),
        removed_chars=result.usage.removed_chars,
        trace_chars=result.usage.trace_chars,
        queue_ms=round(result.timing.queue_ms, 1),
        compute_ms=round(result.timing.compute_ms, 1),
        batch_size=result.timing.batch_size,
    )
