"""The Redis queue with a fake engine (in-process frontends and workers, a real redis-server)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest
import redis

from pruner_service.assembly import build_service
from pruner_service.config import Settings
from pruner_service.domain import PruneOptions, PruneRequest, PruneResult
from pruner_service.errors import DeadlineExceeded, Internal, QueueFull, Unavailable
from pruner_service.queue.keys import RedisKeys
from pruner_service.service import PrunerService
from tests.fakes import POISON, FakeEngine

TRACE = "First we add two numbers. Wait, no. Wait, no. Wait, no. Then we stop."


def request(rid: str, trace: str = TRACE) -> PruneRequest:
    return PruneRequest(rid, trace, "", PruneOptions())


@pytest.fixture
def services(redis_server) -> Iterator[Callable[..., PrunerService]]:
    started: list[PrunerService] = []

    def make(role: str, engine: FakeEngine | None = None, **changes: object) -> PrunerService:
        values: dict = {
            "redis": redis_server.url,
            "role": role,
            "namespace": "t",
            "max_wait_ms": 20,
            "claim_idle_ms": 300,
        }
        values.update(changes)
        settings = Settings(**values)
        fake = engine or FakeEngine()
        service = build_service(settings, make_engine=lambda: fake)
        service.start(background=False)
        started.append(service)
        return service

    yield make
    for service in started:
        service.shutdown(grace=2)


def wait_ready(service: PrunerService, timeout: float = 10) -> None:
    limit = time.monotonic() + timeout
    while not service.ready:
        assert time.monotonic() < limit, "the frontend never became ready"
        time.sleep(0.05)


def later(seconds: float = 30) -> float:
    return time.time() + seconds


def computations(redis_server) -> dict[str, int]:
    raw = redis.Redis(port=redis_server.port).hgetall(RedisKeys("t").computations)
    return {k.decode(): int(v) for k, v in raw.items()}


def test_frontend_is_not_ready_without_a_live_worker(services) -> None:
    frontend = services("frontend")
    time.sleep(1.5)
    assert not frontend.ready
    with pytest.raises(Unavailable, match="no live worker"):
        frontend.submit(request("x"), later())


def test_a_frontend_and_a_worker_answer_like_the_embedded_mode(services, redis_server) -> None:
    worker_engine = FakeEngine()
    services("worker", worker_engine)
    frontend = services("frontend")
    wait_ready(frontend)
    embedded = PrunerService(Settings(), lambda: FakeEngine(), frontend.limits)
    embedded.start(background=False)
    try:
        for i in range(5):
            trace = f"Step {i} adds one. " + TRACE
            got = frontend.prune(request(f"r{i}", trace), later())
            want = embedded.prune(request(f"r{i}", trace), later())
            assert isinstance(got, PruneResult)
            assert got.outcome == want.outcome and got.usage == want.usage
    finally:
        embedded.shutdown(grace=1)
    assert computations(redis_server) == {f"r{i}": 1 for i in range(5)}


def test_retries_and_repeats_are_answered_without_computing_again(services, redis_server) -> None:
    engine = FakeEngine()
    worker = services("worker", engine)
    frontend = services("frontend")
    wait_ready(frontend)
    first = frontend.prune(request("same-id"), later())
    worker.shutdown(grace=1)  # from here on only the frontend can answer
    again = frontend.prune(request("same-id"), later(3))
    other = frontend.prune(request("other-id"), later(3))  # same content, new id: the cache
    assert first.outcome == again.outcome == other.outcome
    assert other.request_id == "other-id" and other.timing.compute_ms == 0.0
    assert engine.computed == ["same-id"]
    assert computations(redis_server) == {"same-id": 1}


def test_queue_full_is_refused_with_the_limit(services) -> None:
    gate = threading.Event()
    services("worker", FakeEngine(gate), max_batch=1)
    frontend = services("frontend", max_queue=2)
    wait_ready(frontend)
    jobs = [frontend.submit(request(f"q{i}"), later()) for i in range(2)]
    with pytest.raises(QueueFull, match=r"queue is full \(2 requests waiting\)"):
        for i in range(2, 6):
            jobs.append(frontend.submit(request(f"q{i}"), later()))
    gate.set()
    assert all(frontend.wait(job).request_id == job.request.request_id for job in jobs)


def monitored(redis_server, until: str) -> tuple[threading.Thread, list[dict]]:
    """A thread collecting the commands Redis runs (``MONITOR``) until an ``ECHO until``."""
    seen: list[dict] = []
    started = threading.Event()

    def watch() -> None:
        with redis.Redis(port=redis_server.port).monitor() as monitor:
            started.set()
            for command in monitor.listen():
                seen.append(command)
                if command["command"] == f"ECHO {until}":
                    return

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    assert started.wait(10)
    return thread, seen


def test_a_worker_acknowledges_and_deletes_an_entry_in_one_transaction(
    services, redis_server
) -> None:
    services("worker")
    frontend = services("frontend")
    wait_ready(frontend)
    thread, seen = monitored(redis_server, "done")
    assert isinstance(frontend.prune(request("tx"), later()), PruneResult)  # EXEC has run
    redis.Redis(port=redis_server.port).echo("done")
    thread.join(10)
    names = [(c["client_port"], c["command"].split()[0].upper()) for c in seen]
    port = next(p for p, name in names if name == "XACK")  # the worker's settling connection
    mine = [name for p, name in names if p == port]
    ack = mine.index("XACK")
    opened = [i for i in range(ack) if mine[i] == "MULTI"]
    assert opened, mine
    assert "EXEC" not in mine[opened[-1] : ack] and "EXEC" in mine[ack:], mine
    assert "XDEL" in mine[ack : mine.index("EXEC", ack)], mine


def test_expired_jobs_are_not_computed(services, redis_server) -> None:
    frontend = services("frontend")
    keys = RedisKeys("t")
    client = redis.Redis(port=redis_server.port)
    client.set(keys.heartbeat("pretend"), b"1", ex=30)  # readiness only; nobody takes jobs
    wait_ready(frontend)
    job = frontend.submit(request("late"), time.time() + 0.3)
    with pytest.raises(DeadlineExceeded):
        frontend.wait(job)
    engine = FakeEngine()
    services("worker", engine)
    deadline = time.monotonic() + 10
    while client.xlen(keys.jobs) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert client.xlen(keys.jobs) == 0 and engine.computed == []
    assert computations(redis_server) == {}


def test_a_cancelled_job_is_not_computed(services, redis_server) -> None:
    frontend = services("frontend")
    client = redis.Redis(port=redis_server.port)
    client.set(RedisKeys("t").heartbeat("pretend"), b"1", ex=30)
    wait_ready(frontend)
    job = frontend.submit(request("gone"), later())
    assert job.future.cancel()  # the caller went away (what gRPC's cancellation callback does)
    engine = FakeEngine()
    services("worker", engine)
    limit = time.monotonic() + 10
    while client.xlen(RedisKeys("t").jobs) and time.monotonic() < limit:
        time.sleep(0.05)
    assert client.xlen(RedisKeys("t").jobs) == 0 and engine.computed == []


def test_a_poison_job_is_dead_lettered_and_its_neighbours_are_answered(
    services, redis_server
) -> None:
    gate = threading.Event()
    services("worker", FakeEngine(gate), max_batch=4, max_wait_ms=300, max_deliveries=3)
    frontend = services("frontend")
    wait_ready(frontend)
    jobs = [
        frontend.submit(request("good-1"), later()),
        frontend.submit(request("poison", f"{POISON} here. More."), later()),
        frontend.submit(request("good-2", "Another trace. With words."), later()),
    ]
    gate.set()
    assert frontend.wait(jobs[0]).request_id == "good-1"
    assert frontend.wait(jobs[2]).request_id == "good-2"
    with pytest.raises(Internal, match="dead-letter"):
        frontend.wait(jobs[1])
    dead = redis.Redis(port=redis_server.port).xrange(RedisKeys("t").dead_letters)
    assert [fields[b"request_id"] for _, fields in dead] == [b"poison"]
    assert computations(redis_server)["poison"] == 3


def test_redis_down_is_unavailable_at_once_and_service_resumes(services, redis_server) -> None:
    frontend = services("all")
    wait_ready(frontend)
    assert frontend.prune(request("before"), later()).request_id == "before"
    redis_server.stop()
    started = time.monotonic()
    with pytest.raises(Unavailable, match="Redis") as caught:
        frontend.submit(request("during"), later())
    assert "127.0.0.1" not in str(caught.value) and str(redis_server.port) not in str(caught.value)
    assert time.monotonic() - started < 10
    redis_server.start()
    limit = time.monotonic() + 30
    while True:
        try:
            result = frontend.prune(request("after"), later(10))
            break
        except (Unavailable, DeadlineExceeded):
            assert time.monotonic() < limit, "the service did not resume after Redis came back"
            time.sleep(0.2)
    assert result.request_id == "after"


def test_a_live_workers_long_batch_is_not_reclaimed(services, redis_server) -> None:
    """Leases: a batch six times longer than ``claim_idle_ms`` stays with its live worker; the
    other worker, polling for idle jobs all along, computes nothing."""
    gate = threading.Event()
    slow, idle = FakeEngine(gate), FakeEngine()
    services("worker", slow, max_batch=1)
    frontend = services("frontend")
    wait_ready(frontend)
    job = frontend.submit(request("long-batch"), later())
    while not slow.batches:
        time.sleep(0.01)
    services("worker", idle)  # starts reclaiming (every claim_idle_ms / 4) while the batch runs
    time.sleep(1.8)
    gate.set()
    assert frontend.wait(job).request_id == "long-batch"
    assert idle.computed == []
    assert computations(redis_server) == {"long-batch": 1}
    keys = RedisKeys("t")
    assert redis.Redis(port=redis_server.port).xpending(keys.jobs, keys.group)["pending"] == 0


def test_a_job_that_is_not_the_schema_is_dead_lettered_never_run(services, redis_server) -> None:
    """Only the namespace's protobuf schema is a job: a pickle (or any other bytes) put on the
    stream goes to the dead-letter stream, and the worker keeps serving."""
    import pickle

    engine = FakeEngine()
    services("worker", engine)
    frontend = services("frontend")
    wait_ready(frontend)
    keys = RedisKeys("t")
    client = redis.Redis(port=redis_server.port)
    client.xadd(keys.jobs, {b"job": pickle.dumps({"trace": "x", "exec": "os.system"})})
    limit = time.monotonic() + 10
    while not client.xlen(keys.dead_letters):
        assert time.monotonic() < limit, "the foreign job was not dead-lettered"
        time.sleep(0.05)
    assert frontend.prune(request("after-junk"), later()).request_id == "after-junk"
    assert engine.computed == ["after-junk"]


def test_without_a_cache_the_same_content_under_a_new_id_is_computed_again(
    services, redis_server
) -> None:
    engine = FakeEngine()
    services("worker", engine, cache_ttl_s=0)
    frontend = services("frontend", cache_ttl_s=0)
    wait_ready(frontend)
    assert frontend.prune(request("first"), later()).request_id == "first"
    assert frontend.prune(request("second"), later()).request_id == "second"
    assert engine.computed == ["first", "second"]
    assert not redis.Redis(port=redis_server.port).keys(RedisKeys("t").cache("*"))
    with pytest.raises(ValueError, match="--result-ttl-s"):
        services("frontend", result_ttl_s=0)
