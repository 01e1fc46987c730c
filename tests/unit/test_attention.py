"""The CPU decode attention against transformers' sdpa attention on the same inputs."""

from __future__ import annotations

import pytest
import torch
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import sdpa_mask

from pruner_service.engine import attention
from pruner_service.engine.attention import cpu_decode_attention, use_cpu_decode_attention


class Module(torch.nn.Module):
    """What the attention functions read of a model's attention layer."""

    num_key_value_groups = 3
    is_causal = True


def inputs(queries: int, positions: int, dtype: torch.dtype, batch: int = 2) -> tuple:
    generator = torch.Generator().manual_seed(queries * 1000 + positions)
    shape = (batch, 3, positions, 64)
    query = torch.randn((batch, 9, queries, 64), generator=generator).to(dtype)
    key = torch.randn(shape, generator=generator).to(dtype)
    value = torch.randn(shape, generator=generator).to(dtype)
    return query, key, value


def padding_mask(queries: int, positions: int, pads: list[int]) -> torch.Tensor:
    """The boolean mask [rows, 1, queries, positions] of ``sdpa_mask`` for left-padded rows
    (``pads`` padding positions per row) whose last ``queries`` positions are the queries."""
    rows = torch.ones((len(pads), positions), dtype=torch.bool)
    for i, pad in enumerate(pads):
        rows[i, :pad] = False
    mask = sdpa_mask(
        batch_size=len(pads),
        q_length=queries,
        kv_length=positions,
        q_offset=positions - queries,
        attention_mask=rows,
        allow_is_causal_skip=False,
    )
    assert mask is not None and mask.dtype == torch.bool
    assert mask.shape == (len(pads), 1, queries, positions)
    return mask


@pytest.mark.parametrize("queries", [1, 5, attention.SHORT_QUERY])
@pytest.mark.parametrize("masked", [False, True], ids=["no-mask", "padded"])
def test_equals_sdpa_in_float64(queries: int, masked: bool) -> None:
    positions = 300
    query, key, value = inputs(queries, positions, torch.float64)
    mask = padding_mask(queries, positions, [0, 40]) if masked or queries > 1 else None
    ours, _ = cpu_decode_attention(Module(), query, key, value, mask, scaling=0.125)
    theirs, _ = sdpa_attention_forward(Module(), query, key, value, mask, scaling=0.125)
    assert ours.shape == theirs.shape == (2, queries, 9, 64)
    torch.testing.assert_close(ours, theirs.to(ours.dtype), rtol=1e-5, atol=1e-5)


def test_causal_without_a_mask_when_queries_equal_positions() -> None:
    query, key, value = inputs(6, 6, torch.float64, batch=1)
    ours, _ = cpu_decode_attention(Module(), query, key, value, None, scaling=0.125)
    theirs, _ = sdpa_attention_forward(Module(), query, key, value, None, scaling=0.125)
    torch.testing.assert_close(ours, theirs)
    # the first query sees only the first position: its output is that position's value
    first = value[0, :, 0].repeat_interleave(3, dim=0)
    torch.testing.assert_close(ours[0, 0], first)


def test_close_to_sdpa_in_bfloat16_and_finite_on_fully_masked_rows() -> None:
    query, key, value = inputs(1, 2048, torch.bfloat16)
    mask = padding_mask(1, 2048, [0, 2048])  # row 1: every position is padding
    ours, _ = cpu_decode_attention(Module(), query, key, value, mask, scaling=0.125)
    assert torch.isfinite(ours).all()
    reference, _ = sdpa_attention_forward(
        Module(), query[:1].double(), key[:1].double(), value[:1].double(), None, scaling=0.125
    )
    torch.testing.assert_close(ours[:1].double(), reference, rtol=0.02, atol=0.02)


def test_long_queries_and_unmasked_several_go_to_sdpa(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def spy(*args: object, **kwargs: object) -> tuple:
        calls.append(args[1].shape)  # type: ignore[attr-defined]
        return sdpa_attention_forward(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(attention, "sdpa_attention_forward", spy)
    queries = attention.SHORT_QUERY + 1
    query, key, value = inputs(queries, queries, torch.float32, batch=1)
    cpu_decode_attention(Module(), query, key, value, None, scaling=0.125)
    cpu_decode_attention(Module(), *inputs(1, 64, torch.float32, batch=1), None, scaling=0.125)
    unmasked = inputs(4, 12, torch.float32, batch=1)  # several queries, no mask: sdpa's alignment
    cpu_decode_attention(Module(), *unmasked, None, scaling=0.125)
    assert calls == [query.shape, unmasked[0].shape]


class Config:
    _attn_implementation = "sdpa"


class Model:
    def __init__(self) -> None:
        self.config = Config()
        self.requested: list[str] = []

    def set_attn_implementation(self, name: str) -> None:
        self.requested.append(name)
        self.config._attn_implementation = name


@pytest.mark.parametrize(
    ("device", "dtype", "switched"),
    [
        ("cpu", torch.bfloat16, True),
        ("cpu", torch.float16, True),
        ("cpu", torch.float32, False),
        ("cuda", torch.bfloat16, False),
    ],
)
def test_switched_only_on_a_cpu_in_reduced_precision(
    device: str, dtype: torch.dtype, switched: bool
) -> None:
    model = Model()
    assert use_cpu_decode_attention(model, torch.device(device), dtype) is switched
    assert model.requested == ([attention.NAME] if switched else [])


def test_values_may_have_another_head_size_than_keys() -> None:
    query, key, _ = inputs(1, 50, torch.float64, batch=1)
    value = torch.randn((1, 3, 50, 24), dtype=torch.float64)
    ours, _ = cpu_decode_attention(Module(), query, key, value, None, scaling=0.125)
    theirs, _ = sdpa_attention_forward(Module(), query, key, value, None, scaling=0.125)
    assert ours.shape == (1, 1, 9, 24)
    torch.testing.assert_close(ours, theirs)
