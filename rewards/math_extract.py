"""Find the final answer inside a model's full solution text.

Every search here runs in time linear in the text length (plain `str.rfind` plus regexes without nested quantifiers
on bounded windows), so a 1 MB solution costs milliseconds, never a hang.
"""

from __future__ import annotations

import re

# The longest answer we ever take out of a solution; anything longer is not an answer a checker should parse.
MAX_ANSWER_CHARS = 1000

_BOX_COMMANDS = ("\\boxed", "\\fbox")
# A number not glued to a word before it ("AZYUK2A" holds no answer).
_LAST_NUMBER = re.compile(r"(?<![A-Za-z_\d.])-?\d+(?:,\d{3})*(?:\.\d+)?(?:/\d+)?")
_FINAL_ANSWER_COLON = re.compile(r"final answer\W{0,4}:\W{0,4}", re.IGNORECASE)
_MATH_SEGMENT = re.compile(r"\$\$(.{1,1000}?)\$\$|\$(.{1,1000}?)\$|\\\((.{1,1000}?)\\\)|\\\[(.{1,1000}?)\\\]", re.DOTALL)
_EQUALS = re.compile(r"(?<![<>!\\])=(?!=)")
_COMMAND = re.compile(r"\\[a-zA-Z]+")
_WORDS = re.compile(r"[a-zA-Z]{2,}")
_BRACE_GROUP = re.compile(r"\{[^{}]*\}")
# Boxes separated only by commas, "and", spacing or dollars: one answer in several boxes.
_BOX_SEPARATOR = re.compile(r"^(?:\s|,|;|\$|\\[(),;]|\\q?quad|and|\\text\{\s*(?:and|,)?\s*\})*$")
_MATH_TAIL = 2000  # the last math segment is looked for in the last 2,000 characters only
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


def find_boxes(text: str) -> str | None:
    r"""The content of the last `\boxed{}`, joined with the boxes just before it when only commas, "and" or
    spacing separate them (`\boxed{1}, \boxed{2}` is the answer `1, 2`).

    >>> find_boxes(r"so \boxed{3}. Roots: $\boxed{1}$ and $\boxed{-2}$.")
    '1, -2'
    """
    last = find_boxed(text)
    if last is None:
        return None
    parts = [last]
    end = max(text.rfind(command) for command in _BOX_COMMANDS)
    for _ in range(_MAX_BOX_TRIES):
        start = max(text.rfind(command, 0, end) for command in _BOX_COMMANDS)
        if start < 0:
            break
        command = next(c for c in _BOX_COMMANDS if text.startswith(c, start))
        content = _braced_content(text, start + len(command))
        if content is None:
            break
        close = text.find(content, start) + len(content) + 1
        if not _BOX_SEPARATOR.match(text[close:end]):
            break
        parts.insert(0, content)
        end = start
    return ", ".join(parts)


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
    rest = rest.strip()
    if rest.startswith(("$", "\\(", "**")):
        return _first_form(rest).strip() or None  # delimited: keep a closing "!" (5!)
    return rest.rstrip(_TRAILING).strip() or None


def _first_form(rest: str) -> str:
    r"""The answer at the start of `rest`: the first `$...$`, `\(...\)` or `**...**` when it opens with one (so
    "$12$ in total" and "$\frac12$, or $0.5$" give the first form), else the text up to the end of the sentence."""
    rest = rest.strip()
    for opener, closer in (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]"), ("**", "**")):
        if rest.startswith(opener):
            end = rest.find(closer, len(opener))
            while closer == "$" and end > 0 and rest[end - 1] == "\\":  # "\$18" is a dollar sign, not a delimiter
                end = rest.find(closer, end + 1)
            if end > len(opener):
                inner = rest[len(opener) : end].strip()
                return _first_form(inner) if inner.startswith(("$", "**", "\\(")) else inner
    return rest


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
    rest = window[match.end() :].split("\n", 1)[0].strip()
    if rest.startswith(("$", "**", "\\(")):
        rest = _first_form(rest)
    # A sentence ends at ". " (a period inside 3.5 is followed by a digit, not a space).
    sentence_end = rest.find(". ")
    if sentence_end >= 0:
        rest = rest[:sentence_end]
    return rest.strip().rstrip(_TRAILING).strip("$ *").rstrip(_TRAILING) or None


def find_final_answer_colon(text: str) -> str | None:
    """The `X` of the last "Final answer: X" (markdown bold allowed around the label or the answer).

    >>> find_final_answer_colon("**Final answer:** 17")
    '17'
    """
    last = None
    for last in _FINAL_ANSWER_COLON.finditer(text[-(MAX_ANSWER_CHARS * 4) :]):
        pass
    if last is None:
        return None
    rest = text[-(MAX_ANSWER_CHARS * 4) :][last.end() - 2 if last.group(0).endswith("**") else last.end() :]
    rest = _first_form(rest.lstrip(" *").split("\n", 1)[0] if not rest.lstrip(" *").startswith("$$") else rest.lstrip(" *"))
    return rest.strip().rstrip(_TRAILING).strip("$ *").rstrip(_TRAILING) or None


def find_last_math(text: str) -> str | None:
    r"""The last `$...$`, `\(...\)` or `\[...\]` of the text (its right-hand side after the last `=`).

    >>> find_last_math(r"The area is $24$ square units, since $6 \cdot 4 = 24$.")
    '24'
    """
    tail = text[-_MATH_TAIL:]
    last = None
    for last in _MATH_SEGMENT.finditer(tail):
        pass
    if last is None:
        return None
    return _result_of(next(group for group in last.groups() if group is not None))


def _result_of(math: str) -> str | None:
    r"""The answer a piece of math states: "6 \cdot 4 = 24" is a computation, its answer the right-hand side;
    "y = 2x + 3" (letters on the left) is the answer itself."""
    math = math.strip()
    sides = _EQUALS.split(math)
    if len(sides) > 1 and "\\begin" not in math and not re.search(r"[a-zA-Z]", _COMMAND.sub("", sides[0])):
        math = sides[-1].strip()
    return math.rstrip(_TRAILING) or None


def _outside_braces(text: str) -> str:
    r"""`text` without its brace groups (`\begin{array}{cc}` and `\text{...}` hold no sentence).

    >>> _outside_braces("a{b{c}d}e")
    'a e'
    """
    for _ in range(30):  # answers nest at most 24 deep (rewards.math_normalize.MAX_DEPTH)
        text, found = _BRACE_GROUP.subn(" ", text)
        if not found:
            break
    return text


def find_bare_answer(text: str) -> str | None:
    r"""A reply that is nothing but math (`1 000`, `\frac{10}{9}`, `12+30=42`: no words) is its own answer.

    >>> find_bare_answer(r"\frac{10}{9}"), find_bare_answer("12+30=42"), find_bare_answer("it is 42")
    ('\\frac{10}{9}', '42', None)
    """
    if len(text) > MAX_ANSWER_CHARS or "$" in text or _WORDS.search(_COMMAND.sub("", text)):
        return None
    return _result_of(text)


def answer_in_prose(answer: str) -> str:
    r"""An answer that is a sentence ("The largest $n$ is 34.", "Jane started 3 hours ago.") stands for the value
    it names: its last math segment that is more than one letter, else its last number. Answers with fewer than
    three words (`x = 5 and y = 3`, `12 \text{ square feet}`) and sentences with neither are kept whole.

    >>> answer_in_prose("The largest $n$ is 34."), answer_in_prose(r"The angle is $\pi$ radians.")
    ('34', '\\pi')
    >>> answer_in_prose("x = 5 and y = 3")
    'x = 5 and y = 3'
    """
    hope = answer.lower().find("i hope")
    sentence = answer[:hope] if hope > 0 else answer
    words = [w for w in _WORDS.findall(_outside_braces(_COMMAND.sub("", _MATH_SEGMENT.sub(" ", sentence))))
             if w.lower() not in ("and", "or")]
    if len(words) < 3:
        return answer
    for math in reversed([next(g for g in m.groups() if g is not None) for m in _MATH_SEGMENT.finditer(sentence)]):
        if not re.fullmatch(r"\s*[a-zA-Z]\s*", math):  # "$n$" names the unknown, not its value
            return _result_of(math) or answer
    return find_last_number(sentence) or answer


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


def extract_answer(text: str, *, fallback_number: bool = True, strict: bool = False) -> str | None:
    r"""The final answer of a solution, or None if it has none.

    Several forms may appear in one solution; the first of these that is present wins:

    1. the Minerva/SCoRe form "Final Answer: The final answer is $X$. I hope it is correct." (last occurrence);
       a `\boxed{}` inside X is unwrapped, and of "$X$ in total" or "$X$, or $Y$" the first form is taken;
    2. the last `\boxed{...}` / `\fbox{...}` (nested braces handled);
    3. the GSM8K form "#### X" (last occurrence);
    4. "The answer is X" (last occurrence, up to the end of that sentence; markdown bold dropped);
    5. "Final answer: X" (markdown bold allowed);
    6. the last `$...$`, `\(...\)` or `\[...\]` near the end (the right-hand side of its last `=`);
    7. the whole text, when it is nothing but math (no words: `1 000`, `\frac{10}{9}`);
    8. if `fallback_number` is True, the last bare number in the text.

    An answer found in forms 1-6 that is a sentence ("The largest $n$ is 34.") stands for the value it names
    (`answer_in_prose`).

    With `strict=True` only the instructed forms count, 1 and 2: a solution that does not end with the
    "Final Answer: The final answer is ..." line or a `\boxed{}` has no answer (for training with a format
    requirement; evaluation uses the default).

    Answers longer than `MAX_ANSWER_CHARS` count as no answer.

    >>> extract_answer(r"We get \boxed{2}. Final Answer: The final answer is $\frac{3}{4}$. I hope it is correct.")
    '\\frac{3}{4}'
    >>> extract_answer(r"First \boxed{1}, then \boxed{\frac{1}{\sqrt{2}}}.")
    '\\frac{1}{\\sqrt{2}}'
    >>> extract_answer("Natalia sold 48/2 = 24 clips.\n#### 72")
    '72'
    >>> extract_answer("Adding, the answer is **42**.")
    '42'
    >>> extract_answer("So 12+30=42"), extract_answer("So 12+30=42", fallback_number=False)
    ('42', None)
    >>> extract_answer("The answer is 42.", strict=True) is None
    True
    """
    if not isinstance(text, str) or not text:
        return None
    finders = (find_minerva, find_boxes) if strict else (
        find_minerva, find_boxes, find_gsm8k, find_answer_is, find_final_answer_colon, find_last_math)
    for finder in finders:
        answer = finder(text)
        if answer is not None:
            answer = answer_in_prose(answer)
            break
    else:
        answer = None if strict else find_bare_answer(text)
        if answer is None and fallback_number and not strict:
            answer = find_last_number(text)
    if answer is None:
        return None
    boxed = find_boxed(answer)
    if boxed is not None:
        answer = boxed
    answer = answer.strip()
    if not answer or len(answer) > MAX_ANSWER_CHARS:
        return None
    return answer
