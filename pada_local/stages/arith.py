"""Computed answers for numeric tasks: a weak teacher writes the computation, not the result.

The teacher returns a question and an arithmetic expression; `compute` evaluates it by walking
the `ast` of a restricted grammar (numbers, + - * / // % **, unary minus, parentheses), never with
`eval`. Every number in the expression must appear in the question (or be one of a few unit
constants such as 60 or 100), so the computation is about the question it came with.
"""

from __future__ import annotations

import ast
import math
import operator
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..scoring import last_number, number_strings

MAX_ABS = 1e12  # a bound on every intermediate value, so 9**9**9 is refused, not computed
MAX_EXPONENT = 16
MAX_LENGTH = 200
# Numbers a word problem uses without writing them: halves and doubles, percent, units of time,
# dozens, thousands. Anything else must be written in the question.
UNIT_CONSTANTS = frozenset({1.0, 2.0, 7.0, 10.0, 12.0, 24.0, 60.0, 100.0, 365.0, 1000.0})

_BINARY: dict[type, Callable[[float, float], float]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow,
}


class ArithError(ValueError):
    """Why an expression cannot give an answer (it names the problem in words)."""


@dataclass(frozen=True)
class Computed:
    expression: str
    value: float
    answer: str  # the value in the references' form


def compute(expression: str) -> float:
    """The value of `expression`, or ArithError naming what is not allowed."""
    text = expression.strip().replace("\u00d7", "*").replace("\u00f7", "/").replace("\u2212", "-")
    if not text:
        raise ArithError("empty expression")
    if len(text) > MAX_LENGTH:
        raise ArithError(f"expression longer than {MAX_LENGTH} characters")
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError:
        raise ArithError(f"not arithmetic: {text[:60]!r}") from None
    return _bounded(_walk(tree.body))


def _walk(node: ast.AST) -> float:
    value = _number(node)
    if value is not None:
        return _bounded(value)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        value = _walk(node.operand)
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _walk(node.left), _walk(node.right)
        if isinstance(node.op, ast.Div | ast.FloorDiv | ast.Mod) and right == 0:
            raise ArithError("division by zero")
        if isinstance(node.op, ast.Pow) and (abs(right) > MAX_EXPONENT or (left == 0 and right < 0)):
            raise ArithError(f"exponent {right:g} out of bounds")
        try:
            return _bounded(_BINARY[type(node.op)](left, right))
        except (OverflowError, ZeroDivisionError):
            raise ArithError("value out of bounds") from None
    raise ArithError(f"not allowed in an expression: {type(node).__name__}")


def _bounded(value: float | complex) -> float:
    if isinstance(value, complex) or math.isnan(value) or abs(value) > MAX_ABS:
        raise ArithError("value out of bounds")
    return value


def literals(expression: str) -> list[float]:
    """The numbers written in an expression."""
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError:
        return []
    return [v for v in map(_number, ast.walk(tree)) if v is not None]


def _number(node: ast.AST) -> float | None:
    """A numeric literal's value (True/False are not numbers here)."""
    ok = isinstance(node, ast.Constant) and isinstance(node.value, int | float)
    if ok and not isinstance(node.value, bool):  # type: ignore[attr-defined]
        return float(node.value)  # type: ignore[attr-defined]
    return None


def foreign_numbers(expression: str, question: str,
                    constants: frozenset[float] = UNIT_CONSTANTS) -> list[float]:
    """Numbers of the expression that the question does not contain (`constants` aside)."""
    given = {float(x.replace(",", "")) for x in number_strings(question)}
    given |= {v / 100 for v in given}  # "40%" may enter the computation as 0.4
    return [v for v in literals(expression)
            if v not in constants and not any(math.isclose(v, g, rel_tol=1e-9) for g in given)]


def integer_answers(references: Sequence[str]) -> bool:
    """True when every readable reference is a whole number (then answers must be too)."""
    values = [v for v in (last_number(r) for r in references) if v is not None]
    return bool(values) and all(float(v).is_integer() for v in values)


_CURRENCY = str.maketrans("", "", "$\u20ac\u00a3")
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}\b)")


def tidy(expression: str) -> str:
    """The arithmetic in what a teacher wrote: currency signs and thousands commas dropped, a
    trailing full stop removed, and of "12 * 10 = 120" the left side (the right one is checked
    against it by `solve`)."""
    text = _THOUSANDS.sub("", expression.translate(_CURRENCY)).strip().rstrip(".").strip()
    return text.split("=", 1)[0].strip() if "=" in text else text


def solve(expression: str, question: str, integers: bool) -> Computed:
    """Check and compute: the expression's numbers come from the question, the value is in bounds
    and in the references' form, and a result written after "=" agrees. ArithError says why not."""
    written = expression.translate(_CURRENCY).rstrip(". ").split("=", 1)[1:] if "=" in expression else []
    expression = tidy(expression)
    foreign = foreign_numbers(expression, question)
    if foreign:
        raise ArithError(f"the expression uses {foreign[0]:g}, which the question does not contain")
    _is_computation(expression, question)
    value = compute(expression)
    stated = last_number(written[0]) if written else None
    if written and (stated is None or not math.isclose(stated, value, rel_tol=1e-9, abs_tol=1e-9)):
        raise ArithError(f"{expression} is {value:g}, not {written[0].strip()[:20]!r} as written")
    return Computed(expression.strip(), value, answer_form(value, integers))


def _is_computation(expression: str, question: str) -> None:
    """The expression must be the question's computation: an operation (seen: "Calculate 3674471
    / 11 =" with the expression "3674471"), over every number the question writes (seen:
    "3674471 / 1" for that question, and questions carrying the prompt's "correct answer: 312").
    A weak teacher's sample is worth keeping only when its answer is certain, so a question
    with a number the computation ignores is refused."""
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError:
        return  # compute() names the problem
    if not any(isinstance(node, ast.BinOp) for node in ast.walk(tree)):
        raise ArithError(f"{expression.strip()[:40]!r} computes nothing: no operation on the numbers")
    if not re.search(r"[^\d\s.,]", question):
        raise ArithError("the question is only a number")
    used = literals(expression)
    for written in number_strings(question):
        g = float(written.replace(",", ""))
        if not any(math.isclose(v, g, rel_tol=1e-9) or math.isclose(v, g / 100, rel_tol=1e-9)
                   or math.isclose(v, -g, rel_tol=1e-9) for v in used):
            raise ArithError(f"the expression leaves out {written}, which the question writes")


def answer_form(value: float, integers: bool) -> str:
    if integers:
        if not math.isclose(value, round(value), abs_tol=1e-9):
            raise ArithError(f"the answer {value:g} is not a whole number (the references are)")
        return str(int(round(value)))
    return f"{value:.6f}".rstrip("0").rstrip(".")
