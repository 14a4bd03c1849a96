r"""Answer normalisation and exact number parsing, in pure Python (no sympy).

`normalize` rewrites an answer into a canonical string: no `$`/`\boxed`/`\left`, no spacing commands, no units or
degree marks, `\dfrac` -> `\frac`, Hendrycks-style fixes of `\frac12` and `\sqrt3`. `parse_number` reads the
canonical string as an exact `Fraction` when it is a plain number (integer, thousands separators, decimal,
scientific notation, `a/b`, `\frac{a}{b}`, mixed number, percent). Both work on bounded input in linear time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction

# Words dropped from the end of an answer ("5 cm", "12\text{ dollars}"); the plural "s" is optional.
UNIT_WORDS = (
    "cm|mm|km|m|meter|metre|inch|inche|foot|feet|ft|yard|yd|mile|mi|mph|kmh|kg|g|gram|lb|pound|ounce|oz|"
    "second|sec|s|minute|min|hour|hr|h|day|week|month|year|yr|dollar|cent|euro|unit|degree|deg|radian|"
    "liter|litre|l|ml|gallon|acre|sq|square|cubic|cm\\^2|cm\\^3|m\\^2|m\\^3|point|person|people|student|apple|"
    "times|way|ball|book|page|child|children|marble|cookie|egg|box|car|coin|tree|bag"
)
_UNIT_TEXT = re.compile(rf"^(?:(?:square|sq|cubic|sq\.)\s+)?(?:{UNIT_WORDS})(?:e?s)?\.?$", re.IGNORECASE)
_TRAILING_UNIT = re.compile(rf"(?<=[\d}}])\s*(?:(?:square|sq|cubic)\s+)?(?:{UNIT_WORDS})(?:e?s)?\.?$", re.IGNORECASE)
_LEADING_CURRENCY = re.compile(r"^(?:\\\$|\$|US\$|USD|Rs\.?|€|£)\s*")
_TEXT_COMMAND = re.compile(r"\\(?:text|textbf|textit|textrm|textnormal|mathrm|mathbf|mathit|mbox|operatorname)\s*\{")
_DROP = re.compile(
    r"\\left(?![a-zA-Z])|\\right(?![a-zA-Z])|\\displaystyle|(?<!\\)\\[!,;: ]|\\q?quad|~|\\limits"
    r"|\^\s*\{\s*\\circ\s*\}|\^\s*\\circ|\\circ|°|\\degree"
)
_WORD_AND_OR = re.compile(r"(?<![a-zA-Z\\])(?:and|or)(?![a-zA-Z])")
_SCRIPT_SHORT = re.compile(r"([_^])(\w)(?=\s)")  # "\log_2 8": the space ends the subscript
_UNIT_POWER = re.compile(rf"(\\(?:text|mbox|mathrm)\{{\s*(?:{UNIT_WORDS})(?:e?s)?\s*\}})\^\{{?[23]\}}?")
_SQRT_SHORT = re.compile(r"\\sqrt\s*(\w)")
_FRAC_SHORT = re.compile(r"\\frac\s*(\w)\s*(\w)")
_FRAC_HALF_SHORT = re.compile(r"\\frac\s*(\w)\s*(?=\{)")
_FRAC_HALF_SHORT2 = re.compile(r"\\frac\s*(\{[^{}]*\})\s*(\w)")
_MIXED_SPACED = re.compile(r"^(-?\d+)\s+(\d+)\s*/\s*(\d+)$")
_SPACE_AFTER_COMMAND = re.compile(r"(\\[a-zA-Z]+)\s+(?=[a-zA-Z0-9])")
_UNICODE = {"−": "-", "–": "-", "×": "\\times", "·": "\\cdot", "π": "\\pi", "∞": "\\infty", "√": "\\sqrt", "≤": "\\leq",
            "≥": "\\geq", "≠": "\\neq", "∪": "\\cup", "\u00a0": " ", "\u2009": " "}
_ALIASES = [
    # A doubled backslash before a relation is an escaping slip ("-2 \\le x"), not a line break.
    (re.compile(r"\\\\(?=(?:leq?|geq?|lt|gt|neq?|in)(?![a-zA-Z]))"), r"\\"),
    (re.compile(r"\\[dtc]frac"), r"\\frac"),
    (re.compile(r"\\le(?![a-zA-Z])"), r"\\leq"),
    (re.compile(r"\\ge(?![a-zA-Z])"), r"\\geq"),
    (re.compile(r"\\ne(?![a-zA-Z])"), r"\\neq"),
    (re.compile(r"\\(?:infinity|infin)(?![a-zA-Z])|(?<![\\a-zA-Z])(?:infinity|inf)(?![a-zA-Z])"), r"\\infty"),
    (re.compile(r"(?<![\\a-zA-Z])pi(?![a-zA-Z])"), r"\\pi"),
    (re.compile(r"\\(?:varnothing|emptyset)|\\\{\s*\\\}"), r"\\emptyset"),
    (re.compile(r"\\\$|\\%"), lambda m: "%" if m.group(0) == "\\%" else ""),
    (re.compile(r"\{\s*,\s*\}"), ","),
    (re.compile(r"\s*(?:\\text\{\s*)?\b(?:percent|pct|percentage)\b(?:\s*\})?"), "%"),
    # All reals, in any notation, is the interval (-oo, oo).
    (re.compile(r"\\mathbb\s*\{?R\}?|\\R(?![a-zA-Z])|\\(?:text|mathrm)\{\s*all real numbers\s*\}|^all real numbers$"),
     r"(-\\infty,\\infty)"),
    # Membership: "t \in (0,4]" is the set itself.
    (re.compile(r"^\s*[a-zA-Z]\s*\\in\s*"), ""),
    (re.compile(r"(?:\\(?:ldots|dots|cdots)|\.\.\.)\s*$"), "…"),  # kept apart from the trailing "." we strip
    (re.compile(r"\+\s*\\infty"), r"\\infty"),
]


class AnswerTooComplex(ValueError):
    """The answer is too long or too deeply nested to check; it counts as wrong."""


MAX_CHARS = 1000
MAX_DEPTH = 24


def check_size(answer: str) -> None:
    """Raise `AnswerTooComplex` for answers no checker should spend time on (too long, too deeply nested).

    >>> check_size("{" * 30 + "}" * 30)
    Traceback (most recent call last):
    ...
    rewards.math_normalize.AnswerTooComplex: brackets nested 30 deep (limit 24)
    """
    if len(answer) > MAX_CHARS:
        raise AnswerTooComplex(f"{len(answer)} characters (limit {MAX_CHARS})")
    depth = deepest = 0
    for char in answer:
        if char in "{[(":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "}])":
            depth -= 1
    if deepest > MAX_DEPTH:
        raise AnswerTooComplex(f"brackets nested {deepest} deep (limit {MAX_DEPTH})")


def _unwrap_command(text: str, pattern: re.Pattern, keep) -> str:
    """Replace every `\\command{content}` matched by `pattern` with `keep(content, before, after)`."""
    out, position = [], 0
    for _ in range(len(text)):
        match = pattern.search(text, position)
        if match is None:
            break
        depth, end = 1, match.end()
        while end < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[end], 0)
            end += 1
        if depth:
            break
        content = text[match.end() : end - 1]
        out.append(text[position : match.start()])
        out.append(keep(content, "".join(out), text[end:]))
        position = end
    out.append(text[position:])
    return "".join(out)


def _keep_text(content: str, before: str, after: str) -> str:
    stripped = content.strip()
    # A unit word after a number is dropped; any other text is kept (as words, e.g. "\text{even}" -> "even").
    if _UNIT_TEXT.match(stripped) and before.rstrip()[-1:].isdigit() | before.rstrip().endswith("}"):
        return ""
    if stripped in ("and", "or", ",", ";"):
        return ","
    return content


def normalize(answer: str) -> str:
    r"""The canonical string form of an answer. Equal strings here mean equal answers.

    >>> normalize(r"$\dfrac{1}{2}$")
    '\\frac{1}{2}'
    >>> normalize(r"\boxed{10\text{ cm}}")
    '10'
    >>> normalize(r"45^\circ")
    '45'
    >>> normalize(r"\left( 1, \frac12 \right]")
    '(1,\\frac{1}{2}]'
    >>> normalize(r"\$1{,}000.")
    '1,000'
    >>> normalize(r"\text{(B)}")
    '(B)'
    >>> normalize("2 1/2")
    '2\\frac{1}{2}'
    >>> normalize(r"x = 1 \text{ or } x = 2")
    'x=1,x=2'
    """
    text = answer.strip()
    for bad, good in _UNICODE.items():
        text = text.replace(bad, good)
    text = _strip_wrappers(text)
    if text.startswith(("\\boxed", "\\fbox")):
        from rewards.math_extract import find_boxed

        text = find_boxed(text) or text
    for pattern, replacement in _ALIASES:
        text = pattern.sub(replacement, text)
    text = _LEADING_CURRENCY.sub("", text.strip())
    text = _DROP.sub(" ", text)
    text = _UNIT_POWER.sub(r"\1", text)
    text = _unwrap_command(text, _TEXT_COMMAND, _keep_text)
    text = _WORD_AND_OR.sub(",", text).strip().rstrip(".").strip()
    text = text.replace(";", ",")  # "-12; -11; -10": a list (LaTeX spacing "\;" is gone by now)
    text = _TRAILING_UNIT.sub("", text)
    mixed = _MIXED_SPACED.match(text)
    if mixed:
        text = f"{mixed.group(1)}\\frac{{{mixed.group(2)}}}{{{mixed.group(3)}}}"
    text = _SCRIPT_SHORT.sub(r"\1{\2}", text)
    text = _SQRT_SHORT.sub(r"\\sqrt{\1}", text)
    text = _FRAC_SHORT.sub(r"\\frac{\1}{\2}", text)
    text = _FRAC_HALF_SHORT.sub(r"\\frac{\1}", text)
    text = _FRAC_HALF_SHORT2.sub(r"\\frac\1{\2}", text)
    # Spaces matter only between a command and a letter (\pi r); keep one there, drop the rest.
    text = _SPACE_AFTER_COMMAND.sub("\\1\x00", text)
    text = re.sub(r"\s+", "", text).replace("\x00", " ")
    text = re.sub(r",+", ",", text).strip(",").rstrip(".")
    # Plain braces around the whole answer only group in LaTeX: "{1,3}" is "1,3" (a set is written "\{1,3\}").
    if text.startswith("{") and text.endswith("}") and _balanced_braces(text[1:-1]):
        text = text[1:-1]
    return _strip_wrappers(text)


def _balanced_braces(text: str) -> bool:
    depth = 0
    for char in text:
        depth += {"{": 1, "}": -1}.get(char, 0)
        if depth < 0:
            return False
    return depth == 0


def _strip_wrappers(text: str) -> str:
    """Drop math-mode delimiters around the whole answer: $..$, $$..$$, \\(..\\), \\[..\\]."""
    for _ in range(3):
        text = text.strip()
        if len(text) >= 2 and text[0] == "$" and text[-1] == "$":
            text = text.strip("$")
        elif text.startswith("\\(") and text.endswith("\\)") or text.startswith("\\[") and text.endswith("\\]"):
            text = text[2:-2]
        else:
            break
    return text.strip()


@dataclass(frozen=True)
class Number:
    """A plain number read exactly. `decimal`: written with a decimal point (or a negative power of ten), and then
    `ulp` is the value of its last written digit (0.25 -> 1/100, 2.5e3 -> 100); `percent`: had %."""

    value: Fraction
    decimal: bool = False
    percent: bool = False
    ulp: Fraction | None = None

    @property
    def rounded(self) -> bool:
        """Written with digits after the point (`0.33`, `2.5e-3`), so it may be the rounding of an exact value.

        >>> parse_number("0.33").rounded, parse_number("2.5e3").rounded, parse_number("1/3").rounded
        (True, False, False)
        """
        return self.decimal and self.ulp is not None and self.ulp < 1


def finite_decimal(value: Fraction) -> bool:
    """True when `value` can be written exactly as a decimal (its denominator has no prime factors but 2 and 5).

    >>> finite_decimal(Fraction(27, 50)), finite_decimal(Fraction(1, 8)), finite_decimal(Fraction(1, 3))
    (True, True, False)
    """
    denominator = value.denominator
    for factor in (2, 5):
        while denominator % factor == 0:
            denominator //= factor
    return denominator == 1


_INT = r"-?(?:\d{1,3}(?:,\d{3})+|\d+)"
_DECIMAL = re.compile(rf"^({_INT})?(?:\.(\d+))?(?:(?:e|E|\\times ?10\^|\*10\^|\\cdot ?10\^|\*\*)\{{?([+-]?\d{{1,4}})\}}?)?$")
_SLASH = re.compile(r"^(-?\d+)/(-?\d+)$")
_FRAC = re.compile(r"^(-?)(\d+)?\\frac\{(-?\d+(?:\.\d+)?)\}\{(-?\d+(?:\.\d+)?)\}$")
_BASE = re.compile(r"^([0-9A-Za-z]+)_\{?(\d{1,2})\}?$")
_REPEATING = re.compile(r"^(-?)(\d*)\.(\d*)\\overline\{(\d{1,12})\}$")
_ELLIPSIS = re.compile(r"^(-?)(\d*)\.(\d{3,30})(?:…|\.\.\.)$")
_MAX_EXPONENT = 400


def _repeating(sign: str, whole: str, fixed: str, period: str) -> Number:
    """0.8(3) = 0.8 + 3 / (9 * 10)."""
    value = Fraction(int(whole or "0")) + Fraction(int(fixed or "0"), 10 ** len(fixed))
    value += Fraction(int(period), (10 ** len(period) - 1) * 10 ** len(fixed))
    return Number(-value if sign else value)


def _ellipsis(sign: str, whole: str, digits: str) -> Number | None:
    """0.8333... and 0.090909...: the shortest period (up to 6 digits) that repeats at least three times at the end
    (twice for periods of two or more digits). Anything else is not a repeating decimal."""
    for length in range(1, 7):
        period = digits[-length:]
        copies = 0
        rest = digits
        while rest.endswith(period):
            rest = rest[: -length]
            copies += 1
        if copies >= (3 if length == 1 else 2):
            return _repeating(sign, whole, rest, period)
    return None


def parse_number(text: str) -> Number | None:
    r"""Read a normalised answer as an exact number, or None if it is not a plain number.

    >>> parse_number("1,000").value
    Fraction(1000, 1)
    >>> parse_number("-2\\frac{1}{4}").value
    Fraction(-9, 4)
    >>> parse_number("2.5e3")
    Number(value=Fraction(2500, 1), decimal=True, percent=False, ulp=Fraction(100, 1))
    >>> parse_number("12.5%").value, parse_number("12.5%").percent
    (Fraction(25, 2), True)
    >>> parse_number("201_3").value, parse_number("1A_{16}").value
    (Fraction(19, 1), Fraction(26, 1))
    >>> parse_number("0.8\\overline{3}").value, parse_number("0.666...").value
    (Fraction(5, 6), Fraction(2, 3))
    >>> parse_number("x") is None
    True
    """
    percent = text.endswith("%")
    if percent:
        text = text[:-1]
    if not text:
        return None
    text = text.removeprefix("+")
    match = _DECIMAL.match(text)
    if match and (match.group(1) is not None or match.group(2) is not None) and text not in ("-", "."):
        whole, fraction, exponent = match.groups()
        whole = (whole or "0").replace(",", "")
        sign = -1 if whole.startswith("-") or text.startswith("-") else 1
        value = Fraction(abs(int(whole)))
        if fraction:
            value += Fraction(int(fraction), 10 ** len(fraction))
        scale = 0
        if exponent is not None:
            scale = int(exponent)
            if abs(scale) > _MAX_EXPONENT:
                return None
            value *= Fraction(10) ** scale
        is_decimal = fraction is not None or (exponent is not None and scale < 0)
        ulp = Fraction(10) ** (scale - len(fraction or "")) if is_decimal else None
        return Number(sign * value, decimal=is_decimal, percent=percent, ulp=ulp)
    match = _SLASH.match(text)
    if match:
        numerator, denominator = int(match.group(1)), int(match.group(2))
        return Number(Fraction(numerator, denominator), percent=percent) if denominator else None
    match = _FRAC.match(text)
    if match:
        sign, whole, numerator, denominator = match.groups()
        if Fraction(denominator) == 0:
            return None
        value = Fraction(numerator) / Fraction(denominator)
        if whole is not None:
            value = int(whole) + value
        decimal = "." in numerator or "." in denominator
        return Number(-value if sign else value, decimal=decimal, percent=percent)
    match = _REPEATING.match(text)
    if match:
        return _repeating(*match.groups())
    match = _ELLIPSIS.match(text)
    if match:
        return _ellipsis(*match.groups())
    match = _BASE.match(text)
    if match:
        digits, base = match.group(1), int(match.group(2))
        if 2 <= base <= 36:
            try:
                return Number(Fraction(int(digits, base)))
            except ValueError:
                return None
    return None


# Units that change the value of an answer: two answers with different ones differ ("7 km" is not "7 m").
# Count words ("units", "apples", "ways") are not units: they are dropped and never compared.
_UNIT_NAMES = {
    "meter": ("m", "meter", "metre"), "centimeter": ("cm", "centimeter", "centimetre"),
    "millimeter": ("mm", "millimeter", "millimetre"), "kilometer": ("km", "kilometer", "kilometre"),
    "inch": ("in", "inch", "inche"), "foot": ("ft", "foot", "feet"), "yard": ("yd", "yard"), "mile": ("mi", "mile"),
    "gram": ("g", "gram"), "kilogram": ("kg", "kilogram"), "milligram": ("mg", "milligram"), "pound": ("lb", "lbs", "pound"),
    "ounce": ("oz", "ounce"), "second": ("s", "sec", "second"), "minute": ("min", "minute"), "hour": ("h", "hr", "hour"),
    "day": ("day",), "week": ("week",), "month": ("month",), "year": ("yr", "year"), "liter": ("l", "liter", "litre"),
    "milliliter": ("ml", "milliliter", "millilitre"), "gallon": ("gal", "gallon"), "dollar": ("dollar", "usd"),
    "cent": ("cent", "¢"), "euro": ("euro", "€"), "mph": ("mph",), "kmh": ("kmh", "kph"), "acre": ("acre",),
    "degree": ("degree", "deg"), "radian": ("rad", "radian"), "percent": ("percent",),
}
_UNIT_CANON = {alias: name for name, aliases in _UNIT_NAMES.items() for alias in aliases}
_UNIT_AT_END = re.compile(
    r"(?:\\(?:text|mbox|mathrm|textnormal|textrm|operatorname)\s*\{\s*([^{}]{1,40}?)\s*\}|(?<=[\d}\s])([a-zA-Z¢€]{1,12}))"
    r"\s*(?:\^\s*\{?\s*([23])\s*\}?)?\s*\.?\s*$"
)


def unit_of(answer: str) -> str | None:
    r"""The unit an answer ends with, canonical ("centimeter^2"), or None when it has none we compare.

    >>> unit_of(r"15\mbox{ cm}^2"), unit_of(r"7 \text{ km}"), unit_of(r"\$20"), unit_of("20 cents")
    ('centimeter^2', 'kilometer', 'dollar', 'cent')
    >>> unit_of(r"12 \text{ square feet}"), unit_of(r"4 \text{ square units}"), unit_of("x + 5")
    ('foot^2', None, None)
    """
    text = answer.strip().strip("$").strip()
    if text.startswith(("\\$", "$", "US$", "USD")):
        return "dollar"
    match = _UNIT_AT_END.search(text)
    if match is None:
        return None
    words = (match.group(1) or match.group(2) or "").strip().lower().rstrip(".").split()
    power = int(match.group(3) or 1)
    if len(words) == 2 and words[0] in ("square", "sq", "cubic"):
        power, words = (3 if words[0] == "cubic" else 2), words[1:]
    if len(words) != 1:
        return None
    word = words[0]
    name = _UNIT_CANON.get(word) or _UNIT_CANON.get(word.removesuffix("s")) or (
        _UNIT_CANON.get(word[:-2]) if word.endswith("es") else None)
    if name is None:
        return None
    return f"{name}^{power}" if power > 1 else name
