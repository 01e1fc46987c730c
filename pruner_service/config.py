"""The one typed settings object, built once at the entry point from flags and ``FREELM_*``.

Every field can be set by an environment variable named ``FREELM_`` + the field name in upper case
(``FREELM_MAX_BATCH=16``); a command-line flag wins over the variable. Nothing else in the service
reads the environment: the settings object is passed down.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

ENV_PREFIX = "FREELM_"


def default_cache_dir() -> Path:
    """Where fetched and converted models live: ``$XDG_CACHE_HOME/freelm-pruner``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "freelm-pruner"


@dataclass(frozen=True)
class Settings:
    """Settings of one server process (and of the local engine of ``prune`` and ``info``)."""

    host: str = field(default="127.0.0.1", metadata={"help": "address to bind"})
    port: int = field(default=50051, metadata={"help": "port to bind (0: any free port)"})
    profile: str = field(
        default="smollm2-135m", metadata={"help": "profile name or path to a profile.json"}
    )
    model_path: str = field(
        default="", metadata={"help": "base model folder, overriding the profile's"}
    )
    adapter_path: str = field(
        default="",
        metadata={
            "help": "Free-Module (PEFT LoRA) folder overriding the profile's; none: serve "
            "the base model alone"
        },
    )
    cache_dir: Path = field(
        default_factory=default_cache_dir, metadata={"help": "where fetched models are cached"}
    )
    device: str = field(default="auto", metadata={"help": "cpu, cuda or auto"})
    dtype: str = field(
        default="",
        metadata={
            "help": "weights' dtype, overriding the profile's: auto (bfloat16 on GPUs and on "
            "CPUs with AMX or AVX512-BF16, else float32), float32, bfloat16 or float16"
        },
    )
    threads: int = field(default=0, metadata={"help": "torch CPU threads (0: all cores)"})
    max_batch: int = field(default=8, metadata={"help": "most requests in one batched forward"})
    max_wait_ms: float = field(default=10.0, metadata={"help": "how long a batch waits to fill up"})
    max_queue: int = field(default=256, metadata={"help": "queued requests before rejecting"})
    max_trace_chars: int = field(
        default=2_000_000,
        metadata={
            "help": "longest trace accepted, in code points (a memory bound: a trace longer "
            "than one model call is cleaned in windows)"
        },
    )
    max_question_chars: int = field(
        default=1_000_000,
        metadata={
            "help": "longest question accepted, in code points (a long question is cut to "
            "its start and end in a windowed prompt)"
        },
    )
    max_new_tokens: int = field(
        default=0, metadata={"help": "override the profile's output token budget (0: keep)"}
    )
    window_tokens: int = field(
        default=0,
        metadata={
            "help": "most trace tokens one model call reads, overriding the profile's (at least "
            "64; capped by what the context leaves): a longer trace is cleaned in windows of at "
            "most this many, even when it fits the context, and with --reused-rows a window "
            "whose text and question are unchanged since an earlier call is not decoded again, "
            "so a growing trace costs about one window per call (0: the profile's; its default, "
            "as many as fit)"
        },
    )
    prefix_cache_mb: int = field(
        default=1024,
        metadata={
            "help": "MiB of recent prompts' KV caches kept (on the model's device) so that a "
            "later prompt sharing at least half its tokens from the start (a growing trace) "
            "prefills only what is new (0: off)"
        },
    )
    reused_rows: int = field(
        default=1024,
        metadata={
            "help": "decoded rows (a trace, or one window of a long one) whose results are "
            "kept for an identical later row: an unchanged window is not decoded again (0: off)"
        },
    )
    max_message_bytes: int = field(
        default=64 * 1024 * 1024, metadata={"help": "largest gRPC message the transport accepts"}
    )
    default_deadline_s: float = field(
        default=300.0,
        metadata={
            "help": "deadline for requests that set none, and the longest any request gets, "
            "plus --deadline-s-per-kchar per 1,000 code points of its trace"
        },
    )
    deadline_s_per_kchar: float = field(
        default=3.0,
        metadata={"help": "seconds the default deadline grows by per 1,000 code points of trace"},
    )
    grace_s: float = field(default=30.0, metadata={"help": "drain time on shutdown"})
    grpc_threads: int = field(default=64, metadata={"help": "gRPC handler threads"})
    tls_cert_file: str = field(
        default="", metadata={"help": "PEM certificate chain: serve TLS (with --tls-key-file)"}
    )
    tls_key_file: str = field(default="", metadata={"help": "PEM private key for TLS"})
    tls_client_ca_file: str = field(
        default="",
        metadata={
            "help": "PEM CA bundle: require a client certificate signed by it (mutual TLS; "
            "needs --tls-cert-file)"
        },
    )
    auth_token_file: str = field(
        default="",
        metadata={
            "help": "file of bearer tokens, one per line with optional rights (prune,info): "
            "every call but health and reflection needs one; reread on change or SIGHUP"
        },
    )
    max_calls_per_caller: int = field(
        default=0,
        metadata={
            "help": "Prune/PruneStream calls one token may have in flight; more are "
            "RESOURCE_EXHAUSTED (0: no limit; needs --auth-token-file)"
        },
    )
    reflection: str = field(
        default="on", metadata={"help": "on or off: offer gRPC server reflection"}
    )
    role: str = field(
        default="all", metadata={"help": "all, frontend or worker (frontend/worker need --redis)"}
    )
    redis: str = field(
        default="", metadata={"help": "Redis URL of the shared queue (default: in-process queue)"}
    )
    namespace: str = field(default="freelm", metadata={"help": "prefix of every Redis key"})
    claim_idle_ms: int = field(
        default=15_000,
        metadata={
            "help": "reclaim the jobs of a worker that stopped renewing their leases this long "
            "(failure detection: a live worker renews them every 2 s, or a third of this)"
        },
    )
    max_deliveries: int = field(
        default=3, metadata={"help": "deliveries before a job goes to the dead-letter stream"}
    )
    result_ttl_s: int = field(default=600, metadata={"help": "how long results are kept"})
    cache_ttl_s: int = field(
        default=3600,
        metadata={
            "help": "how long the result cache keeps a result, shared by every caller sending "
            "the same content (0: no cache)"
        },
    )
    metrics_port: int = field(default=0, metadata={"help": "Prometheus /metrics port (0: off)"})
    metrics_host: str = field(
        default="", metadata={"help": "address the metrics endpoint binds (default: --host)"}
    )
    log_format: str = field(default="auto", metadata={"help": "auto, json or console"})
    log_level: str = field(default="info", metadata={"help": "debug, info, warning or error"})


def _coerce(kind: Any, raw: str) -> Any:
    if kind in (int, "int"):
        return int(raw)
    if kind in (float, "float"):
        return float(raw)
    if kind in (Path, "Path"):
        return Path(raw).expanduser()
    return raw


def settings_from(
    overrides: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Builds ``Settings`` from ``FREELM_*`` variables, then ``overrides`` (flags; None = unset)."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for f in fields(Settings):
        raw = environ.get(ENV_PREFIX + f.name.upper())
        if raw is not None and raw != "":
            try:
                values[f.name] = _coerce(f.type, raw)
            except ValueError as exc:
                raise ValueError(f"{ENV_PREFIX}{f.name.upper()}={raw!r}: {exc}") from exc
    for name, value in (overrides or {}).items():
        if value is not None:
            values[name] = value
    return Settings(**values)
