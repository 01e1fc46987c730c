"""The proxy's settings: one typed object built from the ``freelm-pruner proxy`` flags."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from freelm_pruner_client.client import Tls
from freelm_pruner_client.loopcore import Delimiters
from freelm_pruner_client.options import (
    DEFAULT_MAX_COMMANDS,
    DEFAULT_MAX_DELETE_FRACTION,
    PruneOptions,
    as_flag_message,
)

Show = Literal["pruned", "full", "none"]
SHOW_CHOICES: tuple[Show, ...] = ("pruned", "full", "none")


@dataclass(frozen=True)
class ProxySettings:
    """Where to listen, the upstream and pruner, and how to prune.

    Tokens: ``prune_every_tokens`` (0: never prune, every request is passed through),
    ``default_max_tokens`` (when a request sets none). Seconds: ``prune_timeout_s`` (the deadline
    of one pruner call; past it the round goes on unpruned), ``upstream_timeout_s`` (connect and
    read, per upstream read). Code points: ``frozen_prefix_chars``, ``protect_tail_chars``,
    ``max_trace_chars``, ``max_question_chars``. ``max_commands``: commands the pruner's model
    may write per call (``None``: the pruner's default; 0: its loop collapser alone).
    ``pruner_token``: the bearer token sent to the pruner (``None``: the client's default, the
    file named by ``FREELM_PRUNER_TOKEN_FILE``). ``pruner_tls``: TLS (and a client certificate)
    to the pruner; ``None``: plaintext.
    """

    upstream: str
    pruner: str
    host: str = "127.0.0.1"
    port: int = 8080
    prune_every_tokens: int = 512
    default_max_tokens: int = 8192
    prune_timeout_s: float = 10.0
    upstream_timeout_s: float = 600.0
    show_reasoning: Show = "full"
    delimiters: Delimiters = field(default_factory=Delimiters)
    frozen_prefix_chars: int = 0
    protect_tail_chars: int = 200
    max_delete_fraction: float = DEFAULT_MAX_DELETE_FRACTION
    max_trace_chars: int = 24_000
    max_question_chars: int = 4_000
    passthrough_models: tuple[str, ...] = ()
    max_commands: int | None = None
    pruner_token: str | None = field(default=None, repr=False)
    pruner_tls: Tls | None = None

    @property
    def upstream_base(self) -> str:
        """The upstream's base URL without a trailing ``/v1`` or slash."""
        return self.upstream.rstrip("/").removesuffix("/v1")

    def check(self) -> None:
        """Raises ``ValueError`` naming the first flag out of range."""
        if self.prune_every_tokens < 0:
            raise ValueError(f"--prune-every-tokens must be >= 0, got {self.prune_every_tokens}")
        if self.default_max_tokens < 1:
            raise ValueError(f"--default-max-tokens must be >= 1, got {self.default_max_tokens}")
        if self.prune_timeout_s <= 0 or self.upstream_timeout_s <= 0:
            raise ValueError("--prune-timeout-s and --upstream-timeout-s must be positive")
        self._check_prune_options()
        if not self.delimiters.start or not self.delimiters.end:
            raise ValueError("--think-start and --think-end must not be empty")

    def _check_prune_options(self) -> None:
        """The pruning options sent with every call, checked by the one options validator."""
        commands = DEFAULT_MAX_COMMANDS if self.max_commands is None else self.max_commands
        options = PruneOptions(
            frozen_prefix_chars=self.frozen_prefix_chars,
            protect_tail_chars=self.protect_tail_chars,
            max_delete_fraction=self.max_delete_fraction,
            max_commands=commands,
        )
        try:
            options.check()
        except ValueError as exc:
            raise ValueError(as_flag_message(exc)) from None
