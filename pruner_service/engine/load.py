"""Loading a profile's model: base weights, the Free-Module merged with ``merge_and_unload``.

The one place weights are loaded from a profile: ``load_base`` for serving and for training,
``load_model`` (the base with its adapter merged, on its device, in eval mode) for serving.
Knows nothing about prompts or decoding.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
import torch

from pruner_service.engine.attention import use_cpu_decode_attention
from pruner_service.engine.fetch import ensure_embedded
from pruner_service.engine.profile import AdapterConfig, Profile, ProfileError

log = structlog.get_logger(__name__)


@dataclass
class LoadedModel:
    """A model in eval mode on its device, its tokenizer, and the adapter merged into it."""

    model: Any
    tokenizer: Any
    adapter: AdapterConfig | None
    device: torch.device
    dtype: torch.dtype


def pick_device(name: str) -> torch.device:
    """``auto`` means CUDA when available, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def cpu_name() -> str:
    """The CPU's model name (``model name`` in /proc/cpuinfo, else ``platform``'s), so that a
    figure or a log line says which CPU it is from."""
    info = Path("/proc/cpuinfo")
    if info.is_file():
        for line in info.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def fast_bf16_cpu() -> bool:
    """Whether this CPU runs bfloat16 matrix products natively: AMX tiles or AVX512-BF16
    (``vdpbf16ps``), as PyTorch's oneDNN dispatch detects them. Without either (e.g. AVX2
    only) bfloat16 is emulated and slower than float32."""
    probes = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in probes)


def resolve_dtype(name: str, device: torch.device) -> str:
    """The weights' dtype for ``name`` on ``device``: ``auto`` is bfloat16 on a CUDA device
    that supports it and on a CPU with ``fast_bf16_cpu``, else float32; other names as they
    are (float32, bfloat16, float16)."""
    if name != "auto":
        return name
    if device.type == "cuda":  # native bfloat16 from Ampere (compute capability 8.0) on
        return "bfloat16" if torch.cuda.get_device_capability(device) >= (8, 0) else "float32"
    return "bfloat16" if device.type == "cpu" and fast_bf16_cpu() else "float32"


def resolve_model_path(profile: Profile, cache_dir: Path) -> Path:
    """The folder holding the profile's base model, fetching an embedded model if needed."""
    if not profile.model:
        raise ProfileError(
            f"profile {profile.name} names no base model: pass --model-path (FREELM_MODEL_PATH)"
        )
    if profile.model.startswith("embedded:"):
        return ensure_embedded(profile.model.removeprefix("embedded:"), cache_dir)
    path = Path(profile.model)
    if not path.exists():
        raise ProfileError(f"profile {profile.name}: base model {path} not found")
    return path


def load_tokenizer(profile: Profile, cache_dir: Path) -> Any:
    """The profile's tokenizer alone (no weights), from the model folder (``resolve_model_path``).
    Raises ``ProfileError`` like ``load_base``."""
    from transformers import AutoTokenizer

    path = resolve_model_path(profile, cache_dir)
    return AutoTokenizer.from_pretrained(path, **_from_pretrained_options(profile))


def _from_pretrained_options(profile: Profile) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"trust_remote_code": profile.trust_remote_code}
    if profile.gguf_file:
        kwargs["gguf_file"] = profile.gguf_file
    return kwargs


def load_base(profile: Profile, cache_dir: Path, dtype: str = "") -> tuple[Any, Any]:
    """The profile's base model (no adapter; in ``dtype``, default the profile's, ``auto``
    resolved for the CPU) and its tokenizer, from the model folder (``resolve_model_path``).
    Raises ``ProfileError`` when the profile names no model or its folder is missing."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = resolve_model_path(profile, cache_dir)
    kwargs = _from_pretrained_options(profile)
    tokenizer = AutoTokenizer.from_pretrained(path, **kwargs)
    model_dtype = getattr(torch, resolve_dtype(dtype or profile.dtype, torch.device("cpu")))
    model = AutoModelForCausalLM.from_pretrained(path, dtype=model_dtype, **kwargs)
    return model, tokenizer


def load_model(
    profile: Profile, cache_dir: Path, device_name: str = "auto", dtype_name: str = ""
) -> LoadedModel:
    """Loads the profile's base model and tokenizer (``load_base``) in float32, merges its
    adapter, and casts the model's parameters to its dtype (``dtype_name``, else the profile's;
    ``auto`` resolved for the device by ``resolve_dtype``), keeping the output projection
    (``Float32Head``) and the buffers (rotary frequencies: rounding them to bfloat16 shifts
    positions far apart) in float32. On a CPU in bfloat16 or float16 the decode's attention is
    ``attention.cpu_decode_attention``. Loading takes float32's host memory (twice bfloat16's)."""
    device = pick_device(device_name)
    name = resolve_dtype(dtype_name or profile.dtype, device)
    dtype = getattr(torch, name)
    model, tokenizer = load_base(profile, cache_dir, "float32")  # merged in float32, then cast
    adapter = None
    if profile.adapter is not None:
        adapter = AdapterConfig.load(profile.adapter)
        model = merge_adapter(model, adapter)
    if dtype != torch.float32:
        head = Float32Head(model.get_output_embeddings())
        for parameter in model.parameters():  # buffers (RoPE frequencies) stay float32
            parameter.data = parameter.data.to(dtype)
        model.set_output_embeddings(head)
    model.to(device).eval()
    use_cpu_decode_attention(model, device, dtype)
    log.info(
        "model_loaded",
        profile=profile.name,
        model=profile.model_id,
        adapter=adapter.adapter_id if adapter else None,
        dtype=name,
        device=str(device),
        cpu=cpu_name() if device.type == "cpu" else None,
        cpu_bf16=fast_bf16_cpu() if device.type == "cpu" else None,
    )
    return LoadedModel(model, tokenizer, adapter, device, dtype)


class Float32Head(torch.nn.Module):
    """A model's output projection computed in float32 from half-precision hidden states.

    In bfloat16 the logits keep 8 bits of mantissa, so close candidates swap places and greedy
    decoding writes other anchors; a float32 copy of the projection (tied embeddings are copied,
    not shared) keeps the ranking of the float32 model for the same hidden state, at the cost of
    one float32 matrix product per kept position."""

    def __init__(self, head: Any) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(head.weight.detach().float().clone(), requires_grad=False)
        bias = getattr(head, "bias", None)
        self.bias = (
            None
            if bias is None
            else torch.nn.Parameter(bias.detach().float().clone(), requires_grad=False)
        )

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """Logits [..., vocab] in float32 from hidden states [..., hidden] of any dtype."""
        return torch.nn.functional.linear(hidden.float(), self.weight, self.bias)


def merge_adapter(model: Any, adapter: AdapterConfig) -> Any:
    """``model`` with the LoRA adapter at ``adapter.path`` merged into its weights."""
    from peft import PeftModel

    names = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    missing = sorted(set(adapter.target_modules) - names)
    if missing:
        raise ProfileError(
            f"adapter {adapter.path}: target modules {missing} do not exist in the base model"
        )
    return PeftModel.from_pretrained(model, adapter.path).merge_and_unload()
