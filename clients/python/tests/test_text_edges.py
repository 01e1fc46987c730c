"""The client's edges, against an in-process echo server: a lone surrogate is refused before
sending, the batch tool takes a BOM, ids of any JSON type and bad lines, and the connection
options go before or after the command."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from freelm.pruner.v1 import pruner_pb2 as pb
from freelm.pruner.v1 import pruner_pb2_grpc as pb_grpc
from freelm_pruner_client import cli
from freelm_pruner_client.client import AsyncPrunerClient, PrunerClient
from freelm_pruner_client.errors import InvalidArgumentError

LONE = "\ud83d"  # the first half of a surrogate pair, alone: a str can hold it, UTF-8 cannot


class Echo(pb_grpc.PrunerServicer):
    """Replies with the trace unchanged; counts the calls that reached it."""

    def __init__(self) -> None:
        self.calls = 0

    def Prune(self, request: pb.PruneRequest, context: grpc.ServicerContext) -> pb.PruneResponse:
        self.calls += 1
        return pb.PruneResponse(request_id=request.request_id, pruned_trace=request.trace)

    def GetModelInfo(
        self, request: pb.GetModelInfoRequest, context: grpc.ServicerContext
    ) -> pb.ModelInfo:
        self.calls += 1
        return pb.ModelInfo(profile="echo")


@pytest.fixture
def echo() -> Iterator[tuple[Echo, str]]:
    servicer = Echo()
    server = grpc.server(futures.ThreadPoolExecutor(4))
    pb_grpc.add_PrunerServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield servicer, f"127.0.0.1:{port}"
    server.stop(0)


TEXT = "x" * 35 + LONE + " the secret rest"
CASES = [
    ({"trace": TEXT}, "trace has a lone surrogate at code point 35"),
    ({"trace": "ok", "question": LONE}, "question has a lone surrogate at code point 0"),
    ({"trace": "ok", "request_id": "id" + LONE}, "request_id has a lone surrogate at code point 2"),
]


@pytest.mark.parametrize(("fields", "message"), CASES)
def test_a_lone_surrogate_is_invalid_argument_before_sending_without_the_text(
    echo: tuple[Echo, str], fields: dict[str, str], message: str
) -> None:
    servicer, address = echo
    with PrunerClient(address, timeout=10) as client, pytest.raises(InvalidArgumentError) as sync:
        client.prune(**fields)

    async def call() -> None:
        async with AsyncPrunerClient(address, timeout=10) as client:
            await client.prune(**fields)

    with pytest.raises(InvalidArgumentError) as aio:
        asyncio.run(call())
    assert str(sync.value) == str(aio.value) == message
    assert sync.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert servicer.calls == 0


def batch(address: str, source: Path, target: Path, before: bool = True) -> int:
    connection = ["--server", address, "--timeout", "10"]
    command = ["batch", str(source), "-o", str(target), "--no-progress"]
    return cli.main(connection + command if before else command + connection)


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_batch_takes_a_bom_keeps_id_types_and_records_bad_text_as_invalid_argument(
    echo: tuple[Echo, str], tmp_path: Path
) -> None:
    ids: list[object] = [7, "7", None, {"b": 1, "a": [2]}, 1.5, LONE]
    source, target = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    records = [json.dumps({"id": i, "trace": f"trace {n}"}) for n, i in enumerate(ids)]
    records.append(json.dumps({"id": "s", "trace": TEXT}))  # \ud83d escaped: a lone surrogate
    data = "\n".join(records).encode() + b'\n{"id": "u", "trace": "\xff"}\n'
    source.write_bytes(b"\xef\xbb\xbf" + data)
    assert batch(echo[1], source, target) == 0
    out = {json.dumps(item["id"]): item for item in lines(target)}
    assert sorted(out) == sorted(json.dumps(i) for i in [*ids, "s", "8"])
    assert [out[json.dumps(i)]["result"]["pruned_trace"] for i in ids] == [
        f"trace {n}" for n in range(len(ids))
    ]
    assert out['"s"']["error"] == {
        "code": "INVALID_ARGUMENT",
        "message": "trace has a lone surrogate at code point 35",
    }
    assert out['"8"']["error"] == {
        "code": "INVALID_ARGUMENT",
        "message": "line 8 is not valid UTF-8 at byte 22",
    }
    assert echo[0].calls == len(ids)


def test_a_rerun_skips_every_finished_record_whatever_its_id_type(
    echo: tuple[Echo, str], tmp_path: Path
) -> None:
    source, target = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    ids = [7, "7", None, {"k": [1]}, LONE]
    source.write_text(
        "".join(json.dumps({"id": i, "trace": "t"}) + "\n" for i in ids), encoding="utf-8"
    )
    assert batch(echo[1], source, target) == 0
    first = target.read_bytes()
    assert batch(echo[1], source, target) == 0
    assert target.read_bytes() == first
    assert echo[0].calls == len(ids)


def test_connection_options_go_before_or_after_the_command(
    echo: tuple[Echo, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text('{"id": 1, "trace": "t"}\n', encoding="utf-8")
    for n, before in enumerate((True, False)):
        assert batch(echo[1], source, tmp_path / f"out{n}.jsonl", before) == 0
        assert lines(tmp_path / f"out{n}.jsonl")[0]["result"]["pruned_trace"] == "t"
    assert cli.main(["info", "--server", echo[1]]) == 0
    assert json.loads(capsys.readouterr().out)["profile"] == "echo"
    assert echo[0].calls == 3
    parsed = cli.build_parser().parse_args(["--server", "a:1", "--tls-ca", "ca.pem", "info"])
    assert (parsed.server, parsed.tls_ca, parsed.timeout) == ("a:1", Path("ca.pem"), 300.0)
