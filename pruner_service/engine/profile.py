"""Profiles and adapters as validated value objects.

A profile (a ``profile.json`` file) names a base model, an optional Free-Module adapter, the
cleaning prompt template and the generation limits. Paths are relative to the profile's folder;
a base model written ``embedded:NAME`` is one the set-up fetches into the cache (see ``fetch``).
Loading fails fast, with one message naming what is wrong.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pruner_service.engine.base import EngineInfo
from pruner_service.engine.steering import SteeringMode

PROFILES_DIR = Path(__file__).resolve().parent.parent / "profiles"
NO_ADAPTER_NOTE = (
    "no Free-Module adapter: the base model alone proposes deletions under the grammar; "
    "the loop collapser is deterministic and unaffected"
)
DTYPES = ("auto", "float32", "bfloat16", "float16")


NO_ADAPTER = "none"


class ProfileError(ValueError):
    """A profile or adapter that cannot be served, with the reason."""


@dataclass(frozen=True)
class AdapterConfig:
    """The parts of a PEFT ``adapter_config.json`` the service relies on."""

    path: Path
    rank: int
    alpha: float
    target_modules: tuple[str, ...]
    base_model: str
    adapter_id: str
    version: str

    @classmethod
    def load(cls, path: Path) -> AdapterConfig:
        """Parses and checks the adapter folder at ``path``."""
        config_file = path / "adapter_config.json"
        if not config_file.is_file():
            raise ProfileError(f"adapter {path}: no adapter_config.json")
        raw = json.loads(config_file.read_text())
        if raw.get("peft_type") != "LORA":
            raise ProfileError(f"adapter {path}: peft_type {raw.get('peft_type')!r} is not LORA")
        if raw.get("task_type") not in (None, "CAUSAL_LM"):
            raise ProfileError(f"adapter {path}: task_type {raw['task_type']!r} is not CAUSAL_LM")
        if raw.get("use_dora") or raw.get("modules_to_save"):
            raise ProfileError(f"adapter {path}: DoRA and modules_to_save are not supported")
        targets = raw.get("target_modules") or []
        if isinstance(targets, str) or not targets:
            raise ProfileError(f"adapter {path}: target_modules must be a non-empty list")
        meta = _read_json(path / "freelm_adapter.json")
        return cls(
            path=path,
            rank=int(raw["r"]),
            alpha=float(raw.get("lora_alpha", raw["r"])),
            target_modules=tuple(sorted(targets)),
            base_model=str(raw.get("base_model_name_or_path") or ""),
            adapter_id=str(meta.get("id") or path.name),
            version=str(meta.get("version") or ""),
        )


@dataclass(frozen=True)
class Profile:
    """A servable configuration of base model, adapter, template and limits."""

    name: str
    model: str
    model_id: str
    gguf_file: str | None
    adapter: Path | None
    template: str
    template_sha256: str
    dtype: str
    max_new_tokens: int
    max_commands: int
    max_anchor_chars: int
    context_tokens: int
    trust_remote_code: bool
    note: str
    jump_forward: bool = True
    """Feed the tokens the grammar forces without a forward pass each (output unchanged)."""
    draft_tokens: int = 8
    """Most trace tokens drafted per forward pass while an anchor is written (prompt lookup,
    ``engine.draft``; output unchanged in float32); 0: off."""
    steering: SteeringMode = SteeringMode.NONE
    """What the decoder does with a command the anchor guard fails (``engine.steering``)."""
    window_tokens: int = 0
    """Most trace tokens one model call reads: a longer trace is cleaned in windows of at most
    this many, even when it fits the context; 0: as many as the context leaves."""
    window_overlap_tokens: int = 0
    """Tokens of overlap between consecutive windows (at most)."""
    question_tokens: int = 512
    """Most question tokens a windowed prompt uses (the question's start and end)."""
    max_batch_tokens: int = 0
    """Most KV-cache positions of one group of rows decoded together (rows times the longest
    prompt plus the output budget; bounds its memory); 0: the context size."""

    @classmethod
    def load(cls, name_or_path: str) -> Profile:
        """Loads a profile by name (shipped under ``profiles/``) or by path to its JSON file."""
        file = Path(name_or_path)
        if file.is_dir():
            file = file / "profile.json"
        if not file.is_file():
            file = PROFILES_DIR / name_or_path / "profile.json"
        if not file.is_file():
            shipped = ", ".join(sorted(p.name for p in PROFILES_DIR.iterdir() if p.is_dir()))
            raise ProfileError(f"no profile {name_or_path!r} (shipped profiles: {shipped})")
        return cls.from_dict(json.loads(file.read_text()), file.parent)

    def with_paths(self, model: str = "", adapter: str = "") -> Profile:
        """This profile with its base model and/or adapter folder replaced (empty: keep; adapter
        ``none``: the base model alone)."""
        changes: dict[str, Any] = {}
        if model:
            changes["model"] = model
        if adapter:
            changes["adapter"] = None if adapter == NO_ADAPTER else Path(adapter)
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_dict(cls, raw: dict[str, Any], folder: Path) -> Profile:
        """Builds and checks a profile from its parsed JSON, resolving paths against ``folder``."""
        template_path = folder / raw.get("template", "template.txt")
        if not template_path.is_file():
            raise ProfileError(f"profile {raw.get('name')}: template {template_path} not found")
        template = template_path.read_text()
        for field in ("$trace", "$question"):
            if field not in template:
                raise ProfileError(f"profile template {template_path} lacks {field}")
        steering = _steering(raw)
        dtype = raw.get("dtype", "float32")
        if dtype not in DTYPES:
            raise ProfileError(f"profile dtype {dtype!r} is not one of {', '.join(DTYPES)}")
        adapter = raw.get("adapter")
        model = str(raw.get("model") or "")
        return cls(
            name=str(raw["name"]),
            model=model if not model or model.startswith("embedded:") else str(folder / model),
            model_id=str(raw.get("model_id", model)),
            gguf_file=raw.get("gguf_file"),
            adapter=(folder / adapter) if adapter else None,
            template=template,
            template_sha256=hashlib.sha256(template.encode()).hexdigest(),
            dtype=dtype,
            max_new_tokens=int(raw.get("max_new_tokens", 192)),
            max_commands=int(raw.get("max_commands", 8)),
            max_anchor_chars=int(raw.get("max_anchor_chars", 48)),
            context_tokens=int(raw.get("context_tokens", 8192)),
            trust_remote_code=bool(raw.get("trust_remote_code", False)),
            note=str(raw.get("note", "")),
            jump_forward=bool(raw.get("jump_forward", True)),
            draft_tokens=_count(raw, "draft_tokens", 8),
            steering=steering,
            window_tokens=_count(raw, "window_tokens", 0),
            window_overlap_tokens=_count(raw, "window_overlap_tokens", 0),
            question_tokens=_count(raw, "question_tokens", 512),
            max_batch_tokens=_count(raw, "max_batch_tokens", 0),
        )


RETIRED = ("constrain_suffix", "unique_prefix")
"""Decoding settings that were measured, not kept (``engine.steering`` says why)."""

_LEGACY_GUARD = {"off": SteeringMode.NONE, "steer": SteeringMode.STEER, "stop": SteeringMode.STOP}


def _steering(raw: dict[str, Any]) -> SteeringMode:
    """The profile's ``steering`` (``none``, ``steer``, ``stop`` or ``skip``; the older
    ``anchor_guard`` key with ``off``, ``steer`` or ``stop`` is read too); raises
    ``ProfileError`` for another value, for both keys at once, or for a retired setting turned
    on."""
    for name in RETIRED:
        if raw.get(name):
            raise ProfileError(f"profile {name} was retired (it raised essential deletions on "
                               f"the held-out set); use steering: skip")  # fmt: skip
    if "steering" in raw and "anchor_guard" in raw:
        raise ProfileError("profile sets both steering and anchor_guard; keep steering")
    if "anchor_guard" in raw:
        legacy = str(raw["anchor_guard"])
        if legacy not in _LEGACY_GUARD:
            raise ProfileError(f"profile anchor_guard {legacy!r} is not one of off, steer, stop")
        return _LEGACY_GUARD[legacy]
    value = str(raw.get("steering", SteeringMode.NONE))
    modes = ", ".join(m.value for m in SteeringMode)
    if value not in {m.value for m in SteeringMode}:
        raise ProfileError(f"profile steering {value!r} is not one of {modes}")
    return SteeringMode(value)


def _count(raw: dict[str, Any], name: str, default: int) -> int:
    """A non-negative integer setting of the profile; raises ``ProfileError`` otherwise."""
    value = raw.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ProfileError(f"profile {name} must be an integer >= 0, not {value!r}")
    return value


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    data = json.loads(path.read_text())
    return data if isinstance(data, dict) else {}


def describe(
    profile: Profile,
    adapter: AdapterConfig | None = None,
    device: str = "",
    overhead: int = 0,
) -> EngineInfo:
    """What a profile serves, without loading its weights (the adapter's config is read).
    ``overhead``: tokens of the template and the largest question a windowed prompt holds
    (0: ``TEMPLATE_TOKENS_ESTIMATE`` plus the profile's ``question_tokens``), for
    ``window_tokens``."""
    if adapter is None and profile.adapter is not None:
        adapter = AdapterConfig.load(profile.adapter)
    return EngineInfo(
        profile=profile.name,
        model_id=profile.model_id,
        adapter_id=adapter.adapter_id if adapter else "",
        adapter_version=adapter.version if adapter else "",
        template_sha256=profile.template_sha256,
        dtype=profile.dtype,
        device=device,
        max_context_tokens=profile.context_tokens,
        max_commands=profile.max_commands,
        max_anchor_chars=profile.max_anchor_chars,
        note=profile.note or ("" if adapter else NO_ADAPTER_NOTE),
        window_tokens=window_tokens(
            profile, overhead or TEMPLATE_TOKENS_ESTIMATE + profile.question_tokens
        ),
        window_overlap_tokens=profile.window_overlap_tokens,
        question_tokens=profile.question_tokens,
    )


WINDOW_MARGIN = 16
"""Tokens kept free in a windowed prompt: re-tokenizing a window alone can differ from the
whole trace's tokens at its edges."""

TEMPLATE_TOKENS_ESTIMATE = 256
"""Tokens ``window_tokens`` assumes for the template when it is reported without a tokenizer
(``GetModelInfo``); each request's windows are sized with its own exact count."""


def window_tokens(profile: Profile, overhead: int = TEMPLATE_TOKENS_ESTIMATE) -> int:
    """Most trace tokens in one window: the context minus the output budget, the prompt's
    ``overhead`` (template and question, tokens) and ``WINDOW_MARGIN``, capped by the profile's
    ``window_tokens``."""
    room = profile.context_tokens - profile.max_new_tokens - overhead - WINDOW_MARGIN
    return max(min(room, profile.window_tokens or room), 0)
