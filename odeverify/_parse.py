"""Safe parsing of user expressions into SymPy, from a whitelist of syntax.

The text is tokenised and parsed by Python's own parser (:func:`ast.parse`,
which builds a syntax tree and runs nothing); the tree is then walked node by
node and only numbers, declared symbols, ``+ - * / **``, unary signs and calls
of the functions in :data:`odeverify._functions.ALLOWED_FUNCTIONS` are turned
into SymPy objects. Nothing is passed to ``eval``, ``exec`` or
``sympy.sympify``.

Work is bounded, not only length: an expression is at most
:data:`MAX_EXPRESSION_LENGTH` characters and :data:`MAX_DEPTH` levels deep,
and a power whose exponent is a number is refused when the exponent exceeds
:data:`MAX_EXPONENT` in magnitude (``9**9**9**9`` would otherwise ask SymPy for
an integer of hundreds of millions of digits). Every constant -- a literal,
a folded product such as ``1e308*10``, a call such as ``exp(1000)`` -- must be
a finite double: one beyond the double range is refused where it is built
(:func:`constant_out_of_range`), before SymPy is asked to compute with it.
"""

from __future__ import annotations

import ast
import keyword
import math
import re
from collections.abc import Sequence

import sympy as sp

from ._functions import ALLOWED_FUNCTIONS, CONSTANTS
from .errors import InvalidArgumentError, InvalidTypeError, ParseError

__all__ = [
    "parse_expression",
    "parse_names",
    "MAX_EXPRESSION_LENGTH",
    "MAX_DEPTH",
    "MAX_EXPONENT",
    "MAX_NAME_LENGTH",
    "constant_out_of_range",
    "describe_constant",
]

#: Longest accepted expression, in characters.
MAX_EXPRESSION_LENGTH = 10_000
#: Deepest accepted nesting of operations and calls.
MAX_DEPTH = 64
#: Largest accepted magnitude of a numeric exponent.
MAX_EXPONENT = 1000
#: Longest accepted symbol name.
MAX_NAME_LENGTH = 64
#: Most symbols one list of names may declare.
MAX_NAMES = 10_000

_BINOPS = {
    ast.Add: "+",
    ast.Sub: "-",
    ast.Mult: "*",
    ast.Div: "/",
    ast.Pow: "**",
}

_REFUSED_BINOPS = {
    ast.BitXor: ("^", "use ** for powers"),
    ast.FloorDiv: ("//", "use / for division"),
    ast.Mod: ("%", "the modulo operator is not supported"),
    ast.MatMult: ("@", "matrix products are not supported in expressions"),
    ast.BitAnd: ("&", "bitwise operators are not supported"),
    ast.BitOr: ("|", "bitwise operators are not supported"),
    ast.LShift: ("<<", "bitwise operators are not supported"),
    ast.RShift: (">>", "bitwise operators are not supported"),
}

_NODE_WORDS = {
    ast.Attribute: "attribute access",
    ast.Subscript: "subscripts",
    ast.Lambda: "lambda",
    ast.Compare: "comparisons",
    ast.BoolOp: "boolean operators",
    ast.IfExp: "conditional expressions",
    ast.List: "lists",
    ast.Tuple: "tuples",
    ast.Dict: "dicts",
    ast.Set: "sets",
    ast.ListComp: "comprehensions",
    ast.SetComp: "comprehensions",
    ast.DictComp: "comprehensions",
    ast.GeneratorExp: "generator expressions",
    ast.Starred: "starred expressions",
    ast.NamedExpr: "assignment expressions",
    ast.JoinedStr: "f-strings",
    ast.Await: "await",
    ast.Yield: "yield",
    ast.YieldFrom: "yield",
    ast.Slice: "slices",
}

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
#: largest finite double, the bound on every constant
_DOUBLE_MAX = 1.7976931348623157e308


def _finite_constant(value) -> bool:
    """Whether the SymPy number ``value`` evaluates to a finite double (complex values: both parts)."""
    if isinstance(value, sp.Integer):
        return abs(int(value)) <= _DOUBLE_MAX
    try:
        v = complex(value)
    except OverflowError:  # mpmath cannot even form the number
        return False
    except (TypeError, ValueError):  # not a number SymPy can evaluate: left to the other checks
        return True
    return math.isfinite(v.real) and math.isfinite(v.imag)


def constant_out_of_range(expr):
    """The first constant of ``expr`` that is not a finite double, or None.

    Walks the tree bottom-up, so the constant returned is the smallest one
    out of range (its own parts are finite, and printing it is safe).

    Parameters
    ----------
    expr : sympy.Basic

    Returns
    -------
    sympy.Expr or None
    """
    seen = {}

    def constant(e):  # True when e is a constant expression, all of whose parts are in range
        if e in seen:
            return seen[e]
        if isinstance(e, sp.Symbol):
            result = False
        elif not e.args:
            result = True
            if isinstance(e, sp.Expr) and e.is_number and not _finite_constant(e):
                raise _OutOfRange(e)
        else:
            result = all([constant(a) for a in e.args])
            if result and isinstance(e, sp.Expr) and not _finite_constant(e):
                raise _OutOfRange(e)
        seen[e] = result
        return result

    try:
        constant(expr)
    except _OutOfRange as exc:
        return exc.args[0]
    return None


class _OutOfRange(Exception):
    pass


def describe_constant(value) -> str:
    """A short text for a constant in an error message (a huge integer by its number of digits)."""
    if isinstance(value, sp.Integer) and abs(int(value)) > _DOUBLE_MAX:
        digits = str(int(value))
        return f"{digits[:6]}...{digits[-3:]} ({len(digits.lstrip('-'))} digits)"
    text = str(sp.Float(value, 5)) if isinstance(value, sp.Float) else str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _offset(text: str, node: ast.AST) -> int:
    """Absolute character offset of ``node`` in ``text``."""
    lineno = getattr(node, "lineno", 1)
    col = getattr(node, "col_offset", 0)
    lines = text.splitlines(keepends=True)
    return sum(len(line) for line in lines[: lineno - 1]) + col


def _segment(text: str, node: ast.AST) -> str:
    seg = ast.get_source_segment(text, node)
    return seg if seg is not None else type(node).__name__


class _Builder:
    def __init__(self, text: str, symbols: dict, argname: str):
        self.text = text
        self.symbols = symbols
        self.argname = argname

    def fail(self, message: str, node: ast.AST, token: str | None = None) -> ParseError:
        pos = _offset(self.text, node)
        tok = token if token is not None else _segment(self.text, node)
        if len(tok) > 40:
            tok = tok[:37] + "..."
        return ParseError(
            f"{self.argname}: {message} (token {tok!r} at position {pos})",
            expression=self.text,
            token=tok,
            position=pos,
        )

    def build(self, node: ast.AST, depth: int = 0):
        if depth > MAX_DEPTH:
            raise self.fail(f"expression is nested more than {MAX_DEPTH} levels deep; simplify it", node)
        if isinstance(node, ast.Expression):
            return self.build(node.body, depth + 1)
        if isinstance(node, ast.Constant):
            return self.constant(node)
        if isinstance(node, ast.Name):
            return self.name(node)
        if isinstance(node, ast.UnaryOp):
            if isinstance(node.op, ast.USub):
                return -self.build(node.operand, depth + 1)
            if isinstance(node.op, ast.UAdd):
                return self.build(node.operand, depth + 1)
            word = "'not'" if isinstance(node.op, ast.Not) else "'~'"
            raise self.fail(f"the unary operator {word} is not allowed; use + - * / ** and functions", node)
        if isinstance(node, ast.BinOp):
            return self.in_range(self.binop(node, depth), node)
        if isinstance(node, ast.Call):
            return self.in_range(self.call(node, depth), node)
        word = _NODE_WORDS.get(type(node), type(node).__name__)
        raise self.fail(f"{word} are not allowed; use numbers, the declared symbols, + - * / ** and functions", node)

    def in_range(self, value, node: ast.AST):
        """``value`` if its constants are finite doubles (checked as each node is built, so none grows huge)."""
        parts = [value] if value.is_number else [a for a in value.args if a.is_number]
        for part in parts:
            if not _finite_constant(part):
                raise self.fail(
                    f"the constant {describe_constant(part)} is beyond the double range (about 1.8e308); rescale the model", node
                )
        return value

    def constant(self, node: ast.Constant):
        value = node.value
        if isinstance(value, bool) or value is None or value is Ellipsis:
            raise self.fail(f"the constant {value!r} is not allowed; use numbers", node)
        if isinstance(value, (str, bytes)):
            raise self.fail("string literals are not allowed", node)
        if isinstance(value, complex):
            raise self.fail("complex numbers are not allowed; right-hand sides are real", node)
        if isinstance(value, int):
            if abs(value) > _DOUBLE_MAX:
                raise self.fail("number is too large (not a finite double: beyond the double range, about 1.8e308)", node)
            return sp.Integer(value)
        if isinstance(value, float):
            if not math.isfinite(value):
                raise self.fail("number is too large (not a finite double: beyond the double range, about 1.8e308)", node)
            return sp.Float(value)
        raise self.fail(f"constant of type {type(value).__name__} is not allowed", node)

    def name(self, node: ast.Name):
        if node.id in self.symbols:
            return self.symbols[node.id]
        if node.id in CONSTANTS:
            return CONSTANTS[node.id]
        if node.id in ALLOWED_FUNCTIONS:
            raise self.fail(f"the function {node.id!r} must be called, e.g. {node.id}(x)", node)
        declared = ", ".join(self.symbols) or "(none)"
        raise self.fail(
            f"unknown name {node.id!r}; declared symbols are {declared}; "
            f"constants are {', '.join(sorted(CONSTANTS))}; declare it as a state or parameter, or fix the spelling",
            node,
        )

    def binop(self, node: ast.BinOp, depth: int):
        op = type(node.op)
        if op in _REFUSED_BINOPS:
            sym, hint = _REFUSED_BINOPS[op]
            raise self.fail(f"the operator {sym!r} is not allowed; {hint}", node.right, token=sym)
        if op is ast.Pow:
            left = self.build(node.left, depth + 1)
            right = self.build(node.right, depth + 1)
            return self.power(node, left, right)
        # A chain such as a + b - c + ... is a left-deep tree in Python's
        # grammar; walk its spine without counting depth and build one n-ary
        # SymPy sum (or product), which is linear, not quadratic, in its length.
        additive = op in (ast.Add, ast.Sub)
        family = (ast.Add, ast.Sub) if additive else (ast.Mult, ast.Div)
        operands = []  # (inverse?, node)
        cur = node
        while isinstance(cur, ast.BinOp) and isinstance(cur.op, family):
            operands.append((isinstance(cur.op, (ast.Sub, ast.Div)), cur.right))
            cur = cur.left
        operands.append((False, cur))
        operands.reverse()
        terms = []
        for inverse, sub in operands:
            value = self.build(sub, depth + 1)
            if additive:
                terms.append(-value if inverse else value)
            else:
                if inverse:
                    if value.is_zero:
                        raise self.fail("division by zero", sub)
                    value = sp.Pow(value, -1)
                terms.append(value)
        return sp.Add(*terms) if additive else sp.Mul(*terms)

    def power(self, node: ast.BinOp, base, exponent):
        if exponent.is_number:
            if not exponent.is_real:
                raise self.fail("the exponent is not a real number", node.right)
            mag = abs(float(exponent))
            if mag > MAX_EXPONENT:
                raise self.fail(
                    f"exponent {float(exponent):g} exceeds the limit of {MAX_EXPONENT} "
                    "in magnitude; rewrite the power",
                    node.right,
                )
            if base.is_number:
                if not base.is_real:
                    raise self.fail("the base of the power is not a real number", node.left)
                b = abs(float(base))
                if b > 0 and mag * abs(math.log10(b)) > 300:
                    raise self.fail("the power overflows a double; rewrite it", node)
                if base.is_zero and exponent.is_negative:
                    raise self.fail("zero raised to a negative power", node)
                value = base**exponent
                if not value.is_real:
                    raise self.fail("the power of these numbers is not real", node)
                return value
        return base**exponent

    def call(self, node: ast.Call, depth: int):
        if not isinstance(node.func, ast.Name):
            raise self.fail(
                "only calls of the named functions are allowed "
                f"({', '.join(sorted(ALLOWED_FUNCTIONS))})",
                node.func,
            )
        fname = node.func.id
        if fname not in ALLOWED_FUNCTIONS:
            raise self.fail(
                f"calling {fname!r} is not allowed; allowed functions are {', '.join(sorted(ALLOWED_FUNCTIONS))}",
                node.func,
            )
        if node.keywords:
            raise self.fail(f"{fname}() takes no keyword arguments", node.keywords[0].value)
        ctor, arities = ALLOWED_FUNCTIONS[fname]
        if len(node.args) not in arities:
            want = " or ".join(str(a) for a in arities[:3]) + (" or more" if len(arities) > 3 else "")
            raise self.fail(f"{fname}() takes {want} argument(s), got {len(node.args)}", node)
        args = [self.build(arg, depth + 1) for arg in node.args]
        try:
            return ctor(*args)
        except (ValueError, TypeError, ArithmeticError) as exc:  # pragma: no cover - defensive
            raise self.fail(f"{fname}() cannot be applied: {exc}", node) from None


def parse_expression(text, symbols: dict, *, argname: str = "expression") -> sp.Expr:
    """Parse ``text`` into a SymPy expression over ``symbols``.

    Parameters
    ----------
    text : str
        The expression, e.g. ``"a*x - b*x*y"``.
    symbols : dict of str to sympy.Symbol
        The names the expression may use.
    argname : str, optional
        The name of the argument for error messages, e.g. ``"rhs[1]"``.

    Returns
    -------
    sympy.Expr

    Raises
    ------
    ParseError
        On anything outside the whitelist, with the offending token and its
        position.
    """
    if not isinstance(text, str):
        if isinstance(text, (int, float)) and not isinstance(text, bool):
            text = repr(text)
        else:
            raise InvalidTypeError(
                f"{argname} must be a string, got {type(text).__name__} {text!r:.80}; "
                "pass the expression as text, e.g. 'a*x - b*x*y'"
            )
    if len(text) > MAX_EXPRESSION_LENGTH:
        raise ParseError(
            f"{argname} is {len(text)} characters long, over the limit of {MAX_EXPRESSION_LENGTH}; "
            "split the right-hand side or build the system from SymPy objects",
            expression="",
            token=text[MAX_EXPRESSION_LENGTH : MAX_EXPRESSION_LENGTH + 10],
            position=MAX_EXPRESSION_LENGTH,
        )
    stripped = text.strip()
    if not stripped:
        raise ParseError(f"{argname} is empty; give an expression such as 'a*x'", expression=text)
    if "\x00" in text:
        pos = text.index("\x00")
        raise ParseError(f"{argname} contains a NUL character at position {pos}", expression="", token="\\x00", position=pos)
    try:
        tree = ast.parse(stripped, mode="eval")
    except SyntaxError as exc:
        pos = max((exc.offset or 1) - 1, 0) + (len(text) - len(text.lstrip()))
        if exc.lineno and exc.lineno > 1:
            pos += sum(len(line) + 1 for line in stripped.split("\n")[: exc.lineno - 1])
        token = text[pos : pos + 10]
        hint = "; write products with *, powers with **" if exc.msg.startswith("invalid") else ""
        raise ParseError(
            f"{argname}: syntax error: {exc.msg} (token {token!r} at position {pos}){hint}",
            expression=text,
            token=token,
            position=pos,
        ) from None
    except (RecursionError, MemoryError):
        raise ParseError(
            f"{argname} is nested too deeply for the parser; simplify the expression",
            expression="",
            token=text[:10],
            position=0,
        ) from None
    except ValueError as exc:
        raise ParseError(
            f"{argname} could not be parsed: {str(exc)[:200]}; simplify the expression",
            expression="",
            token=text[:10],
            position=0,
        ) from None
    lead = len(text) - len(text.lstrip())
    builder = _Builder(stripped, symbols, argname)
    try:
        expr = builder.build(tree)
    except ParseError as exc:
        if lead:
            exc.position += lead
        raise
    except RecursionError:
        raise ParseError(f"{argname} is nested too deeply; simplify it", expression="", token=text[:10], position=0) from None
    return sp.sympify(expr) if not isinstance(expr, sp.Basic) else expr


def parse_names(spec, argname: str, *, reserved: Sequence[str] = ()) -> list[str]:
    """Split and validate a list of symbol names.

    Parameters
    ----------
    spec : str or sequence of str
        ``"x y"``, ``"x, y"`` or ``["x", "y"]``.
    argname : str
        The argument's name for error messages.
    reserved : sequence of str
        Names that may not be used (other symbol groups).

    Returns
    -------
    list of str
    """
    if spec is None:
        return []
    if isinstance(spec, str):
        names = [n for n in re.split(r"[\s,]+", spec.strip()) if n]
    elif isinstance(spec, Sequence) and not isinstance(spec, (bytes, bytearray)):
        names = list(spec)
    else:
        raise InvalidTypeError(
            f"{argname} must be a string of names such as 'x y' or a list of strings, got {type(spec).__name__}"
        )
    if len(names) > MAX_NAMES:
        raise InvalidArgumentError(f"{argname} declares {len(names)} names, over the limit of {MAX_NAMES}")
    seen = set()
    for i, name in enumerate(names):
        if not isinstance(name, str):
            raise InvalidTypeError(f"{argname}[{i}] must be a string, got {type(name).__name__} {name!r:.40}")
        if len(name) > MAX_NAME_LENGTH:
            raise InvalidArgumentError(
                f"{argname}[{i}] is {len(name)} characters long, over the limit of {MAX_NAME_LENGTH}"
            )
        if not _IDENTIFIER.match(name) or keyword.iskeyword(name):
            raise InvalidArgumentError(
                f"{argname}[{i}] = {name!r} is not a valid name; use letters, digits and underscores, "
                "starting with a letter (and not a Python keyword)"
            )
        if name.startswith("_"):
            raise InvalidArgumentError(f"{argname}[{i}] = {name!r}: names starting with '_' are reserved")
        if name in ALLOWED_FUNCTIONS or name in CONSTANTS:
            raise InvalidArgumentError(
                f"{argname}[{i}] = {name!r} is the name of a function or constant; choose another name"
            )
        if name in seen:
            raise InvalidArgumentError(f"{argname} declares {name!r} twice; names must be distinct")
        if name in reserved:
            raise InvalidArgumentError(f"{argname}[{i}] = {name!r} is already declared elsewhere; names must be distinct")
        seen.add(name)
    return names
