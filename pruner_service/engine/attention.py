"""Attention for short queries on a CPU in reduced precision: the decode's attention.

transformers' ``sdpa`` attention hands a decode step (one query token, no padding mask) of a
grouped-query model to ``scaled_dot_product_attention`` with ``enable_gqa``, a kernel that is
slow on a CPU in bfloat16 for so few queries. ``cpu_decode_attention`` computes queries of at
most ``SHORT_QUERY`` tokens as two matrix products over the key/value heads (softmax in
float32) and hands every other call (prefill) to ``sdpa``; ``use_cpu_decode_attention``
switches a loaded model to it through transformers' ``AttentionInterface``. A decode forward of
SmolLM2-135M with a 5,120-token cache takes 77 ms with it against 139 ms with ``sdpa`` (46 against
60 ms with 512 tokens; AMD EPYC with AVX512-BF16, 2 threads; ``bench/decode_attention.py``,
docs/BENCHMARKS.md).
"""

from __future__ import annotations

from typing import Any

import structlog
import torch
from transformers import AttentionInterface, AttentionMaskInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import sdpa_mask

log = structlog.get_logger(__name__)

NAME = "freelm_cpu_decode"
SHORT_QUERY = 32
"""Most query tokens per row computed by matrix products: a decode step and its draft (1 +
``draft_tokens``, 9 by default), with room for longer drafts."""

REDUCED = (torch.bfloat16, torch.float16)


def cpu_decode_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """Attention output [batch, queries, heads, head_dim] for ``query`` [batch, heads, queries,
    head_dim] over ``key``/``value`` [batch, kv_heads, positions, head_dim]; the signature of
    transformers' attention functions (``scaling``, ``dropout``, ``is_causal`` as keywords).

    ``attention_mask``: ``sdpa_mask``'s boolean [batch, 1, queries, positions] (True: attended)
    or None for a single query (every position attended); several queries without a mask (their
    causal alignment is sdpa's convention), dropout, position bias and softcap go to ``sdpa``. A
    query whose positions are all masked (a padding position) gets a uniform average, never NaN,
    so that the values cached at padding stay finite. The scores are the reduced-precision
    product's, scaled and normalised in float32."""
    batch, heads, queries, dim = query.shape
    if (
        queries > SHORT_QUERY
        or query.device.type != "cpu"
        or (attention_mask is None and queries > 1)  # causal alignment and is_causal: sdpa's
        or kwargs.get("dropout")
        or kwargs.get("position_bias") is not None
        or kwargs.get("softcap") is not None
    ):
        output: torch.Tensor = sdpa_attention_forward(
            module, query, key, value, attention_mask, **kwargs
        )[0]
        return output, None
    scaling = kwargs.get("scaling")
    kv_heads, positions = key.shape[1], key.shape[2]
    group = heads // kv_heads
    scale = scaling if scaling is not None else dim**-0.5
    grouped = query.reshape(batch, kv_heads, group * queries, dim)
    scores = torch.matmul(grouped, key.transpose(-1, -2)).float() * scale
    scores = scores.view(batch, kv_heads, group, queries, positions)
    if attention_mask is not None:
        if attention_mask.dtype == torch.bool:
            scores = scores.masked_fill(~attention_mask[:, :, None], torch.finfo(scores.dtype).min)
        else:
            scores = scores + attention_mask[:, :, None].float()
    weights = scores.softmax(dim=-1).to(value.dtype)
    out = torch.matmul(weights.view(batch, kv_heads, group * queries, positions), value)
    return out.view(batch, heads, queries, value.shape[-1]).transpose(1, 2).contiguous(), None


AttentionInterface.register(NAME, cpu_decode_attention)
AttentionMaskInterface.register(NAME, sdpa_mask)


def use_cpu_decode_attention(model: Any, device: torch.device, dtype: torch.dtype) -> bool:
    """Switches ``model`` from ``sdpa`` to ``cpu_decode_attention`` when it runs on a CPU in
    bfloat16 or float16; True when it did. float32 keeps ``sdpa`` (its kernel is not the slow
    one there), so float32 outputs, which the exactness tests pin, stay those of ``sdpa``."""
    if device.type != "cpu" or dtype not in REDUCED:
        return False
    if getattr(model.config, "_attn_implementation", None) != "sdpa":
        return False
    model.set_attn_implementation(NAME)
    switched: bool = model.config._attn_implementation == NAME
    log.info("decode_attention", implementation=NAME if switched else "sdpa")
    return switched
