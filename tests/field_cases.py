"""Inputs of the field cases (kinds of fault found in public bug reports), written out here.

Each is one instance of a kind: a trace that is mostly one repeated sentence (01), a loop whose
unit is two lines (02), a CRLF paragraph loop (04), deliberate repetition in a code block (05), a
Chinese loop with no spaces (07) and a trace ending in a ``</think>`` line (08).
"""

from __future__ import annotations

LOOP_SENTENCE = "Let me check the entity model to get the right column types."
LOOP_ONLY = "The schema migration failed on the orders table.\n" + " ".join([LOOP_SENTENCE] * 30)

PROCESS_BLOCK = "Let me stop process 4242 first.\nI will stop the stale process now.\n"
TWO_LINE_LOOP = (
    "The dev server will not start because port 8080 is still taken. The old process from "
    "yesterday's run never exited, and the lock file under /tmp still names it. I listed the "
    "processes and found it: it is process 4242, owned by me, started with the same command "
    "line. Killing it is safe because it holds no open database connection.\n"
    + PROCESS_BLOCK * 4
    + "Done: the port is free and the server starts."
)

CYCLE = (
    "Hmm, let me recheck the cycle.\nThe cycle is 2, 4, 3, 1 for powers of 2, not 7.\n"
    "No wait, that was for 2."
)
PARAGRAPH_LOOP_LF = (
    "We need the remainder of 7^100 divided by 5. Powers of 7 mod 5 cycle with period 4: "
    "7, 4, 3, 1. Since 100 = 4 * 25, the remainder is the fourth term.\n\n"
    + f"{CYCLE}\n\n" * 3
    + "So 7^100 mod 5 = 1."
)
PARAGRAPH_LOOP_CRLF = PARAGRAPH_LOOP_LF.replace("\n", "\r\n")

CODE_BLOCK = (
    "The function must call the hook exactly three times, once per retry, so the test can count "
    'calls.\nLet me write it out:\n\n```python\ndef run(hook):\n    hook.fire("retry")\n'
    '    hook.fire("retry")\n    hook.fire("retry")\n    return hook.count\n```\n\n'
    "With this body the test sees hook.count == 3, which is what it asserts."
)

CJK_CHECK = "等等，我再检查一下这个结果。"
CJK_LOOP = (
    "题目要求计算12乘以15。先算10乘以15等于150，再算2乘以15等于30。"
    + CJK_CHECK * 5
    + "\n所以答案是180。"
)
CJK_QUESTION = "12乘以15等于多少？"

THINK_TAG = (
    "The user asks which city is the capital of Australia. Many people think it is Sydney "
    "because it is the largest city. Melbourne was the temporary seat of government until the "
    "new capital was built. Hmm, let me reconsider whether it might be Melbourne. No, Melbourne "
    "was only temporary. So the capital is Canberra.\n</think>\n"
)
THINK_TAG_QUESTION = "What is the capital of Australia?"
THINK_TAG_COMMAND = ("Hmm, let me reconsider", "the capital is Canberra.")
