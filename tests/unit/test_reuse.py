"""Work reused across calls (``engine.reuse``): which cached prompt start is reused, and bounds."""

from __future__ import annotations

import torch

from pruner_service.engine.reuse import MIN_REUSED_TOKENS, PrefixCache, RowResults


def layers(ids: list[int], count: int = 2) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """A fake KV cache whose position ``p`` holds the token id at ``p`` (shape [1, 1, n, 1])."""
    column = torch.tensor(ids, dtype=torch.float32).reshape(1, 1, -1, 1)
    return [(column.clone(), -column.clone()) for _ in range(count)]


def ids(n: int, start: int = 0) -> list[int]:
    return list(range(start, start + n))


def nbytes(n: int) -> int:
    return 2 * 2 * n * 4  # two layers of keys and values, float32


def test_the_longest_shared_start_is_reused_up_to_the_token_before_the_last() -> None:
    cache = PrefixCache(10**6)
    cache.store(ids(40), layers(ids(40)))
    cache.store(ids(30, 100), layers(ids(30, 100)))
    grown = [*ids(35), 999, 998]
    shared, kv = cache.longest(grown)
    assert shared == 35
    assert kv[0][0].flatten().tolist() == ids(35)
    assert kv[1][1].flatten().tolist() == [-float(i) for i in range(35)]
    assert cache.longest(ids(40))[0] == 39  # the same prompt: its last token is run again
    assert cache.longest(ids(20))[0] == 19


def test_a_change_before_a_point_stops_reuse_there() -> None:
    cache = PrefixCache(10**6)
    cache.store(ids(40), layers(ids(40)))
    changed = ids(40)
    changed[25] = -1
    assert cache.longest(changed)[0] == 25
    changed[19] = -1
    assert cache.longest(changed) == (0, [])  # under half the prompt: a cold prefill is faster
    assert cache.longest([*ids(19), -1])[0] == 19  # half of a shorter prompt is enough
    changed[MIN_REUSED_TOKENS - 1] = -1
    assert cache.longest(changed[: MIN_REUSED_TOKENS + 1]) == (0, [])  # too short to be worth it
    assert cache.longest([7, *ids(40)]) == (0, [])


def test_memory_is_bounded_least_recently_used_first() -> None:
    cache = PrefixCache(nbytes(100))
    cache.store(ids(40), layers(ids(40)))
    cache.store(ids(40, 1000), layers(ids(40, 1000)))
    assert cache.longest([*ids(40), 5])[0] == 40  # the first one is now the most recent
    cache.store(ids(40, 2000), layers(ids(40, 2000)))
    assert cache.bytes <= nbytes(100)
    assert len(cache) == 2
    assert cache.longest([*ids(40, 1000), 5]) == (0, [])  # the least recently used went
    assert cache.longest([*ids(40), 5])[0] == 40
    cache.store(ids(101, 5000), layers(ids(101, 5000)))  # larger than the bound alone
    assert len(cache) == 2 and cache.longest(ids(101, 5000))[0] == 0


def test_a_newer_version_of_a_growing_prompt_replaces_the_older() -> None:
    cache = PrefixCache(10**6)
    cache.store(ids(40), layers(ids(40)))
    cache.store(ids(40, 500), layers(ids(40, 500)))  # another trace: kept beside it
    grown = ids(38) + ids(30, 900)
    cache.store(grown, layers(grown))
    assert len(cache) == 2
    assert cache.longest(ids(40))[0] == 38  # from the newer version


def test_a_row_too_large_to_keep_is_known_before_it_is_copied() -> None:
    class Layer:
        keys = torch.zeros(4, 3, 10, 8)  # a batch of 4 rows: 3 heads, 10 positions, 8 dims
        values = torch.zeros(4, 3, 10, 8)

    class Cache:
        def __init__(self) -> None:
            self.layers = [Layer(), Layer()]

    per_token = 2 * 2 * 3 * 8 * 4  # two layers of keys and values, float32
    assert PrefixCache(10 * per_token).fits(10, Cache())
    assert not PrefixCache(10 * per_token - 1).fits(10, Cache())
    assert not PrefixCache(0).fits(1, Cache())


def test_off_keeps_nothing() -> None:
    cache = PrefixCache(0)
    cache.store(ids(40), layers(ids(40)))
    assert len(cache) == 0 and cache.longest(ids(40)) == (0, [])


def test_row_results_are_keyed_by_prompt_and_settings_and_bounded() -> None:
    results: RowResults[str] = RowResults(2)
    first, second, third = (RowResults.key(ids(10), 8), RowResults.key(ids(10), 4),
                            RowResults.key(ids(10, 1), 8))  # fmt: skip
    assert len({first, second, third}) == 3
    assert RowResults.key(ids(10), 8) == first
    results.put(first, "a")
    results.put(second, "b")
    assert results.get(first) == "a"
    results.put(third, "c")
    assert results.get(second) is None and results.get(first) == "a" and results.get(third) == "c"
    off: RowResults[str] = RowResults(0)
    off.put(first, "a")
    assert off.get(first) is None
