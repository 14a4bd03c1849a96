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

from rewards.math_normalize import Number, check_size, normalize, parse_number

# leaf_sympy(pred, ref, rel_tol, *, equation=False) -> bool; see rewards.math_sympy.sympy_equal.
LeafCheck = Callable[..., bool]

_OPENERS = {"(": ")", "[": "]", "{": "}"}
_CLOSERS = set(_OPENERS.values())
_MATRIX = re.compile(r"^[(\[]?\\begin\{([pbB]?matrix|array)\}(?:\{[^{}]*\})?(.*)\\end\{\1\}[)\]]?$", re.DOTALL)
_CHOICE = re.compile(r"^\(?([A-J])\)?(?:[.:)]|$)")
_VARIABLE = re.compile(r"^(?:[a-zA-Z](?:_\{?\w+\}?)?|\\[a-zA-Z]+|[a-zA-Z]\([a-z]\))$")
_WORD = re.compile(r"^[a-zA-Z][a-zA-Z ]+$")


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
    """
    check_size(prediction)
    check_size(reference)
    pred, ref = normalize(prediction), normalize(reference)
    if not pred or not ref:
        return False
    return _equal(pred, ref, rel_tol, leaf_sympy)


def _equal(pred: str, ref: str, rel_tol: float, leaf_sympy: LeafCheck | None) -> bool:
    if pred == ref:
        return True
    choice = _CHOICE.match(ref)
    if choice and len(ref) <= 3:
        # A multiple-choice reference: the prediction must name the same letter ("(B)", "B", "B) 12", "B.").
        picked = _CHOICE.match(pred)
        return bool(picked) and picked.group(1) == choice.group(1)

    pred_matrix, ref_matrix = _matrix(pred), _matrix(ref)
    if pred_matrix is not None or ref_matrix is not None:
        if pred_matrix is None or ref_matrix is None or [len(r) for r in pred_matrix] != [len(r) for r in ref_matrix]:
            return False
        return all(_equal(p, r, rel_tol, leaf_sympy) for prow, rrow in zip(pred_matrix, ref_matrix)
                   for p, r in zip(prow, rrow))

    pred_union, ref_union = _split(pred, "\\cup"), _split(ref, "\\cup")
    if len(pred_union) > 1 or len(ref_union) > 1:
        return _unordered_equal(pred_union, ref_union, rel_tol, leaf_sympy)

    pred_group, ref_group = _group(pred), _group(ref)
    if pred_group is not None or ref_group is not None:
        if pred_group is None or ref_group is None:
            return False
        (p_open, p_items, p_close), (r_open, r_items, r_close) = pred_group, ref_group
        if (p_open, p_close) != (r_open, r_close):
            return False
        if r_open == "\\{":
            return _unordered_equal(p_items, r_items, rel_tol, leaf_sympy)
        return len(p_items) == len(r_items) and all(
            _equal(p, r, rel_tol, leaf_sympy) for p, r in zip(p_items, r_items)
        )

    pred_items, ref_items = _split(pred, ","), _split(ref, ",")
    # "1, 2" and "x=1, x=2": the solutions of a problem, in any order ("1,000" stays a number).
    if (len(pred_items) > 1 or len(ref_items) > 1) and (parse_number(pred) is None or parse_number(ref) is None):
        return _unordered_equal(pred_items, ref_items, rel_tol, leaf_sympy)

    pred_eq, ref_eq = _split(pred, "="), _split(ref, "=")
    if len(pred_eq) > 1 or len(ref_eq) > 1:
        return _equations_equal(pred_eq, ref_eq, rel_tol, leaf_sympy)
    return _leaf_equal(pred, ref, rel_tol, leaf_sympy)


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
    # Only "name = value" unwraps; "x + y = 3" vs "3" is not the same answer.
    if not all(_VARIABLE.match(side) for side in equation[:-1]):
        return False
    return _equal(equation[-1], value, rel_tol, leaf_sympy) if len(pred) > 1 else _equal(value, equation[-1], rel_tol, leaf_sympy)


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
    """Exact equality, or within `rel_tol` of the reference when the reference is a decimal (maybe rounded).

    When only one side has a percent sign, either reading of it may match ("25%" vs "25" or vs "0.25").

    >>> numbers_equal(Number(Fraction(1, 3)), Number(Fraction(33, 100), decimal=True), rel_tol=1e-4)
    False
    >>> numbers_equal(Number(Fraction(1, 3)), Number(Fraction(33, 100), decimal=True), rel_tol=0.02)
    True
    >>> numbers_equal(Number(Fraction(1, 4)), Number(Fraction(25), percent=True), rel_tol=1e-4)
    True
    """
    readings = [(pred.value, ref.value)]
    if pred.percent != ref.percent:
        readings.append((pred.value / 100, ref.value) if pred.percent else (pred.value, ref.value / 100))
    for p, r in readings:
        if p == r:
            return True
        if ref.decimal and abs(p - r) <= Fraction(rel_tol) * abs(r):
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
