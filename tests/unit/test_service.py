"""The in-process service with a fake engine: admission, deadlines, isolation, streams, drain."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from pruner_service.config import Settings
from pruner_service.domain import Limits, PruneOptions, PruneRequest, PruneResult
from pruner_service.errors import (
    DeadlineExceeded,
    Internal,
    InvalidArgument,
    QueueFull,
    Unavailable,
)
from pruner_service.service import PrunerService, Rejected
from tests.fakes import POISON, FakeEngine

LIMITS = Limits(max_trace_chars=1000, max_question_chars=100, max_commands=8)


def request(rid: str, trace: str = "First we add. Then we stop.") -> PruneRequest:
    return PruneRequest(rid, trace, "", PruneOptions())


@pytest.fixture
def make_service() -> Iterator:
    services: list[PrunerService] = []

    def build(engine: FakeEngine, **changes: object) -> PrunerService:
        settings = Settings(**{"max_wait_ms": 20, **changes})  # type: ignore[arg-type]
        service = PrunerService(settings, lambda: engine, LIMITS)
        service.start(background=False)
        services.append(service)
        return service

    yield build
    for service in services:
        service.shutdown(grace=1)


def later(seconds: float = 30.0) -> float:
    return time.time() + seconds


def test_a_request_is_computed_and_resolved(make_service) -> None:
    service = make_service(FakeEngine())
    result = service.prune(request("r1"), later())
    assert isinstance(result, PruneResult)
    assert result.outcome.pruned_trace == ". Then we stop."
    assert result.timing.batch_size == 1 and result.usage.trace_tokens == 6


def test_not_ready_answers_unavailable() -> None:
    service = PrunerService(Settings(), lambda: FakeEngine(), LIMITS)
    with pytest.raises(Unavailable, match="loading"):
        service.submit(request("r1"), later())


def test_a_failed_load_is_reported() -> None:
    def broken() -> FakeEngine:
        raise OSError("no weights here")

    service = PrunerService(Settings(), broken, LIMITS)
    service.start(background=False)
    assert not service.ready
    with pytest.raises(Unavailable, match="no weights here"):
        service.submit(request("r1"), later())


def test_queue_full_is_refused_with_the_limit(make_service) -> None:
    gate = threading.Event()
    service = make_service(FakeEngine(gate), max_queue=2, max_batch=1)
    first = service.submit(request("r0"), later())
    while not first.future.running():
        time.sleep(0.01)
    service.submit(request("r1"), later())
    service.submit(request("r2"), later())
    with pytest.raises(QueueFull, match="2 requests"):
        service.submit(request("r3"), later())
    gate.set()


def test_expired_jobs_are_not_computed(make_service) -> None:
    gate = threading.Event()
    engine = FakeEngine(gate)
    service = make_service(engine, max_batch=1)
    blocker = service.submit(request("blocker"), later())
    while not blocker.future.running():
        time.sleep(0.01)
    doomed = service.submit(request("doomed"), time.time() + 0.05)
    time.sleep(0.1)
    gate.set()
    with pytest.raises(DeadlineExceeded):
        service.wait(doomed)
    service.wait(blocker)
    assert "doomed" not in engine.computed


def test_a_poison_item_fails_alone_and_its_batch_neighbours_are_answered(make_service) -> None:
    gate = threading.Event()
    engine = FakeEngine(gate)
    service = make_service(engine, max_batch=4, max_wait_ms=200)
    jobs = [
        service.submit(request("a"), later()),
        service.submit(request("bad", f"{POISON} here. More."), later()),
        service.submit(request("c"), later()),
    ]
    gate.set()
    assert service.wait(jobs[0]).request_id == "a"
    assert service.wait(jobs[2]).request_id == "c"
    with pytest.raises(Internal, match="engine crashed"):
        service.wait(jobs[1])
    assert ["a", "bad", "c"] in engine.batches


def test_concurrent_requests_share_batches(make_service) -> None:
    engine = FakeEngine()
    service = make_service(engine, max_batch=8, max_wait_ms=200)
    jobs = [service.submit(request(f"r{i}"), later()) for i in range(6)]
    results = [service.wait(job) for job in jobs]
    assert max(r.timing.batch_size for r in results) > 1
    assert sorted(engine.computed) == sorted(f"r{i}" for i in range(6))


def test_stream_answers_every_item_once_with_per_item_errors(make_service) -> None:
    service = make_service(FakeEngine(), max_batch=4)
    items: list[PruneRequest | Rejected] = [request(f"s{i}") for i in range(19)]
    items.insert(7, Rejected("broken", InvalidArgument("trace is empty")))
    answers = {a.request_id: a.outcome for a in service.prune_stream(iter(items), later())}
    assert len(answers) == 20
    assert isinstance(answers.pop("broken"), InvalidArgument)
    assert all(isinstance(a, PruneResult) for a in answers.values())


def test_shutdown_drains_work_in_flight(make_service) -> None:
    gate = threading.Event()
    service = make_service(FakeEngine(gate), max_batch=2)
    jobs = [service.submit(request(f"d{i}"), later()) for i in range(4)]
    threading.Timer(0.2, gate.set).start()
    assert service.shutdown(grace=10)
    assert all(job.future.result(0).request_id == job.request.request_id for job in jobs)
    with pytest.raises(Unavailable):
        service.submit(request("late"), later())


def test_the_default_deadline_grows_with_the_trace_and_caps_any_deadline(make_service) -> None:
    service = make_service(FakeEngine(), default_deadline_s=10.0, deadline_s_per_kchar=2.0)
    now = time.time()
    assert service.deadline_for(None) - now == pytest.approx(10.0, abs=0.5)
    assert service.deadline_for(None, 50_000) - now == pytest.approx(110.0, abs=0.5)
    assert service.deadline_for(5.0, 50_000) - now == pytest.approx(5.0, abs=0.5)
    assert service.deadline_for(1e6, 50_000) - now == pytest.approx(110.0, abs=0.5)


def test_each_stream_item_has_its_own_deadline(make_service) -> None:
    """An item read after an earlier one took longer than the default deadline is still
    answered: its deadline starts when it is read, not when the stream opened."""
    service = make_service(FakeEngine(), default_deadline_s=0.6, deadline_s_per_kchar=0.0)

    def items() -> Iterator[PruneRequest]:
        yield request("first")
        time.sleep(1.0)
        yield request("second")

    answers = {a.request_id: a.outcome for a in service.prune_stream(items(), None)}
    assert set(answers) == {"first", "second"}
    assert all(isinstance(answer, PruneResult) for answer in answers.values())


def test_the_default_deadline_counts_the_work_admitted_ahead(make_service) -> None:
    gate = threading.Event()
    service = make_service(FakeEngine(gate), default_deadline_s=10.0, deadline_s_per_kchar=2.0)
    ahead = service.submit(request("ahead", "First we add. " * 3000), later())
    try:
        now = time.time()
        assert service.pending_chars() == 42_000
        assert service.deadline_for(None, 1000) - now == pytest.approx(10 + 2 * 43, abs=0.5)
    finally:
        gate.set()
    service.wait(ahead)
    assert service.pending_chars() == 0


def test_in_flight_jobs_count_until_settled_and_a_forgotten_one_is_gone() -> None:
    from pruner_service.job import Job
    from pruner_service.lifecycle import InFlight

    tracked = InFlight()
    first = Job(PruneRequest("a", "abc", "", PruneOptions()), deadline=later())
    second = Job(PruneRequest("b", "defgh", "", PruneOptions()), deadline=later())
    tracked.add(first)
    tracked.add(second)
    assert tracked.chars() == 8
    tracked.forget(second)  # admission failed: no longer in flight
    assert tracked.chars() == 3 and not tracked.wait_settled(0.01)
    first.future.set_exception(RuntimeError("settled"))
    assert tracked.wait_settled(1.0) and tracked.chars() == 0
