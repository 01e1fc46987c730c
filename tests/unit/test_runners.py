"""The remote eval runner sends a large file as several streams, in order, none over the chunk."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from pruner_service.training import runners


class RecordingClient:
    """Answers each stream with its requests, and records the streams' sizes."""

    def __init__(self) -> None:
        self.streams: list[int] = []

    def prune_stream(self, requests: Sequence[int]) -> Iterator[int]:
        self.streams.append(len(requests))
        yield from requests


def test_a_large_file_goes_as_several_streams_in_order() -> None:
    client = RecordingClient()
    count = 2 * runners.STREAM_CHUNK + 5
    assert list(runners._chunked_stream(client, list(range(count)))) == list(range(count))
    assert client.streams == [runners.STREAM_CHUNK, runners.STREAM_CHUNK, 5]


def test_an_empty_file_opens_no_stream() -> None:
    client = RecordingClient()
    assert list(runners._chunked_stream(client, [])) == []
    assert client.streams == []
