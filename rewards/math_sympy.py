r"""The algebra leaf check: LaTeX -> sympy (latex2sympy2_extended's ANTLR parser) -> equality.

This module imports sympy, so the public `rewards.math` only imports it inside worker processes, where a hard time
limit holds. Before any evaluation the parsed tree is measured: numbers with more than `MAX_DIGITS` digits (power
towers such as 10^10^10^10, huge factorials) are rejected instead of computed.

Equality of two expressions: identical after `doit()`; else, for constants, a difference that is zero to 40 digits
(or, against a rounded decimal reference, a prediction that rounds to it; see `sympy_equal`); for expressions with
variables, equal at several fixed sample points (a negative, a fraction, a larger value; real and complex), falling
back to `sympy.simplify` only when the samples cannot be evaluated.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction
from functools import lru_cache

import sympy
from latex2sympy2_extended.latex2sympy2 import ConversionConfig, NormalizationConfig, latex2sympy

from rewards.math_normalize import AnswerTooComplex, finite_decimal, parse_number

MAX_DIGITS = 10_000
_SAMPLES = (sympy.Rational(-137, 100), sympy.Rational(61, 100), sympy.Rational(229, 100),
            sympy.Rational(7, 10) + sympy.I * sympy.Rational(13, 10))
_NORMALIZATION = NormalizationConfig(basic_latex=True, units=False, malformed_operators=False, nits=False, boxed="none")
_CONVERSION = ConversionConfig()
_I_SYMBOL = sympy.Symbol("i")
_PLAIN_FUNCTION = re.compile(r"(?<!\\)\b(sqrt|sin|cos|tan|log|ln|exp)\(")
# A decimal literal is read as the exact number it writes (1.732 is 1732/1000), never as a float: an approximation
# then cannot equal an irrational reference, and big integers are never rounded.
_DECIMAL_LITERAL = re.compile(r"(?<![\d.])(\d*)\.(\d{1,50})(?![\d.])")


def _plain_to_latex(text: str) -> str:
    """Plain-text syntax models write (`sqrt(2)`, `x**2`) into LaTeX that the parser reads."""
    text = text.replace("**", "^")
    text = _DECIMAL_LITERAL.sub(lambda m: f"\\frac{{{int(m.group(1) or 0) * 10 ** len(m.group(2)) + int(m.group(2))}}}"
                                          f"{{{10 ** len(m.group(2))}}}", text)
    for _ in range(20):
        match = _PLAIN_FUNCTION.search(text)
        if match is None:
            break
        depth, end = 1, match.end()
        while end < len(text) and depth:
            depth += {"(": 1, ")": -1}.get(text[end], 0)
            end += 1
        if depth:
            break
        name, inner = match.group(1), text[match.end() : end - 1]
        text = text[: match.start()] + (f"\\sqrt{{{inner}}}" if name == "sqrt" else f"\\{name}({inner})") + text[end:]
    return text


@lru_cache(maxsize=4096)
def parse(text: str):
    """The sympy value of a normalised answer, or None when the parser rejects it."""
    try:
        expr = latex2sympy(_plain_to_latex(text), normalization_config=_NORMALIZATION, conversion_config=_CONVERSION)
    except Exception:
        return None
    if not isinstance(expr, (sympy.Basic, sympy.MatrixBase)):
        return None
    check_magnitude(expr)
    # MATH writes the imaginary unit as i; the parser reads it as a variable.
    expr = expr.subs(_I_SYMBOL, sympy.I) if isinstance(expr, sympy.Basic) and expr.has(_I_SYMBOL) else expr
    try:
        return expr.doit()
    except Exception:
        return expr


def check_magnitude(expr) -> None:
    """Raise `AnswerTooComplex` if evaluating `expr` would build a number with more than `MAX_DIGITS` digits."""
    if _log10_size(expr) > MAX_DIGITS:
        raise AnswerTooComplex(f"a number with more than {MAX_DIGITS} digits")


def _log10_size(node) -> float:
    """An upper estimate of log10 |value| of the largest number `node` builds (inf when astronomically large)."""
    if isinstance(node, sympy.MatrixBase):
        return max((_log10_size(cell) for cell in node), default=0.0)
    if not isinstance(node, sympy.Basic):
        return 0.0
    if node.is_Integer:
        return math.log10(abs(int(node))) if node != 0 else 0.0
    if node.is_Rational:
        return max(_log10_size(sympy.Integer(node.p)), _log10_size(sympy.Integer(node.q)))
    if node.is_Float:
        return math.log10(abs(float(node))) if node != 0 and abs(float(node)) > 1 else 0.0
    if node.is_Pow:
        base, exponent = node.args
        base_size, exponent_size = _log10_size(base), _log10_size(exponent)
        if base_size == 0.0:
            return exponent_size  # 1^n, 0^n, (-1)^n and symbols to small powers stay small
        return math.inf if exponent_size > 9 else max(base_size, 0.1) * 10**exponent_size
    if isinstance(node, (sympy.factorial, sympy.gamma, sympy.binomial, sympy.factorial2)):
        size = _log10_size(node.args[0])
        return math.inf if size > 9 else 10**size * max(size, 1.0)
    sizes = [_log10_size(arg) for arg in node.args]
    return sum(sizes) if node.is_Mul else max(sizes, default=0.0) + 0.5


def sympy_equal(pred: str, ref: str, rel_tol: float, *, equation: bool = False) -> bool:
    """True when the two normalised leaves have the same value. With `equation`, they are the two sides'
    differences `lhs - rhs` of two equations, equal when one is a nonzero constant multiple of the other.

    Values must be exactly equal, except against a rounded decimal reference (`3.14`): a prediction with no finite
    decimal form (`\\pi`, `\\sqrt{2}`, `1/7`) counts when it rounds to it; one with decimals of its own, or with a
    finite decimal form, must equal it exactly (the policy of `rewards.math_compare.numbers_equal`).
    """
    p, r = parse(pred), parse(ref)
    if p is None or r is None:
        return False
    if equation:
        return _proportional(p, r)
    number = parse_number(ref)
    if number is None or not number.decimal:
        return values_equal(p, r, 0.0, 0.0)  # an exact reference needs an exact answer
    rounds = number.rounded and not _DECIMAL_LITERAL.search(pred) and not (
        isinstance(p, sympy.Rational) and finite_decimal(Fraction(int(p.p), int(p.q))))
    return values_equal(p, r, rel_tol, float(number.ulp) / 2 if rounds else 0.0)


def values_equal(p, r, rel_tol: float, half_ulp: float = 0.0) -> bool:
    """Equality of two parsed values (numbers, expressions, matrices, sets, relations). Constants must be exactly
    equal, or within `half_ulp` (half the last digit of a rounded reference) or `rel_tol` (relative) of it."""
    if isinstance(p, sympy.Basic) and isinstance(r, sympy.Basic) and (p.has(sympy.zoo, sympy.nan) or r.has(sympy.zoo, sympy.nan)):
        return False  # 12:00 and 1:00 both read as x/0: undefined values are never equal
    if p == r:
        return True
    if isinstance(p, sympy.MatrixBase) or isinstance(r, sympy.MatrixBase):
        return (isinstance(p, sympy.MatrixBase) and isinstance(r, sympy.MatrixBase) and p.shape == r.shape
                and all(values_equal(a, b, rel_tol, half_ulp) for a, b in zip(p, r)))
    if isinstance(p, sympy.Set) or isinstance(r, sympy.Set):
        return _sets_equal(p, r)
    if isinstance(p, sympy.core.relational.Relational) or isinstance(r, sympy.core.relational.Relational):
        return _relations_equal(p, r)
    if not (isinstance(p, sympy.Expr) and isinstance(r, sympy.Expr)):
        return False
    if p.has(sympy.oo, -sympy.oo, sympy.zoo, sympy.nan) or r.has(sympy.oo, -sympy.oo, sympy.zoo, sympy.nan):
        return False  # infinities equal only when identical, checked above
    if not (p.free_symbols | r.free_symbols):
        return _close(p, r, rel_tol, half_ulp)
    agree = _agree_at_samples(p, r, rel_tol)
    if agree is not None:
        return agree
    return sympy.simplify(p - r) == 0


def _close(p, r, rel_tol: float, half_ulp: float) -> bool:
    """Two constant expressions: exactly equal (their difference is 0 to 40 digits), or, for a rounded reference,
    within half its last digit (`half_ulp`) or within `rel_tol` of it."""
    try:
        difference = complex(sympy.N(p - r, 50))
        rv = complex(sympy.N(r, 30))
    except (TypeError, ValueError):
        return sympy.simplify(p - r) == 0
    if not all(math.isfinite(x) for x in (difference.real, difference.imag, rv.real, rv.imag)):
        return False
    if half_ulp == 0 and rel_tol == 0:
        return abs(difference) <= 1e-40 * max(abs(rv), 1.0)
    return abs(difference) <= max(rel_tol * abs(rv), half_ulp)


def _agree_at_samples(p, r, rel_tol: float) -> bool | None:
    """False if the expressions differ at a sample point, True if they agree at >= 3 points, None if undecided."""
    symbols = sorted(p.free_symbols | r.free_symbols, key=str)
    agreed = 0
    for offset, sample in enumerate(_SAMPLES):
        # Different variables get different values, so x - y is not zero at the samples.
        point_values = {s: sample + sympy.Rational(index * 31 + offset, 97) for index, s in enumerate(symbols)}
        try:
            pv = complex(p.subs(point_values).evalf(20))
            rv = complex(r.subs(point_values).evalf(20))
        except (TypeError, ValueError, ZeroDivisionError, OverflowError):
            continue
        if not all(math.isfinite(x) for x in (pv.real, pv.imag, rv.real, rv.imag)):
            continue
        if abs(pv - rv) > max(rel_tol, 1e-9) * max(abs(rv), 1.0):
            return False
        agreed += 1
    return True if agreed >= 3 else None


def _proportional(p, r) -> bool:
    """lhs1 - rhs1 and lhs2 - rhs2 describe the same equation: one is a nonzero constant times the other."""
    if not (isinstance(p, sympy.Expr) and isinstance(r, sympy.Expr)) or r == 0 or p == 0:
        return False
    symbols = sorted(p.free_symbols | r.free_symbols, key=str)
    ratios = []
    for offset, sample in enumerate(_SAMPLES):
        point_values = {s: sample + sympy.Rational(index * 31 + offset, 97) for index, s in enumerate(symbols)}
        try:
            pv, rv = complex(p.subs(point_values).evalf(20)), complex(r.subs(point_values).evalf(20))
        except (TypeError, ValueError, ZeroDivisionError, OverflowError):
            continue
        if abs(rv) < 1e-12 or not all(math.isfinite(x) for x in (pv.real, pv.imag, rv.real, rv.imag)):
            continue
        ratios.append(pv / rv)
    if len(ratios) >= 3:
        return abs(ratios[0]) > 1e-12 and all(abs(q - ratios[0]) <= 1e-9 * abs(ratios[0]) for q in ratios)
    ratio = sympy.simplify(p / r)
    return bool(ratio.is_number and ratio != 0 and ratio.is_finite)


def _sets_equal(p, r) -> bool:
    if not (isinstance(p, sympy.Set) and isinstance(r, sympy.Set)):
        return False
    try:
        return bool(sympy.simplify(p.symmetric_difference(r)) == sympy.S.EmptySet)
    except Exception:
        return False


def _relations_equal(p, r) -> bool:
    rel = sympy.core.relational.Relational
    if not (isinstance(p, rel) and isinstance(r, rel)):
        return False
    p, r = p.canonical, r.canonical
    if type(p) is not type(r):
        return False
    return sympy.simplify((p.lhs - p.rhs) - (r.lhs - r.rhs)) == 0


def warm_up() -> None:
    """Run each code path once (parser tables, sympy's lazily imported modules), so the first real check is fast.

    Called at import: the worker forkserver imports this module once and every worker it forks starts warm.
    """
    samples = [(r"\frac{\sqrt{2}}{2}", r"\frac{1}{\sqrt2}"), (r"\sin^2 x+\cos^2 x", "1"), (r"\log_2 8", r"\ln(e^3)"),
               (r"\frac{3\pi}{4}", "2.3562"), ("(x+1)^2", "x^2+2x+1"), ("x > 2", "2 < x"), (r"e^{i\pi}", "-1"),
               (r"\begin{pmatrix}1&2\\3&4\end{pmatrix}", r"\begin{pmatrix}1&2\\3&5\end{pmatrix}"), ("5!", r"\binom{5}{2}")]
    for pred, ref in samples:
        try:
            sympy_equal(pred, ref, 1e-4)
        except Exception:  # noqa: BLE001 - warming up must never break the import
            pass
    sympy_equal("2x+y-3", "y-3+2x", 0.0, equation=True)
    sympy.simplify(parse("x^2-1") / parse("x+1"))
    parse.cache_clear()


warm_up()
