"""The interceptors through a real server process: every call of the Pruner service, streaming
included, is counted by method and status, and its log lines carry a request id."""

from __future__ import annotations

import json
import socket
import urllib.request
from pathlib import Path

import grpc
import pytest
from freelm.pruner.v1 import pruner_pb2 as pb
from freelm.pruner.v1 import pruner_pb2_grpc as pb_grpc
from freelm_pruner_client.client import build_request

from tests.conftest import FEWSHOT_PROFILE, wait_for_health
from tests.support.processes import start_server

TRACE = "Let me add 2 and 3. So 2 + 3 = 5. Wait, 2 + 3 = 5. The answer is 5."


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _call(address: str) -> None:
    """One good Prune, one refused Prune, one PruneStream of a good and an empty item (neither
    with a request id), and GetModelInfo."""
    with grpc.insecure_channel(address) as channel:
        wait_for_health(channel)
        stub = pb_grpc.PrunerStub(channel)
        assert stub.Prune(build_request(TRACE), timeout=120).request_id
        with pytest.raises(grpc.RpcError) as caught:
            stub.Prune(build_request(TRACE, max_delete_fraction=2.0), timeout=60)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        replies = list(stub.PruneStream(iter([build_request(TRACE), build_request("")]),
                                        timeout=120))  # fmt: skip
        assert len(replies) == 2 and all(r.request_id for r in replies)
        assert sum(r.HasField("error") for r in replies) == 1
        stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=30)


def test_streaming_calls_are_counted_and_every_call_log_line_has_a_request_id(
    cache_dir: Path,
) -> None:
    metrics_port = _free_port()
    process, address = start_server(
        "--port", "0", "--device", "cpu", "--profile", str(FEWSHOT_PROFILE), "--cache-dir",
        str(cache_dir), "--log-level", "debug", "--log-format", "json", "--metrics-port",
        str(metrics_port),
    )  # fmt: skip
    try:
        _call(address)
        url = f"http://127.0.0.1:{metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            metrics = response.read().decode()
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=60)
    for series in ('method="Prune",status="OK"} 1.0',
                   'method="Prune",status="INVALID_ARGUMENT"} 1.0',
                   'method="PruneStream",status="OK"} 1.0',
                   'method="GetModelInfo",status="OK"} 1.0'):  # fmt: skip
        assert f"freelm_requests_total{{{series}" in metrics, metrics
    records = [json.loads(x) for x in output.splitlines() if x.startswith("{")]
    of_calls = [r for r in records if "method" in r or r["event"] in ("prune", "rpc_error")]
    events = [r["event"] for r in of_calls]
    assert events.count("prune") == 3 and "rpc_error" in events, events
    assert all(r.get("request_id") for r in of_calls), of_calls
    streamed = [r for r in of_calls if r.get("method") == "PruneStream"]
    assert len({r["request_id"] for r in streamed if r["event"] == "prune"}) == 2, streamed
