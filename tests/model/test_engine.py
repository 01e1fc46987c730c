"""The engine on the real SmolLM2 model: merging, batching, grammar, limits, profiles."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
import torch
from freelm_pruner_client.anchors import AnchorCommand, Status, resolve_anchor

from pruner_service.domain import PruneOptions, PruneRequest
from pruner_service.engine import hf
from pruner_service.engine.grammar import (
    parse_commands,
)
from pruner_service.engine.guard import AnchorGuard
from pruner_service.engine.hf import HFEngine
from pruner_service.engine.load import Float32Head, LoadedModel, load_model
from pruner_service.engine.profile import AdapterConfig, Profile, ProfileError
from pruner_service.engine.prompt import render_prompt
from pruner_service.engine.steering import SteeringMode
from pruner_service.training.data import generate
from tests.conftest import FEWSHOT_PROFILE, REALISTIC_TRACE

TRACES = [
    REALISTIC_TRACE,
    "I need 7 * 8. Hmm, let me restate: what is 7 * 8. 7 * 8 = 56. So 56.",
    "Start: x + 3 = 10. Maybe guess x = 5? No, that gives 8. Subtract 3: x = 7. Check: 7 + 3 = 10.",
]


@pytest.fixture(scope="module")
def engine(cache_dir: Path) -> HFEngine:
    profile = Profile.load(str(FEWSHOT_PROFILE))
    return HFEngine(load_model(profile, cache_dir, "cpu"), profile)


def requests(traces: list[str]) -> list[PruneRequest]:
    return [PruneRequest(f"r{i}", t, "", PruneOptions()) for i, t in enumerate(traces)]


@pytest.mark.parametrize("rows_separately", [True, False], ids=["per-row-prefill", "padded"])
def test_batched_results_equal_unbatched_ones(engine: HFEngine, rows_separately: bool) -> None:
    batch = requests(TRACES)
    default = engine.prefill_rows_separately
    engine.prefill_rows_separately = rows_separately
    try:
        together = engine.propose(batch)
    finally:
        engine.prefill_rows_separately = default
    alone = [engine.propose([r])[0] for r in batch]
    assert together == alone
    assert any(p.commands for p in together if not isinstance(p, Exception))


def test_outputs_parse_and_anchors_are_substrings_of_the_trace(engine: HFEngine) -> None:
    for request, proposal in zip(requests(TRACES), engine.propose(requests(TRACES)), strict=True):
        assert not isinstance(proposal, Exception)
        parsed = json.loads(proposal.raw_output)
        assert [AnchorCommand(**c) for c in parsed] == list(proposal.commands)
        assert len(proposal.commands) <= 4
        for c in proposal.commands:
            assert c.prefix and c.suffix
            assert c.prefix in request.trace and c.suffix in request.trace
            assert len(c.prefix) <= 40 and len(c.suffix) <= 40


def test_a_prompt_over_the_context_is_cleaned_in_windows_beside_a_short_one(
    engine: HFEngine,
) -> None:
    long = "\n\n".join(
        " ".join(f"word{i}x{j}" for j in range(40)) + ". Wait, word{i}x0 again." for i in range(160)
    )
    short, windowed = engine.propose(requests([TRACES[1], long]))
    assert not isinstance(short, Exception) and not isinstance(windowed, Exception)
    assert short.windows == 1 and all(c.scope is None for c in short.commands)
    assert windowed.windows >= 2
    assert windowed.prompt_tokens > engine.profile.context_tokens
    raw = json.loads(windowed.raw_output)
    assert len(raw) == len(windowed.commands)
    assert all(len(item["scope"]) == 2 for item in raw), "each command with its window"
    for command in windowed.commands:
        assert command.scope is not None
        inside = long[command.scope.start : command.scope.end]
        assert command.prefix in inside and command.suffix in inside
        end = command.scope.end
        assert end == len(long) or long[end - 2 : end] == "\n\n", "windows end at paragraphs"
    windows = engine.windows(long, 2000)
    assert windows[0].start == 0 and windows[-1].end == len(long)
    assert all(long[w.end - 2 : w.end] == "\n\n" for w in windows[:-1]), "cut at paragraphs"


def test_a_long_question_is_cut_to_its_start_and_end(engine: HFEngine) -> None:
    question = "START " + " ".join(f"clause{i}" for i in range(3000)) + " END?"
    text, tokens = engine._bounded_question(question)
    assert tokens == len(engine._tokens(text))
    assert engine.profile.question_tokens * 0.9 <= tokens <= engine.profile.question_tokens
    assert text.startswith("START clause0") and text.endswith(" END?")
    assert "[…]" in text
    short = "What is 7 * 8?"
    assert engine._bounded_question(short) == (short, len(engine._tokens(short)))


def test_token_budget_closes_the_output_as_valid_json(engine: HFEngine) -> None:
    proposal = engine.propose(requests([TRACES[0]]), max_new_tokens=12)[0]
    assert not isinstance(proposal, Exception)
    assert proposal.truncated and proposal.generated_tokens <= 12
    assert json.loads(proposal.raw_output) == [
        {"prefix": c.prefix, "suffix": c.suffix} for c in proposal.commands
    ]


def _logits(model, ids: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return model(input_ids=ids).logits


def test_merged_adapter_equals_unmerged_peft_and_differs_from_the_base(
    cache_dir: Path, adapter_profile: Path, random_adapter: Path, base_model_dir: Path
) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    profile = Profile.load(str(adapter_profile))
    merged = load_model(profile, cache_dir, "cpu")
    ids = merged.tokenizer(REALISTIC_TRACE, return_tensors="pt")["input_ids"][:, :128]
    base = AutoModelForCausalLM.from_pretrained(base_model_dir, dtype=torch.float32).eval()
    base_logits = _logits(base, ids)
    unmerged = PeftModel.from_pretrained(base, random_adapter).eval()
    merged_logits = _logits(merged.model, ids)
    torch.testing.assert_close(merged_logits, _logits(unmerged, ids), atol=1e-3, rtol=1e-4)
    assert (merged_logits - base_logits).abs().max() > 0.1
    assert not any("lora" in name for name, _ in merged.model.named_parameters())


def test_an_engine_with_an_adapter_reports_it(cache_dir: Path, adapter_profile: Path) -> None:
    profile = Profile.load(str(adapter_profile))
    engine = HFEngine(load_model(profile, cache_dir, "cpu"), profile)
    assert engine.info.adapter_id == "test-random"
    assert engine.info.adapter_version == "0.0.1"


def test_adapter_configs_are_checked(tmp_path: Path, random_adapter: Path) -> None:
    assert AdapterConfig.load(random_adapter).rank == 8
    raw = json.loads((random_adapter / "adapter_config.json").read_text())
    for change, words in [
        ({"peft_type": "PREFIX_TUNING"}, "is not LORA"),
        ({"task_type": "SEQ_CLS"}, "is not CAUSAL_LM"),
        ({"target_modules": []}, "non-empty list"),
        ({"use_dora": True}, "DoRA"),
    ]:
        folder = tmp_path / words.replace(" ", "_")
        folder.mkdir()
        (folder / "adapter_config.json").write_text(json.dumps({**raw, **change}))
        with pytest.raises(ProfileError, match=words):
            AdapterConfig.load(folder)
    with pytest.raises(ProfileError, match=r"no adapter_config\.json"):
        AdapterConfig.load(tmp_path)


def test_an_adapter_for_other_modules_fails_fast(
    tmp_path: Path, random_adapter: Path, cache_dir: Path
) -> None:
    folder = tmp_path / "adapter"
    folder.mkdir()
    raw = json.loads((random_adapter / "adapter_config.json").read_text())
    raw["target_modules"] = ["query_key_value"]
    (folder / "adapter_config.json").write_text(json.dumps(raw))
    profile = json.loads(FEWSHOT_PROFILE.read_text())
    profile.update(adapter=str(folder))
    (tmp_path / "template.txt").write_text((FEWSHOT_PROFILE.parent / "template.txt").read_text())
    (tmp_path / "profile.json").write_text(json.dumps(profile))
    with pytest.raises(ProfileError, match=r"\['query_key_value'\] do not exist"):
        load_model(Profile.load(str(tmp_path / "profile.json")), cache_dir, "cpu")


def test_profiles_fail_fast_with_one_clear_message(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match=r"shipped profiles: qwen3-8b-freelm, smollm2-135m"):
        Profile.load("no-such-profile")
    (tmp_path / "template.txt").write_text("no placeholders")
    (tmp_path / "profile.json").write_text(json.dumps({"name": "x", "model": "m"}))
    with pytest.raises(ProfileError, match=r"lacks \$trace"):
        Profile.load(str(tmp_path))
    (tmp_path / "template.txt").write_text("$question $trace")
    (tmp_path / "profile.json").write_text(json.dumps({"name": "x", "anchor_guard": "on"}))
    with pytest.raises(ProfileError, match=r"anchor_guard 'on' is not one of off, steer, stop"):
        Profile.load(str(tmp_path))
    (tmp_path / "profile.json").write_text(json.dumps({"name": "x", "steering": "guard"}))
    modes = "none, steer, stop, skip"
    with pytest.raises(ProfileError, match=rf"steering 'guard' is not one of {modes}"):
        Profile.load(str(tmp_path))
    (tmp_path / "profile.json").write_text(json.dumps({"name": "x", "unique_prefix": True}))
    with pytest.raises(ProfileError, match=r"unique_prefix was retired"):
        Profile.load(str(tmp_path))
    both = {"name": "x", "steering": "stop", "anchor_guard": "stop"}
    (tmp_path / "profile.json").write_text(json.dumps(both))
    with pytest.raises(ProfileError, match=r"both steering and anchor_guard"):
        Profile.load(str(tmp_path))


@pytest.mark.parametrize(
    ("setting", "mode"),
    [({}, "none"), ({"anchor_guard": "off"}, "none"), ({"anchor_guard": "stop"}, "stop"),
     ({"steering": "steer"}, "steer"), ({"steering": "skip"}, "skip"),
     ({"unique_prefix": False}, "none")],
)  # fmt: skip
def test_a_profile_names_its_steering_in_one_setting(
    tmp_path: Path, setting: dict[str, Any], mode: str
) -> None:
    (tmp_path / "template.txt").write_text("$question $trace")
    (tmp_path / "profile.json").write_text(json.dumps({"name": "x", "model": "m", **setting}))
    assert Profile.load(str(tmp_path)).steering == mode


def test_adapter_path_none_serves_the_base_alone(adapter_profile: Path, tmp_path: Path) -> None:
    profile = Profile.load(str(adapter_profile))
    assert profile.adapter is not None
    assert profile.with_paths(adapter="none").adapter is None
    assert profile.with_paths(adapter=str(tmp_path)).adapter == tmp_path
    assert profile.with_paths().adapter == profile.adapter


def test_parse_commands_drops_a_command_cut_off_mid_way() -> None:
    text = '[{"prefix": "a b", "suffix": "c"}, {"prefix": "d", "suf'
    assert parse_commands(text) == (AnchorCommand("a b", "c"),)


def test_jump_forward_gives_the_plain_paths_commands_in_fewer_forwards(engine: HFEngine) -> None:
    batch = requests(TRACES)
    fast, fast_calls = _counted(engine, batch, len(batch), jump_forward=True)
    plain, plain_calls = _counted(engine, batch, len(batch), jump_forward=False)
    assert [p.commands for p in fast] == [p.commands for p in plain]
    assert any(p.commands for p in plain)
    assert fast_calls < plain_calls


@pytest.fixture(scope="module")
def shipped(cache_dir: Path) -> HFEngine:
    """The default profile's engine, with its Free-Module merged, in float32 on every CPU (the
    default ``auto`` is bfloat16 where the CPU runs it natively; exact output equality across
    chunkings holds in float32)."""
    profile = Profile.load("smollm2-135m")
    return HFEngine(load_model(profile, cache_dir, "cpu", "float32"), profile)


def _plain_then_changed(
    shipped: HFEngine, monkeypatch: pytest.MonkeyPatch, **changes: Any
) -> tuple[list[PruneRequest], list[Any], list[Any], list[Any]]:
    """Three held-out traces on which the shipped adapter writes commands that cannot resolve:
    the requests, their proposals without any decoding option, their proposals with the
    engine attributes ``changes`` set, and the decoding rows of the latter."""
    records = list(generate(119, seed=2, family="eval"))
    batch = [
        PruneRequest(r["id"], r["trace"], r["question"], PruneOptions())
        for r in (records[70], records[74], records[118])
    ]
    monkeypatch.setattr(shipped, "steering", SteeringMode.NONE)
    plain = shipped.propose(batch)
    rows: list[Any] = []
    original = shipped._row
    monkeypatch.setattr(shipped, "_row", lambda *args: rows.append(original(*args)) or rows[-1])
    for name, value in changes.items():
        monkeypatch.setattr(shipped, name, value)
    return batch, plain, shipped.propose(batch), rows


@pytest.mark.parametrize("mode", ["steer", "stop", "skip"])
def test_the_anchor_guard_keeps_commands_resolvable(
    shipped: HFEngine, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    batch, plain, guarded, rows = _plain_then_changed(
        shipped, monkeypatch, steering=SteeringMode(mode)
    )
    failing = 0
    for request, first, second in zip(batch, plain, guarded, strict=True):
        assert not isinstance(first, Exception) and not isinstance(second, Exception)
        failing += sum(_fails(request.trace, c) for c in first.commands)
        assert json.loads(second.raw_output) == [
            {"prefix": c.prefix, "suffix": c.suffix} for c in second.commands
        ]
        assert not second.truncated
        assert not any(_fails(request.trace, c) for c in second.commands), second.commands
    assert failing > 0  # without the guard these traces get commands that cannot resolve
    if mode == "steer":  # it writes commands the model did not: a replaced token
        assert [p.commands for p in guarded] != [p.commands for p in plain]
        assert not any(row.cut for row in rows)
    elif mode == "stop":  # stopping only ends lists early: what is left is what the model wrote
        assert any(row.cut for row in rows)
        for first, second in zip(plain, guarded, strict=True):
            assert not isinstance(first, Exception) and not isinstance(second, Exception)
            assert first.commands[: len(second.commands)] == second.commands
    else:  # skipping leaves out the failing commands and keeps every other the model wrote
        assert not any(row.cut for row in rows)  # the lists were not ended early
        assert [p.commands for p in guarded] != [p.commands for p in plain]
        for request, first, second in zip(batch, plain, guarded, strict=True):
            assert not isinstance(first, Exception) and not isinstance(second, Exception)
            guard = AnchorGuard(request.trace, shipped.profile.max_anchor_chars, request.question)
            assert second.commands == guard.passing(first.commands)


def _fails(trace: str, command: AnchorCommand) -> bool:
    return resolve_anchor(trace, command.prefix, command.suffix)[0] is not Status.APPLIED


def _counted(
    engine: HFEngine, batch: list[PruneRequest], size: int, **attrs: Any
) -> tuple[list, int]:
    """The proposals for ``batch`` in groups of ``size`` with the engine attributes ``attrs``
    set, and the forward passes they took."""
    defaults = {name: getattr(engine, name) for name in attrs}
    engine.__dict__.update(attrs)
    before = engine.forward_passes
    try:
        proposals = []
        for start in range(0, len(batch), size):
            proposals += engine.propose(batch[start : start + size])
        return proposals, engine.forward_passes - before
    finally:
        engine.__dict__.update(defaults)


REAL_STYLE_TRACE = """Alright, let me figure out the remainder when 2^100 is divided by 7.

Powers of 2 mod 7: 2^1 = 2, 2^2 = 4, 2^3 = 8 = 1 mod 7. So the cycle length is 3.

Wait, let me double-check 2^3. 2^3 = 8 and 8 - 7 = 1. Yes, 2^3 is 1 mod 7.

100 = 3 * 33 + 1, so 2^100 = (2^3)^33 * 2 = 1 * 2 = 2 mod 7.

Hmm, let me verify that 3 * 33 + 1 = 100. 3 * 33 = 99, plus 1 is 100. Yes.

Let me also try another way: maybe use Fermat's little theorem. 2^6 = 1 mod 7, and 100 = 6 * 16 + 4,
so 2^100 = 2^4 = 16 = 2 mod 7. Same answer.

Wait, let me double-check 16 mod 7. 16 - 14 = 2. Yes. So the remainder is 2.

So the answer is 2.
"""


def test_drafted_anchors_give_the_plain_decodes_outputs_in_fewer_forwards(
    shipped: HFEngine,
) -> None:
    records = list(generate(6, seed=2, family="eval"))
    batch = [PruneRequest(r["id"], r["trace"], r["question"], PruneOptions()) for r in records]
    batch += requests([REALISTIC_TRACE, REAL_STYLE_TRACE])
    plain, plain_calls = _counted(shipped, batch, 1, draft_tokens=0)
    drafted, drafted_calls = _counted(shipped, batch, 1, draft_tokens=8)
    together, _ = _counted(shipped, batch, 4, draft_tokens=8)
    plain_together, _ = _counted(shipped, batch, 4, draft_tokens=0)
    assert [p.raw_output for p in drafted] == [p.raw_output for p in plain]
    assert [p.raw_output for p in together] == [p.raw_output for p in plain_together]
    assert [p.commands for p in together] == [p.commands for p in plain]
    assert sum(len(p.commands) for p in plain) >= 4
    assert drafted_calls * 1.3 < plain_calls


def _engine_like(shipped: HFEngine, prefix_bytes: int, rows: int, **profile: Any) -> HFEngine:
    """An engine over the shipped engine's model with reuse set and profile fields changed."""
    loaded = LoadedModel(shipped.model, shipped.tokenizer, None, shipped.device, torch.float32)
    changed = dataclasses.replace(shipped.profile, **profile)
    return HFEngine(loaded, changed, prefix_cache_bytes=prefix_bytes, reused_rows=rows)


def _prefilled(engine: HFEngine, batch: list[PruneRequest]) -> tuple[list[Any], list[int]]:
    """The proposals for ``batch`` and the prompt tokens each row's prefill computed."""
    fed: list[int] = []
    original = engine._prefill_row

    def spy(prompt_ids: list[int], shared: int, layers: Any) -> Any:
        fed.append(len(prompt_ids) - shared)
        return original(prompt_ids, shared, layers)

    engine._prefill_row = spy  # type: ignore[method-assign]
    try:
        return engine.propose(batch), fed
    finally:
        del engine._prefill_row


def _new_tokens(engine: HFEngine, before: str, after: str) -> int:
    """Tokens of ``after``'s prompt past the start it shares with ``before``'s."""
    old, new = (engine._tokens(render_prompt(engine.profile.template, t)) for t in (before, after))
    shared = next(
        (i for i, (a, b) in enumerate(zip(old, new, strict=False)) if a != b),
        min(len(old), len(new)),
    )
    return len(new) - min(shared, len(new) - 1)


GROWING = REAL_STYLE_TRACE * 3


def test_a_growing_trace_prefills_only_what_is_new_with_the_same_commands(
    shipped: HFEngine,
) -> None:
    cold = _engine_like(shipped, 0, 0)
    warm = _engine_like(shipped, 2**30, 0)
    cuts = [len(GROWING) // 3, len(GROWING) // 2, 2 * len(GROWING) // 3, len(GROWING)]
    for n, cut in enumerate(cuts):
        batch = requests([GROWING[:cut]])
        expected, cold_fed = _prefilled(cold, batch)
        got, warm_fed = _prefilled(warm, batch)
        assert [p.raw_output for p in got] == [p.raw_output for p in expected]
        if n:  # the earlier version's prompt is reused up to where they differ
            assert warm_fed == [_new_tokens(warm, GROWING[: cuts[n - 1]], GROWING[:cut])]
            assert warm_fed[0] < cold_fed[0] / 2
    assert len(warm.prefix_cache) == 1  # each version replaced the one before it
    changed = "Alright, let us" + GROWING[len("Alright, let me") :]
    expected, cold_fed = _prefilled(cold, requests([changed]))
    got, warm_fed = _prefilled(warm, requests([changed]))
    assert [p.raw_output for p in got] == [p.raw_output for p in expected]
    assert _new_tokens(warm, GROWING, changed) > cold_fed[0] - 200  # only the template shared
    assert warm_fed == cold_fed  # under half the prompt cached: prefilled cold


def test_rows_reusing_cached_prompts_decode_together_as_alone(shipped: HFEngine) -> None:
    warm = _engine_like(shipped, 2**30, 0)
    first, second = REAL_STYLE_TRACE, REALISTIC_TRACE
    warm.propose(requests([first[: len(first) // 2], second[: len(second) // 2]]))
    batch = requests([first, second, TRACES[1]])
    together = warm.propose(batch)
    alone = [_engine_like(shipped, 0, 0).propose([r])[0] for r in batch]
    assert [p.raw_output for p in together] == [p.raw_output for p in alone]


def test_an_unchanged_window_is_not_decoded_again(shipped: HFEngine) -> None:
    engine = _engine_like(shipped, 0, 64, context_tokens=800, window_tokens=300, question_tokens=64)
    paragraphs = [REAL_STYLE_TRACE.replace("2^100", f"2^{100 + i}") for i in range(4)]
    trace = "\n\n".join(paragraphs)
    decoded: list[int] = []
    original = engine._decode
    engine._decode = lambda rows, budget: decoded.append(len(rows)) or original(rows, budget)  # type: ignore[method-assign]
    first = engine.propose(requests([trace]))[0]
    assert not isinstance(first, Exception) and first.windows >= 3
    assert sum(decoded) == first.windows
    decoded.clear()
    grown = trace + "\n\nSo the answer is 2, as found."
    again = engine.propose(requests([grown]))[0]
    assert not isinstance(again, Exception)
    assert 1 <= sum(decoded) < again.windows
    cold = _engine_like(shipped, 0, 0, context_tokens=800, window_tokens=300, question_tokens=64)
    cold = cold.propose(requests([grown]))[0]
    assert again == cold


def test_window_tokens_windows_a_trace_that_fits_the_context(shipped: HFEngine) -> None:
    trace = REAL_STYLE_TRACE * 2
    whole = _engine_like(shipped, 0, 0).propose(requests([trace]))[0]
    capped = _engine_like(shipped, 0, 0, window_tokens=200).propose(requests([trace]))[0]
    assert not isinstance(whole, Exception) and not isinstance(capped, Exception)
    assert whole.windows == 1 and whole.prompt_tokens < shipped.profile.context_tokens
    assert capped.windows >= 2
    short = _engine_like(shipped, 0, 0, window_tokens=200).propose(requests([TRACES[1]]))[0]
    assert not isinstance(short, Exception) and short.windows == 1
    reusing = _engine_like(shipped, 0, 64, window_tokens=200)
    decoded: list[int] = []
    original = reusing._decode
    reusing._decode = lambda rows, budget: decoded.append(len(rows)) or original(rows, budget)  # type: ignore[method-assign]
    assert reusing.propose(requests([trace]))[0] == capped
    grown = reusing.propose(requests([trace + "\n\nSo the answer is 2."]))[0]
    assert not isinstance(grown, Exception)
    assert sum(decoded) - capped.windows < grown.windows, "unchanged windows were reused"


def test_bfloat16_weights_keep_the_output_projection_in_float32(cache_dir: Path) -> None:
    profile = Profile.load("smollm2-135m")
    half = load_model(profile, cache_dir, "cpu", "bfloat16")
    full = load_model(profile, cache_dir, "cpu", "float32")
    assert half.dtype == torch.bfloat16 and isinstance(half.model.lm_head, Float32Head)
    assert half.model.model.layers[0].mlp.up_proj.weight.dtype == torch.bfloat16
    assert half.model.model.rotary_emb.inv_freq.dtype == torch.float32  # positions stay exact
    assert half.model.get_output_embeddings() is half.model.lm_head
    assert not isinstance(full.model.lm_head, Float32Head)
    ids = torch.tensor([full.tokenizer(REALISTIC_TRACE)["input_ids"][:200]])
    with torch.inference_mode():
        low = half.model(input_ids=ids, logits_to_keep=1).logits[0, -1]
        high = full.model(input_ids=ids, logits_to_keep=1).logits[0, -1]
    assert low.dtype == torch.float32
    assert torch.nn.functional.cosine_similarity(low, high, dim=0) > 0.99
    assert int(low.argmax()) == int(high.argmax())


def test_a_batch_compacting_its_cache_every_step_decodes_as_each_row_alone(
    shipped: HFEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    records = list(generate(3, seed=2, family="eval"))
    batch = [PruneRequest(r["id"], r["trace"], r["question"], PruneOptions()) for r in records]
    batch += requests([REAL_STYLE_TRACE])
    alone = [shipped.propose([r])[0] for r in batch]
    widths: list[int] = []
    original = hf._compact
    monkeypatch.setattr(hf, "_compact", lambda c, a: widths.append(a.shape[1]) or original(c, a))
    monkeypatch.setattr(shipped, "max_holes", 0)  # compact whenever a row rejected a draft
    together = shipped.propose(batch)
    assert widths, "rows rejected drafts while others kept theirs"
    assert [p.raw_output for p in together] == [p.raw_output for p in alone]


def test_two_requests_rendering_one_prompt_are_not_given_each_others_rows(
    shipped: HFEngine,
) -> None:
    engine = _engine_like(shipped, 0, 64)
    first = PruneRequest("a", REAL_STYLE_TRACE, "What is 2^100 mod 7?\n\nReasoning:\nNote.",
                         PruneOptions())  # fmt: skip
    second = PruneRequest("b", "Note.\n\nReasoning:\n" + REAL_STYLE_TRACE, "What is 2^100 mod 7?",
                          PruneOptions())  # fmt: skip
    render = [render_prompt(engine.profile.template, r.trace, r.question) for r in (first, second)]
    assert render[0] == render[1]  # the same prompt from a different split
    decoded: list[int] = []
    original = engine._decode
    engine._decode = lambda rows, budget: decoded.append(len(rows)) or original(rows, budget)  # type: ignore[method-assign]
    engine.propose([first])
    engine.propose([second])
    engine.propose([first])
    assert decoded == [1, 1]  # the second decoded for itself; the first's repeat reused


def test_every_row_judges_commands_with_the_request_question(shipped: HFEngine) -> None:
    question = "Tom has 3 bags of 4 shells. How many shells does Tom have?"
    trace = "First, 3 * 4 = 12 shells. Going back to the question: " + question + " So 12."
    restating = AnchorCommand("First, 3", "does Tom have?")  # a step deleted with a restatement
    (spec,) = shipped._plan(PruneRequest("q", trace, question, PruneOptions())).specs
    assert spec.question == question
    assert shipped._row(spec).steering.finish([restating])[0] == ()
    unasked = dataclasses.replace(spec, question="")
    assert shipped._row(unasked).steering.finish([restating])[0] == (restating,)
    windowed = _engine_like(shipped, 0, 0, window_tokens=40)
    long = PruneRequest("w", "\n\n".join([trace] * 4), question, PruneOptions())
    specs = windowed._plan(long).specs
    assert len(specs) > 1 and all(s.question == question for s in specs)


def test_skipping_a_command_does_not_hide_a_budget_cut(
    shipped: HFEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    batch, plain, _, _ = _plain_then_changed(shipped, monkeypatch)
    request, first = next(
        (r, p)
        for r, p in zip(batch, plain, strict=True)
        if not isinstance(p, Exception) and any(_fails(r.trace, c) for c in p.commands[:-1])
    )
    monkeypatch.setattr(shipped, "steering", SteeringMode.SKIP)
    (cut,) = shipped.propose([request], max_new_tokens=first.generated_tokens - 3)
    assert not isinstance(cut, Exception)
    assert cut.truncated, "the budget cut the list: a left-out command does not end it"
    assert not any(_fails(request.trace, c) for c in cut.commands)
    assert json.loads(cut.raw_output) == [
        {"prefix": c.prefix, "suffix": c.suffix} for c in cut.commands
    ]
