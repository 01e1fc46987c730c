"""The cleaning prompt: the profile's template filled with the question and the trace.

The template is a file of the profile with ``$question`` and ``$trace`` placeholders
(``string.Template``), so serving and training use the same text and it can match an official
template exactly when that is known.
"""

from __future__ import annotations

from string import Template

NO_QUESTION = "(not given)"


def render_prompt(template: str, trace: str, question: str = "") -> str:
    """The prompt for one request."""
    return Template(template).substitute(trace=trace, question=question.strip() or NO_QUESTION)
