"""Encoding jobs and results for the Redis queue: protobuf bytes, never pickle.

Also the content hash that keys the result cache: model, adapter, template, options, question
and trace, so a repeated or redelivered job is answered without computing it again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json

from freelm.pruner.v1 import queue_pb2 as qpb
from google.protobuf.message import DecodeError

from pruner_service import convert
from pruner_service.domain import Limits, PruneRequest, PruneResult
from pruner_service.engine.base import EngineInfo
from pruner_service.errors import Internal, PrunerError, error_from_status
from pruner_service.queue.base import Job


def content_hash(info: EngineInfo, request: PruneRequest) -> str:
    """The cache key of ``request`` under the model, adapter and template of ``info``."""
    digest = hashlib.sha256()
    options = json.dumps(dataclasses.asdict(request.options), sort_keys=True)
    parts = (
        info.model_id,
        info.adapter_id,
        info.adapter_version,
        info.template_sha256,
        options,
        request.question,
        request.trace,
    )
    for part in parts:
        digest.update(part.encode("utf-8", "surrogatepass"))
        digest.update(b"\0")
    return digest.hexdigest()


def encode_job(job: Job, reply_to: str, key: str) -> bytes:
    message = qpb.QueueJob(
        request=convert.request_to_proto(job.request),
        deadline_unix_s=job.deadline,
        enqueued_unix_s=job.enqueued_at,
        reply_to=reply_to,
        content_hash=key,
        caller=job.request.caller,
    )
    data: bytes = message.SerializeToString()
    return data


def decode_job(data: bytes, limits: Limits) -> tuple[Job, qpb.QueueJob]:
    """A worker-side job (with a fresh future) and the message it came from. Raises
    ``ValueError`` when ``data`` is not a ``QueueJob`` (a foreign payload: a pickle, another
    schema) and ``InvalidArgument`` when its request is not valid."""
    try:
        message = qpb.QueueJob.FromString(data)
    except DecodeError as exc:
        raise ValueError(f"the job is not a QueueJob of this namespace's schema: {exc}") from None
    request = dataclasses.replace(
        convert.request_from_proto(message.request, limits), caller=message.caller
    )
    job = Job(request, message.deadline_unix_s, message.enqueued_unix_s)
    return job, message


def encode_result(outcome: PruneResult | PrunerError) -> bytes:
    """A stored result; a response keeps the pruned trace (the asker's option applies later)."""
    if isinstance(outcome, PruneResult):
        full = dataclasses.replace(outcome, return_pruned_trace=True)
        message = qpb.QueueResult(response=convert.result_to_proto(full))
    else:
        message = qpb.QueueResult(error=convert.error_to_proto(outcome))
    data: bytes = message.SerializeToString()
    return data


def decode_result(data: bytes, return_pruned_trace: bool) -> PruneResult | PrunerError:
    """The stored outcome; bytes that are not a ``QueueResult`` are an ``Internal`` error."""
    try:
        message = qpb.QueueResult.FromString(data)
    except DecodeError:
        return Internal("the stored result is not readable (not a QueueResult)")
    if message.WhichOneof("outcome") == "response":
        return convert.result_from_proto(message.response, return_pruned_trace)
    return error_from_status(message.error.code_name, message.error.message)


def cached_response(data: bytes, request: PruneRequest, queue_ms: float) -> PruneResult:
    """A cached response re-addressed to ``request`` (its id and its own queue time)."""
    result = convert.result_from_proto(
        qpb.QueueResult.FromString(data).response, request.options.return_pruned_trace
    )
    timing = dataclasses.replace(
        result.timing, queue_ms=queue_ms, compute_ms=0.0, total_ms=queue_ms
    )
    return dataclasses.replace(result, request_id=request.request_id, timing=timing)
