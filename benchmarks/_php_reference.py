"""HumanEval's reference tests in PHP, for the PHP precision benchmark.

HumanEval's ``check(candidate)`` is a list of Python asserts over literals, such as
``assert candidate([1, 2], 3) == [3, 4]`` or ``assert abs(candidate(1.5) - 0.5) < 1e-6``.
Each assert whose expression uses only literals, ``candidate(...)``, ``abs``, ``len``, ``[i]``,
comparisons, arithmetic, ``not``/``and``/``or`` becomes a PHP check; any other statement
(a loop, an import, a helper) is left out and counted. Equality follows Python, not PHP:
lists and tuples are PHP arrays compared in order, dicts by key, an int equals a float of
the same value, and floats compare with a tolerance of 1e-9 (relative).
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass

EQ_HELPER = r"""
function __w_eq($a, $b) {
    if (is_array($a) && is_array($b)) {
        if (count($a) !== count($b)) return false;
        if (array_is_list($a) && array_is_list($b)) {
            foreach ($a as $i => $v) { if (!__w_eq($v, $b[$i])) return false; }
            return true;
        }
        foreach ($a as $k => $v) {
            if (!array_key_exists($k, $b) || !__w_eq($v, $b[$k])) return false;
        }
        return true;
    }
    if (is_bool($a) || is_bool($b)) return $a === $b;
    if ((is_int($a) || is_float($a)) && (is_int($b) || is_float($b))) {
        return abs($a - $b) <= 1e-9 * max(1.0, abs($a), abs($b));
    }
    return $a === $b;
}
"""

_FUNCTION = re.compile(r"\bfunction\s+&?\s*([A-Za-z_]\w*)\s*\(")


class Untranslatable(Exception):
    """A Python expression with no PHP form here."""


@dataclass(frozen=True)
class PHPTests:
    program: str  # PHP statements: the helper, the function's name, one check per assert
    checks: int
    left_out: int  # statements of check() that were not translated


def php_string(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$")
    escaped = escaped.replace("\n", "\\n").replace("\t", "\\t").replace("\r", "\\r")
    return f'"{escaped}"'


def php_literal(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise Untranslatable("nan or inf")
        return repr(value)
    if isinstance(value, str):
        return php_string(value)
    raise Untranslatable(type(value).__name__)


_BINARY = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.Mod: "%"}
_ORDER = {ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">="}


def php_expr(node: ast.expr) -> str:
    """The PHP form of a Python test expression; ``candidate`` calls ``$__w_f``."""
    match node:
        case ast.Constant(value=value):
            return php_literal(value)
        case ast.List(elts=items) | ast.Tuple(elts=items):
            return "[" + ", ".join(php_expr(i) for i in items) + "]"
        case ast.Dict(keys=keys, values=values) if None not in keys:
            pairs = (f"{php_expr(k)} => {php_expr(v)}" for k, v in zip(keys, values, strict=True))  # type: ignore[arg-type]
            return "[" + ", ".join(pairs) + "]"
        case ast.Call(func=ast.Name(id="candidate"), args=args, keywords=[]):
            return "$__w_f(" + ", ".join(php_expr(a) for a in args) + ")"
        case ast.Call(func=ast.Name(id="abs"), args=[arg], keywords=[]):
            return f"abs({php_expr(arg)})"
        case ast.Call(func=ast.Name(id="len"), args=[arg], keywords=[]):
            inner = php_expr(arg)
            return f"(is_array({inner}) ? count({inner}) : strlen({inner}))"
        case ast.Subscript(value=value, slice=ast.Constant(value=int(index))) if index >= 0:
            return f"{php_expr(value)}[{index}]"
        case ast.UnaryOp(op=ast.Not(), operand=operand):
            return f"!({php_expr(operand)})"
        case ast.UnaryOp(op=ast.USub(), operand=operand):
            return f"-({php_expr(operand)})"
        case ast.BinOp(left=left, op=op, right=right) if type(op) in _BINARY:
            return f"({php_expr(left)} {_BINARY[type(op)]} {php_expr(right)})"
        case ast.BoolOp(op=op, values=values):
            joiner = " && " if isinstance(op, ast.And) else " || "
            return "(" + joiner.join(php_expr(v) for v in values) + ")"
        case ast.Compare(left=left, ops=[op], comparators=[right]):
            a, b = php_expr(left), php_expr(right)
            if isinstance(op, ast.Eq | ast.Is):
                return f"__w_eq({a}, {b})"
            if isinstance(op, ast.NotEq | ast.IsNot):
                return f"!__w_eq({a}, {b})"
            if type(op) in _ORDER:
                return f"({a} {_ORDER[type(op)]} {b})"
    raise Untranslatable(ast.dump(node)[:80])


def php_function_name(php_solution: str, entry_point: str) -> str | None:
    """The PHP function that stands for ``entry_point``: the same name, else the one whose
    name matches ignoring case and underscores (``sortArray`` for ``sort_array``), else
    the only function there is."""
    names = _FUNCTION.findall(php_solution)
    if entry_point in names:
        return entry_point
    squash = entry_point.replace("_", "").lower()
    near = [n for n in names if n.replace("_", "").lower() == squash]
    if len(near) == 1:
        return near[0]
    return names[0] if len(names) == 1 else None


def php_reference_tests(test_source: str, function: str) -> PHPTests:
    """HumanEval's ``check`` as PHP checks of ``function``: each failing check prints
    which and exits 1."""
    tree = ast.parse(test_source)
    [check] = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "check"]
    lines = [EQ_HELPER, f"$__w_f = {php_string(function)};"]
    checks = left_out = 0
    for stmt in check.body:
        if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant):
            continue  # a docstring or a bare string
        if not isinstance(stmt, ast.Assert):
            left_out += 1
            continue
        if isinstance(stmt.test, ast.Constant) and stmt.test.value is True:
            continue  # ``assert True``: a placeholder, checks nothing
        try:
            expr = php_expr(stmt.test)
        except Untranslatable:
            left_out += 1
            continue
        checks += 1
        lines.append(
            f'if (!({expr})) {{ fwrite(STDERR, "reference check {checks} failed\\n"); exit(1); }}'
        )
    return PHPTests("\n".join(lines) + "\n", checks, left_out)
