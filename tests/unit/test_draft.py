"""Anchor drafts (``engine.draft``): which trace text an open anchor's draft is taken from."""

from __future__ import annotations

from typing import Any

from pruner_service.engine.draft import AnchorLookup


class CharTokenizer:
    """One token per character (token id = code point): drafts read back as text."""

    def __call__(self, text: str, add_special_tokens: bool = False) -> dict[str, Any]:
        return {"input_ids": [ord(c) for c in text]}


TRACE = (
    "Let me add 3 and 4. Let me add 3 and 4 again. Let me check it: 7. "
    'So "7" is right.\nDone. I think it works.'
)


def drafted(output: str, size: int = 64, trace: str = TRACE, max_chars: int = 48) -> str:
    return "".join(
        chr(t) for t in AnchorLookup(trace, CharTokenizer(), max_chars).draft(output, size)
    )


def test_an_open_anchor_drafts_the_trace_text_that_follows_it() -> None:
    assert drafted('[{"prefix": "Let me ch') == "eck it: 7. So "  # up to the first quote
    assert drafted('[{"prefix": "So', size=3) == " "  # the quote ends what an anchor can hold
    assert drafted('[{"prefix": "Done. I', size=5) == " thin"


def test_of_several_occurrences_the_continuation_most_share_is_drafted() -> None:
    assert drafted('[{"prefix": "Let me', size=8) == " add 3 a"
    assert drafted('[{"prefix": "Let me add 3 and 4', size=7) == ". Let m"


def test_occurrences_that_start_a_word_come_first() -> None:
    trace = "A bit more. Then it works."
    assert drafted('[{"prefix": "it', trace=trace) == " works."  # not " more." after "bit"
    assert drafted('[{"prefix": "orks', trace=trace) == "."  # inside a word when none starts so


def test_the_suffix_is_drafted_once_it_opens_and_the_anchor_length_is_kept() -> None:
    assert drafted('[{"prefix": "Let me add", "suffix": "I thi') == "nk it works."
    assert drafted('[{"prefix": "Let me add", "suffix": "I thi', max_chars=8) == "nk "


def test_after_an_anchor_key_the_opening_quote_is_drafted() -> None:
    assert drafted('[{"prefix":') == ' "'
    assert drafted('[{"prefix": "Let me add", "suffix":') == ' "'


def test_nothing_is_drafted_outside_an_open_anchor_or_for_unknown_text() -> None:
    assert drafted("[") == ""
    assert drafted('[{"prefix": "') == ""  # nothing written yet to look up
    assert drafted('[{"prefix": "Let me add", "suffix": "Done."}') == ""
    assert drafted('[{"prefix": "Nowhere in it') == ""
    assert drafted('[{"prefix": "Let me', size=0) == ""
