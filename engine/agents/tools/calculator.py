"""Arithmetic without `eval`: the expression is parsed with `ast` and only numbers, operators and a few math
functions are evaluated, so a model cannot reach Python through it.

Small models get arithmetic wrong; a calculator they can call is the first tool worth having. Exponents and
results are bounded so `9**9**9` is an error message, not a frozen process.
"""

from __future__ import annotations

import ast
import math
import operator

from engine.agents.tools.base import Tool, ToolError, tool_from_function

_BINARY = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY = {ast.UAdd: operator.pos, ast.USub: operator.neg}
_FUNCTIONS = {
    "sqrt": math.sqrt,
    "abs": abs,
    "round": round,
    "min": min,
    "max": max,
    "floor": math.floor,
    "ceil": math.ceil,
    "log": math.log,
    "log10": math.log10,
    "exp": math.exp,
    "sin": math.sin,
    "cos": math.cos,
    "tan": math.tan,
    "factorial": math.factorial,
}
_CONSTANTS = {"pi": math.pi, "e": math.e}
MAX_EXPONENT = 1000
MAX_MAGNITUDE = 10**100


def evaluate(expression: str) -> int | float:
    """The value of an arithmetic expression; ToolError says what is not allowed or what went wrong."""
    text = expression.strip().replace("×", "*").replace("÷", "/").replace("^", "**")
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:
        raise ToolError(f"{expression!r} is not an arithmetic expression ({exc.msg})") from None
    try:
        value = _eval(tree.body)
    except ZeroDivisionError:
        raise ToolError(f"{expression!r} divides by zero") from None
    except (ValueError, OverflowError, TypeError) as exc:
        raise ToolError(f"{expression!r}: {exc}") from None
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    return value


def _eval(node: ast.AST) -> int | float:
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
        return node.value
    if isinstance(node, ast.Name) and node.id in _CONSTANTS:
        return _CONSTANTS[node.id]
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_eval(node.operand))
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _eval(node.left), _eval(node.right)
        if isinstance(node.op, ast.Pow) and abs(right) > MAX_EXPONENT:
            raise ValueError(f"exponent {right} is larger than {MAX_EXPONENT}")
        value = _BINARY[type(node.op)](left, right)
        if abs(value) > MAX_MAGNITUDE:
            raise ValueError("the result is too large")
        return value
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in _FUNCTIONS
        and not node.keywords
    ):
        args = [_eval(a) for a in node.args]
        if node.func.id == "factorial" and args and args[0] > 200:
            raise ValueError("factorial is limited to 200")
        return _FUNCTIONS[node.func.id](*args)
    what = ast.unparse(node) if hasattr(ast, "unparse") else type(node).__name__
    raise ValueError(
        f"{what!r} is not allowed: use numbers, + - * / // % **, parentheses, {', '.join(sorted(_FUNCTIONS))}, pi and e"
    )


def calculator(expression: str) -> str:
    """Evaluate an arithmetic expression and return its value, e.g. "(3 + 4) * 2" or "sqrt(2) / 3".

    Args:
        expression: The expression: numbers, + - * / // % **, parentheses, sqrt, log, sin … pi, e.
    """
    return str(evaluate(expression))


def calculator_tool() -> Tool:
    return tool_from_function(calculator)
