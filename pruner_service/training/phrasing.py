"""Sentence pools for generated reasoning traces, split into two disjoint phrasing families.

Every slot (openings, step connectors, re-verification openers and closers, abandoned-approach
openers and rejections, restatements, filler, loop sentences, answers) has one pool. The ``eval``
family takes every fourth entry of each pool and ``train`` the rest, so a held-out set built from
``eval`` shares no phrasing with the training data by construction. Traces are composed from
several slots each (an opener, a body that recomputes a step, a closer), so the training family
yields many thousands of distinct sentences rather than a handful of visible templates. One pool,
``hedge``, is training-only: it opens essential steps with words that usually open redundancy.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

FAMILY_NAMES = ("train", "eval")

_POOLS: dict[str, tuple[str, ...]] = {
    "opening": (
        "Okay, let me work through this.", "Alright, so I need to figure this out.",
        "Let me think about this carefully.", "First, I should set up the problem.",
        "Let me start by reading what is asked.", "Hmm, let me see what we have here.",
        "Right, let me break this down.", "Let me approach this step by step.",
        "Okay. Let me parse this.", "So, I want to solve this.", "Let me get started.",
        "Okay, so this is a fairly direct one.", "Alright, let me look at the numbers.",
        "Let me figure out what is being asked first.", "Okay, here we go.",
        "Let me organize what I know.", "Alright, thinking it through.",
        "So I need to work this out.", "Let me try to solve this cleanly.",
        "Okay, let me take this one piece at a time.",
    ),
    "step": (
        "{S}", "So {s}", "Next, {s}", "Then {s}", "Now {s}", "Here {s}", "At this point {s}",
        "OK, {s}", "From there, {s}", "That means {s}", "And {s}", "After that, {s}",
        "Continuing, {s}", "Moving on, {s}", "Right, {s}", "Now, {s}", "Good, so {s}",
        "Working it out, {s}", "Looking at this, {s}", "Let me write it out: {s}",
    ),
    "reverify_open": (
        "Wait, let me double-check that.", "Hmm, let me verify once more.",
        "Let me recheck this step.", "To be safe I will confirm it again.",
        "I am going to re-examine this.", "Actually, let me make sure.", "Let me just verify.",
        "Hold on, is that right?", "Let me go over that again.", "Just to be sure:",
        "Checking again:", "Let me redo that calculation.", "Hmm, did I get that right?",
        "Quick sanity check:", "Let me confirm.", "Let me re-verify.", "Wait, let me recompute.",
        "One more check.", "Before moving on, let me verify.", "I should double check this.",
        "Let me see if that is correct.", "Let me make sure I did not slip.", "Verifying:",
        "Let me go back and check.", "Hmm, wait, let me check the arithmetic.",
        "Let me recompute to be careful.", "Is that right? Let me see.",
        "Actually, let me verify this part again.",
    ),
    "reverify_close": (
        "Yes, that holds.", "Right.", "Confirmed.", "Good, it checks out.", "It is correct.",
        "Yes, that is right.", "Okay, same result.", "That matches.", "Yep, consistent.",
        "So that is correct.", "Fine, that is still right.", "Good.", "No mistake there.",
        "Same as before.", "That is consistent with what I had.", "Okay, I am confident.",
        "Yes.", "Still the same.", "Alright, that is fine.", "Yes, no error.",
    ),
    "abandoned_open": (
        "Maybe I could try {alt} instead.", "Another idea is {alt}.",
        "I wonder whether {alt} would work.", "Perhaps {alt} could be useful.",
        "What if I tried {alt}?", "Alternatively, I could consider {alt}.",
        "One option would be {alt}.", "Let me consider {alt} for a moment.",
        "Hmm, or maybe {alt}.", "I could also think about {alt}.", "Should I use {alt} here?",
        "There might be a shortcut via {alt}.", "Let me try {alt} and see.",
        "Or I could go with {alt}.", "Another approach: {alt}.", "What about {alt}?",
    ),
    "abandoned_middle": (
        "That would mean setting things up differently.", "Let me see where that goes.",
        "I would have to redo the setup for that.", "It might give the same thing.",
        "That could take a while.", "I am not sure it applies.",
        "That needs a few extra steps.", "Let me think about how that would look.",
    ),
    "abandoned_close": (
        "Actually no, that gets complicated, so I will drop it.",
        "Hmm, that does not really help here, never mind.",
        "On second thought it leads nowhere, so I abandon it.", "No, scrap that approach.",
        "That seems like overkill, so back to the direct way.", "Never mind, that is more work.",
        "No, that is a dead end.", "That will not simplify anything, forget it.",
        "Actually, the direct way is easier.", "Hmm, no, let me not go down that path.",
        "That is unnecessary here.", "I will set that aside.", "No, too roundabout.",
        "Forget that, it does not fit.", "That is not going to work, so never mind.",
        "Not worth it, I will stick with the plan.",
    ),
    "restate": (
        "Just to restate the problem: {q}", "So the question again is: {q}",
        "In other words, we are asked: {q}", "Put differently, the task is: {q}",
        "Let me reread the question. {q}", "Recall the problem: {q}", "The problem says: {q}",
        "Going back to the question: {q}", "Reminder of what we need: {q}",
        "Again, the question is: {q}", "To recap the setup: {q}", "So we have this: {q}",
        "Let me restate it in my own head. {q}", "The question, once more: {q}",
        "Reading it again: {q}", "Okay, so the problem is: {q}",
    ),
    "filler": (
        "Hmm, okay.", "Let me see.", "Okay, so, right.", "Well, um.", "Right, so then.",
        "Mm, fine.", "Hmm.", "Okay okay.", "Let me think.", "Alright.",
        "Hmm, let me think about this.", "So, yeah.", "Okay, where was I.", "Let me focus.",
        "Hmm, interesting.", "Right, right.", "OK so.", "Let me just think for a second.",
        "Um, okay.", "Hmm, so.", "Alright then.", "Yeah.", "Okay, let me continue.",
        "Good, good.", "Hmm, let me see here.", "Okay, fine.", "Right then.", "Uh, okay.",
    ),
    "loop": (
        "Wait, no.", "Hmm, wait.", "Let me think again.", "Wait, let me reconsider.",
        "Hmm, hold on.", "No wait.", "Let me check again.", "Hmm, actually.",
        "Wait, wait.", "Let me start over.", "Hmm, I am not sure.", "Actually, hmm.",
    ),
    "answer": (
        "So the answer is {a}.", "Therefore the final answer is {a}.", "The result is {a}.",
        "Final answer: {a}.", "So I get {a}.", "That gives {a} as the answer.",
        "The answer should be {a}.", "Thus the answer is {a}.", "Hence the answer is {a}.",
        "So, {a} is the answer.", "I conclude the answer is {a}.", "Answer: {a}.",
    ),
}  # fmt: skip


_TRAIN_ONLY: dict[str, tuple[str, ...]] = {
    # Lead-ins that usually open redundancy, here opening steps the answer needs: training sees
    # that a new computation is kept whatever words introduce it. Held-out sets have none.
    "hedge": (
        "Hmm, okay, so", "Wait,", "Let me see,", "Alright, so", "Let me check:",
        "Let me verify:", "Let me think,", "Hmm,", "Let me compute:", "To be careful,",
        "Carefully now,", "Let me recompute this part:", "Hmm, let me see,", "Wait, so",
        "Um,", "Fine,", "So then,", "Alright,", "Let me do this:", "Well,", "Good,", "Next up,",
        "Let me work it:", "Let me go on:", "Hmm, right,", "Sure,", "Uh,", "Let me see now,",
    ),
}  # fmt: skip


@dataclass(frozen=True)
class Phrasing:
    """One family's share of every pool."""

    opening: tuple[str, ...]
    step: tuple[str, ...]
    reverify_open: tuple[str, ...]
    reverify_close: tuple[str, ...]
    abandoned_open: tuple[str, ...]
    abandoned_middle: tuple[str, ...]
    abandoned_close: tuple[str, ...]
    restate: tuple[str, ...]
    filler: tuple[str, ...]
    loop: tuple[str, ...]
    answer: tuple[str, ...]
    hedge: tuple[str, ...] = ()


def _family(name: str) -> Phrasing:
    held_out = name == "eval"
    pools = {
        f.name: tuple(s for i, s in enumerate(_POOLS[f.name]) if (i % 4 == 3) == held_out)
        for f in fields(Phrasing)
        if f.name in _POOLS
    }
    return Phrasing(**pools, **({} if held_out else _TRAIN_ONLY))


FAMILIES = {name: _family(name) for name in FAMILY_NAMES}
