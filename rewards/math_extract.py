"""Find the final answer inside a model's full solution text.

Every search here runs in time linear in the text length (plain `str.rfind` plus regexes without nested quantifiers
on bounded windows), so a 1 MB solution costs milliseconds, never a hang.
"""

from __future__ import annotations

import re

# The longest answer we ever take out of a solution; anything longer is not an answer a checker should parse.
MAX_ANSWER_CHARS = 1000

_BOX_COMMANDS = ("\\boxed", "\\fbox")
_LAST_NUMBER = re.compile(r"-?\d+(?:,\d{3})*(?:\.\d+)?(?:/\d+)?")
_ANSWER_IS = re.compile(r"answer is\s*:?", re.IGNORECASE)
_TRAILING = " \t\n.,;:!"
_MAX_BOX_TRIES = 8


def find_boxed(text: str) -> str | None:
    r"""The content of the last `\boxed{...}` or `\fbox{...}` in `text`, nested braces included.

    >>> find_boxed(r"so $\boxed{\frac{1}{2}}$ and later \boxed{3}")
    '3'
    >>> find_boxed(r"\boxed{\frac{\sqrt{2}}{2}}")
    '\\frac{\\sqrt{2}}{2}'
    >>> find_boxed(r"\boxed 5") is None
    True
    """
    start = max(text.rfind(command) for command in _BOX_COMMANDS)
    # Only a few unclosed boxes are skipped: a text made of thousands of "\boxed{" must stay cheap.
    for _ in range(_MAX_BOX_TRIES):
        if start < 0:
            break
        command = next(c for c in _BOX_COMMANDS if text.startswith(c, start))
        content = _braced_content(text, start + len(command))
        if content is not None:
            return content
        # An unclosed box: try the one before it.
        start = max(text.rfind(command, 0, start) for command in _BOX_COMMANDS)
    return None


def _braced_content(text: str, position: int) -> str | None:
    """The text inside the brace group that opens at `position` (after spaces), or None if there is none."""
    while position < len(text) and text[position] == " ":
        position += 1
    if position >= len(text) or text[position] != "{":
        return None
    depth = 0
    for end in range(position, min(len(text), position + MAX_ANSWER_CHARS + 2)):
        char = text[end]
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return text[position + 1 : end]
    return None


def find_minerva(text: str) -> str | None:
    """The `X` of the last "Final Answer: The final answer is $X$. I hope it is correct." (the SCoRe prompt's form).

    >>> find_minerva("Final Answer: The final answer is $\\\\frac{1}{2}$. I hope it is correct.")
    '\\\\frac{1}{2}'
    >>> find_minerva("The final answer is 12. I hope it is correct.")
    '12'
    """
    lowered = text.lower()
    start = lowered.rfind("final answer is")
    if start < 0:
        return None
    rest = text[start + len("final answer is") : start + len("final answer is") + MAX_ANSWER_CHARS + 40].strip()
    hope = rest.lower().find("i hope")
    if hope >= 0:
        rest = rest[:hope]
    else:
        rest = rest.split("\n", 1)[0]
    rest = rest.strip().rstrip(_TRAILING)
    if rest.startswith("$"):
        rest = rest.strip("$").strip()
    return rest or None


def find_gsm8k(text: str) -> str | None:
    """The answer after the last GSM8K-style `#### X` marker.

    >>> find_gsm8k("She pays 3 * 4 = 12 dollars.\\n#### 1,200")
    '1,200'
    """
    start = text.rfind("####")
    if start < 0:
        return None
    line = text[start + 4 : start + 4 + MAX_ANSWER_CHARS].split("\n", 1)[0]
    return line.strip().rstrip(_TRAILING).strip("$ ") or None


def find_answer_is(text: str) -> str | None:
    """The `X` of the last "The answer is X" (up to the end of the sentence or line).

    >>> find_answer_is("So the answer is $3.5$. Done.")
    '3.5'
    >>> find_answer_is("Thus the answer is: 42")
    '42'
    """
    start = text.lower().rfind("answer is")
    if start < 0:
        return None
    window = text[start : start + MAX_ANSWER_CHARS + 20]
    match = _ANSWER_IS.match(window)
    if match is None:
        return None
    rest = window[match.end() :].split("\n", 1)[0]
    # A sentence ends at ". " (a period inside 3.5 is followed by a digit, not a space).
    sentence_end = rest.find(". ")
    if sentence_end >= 0:
        rest = rest[:sentence_end]
    return rest.strip().rstrip(_TRAILING).strip("$ ").rstrip(_TRAILING) or None


def find_last_number(text: str) -> str | None:
    """The last number in the text (integers, decimals, thousands separators, `a/b`).

    >>> find_last_number("3 + 4 = 7, so 7 apples; total 1,250.5.")
    '1,250.5'
    >>> find_last_number("no digits here") is None
    True
    """
    last = None
    for last in _LAST_NUMBER.finditer(text):
        pass
    return last.group(0) if last else None


def extract_answer(text: str, *, fallback_number: bool = True) -> str | None:
    r"""The final answer of a solution, or None if it has none.

    Several forms may appear in one solution; the first of these that is present wins:

    1. the Minerva/SCoRe form "Final Answer: The final answer is $X$. I hope it is correct." (last occurrence);
       a `\boxed{}` inside X is unwrapped;
    2. the last `\boxed{...}` / `\fbox{...}` (nested braces handled);
    3. the GSM8K form "#### X" (last occurrence);
    4. "The answer is X" (last occurrence, up to the end of that sentence);
    5. if `fallback_number` is True, the last bare number in the text.

    Answers longer than `MAX_ANSWER_CHARS` count as no answer.

    >>> extract_answer(r"We get \boxed{2}. Final Answer: The final answer is $\frac{3}{4}$. I hope it is correct.")
    '\\frac{3}{4}'
    >>> extract_answer(r"First \boxed{1}, then \boxed{\frac{1}{\sqrt{2}}}.")
    '\\frac{1}{\\sqrt{2}}'
    >>> extract_answer("Natalia sold 48/2 = 24 clips.\n#### 72")
    '72'
    >>> extract_answer("12+30=42")
    '42'
    >>> extract_answer("12+30=42", fallback_number=False) is None
    True
    """
    if not isinstance(text, str) or not text:
        return None
    for finder in (find_minerva, find_boxed, find_gsm8k, find_answer_is):
        answer = finder(text)
        if answer is not None:
            break
    else:
        answer = find_last_number(text) if fallback_number else None
    if answer is None:
        return None
    boxed = find_boxed(answer)
    if boxed is not None:
        answer = boxed
    answer = answer.strip()
    if not answer or len(answer) > MAX_ANSWER_CHARS:
        return None
    return answer
