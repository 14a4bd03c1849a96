r"""The comparison policy: when two normalised answers count as equal.

The answer is read as a small tree in pure Python: matrices, set braces `\{..\}`, intervals and tuples, unions
(`\cup`), bare comma lists, equations, then leaves. Structure is compared here (order matters for tuples, intervals
and matrix cells; not for sets, unions and bare lists; interval ends must match). Leaves go through the fast path
(same string, same exact number, same choice letter); only a leaf that needs algebra calls `leaf_sympy`, which the
caller provides. With `leaf_sympy=None` such a leaf raises `NeedsSympy`, so the caller can run the whole check again
under a hard time limit in a worker process.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from fractions import Fraction

from rewards.math_normalize import Number, check_size, finite_decimal, normalize, parse_number, unit_of

# leaf_sympy(pred, ref, rel_tol, *, equation=False) -> bool; see rewards.math_sympy.sympy_equal.
LeafCheck = Callable[..., bool]

_OPENERS = {"(": ")", "[": "]", "{": "}"}
_CLOSERS = set(_OPENERS.values())
_MATRIX = re.compile(r"^[(\[]?\\begin\{([pbB]?matrix|array)\}(?:\{[^{}]*\})?(.*)\\end\{\1\}[)\]]?$", re.DOTALL)
_CHOICE = re.compile(r"^\(?([A-J])\)?(?:[.:)]|$)")
_CHOICE_ANY_CASE = re.compile(r"^\(?([A-Ja-j])\)?(?:[.:)]|$)")
_PM = re.compile(r"\\(?:pm|mp)")
# One variable against constants: "x > 3", "-2 \leq x \leq 7", "3 < x" (read as intervals).
_RELATION = re.compile(r"\\leq|\\geq|<=|>=|\\lt|\\gt|<|>")
_INTERVAL_OPS = {"<": "<", "\\lt": "<", "\\leq": "<=", "<=": "<=", ">": ">", "\\gt": ">", "\\geq": ">=", ">=": ">="}
# The name side of "name = value": x, x_1, \theta, f(x), (p,q), |AB|, AB, V_1:V_2 (no operators, no numbers alone).
_VARIABLE = re.compile(
    r"^(?:[a-zA-Z](?:_\{?\w+\}?)?|\\[a-zA-Z]+|[a-zA-Z]\([a-z]\)|\([a-z](?:,[a-z])+\)|\|?[A-Z]{1,4}\|?"
    r"|[A-Za-z](?:_\{?\w+\}?)?(?::[A-Za-z](?:_\{?\w+\}?)?)+)$"
)
_WORD = re.compile(r"^[a-zA-Z][a-zA-Z ]+$")
_LATEX_OPERATORS = re.compile(r"\\(?:times|cdot|div|frac|dfrac|tfrac|left|right)")
_ARITHMETIC = re.compile(r"^[\d\s.+\-*/()^{}\[\]]+$")


class NeedsSympy(Exception):
    """Raised by the fast path when a leaf can only be decided with algebra."""


def answers_equal(prediction: str, reference: str, *, rel_tol: float, leaf_sympy: LeafCheck | None) -> bool:
    r"""True when the two raw answers are equal under the policy in the module docstring.

    >>> answers_equal("(1,3)", "[1,3]", rel_tol=1e-4, leaf_sympy=None)
    False
    >>> answers_equal(r"\{3, 1\}", r"\{1,3\}", rel_tol=1e-4, leaf_sympy=None)
    True
    >>> answers_equal("x = 5", "5", rel_tol=1e-4, leaf_sympy=None)
    True
    >>> answers_equal("0.33", "1/3", rel_tol=1e-4, leaf_sympy=None)
    False
    >>> answers_equal("3*4 = 12", "12", rel_tol=1e-4, leaf_sympy=None)
    True
    >>> answers_equal("8-14 = 1", "-6", rel_tol=1e-4, leaf_sympy=None)
    False
    """
    check_size(prediction)
    check_size(reference)
    pred_unit, ref_unit = unit_of(prediction), unit_of(reference)
    if pred_unit and ref_unit and pred_unit != ref_unit:
        return False  # different units are different answers (no conversion: "2 km" is not "2000 m")
    pred, ref = normalize(prediction), normalize(reference)
    if not pred or not ref:
        return False
    return _equal(pred, ref, rel_tol, leaf_sympy)


def _equal(pred: str, ref: str, rel_tol: float, leaf_sympy: LeafCheck | None) -> bool:
    if pred == ref:
        return True
    choice = _CHOICE.match(ref)
    if choice and len(ref) <= 3:
        # A multiple-choice reference: the prediction must name the same letter ("(B)", "(b)", "B", "B) 12", "B.").
        picked = _CHOICE_ANY_CASE.match(pred)
        return bool(picked) and picked.group(1).upper() == choice.group(1)

    pred_matrix, ref_matrix = _matrix(pred), _matrix(ref)
    if pred_matrix is not None or ref_matrix is not None:
        if pred_matrix is None or ref_matrix is None or [len(r) for r in pred_matrix] != [len(r) for r in ref_matrix]:
            return False
        return all(_equal(p, r, rel_tol, leaf_sympy) for prow, rrow in zip(pred_matrix, ref_matrix)
                   for p, r in zip(prow, rrow))

    # "name = value" against a value (not another equation) compares the value: "(p,q) = (3,2)" is (3,2).
    pred_value, ref_value = _value_if_equation(pred), _value_if_equation(ref)
    if (pred_value != pred and len(_split(ref, "=")) == 1) or (ref_value != ref and len(_split(pred, "=")) == 1):
        return _equal(pred_value, ref_value, rel_tol, leaf_sympy)

    # Inequalities in one variable are read as the intervals they describe: "x > 3" is (3, oo).
    pred_interval, ref_interval = _as_interval(pred), _as_interval(ref)
    if pred_interval is not None or ref_interval is not None:
        pred, ref = pred_interval or pred, ref_interval or ref
        if pred == ref:
            return True

    pred_union, ref_union = _split(pred, "\\cup"), _split(ref, "\\cup")
    if len(pred_union) > 1 or len(ref_union) > 1:
        return _unordered_equal(pred_union, ref_union, rel_tol, leaf_sympy)

    pred_group, ref_group = _group(pred), _group(ref)
    pred_items, ref_items = _items(pred), _items(ref)
    if pred_group is not None or ref_group is not None:
        if pred_group is None or ref_group is None:
            # A bare list against a bracketed one: against a set, the same members in any order; against a tuple
            # "(5,-2)", the same values in the same order ("x=5, y=-2" and "5, -2" name the point (5,-2)).
            group, items = (pred_group, ref_items) if ref_group is None else (ref_group, pred_items)
            if len(items) < 2 and group[0] != "\\{":
                return False
            listed = [_value_of(item) for item in items]
            members = group[1]
            if group[0] == "\\{":
                members = [m for item in members for m in _expand_pm(item)]
                return _unordered_equal(listed, members, rel_tol, leaf_sympy)
            if group[0] != "(" or group[2] != ")":
                return False
            pairs = zip(listed, members) if ref_group is None else zip(members, listed)
            return len(listed) == len(members) and all(_equal(p, r, rel_tol, leaf_sympy) for p, r in pairs)
        (p_open, p_items, p_close), (r_open, r_items, r_close) = pred_group, ref_group
        if (p_open, p_close) != (r_open, r_close):
            return False
        if r_open == "\\{":
            p_items = [m for item in p_items for m in _expand_pm(item)]
            r_items = [m for item in r_items for m in _expand_pm(item)]
            return _unordered_equal(p_items, r_items, rel_tol, leaf_sympy)
        return len(p_items) == len(r_items) and all(
            _equal(p, r, rel_tol, leaf_sympy) for p, r in zip(p_items, r_items)
        )

    # "1, 2", "x=1, x=2" and "1 \pm \sqrt{2}": the solutions of a problem, in any order ("1,000" stays a number).
    if (len(pred_items) > 1 or len(ref_items) > 1) and (parse_number(pred) is None or parse_number(ref) is None):
        return _unordered_equal([_value_of(i) for i in pred_items], [_value_of(i) for i in ref_items],
                                rel_tol, leaf_sympy)

    pred_eq, ref_eq = _split(pred, "="), _split(ref, "=")
    if len(pred_eq) > 1 or len(ref_eq) > 1:
        return _equations_equal(pred_eq, ref_eq, rel_tol, leaf_sympy)
    return _leaf_equal(pred, ref, rel_tol, leaf_sympy)


def _expand_pm(item: str) -> list[str]:
    r"""`a \pm b` is the two answers a + b and a - b (one \pm only; `\mp` likewise).

    >>> _expand_pm(r"1\pm\sqrt{5}"), _expand_pm(r"\pm5"), _expand_pm("7")
    (['1+\\sqrt{5}', '1-\\sqrt{5}'], ['5', '-5'], ['7'])
    """
    found = list(_PM.finditer(item))
    if len(found) != 1:
        return [item]
    head, tail = item[: found[0].start()], item[found[0].end() :]
    if _split(head, "=") != [head] or "=" in tail:
        return [item]
    if not head:
        return [tail, f"-{tail}"]
    return [f"{head}+{tail}", f"{head}-{tail}"]


def _items(text: str) -> list[str]:
    r"""The answers a bare list names: split at top-level commas, each `name = a \pm b` expanded into two."""
    items = []
    for item in _split(text, ","):
        equation = _split(item, "=")
        if len(equation) == 2 and _VARIABLE.match(equation[0]) and _PM.search(equation[1]):
            items += _expand_pm(equation[1])
        else:
            items += _expand_pm(item)
    return items


def _value_of(item: str) -> str:
    """`x=5` -> `5`: the value of a `name = value` item of a list (anything else unchanged)."""
    equation = _split(item, "=")
    if len(equation) == 2 and _VARIABLE.match(equation[0]):
        return equation[1]
    return item


def _as_interval(text: str) -> str | None:
    r"""`x > 3` -> `(3,\infty)`, `-2 \leq x \leq 7` -> `[-2,7]`, `3 < x` -> `(3,\infty)`; None for anything else.

    >>> _as_interval("x>3"), _as_interval(r"-2\leqx\leq7"), _as_interval(r"3<x"), _as_interval("x+y>3")
    ('(3,\\infty)', '[-2,7]', '(3,\\infty)', None)
    >>> _as_interval("-x>=-1"), _as_interval("1<-x<3")
    ('(-\\infty,1]', '(-3,-1)')
    """
    parts = [part.strip() for part in _RELATION.split(text)]
    ops = [_INTERVAL_OPS[m.group(0)] for m in _RELATION.finditer(text)]
    if not ops or len(ops) > 2 or any(not part for part in parts):
        return None
    variables = [i for i, part in enumerate(parts) if re.fullmatch(r"-?(?:[a-zA-Z]|[a-zA-Z]\([a-z]\))", part)]
    if len(variables) != 1:
        return None
    where = variables[0]
    if parts[where].startswith("-"):  # "-x >= -1" is "x <= 1": negate every side, reverse every relation
        parts = [part[1:] if i == where else _negated(part) for i, part in enumerate(parts)]
        ops = [{"<": ">", "<=": ">=", ">": "<", ">=": "<="}[op] for op in ops]
    low, high, low_open, high_open = "-\\infty", "\\infty", True, True
    if len(ops) == 2:
        if where != 1 or ops[0][0] != ops[1][0]:
            return None
        (a, b), increasing = (parts[0], parts[2]), ops[0][0] == "<"
        low, high = (a, b) if increasing else (b, a)
        low_open, high_open = (ops[0] in "<>" and len(ops[0]) == 1), (ops[1] in "<>" and len(ops[1]) == 1)
        if not increasing:
            low_open, high_open = high_open, low_open
    else:
        op, other = ops[0], parts[1 - where]
        # Say it as "x op other".
        if where == 1:
            op = {"<": ">", "<=": ">=", ">": "<", ">=": "<="}[op]
        if op.startswith("<"):
            high, high_open = other, op == "<"
        else:
            low, low_open = other, op == ">"
    return f"{'(' if low_open else '['}{low},{high}{')' if high_open else ']'}"


def _negated(text: str) -> str:
    """`-text`, written plainly: `-1` -> `1`, `2` -> `-2`, `a+b` -> `-(a+b)`."""
    if text.startswith("-") and not re.search(r"[+-]", text[1:]):
        return text[1:]
    return f"-{text}" if not re.search(r"[+-]", text) else f"-({text})"


def _value_if_equation(text: str) -> str:
    """`x = 5` -> `5` and `(p,q) = (3,2)` -> `(3,2)`: the value of one `name = value` (anything else unchanged)."""
    sides = _split(text, "=")
    if len(sides) == 2 and _VARIABLE.match(sides[0]) and len(_split(text, ",")) == 1:
        return sides[1]
    return text


def _equations_equal(pred: list[str], ref: list[str], rel_tol: float, leaf_sympy: LeafCheck | None) -> bool:
    """`x = 5` vs `5` compares the value; two equations compare side by side (or as one expression via sympy)."""
    if len(pred) > 1 and len(ref) > 1:
        if len(pred) == len(ref) == 2 and _VARIABLE.match(pred[0]) and _VARIABLE.match(ref[0]):
            return pred[0] == ref[0] and _equal(pred[1], ref[1], rel_tol, leaf_sympy)
        if len(pred) == len(ref) == 2:
            if leaf_sympy is None:
                raise NeedsSympy
            return leaf_sympy(f"{pred[0]}-({pred[1]})", f"{ref[0]}-({ref[1]})", rel_tol, equation=True)
        return False
    equation, value = (pred, ref[0]) if len(pred) > 1 else (ref, pred[0])
    # "name = value" unwraps, and so does worked arithmetic ending in its value ("3 \times 4 = 12": the answer is the
    # last side, as math-verify reads it); "x + y = 3" vs "3" is not the same answer.
    if not all(_VARIABLE.match(side) or _is_arithmetic(side) for side in equation[:-1]):
        return False
    return _equal(equation[-1], value, rel_tol, leaf_sympy) if len(pred) > 1 else _equal(value, equation[-1], rel_tol, leaf_sympy)


def _is_arithmetic(side: str) -> bool:
    """Numbers and operators only: `3*4`, `8 - 14`, `\\frac{1}{2} \\times 6` (no variable, no word)."""
    return bool(_ARITHMETIC.match(_LATEX_OPERATORS.sub(" ", side))) and any(c.isdigit() for c in side)


def _leaf_equal(pred: str, ref: str, rel_tol: float, leaf_sympy: LeafCheck | None) -> bool:
    pred_number, ref_number = parse_number(pred), parse_number(ref)
    if pred_number is not None and ref_number is not None:
        return numbers_equal(pred_number, ref_number, rel_tol)
    if _WORD.match(pred) and _WORD.match(ref) and len(ref) > 1:
        return pred.lower() == ref.lower()
    if "%" in pred or "%" in ref:
        # Percent signs on an expression that is not a plain number: compare without them, as the numbers do.
        pred, ref = pred.replace("%", ""), ref.replace("%", "")
        if pred == ref:
            return True
    if leaf_sympy is None:
        raise NeedsSympy
    return leaf_sympy(pred, ref, rel_tol)


def numbers_equal(pred: Number, ref: Number, rel_tol: float) -> bool:
    r"""Equal as exact numbers (`0.50` is `0.5` and `\frac12`; `3.1416` is not `3.14`; `0.54` is not `0.5`), except
    that a decimal reference may be the rounding of a value that no decimal writes exactly: a prediction with no
    finite decimal form (`1/3`, `5/6`, `0.\overline{6}`) counts when it rounds to the reference at the reference's
    last digit. A prediction that has one (`27/50` is `0.54`) is compared as that decimal, exactly. `rel_tol` > 0
    (off by default) also accepts any prediction within that relative distance of a decimal reference.

    When only one side has a percent sign, either reading of it may match ("25%" vs "25" or vs "0.25").

    >>> equal = lambda pred, ref: numbers_equal(parse_number(pred), parse_number(ref), rel_tol=0)
    >>> equal("1/3", "0.33"), equal("0.33", "1/3"), equal("3.1416", "3.14"), equal("27/50", "0.5")
    (True, False, False, False)
    >>> equal("0.50", "0.5"), equal("1/4", "25%"), equal("0.\\overline{6}", "0.67")
    (True, True, True)
    """
    readings = [(pred.value, ref.value, ref.ulp)]
    if pred.percent != ref.percent:
        readings.append((pred.value / 100, ref.value, ref.ulp) if pred.percent
                        else (pred.value, ref.value / 100, ref.ulp and ref.ulp / 100))
    for p, r, ulp in readings:
        if p == r:
            return True
        if rel_tol and ref.decimal and abs(p - r) <= Fraction(rel_tol) * abs(r):
            return True
        # A rounded reference: only a value no decimal can write exactly may round to it (within half its last digit).
        if ref.rounded and not pred.decimal and not finite_decimal(p) and abs(p - r) <= ulp / 2:
            return True
    return False


def _unordered_equal(pred: list[str], ref: list[str], rel_tol: float, leaf_sympy: LeafCheck | None) -> bool:
    """Multiset equality under `_equal` (greedy matching: each prediction item takes the first equal reference item)."""
    if len(pred) != len(ref):
        return False
    unused = list(ref)
    for item in pred:
        for index, candidate in enumerate(unused):
            if _equal(item, candidate, rel_tol, leaf_sympy):
                del unused[index]
                break
        else:
            return False
    return True


def _split(text: str, separator: str) -> list[str]:
    r"""Split at top-level `separator` (outside any brackets).

    >>> _split(r"(1,2),\frac{1}{2},\{3,4\}", ",")
    ['(1,2)', '\\frac{1}{2}', '\\{3,4\\}']
    """
    parts, depth, start, position = [], 0, 0, 0
    while position < len(text):
        char = text[position]
        if char == "\\" and text.startswith(("\\{", "\\}"), position):
            depth += 1 if text[position + 1] == "{" else -1
            position += 2
            continue
        if char in _OPENERS:
            depth += 1
        elif char in _CLOSERS:
            depth -= 1
        elif depth == 0 and text.startswith(separator, position):
            if separator == "=" and position and text[position - 1] in "<>!":
                position += 1
                continue
            parts.append(text[start:position])
            position += len(separator)
            start = position
            continue
        position += 1
    parts.append(text[start:])
    return parts if all(parts) else [text]


def _group(text: str) -> tuple[str, list[str], str] | None:
    r"""`(a,b]` -> ("(", ["a", "b"], "]") when one bracket pair encloses the whole text and has a comma inside
    (or is a set). `(x+1)` is not a group: it is a parenthesised expression.

    >>> _group("[0,\\infty)")
    ('[', ['0', '\\infty'], ')')
    >>> _group("(x+1)") is None
    True
    """
    if text.startswith("\\{") and text.endswith("\\}"):
        opener, closer, inner = "\\{", "\\}", text[2:-2]
    elif text[:1] in "([" and text[-1:] in ")]":
        opener, closer, inner = text[0], text[-1], text[1:-1]
    else:
        return None
    if not _balanced(inner):
        return None
    items = _split(inner, ",")
    if opener != "\\{" and len(items) < 2:
        return None
    return opener, items, closer


def _balanced(text: str) -> bool:
    depth = 0
    for char in text:
        if char in _OPENERS:
            depth += 1
        elif char in _CLOSERS:
            depth -= 1
            if depth < 0:
                return False
    return depth == 0


def _matrix(text: str) -> list[list[str]] | None:
    match = _MATRIX.match(text)
    if match is None:
        return None
    rows = [row for row in match.group(2).split("\\\\") if row.strip()]
    return [[cell.strip() for cell in row.split("&")] for row in rows]
