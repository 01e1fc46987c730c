"""Encoding jobs and results for the Redis queue: protobuf bytes, never pickle.

Also the content hash that keys the result cache: model, adapter, template, windows, options,
question and trace, so a repeated or redelivered job is answered without computing it again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json

from freelm.pruner.v1 import queue_pb2 as qpb
from google.protobuf.message import DecodeError

from pruner_service import convert
from pruner_service.domain import PruneRequest, PruneResult
from pruner_service.engine.base import EngineInfo
from pruner_service.errors import Internal, PrunerError, error_from_status
from pruner_service.job import Job


def content_hash(info: EngineInfo, request: PruneRequest) -> str:
    """The cache key of ``request`` under the model, adapter, template and windows (what one
    call reads: ``window_tokens``, overlap, question tokens) of ``info``: a hex SHA-256."""
    digest = hashlib.sha256()
    options = json.dumps(dataclasses.asdict(request.options), sort_keys=True)
    windows = f"{info.window_tokens}/{info.window_overlap_tokens}/{info.question_tokens}"
    parts = (
        info.model_id,
        info.adapter_id,
        info.adapter_version,
        info.template_sha256,
        windows,
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


def decode_job(data: bytes) -> tuple[Job, qpb.QueueJob]:
    """A worker-side job (with a fresh future) and the message it came from; its request was
    validated by the frontend (``convert.request_from_queue``). Raises ``ValueError`` when
    ``data`` is not a ``QueueJob`` (a foreign payload: a pickle, another schema)."""
    try:
        message = qpb.QueueJob.FromString(data)
    except DecodeError as exc:
        raise ValueError(f"the job is not a QueueJob of this namespace's schema: {exc}") from None
    request = dataclasses.replace(
        convert.request_from_queue(message.request), caller=message.caller
    )
    job = Job(request, message.deadline_unix_s, message.enqueued_unix_s)
    return job, message


def encode_result(outcome: PruneResult | PrunerError) -> bytes:
    """A stored result; a response keeps the pruned trace (the asker's option applies where its
    reply is built)."""
    if isinstance(outcome, PruneResult):
        message = qpb.QueueResult(response=convert.result_to_proto(outcome))
    else:
        message = qpb.QueueResult(error=convert.error_to_proto(outcome))
    data: bytes = message.SerializeToString()
    return data


def decode_result(data: bytes) -> PruneResult | PrunerError:
    """The stored outcome; bytes that are not a ``QueueResult`` are an ``Internal`` error."""
    try:
        message = qpb.QueueResult.FromString(data)
    except DecodeError:
        return Internal("the stored result is not readable (not a QueueResult)")
    if message.WhichOneof("outcome") == "response":
        return convert.result_from_proto(message.response)
    return error_from_status(message.error.code_name, message.error.message)


def readdressed(data: bytes, request_id: str, queue_ms: float) -> qpb.QueueResult:
    """A cached result (``encode_result``'s bytes) re-addressed to ``request_id``, with that
    request's own queue time (milliseconds) and no compute time."""
    message = qpb.QueueResult.FromString(data)
    response = message.response
    response.request_id = request_id
    response.timing.queue_ms = response.timing.total_ms = queue_ms
    response.timing.compute_ms = 0.0
    return message


def cached_response(data: bytes, request_id: str, queue_ms: float) -> PruneResult:
    """A cached result re-addressed to ``request_id`` (``readdressed``), as a domain result."""
    return convert.result_from_proto(readdressed(data, request_id, queue_ms).response)


def cached_result(data: bytes, request_id: str, queue_ms: float) -> bytes:
    """A cached result re-addressed to ``request_id`` (``readdressed``), as stored bytes: a
    worker answers a cache hit without decoding the result."""
    encoded: bytes = readdressed(data, request_id, queue_ms).SerializeToString()
    return encoded
