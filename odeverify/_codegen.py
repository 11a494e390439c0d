"""The one place where SymPy expressions become vectorized NumPy code.

Expressions are reduced by common-subexpression elimination (CSE), printed
with a NumPy printer whose output names no user text (every symbol is printed
by an internal name ``_s<k>``), and compiled once. The generated functions
take *groups* of inputs -- a state vector, a time, a parameter vector -- whose
last axis indexes the group's symbols, so an argument with leading batch axes
evaluates a whole batch in one call; constant entries broadcast against the
batch.

The cost of code generation grows linearly with the size of the expressions:
the SymPy trees are read, never rebuilt (CSE names each repeated subtree, found
through SymPy's cached hashes, and the printer prints it by name), and sums and
products of more than :data:`CHUNK` terms are split into partial results so
that Python's compiler does not recurse too deeply.
"""

from __future__ import annotations

import itertools
import types
from dataclasses import dataclass

import numpy as np
import sympy as sp
from sympy.printing.numpy import NumPyPrinter

from .errors import InvalidArgumentError, InvalidTypeError

__all__ = ["Group", "ArrayKernel", "compile_function", "compile_solver_kernels", "CHUNK"]

#: Largest number of terms of one printed sum or product.
CHUNK = 64


# scipy.special is imported when a kernel first calls expit or erf, not with the package (a quarter of a
# second of import that most systems never need)
def _expit(x, *args, **kwargs):
    from scipy.special import expit

    return expit(x, *args, **kwargs)


def _erf(x, *args, **kwargs):
    from scipy.special import erf

    return erf(x, *args, **kwargs)


def _heaviside_np(x, h0):
    return np.heaviside(x, h0)


def _relu_np(x):
    return np.maximum(x, 0.0)


def _softplus_np(x):
    return np.logaddexp(0.0, x)


def _make_autograd_ops():
    import autograd.numpy as anp
    from autograd.extend import defvjp, primitive

    # expit and erf as autograd primitives, with the VJPs of autograd.scipy.special; importing that module
    # imports autograd.scipy.stats and with it scipy.stats (about a second)
    expit = primitive(_expit)
    defvjp(expit, lambda ans, x: lambda g: g * ans * (1 - ans))
    erf = primitive(_erf)
    defvjp(erf, lambda ans, x: lambda g: 2.0 / np.sqrt(np.pi) * g * anp.exp(-(x**2)))

    def heaviside(x, h0):
        return anp.where(x > 0, 1.0, anp.where(x < 0, 0.0, h0))

    return types.SimpleNamespace(
        sigmoid=expit,
        softplus=lambda x: anp.logaddexp(0.0, x),
        relu=lambda x: anp.maximum(x, 0.0),
        heaviside=heaviside,
        erf=erf,
        where=anp.where,
    )


_AUTOGRAD_OPS = []  # made on first use (autograd is imported only then)


def autograd_ops():
    """The activation functions of the autograd backend (sigmoid, softplus, relu, heaviside, erf, where)."""
    if not _AUTOGRAD_OPS:
        _AUTOGRAD_OPS.append(_make_autograd_ops())
    return _AUTOGRAD_OPS[0]


def _complex_sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _complex_softplus(x):
    return np.log1p(np.exp(x))


_NUMPY_OPS = types.SimpleNamespace(
    sigmoid=_expit,
    softplus=_softplus_np,
    relu=_relu_np,
    heaviside=_heaviside_np,
    erf=_erf,
    where=np.where,
)

_COMPLEX_OPS = types.SimpleNamespace(
    sigmoid=_complex_sigmoid,
    softplus=_complex_softplus,
    relu=_relu_np,
    heaviside=_heaviside_np,
    erf=_erf,
    where=np.where,
)


def _namespace(backend: str) -> dict:
    if backend == "numpy":
        return {"numpy": np, "_ops": _NUMPY_OPS}
    if backend == "complex":
        return {"numpy": np, "_ops": _COMPLEX_OPS}
    if backend == "autograd":
        import autograd.numpy as anp

        return {"numpy": anp, "_ops": autograd_ops()}
    raise InvalidArgumentError(f"backend={backend!r} is not one of 'numpy', 'complex', 'autograd'")


def _double_literal(number) -> str:
    """``repr`` of a SymPy number as a double; one beyond the double range is an error, never ``inf``."""
    try:
        value = float(number)
    except OverflowError:
        value = float("inf")
    if not np.isfinite(value):
        text = str(number)
        text = text if len(text) <= 40 else f"{text[:20]}... ({len(text)} characters)"
        raise InvalidArgumentError(
            f"the generated code would hold the constant {text}, beyond the double range (about 1.8e308); "
            "a derivative of the model (e.g. of 1e306*x**1000) leaves the double range: rescale the model"
        )
    return repr(value)


class _Printer(NumPyPrinter):
    """NumPy printer with exact float literals and broadcast-safe min/max/piecewise."""

    def __init__(self):
        super().__init__({"fully_qualified_modules": True, "inline": True, "allow_unknown_functions": False})

    def _print_Float(self, expr):
        return _double_literal(expr)

    def _print_Rational(self, expr):
        return _double_literal(expr)

    def _print_Integer(self, expr):
        v = int(expr)
        return str(v) if abs(v) < 2**53 else _double_literal(expr)

    def _print_Half(self, expr):
        return "0.5"

    def _print_Pow(self, expr, rational=False):
        base, exp = expr.args
        if exp.is_Integer and abs(int(exp)) <= 64:
            e = int(exp)
            b = self.parenthesize(base, 60)  # PRECEDENCE["Pow"]
            if e == -1:
                return f"(1.0/{b})"
            if e < 0:
                return f"(1.0/{b}**{-e})"
            return f"{b}**{e}"
        if exp == sp.S.Half:
            return f"numpy.sqrt({self._print(base)})"
        if exp == -sp.S.Half:
            return f"(1.0/numpy.sqrt({self._print(base)}))"
        return f"{self.parenthesize(base, 60)}**({self._print(exp)})"

    def _print_Exp1(self, expr):
        return "numpy.e"

    def _print_Pi(self, expr):
        return "numpy.pi"

    def _print_Min(self, expr):
        out = self._print(expr.args[-1])
        for arg in reversed(expr.args[:-1]):
            out = f"numpy.minimum({self._print(arg)}, {out})"
        return out

    def _print_Max(self, expr):
        out = self._print(expr.args[-1])
        for arg in reversed(expr.args[:-1]):
            out = f"numpy.maximum({self._print(arg)}, {out})"
        return out

    def _print_Heaviside(self, expr):
        h0 = expr.args[1] if len(expr.args) > 1 else sp.S.Half
        return f"_ops.heaviside({self._print(expr.args[0])}, {self._print(h0)})"

    def _print_DiracDelta(self, expr):
        # The derivative of a step is zero almost everywhere; the point mass is
        # not representable on a grid (non-smoothness is flagged elsewhere).
        return "0.0"

    def _print_Piecewise(self, expr):
        out = "numpy.nan"
        for value, cond in reversed(expr.args):
            if cond == sp.true:
                out = self._print(value)
            else:
                out = f"_ops.where({self._print(cond)}, {self._print(value)}, {out})"
        return out

    def _print_sigmoid(self, expr):
        return f"_ops.sigmoid({self._print(expr.args[0])})"

    def _print_softplus(self, expr):
        return f"_ops.softplus({self._print(expr.args[0])})"

    def _print_relu(self, expr):
        return f"_ops.relu({self._print(expr.args[0])})"

    def _print_erf(self, expr):
        return f"_ops.erf({self._print(expr.args[0])})"

    def _print_sign(self, expr):
        return f"numpy.sign({self._print(expr.args[0])})"

    def _print_Abs(self, expr):
        return f"numpy.abs({self._print(expr.args[0])})"


@dataclass(frozen=True)
class Group:
    """One input of a generated function.

    Attributes
    ----------
    name : str
        Argument name in the signature and in error messages.
    symbols : tuple of sympy.Symbol
        The symbols the argument carries, along its last axis (a vector
        group) or as the whole argument (a scalar group).
    scalar : bool
        True for a scalar group such as the time ``t``: the argument has
        any shape (a batch of times) and carries one symbol.
    """

    name: str
    symbols: tuple
    scalar: bool = False


class _NamedPrinter(_Printer):
    """The NumPy printer, printing every expression in ``names`` by its name.

    ``names`` maps the input symbols to internal names (``_s<k>``) and grows
    with the temporaries of CSE; a symbol missing from it is an error, so no
    user text reaches the source. Sums and products print their arguments in
    SymPy's stored order (no sorting).
    """

    def __init__(self, names):
        super().__init__()
        self._settings["order"] = "none"
        self.names = names

    def _named(self, expr):
        """The name of ``expr``, or None (numbers are never named: hashing a Float is not cached)."""
        if isinstance(expr, sp.Basic) and (expr.args or expr.is_Symbol):
            return self.names.get(expr)
        return None

    def _print(self, expr, **kwargs):
        name = self._named(expr)
        return name if name is not None else super()._print(expr, **kwargs)

    def _print_Symbol(self, expr):
        raise InvalidArgumentError(
            f"the expression uses the symbol {expr.name!r}, which is none of the generated function's inputs"
        )

    _print_Dummy = _print_Symbol

    def _handle_UnevaluatedExpr(self, expr):
        # CodePrinter.doprint rewrites the whole tree here (Basic.replace) on every
        # call; an UnevaluatedExpr is printed as its argument by _print_UnevaluatedExpr
        return expr

    # Sums and products are printed here rather than by SymPy's printers, which
    # sort terms and build new (evaluated) products to place signs and
    # denominators: on large expressions that costs more than the rest.
    def _factor(self, e):
        s = self._print(e)
        if self._named(e) is None and (e.is_Add or e.is_Mul or e.is_Relational or e.is_Boolean or s.startswith("-")):
            return f"({s})"
        return s

    def _print_Add(self, expr):
        out = []
        for a in expr.args:
            s = self._print(a)
            if a.is_Add and self._named(a) is None:
                s = f"({s})"
            if not out:
                out.append(s)
            elif s.startswith("-"):
                out.append(f" - {s[1:]}")
            else:
                out.append(f" + {s}")
        return "".join(out)

    def _print_Mul(self, expr):
        args = list(expr.args)
        sign, coeff = "", None
        if args and args[0].is_Number:
            c = args.pop(0)
            if c.is_negative:
                sign, c = "-", -c
            if c != 1 or not args:
                coeff = self._print(c)
        num, den = [], []
        for f in args:
            if f.is_Pow and self._named(f) is None and f.exp.is_Rational and f.exp.is_negative:
                den.append(f.base if f.exp == -1 else sp.Pow(f.base, -f.exp, evaluate=False))
            else:
                num.append(f)
        parts = ([coeff] if coeff is not None else []) + [self._factor(f) for f in num]
        text = "*".join(parts) if parts else "1"
        if den:
            below = "*".join(self._factor(f) for f in den)
            text += f"/({below})" if len(den) > 1 else f"/{below}"
        return sign + text


class _Facts:
    """Free symbols of SymPy trees, memoized by node (``Basic.free_symbols`` recomputes them on every call)."""

    def __init__(self):
        self._free = {}

    def free(self, expr):
        if not expr.args:
            return frozenset((expr,)) if expr.is_Symbol else frozenset()
        out = self._free.get(expr)
        if out is None:
            out = self._free[expr] = frozenset().union(*(self.free(a) for a in expr.args))
        return out


def _repeats(exprs, names):
    """How often each non-atomic subtree of ``exprs`` is referenced (a repeated one is walked once)."""
    counts = {}

    def visit(e):
        if not e.args or e in names:
            return
        seen = counts.get(e, 0)
        counts[e] = seen + 1
        if not seen:
            for a in e.args:
                visit(a)

    for e in exprs:
        visit(e)
    return counts


def _body(exprs, cse, indent, printer, facts=None):
    """Assignments that let ``printer`` print ``exprs`` in short lines.

    A subtree referenced more than once gets a temporary ``_c<k>`` (CSE, unless
    ``cse`` is False), a sum or product of more than :data:`CHUNK` terms gets
    partial results ``_p<k>``; both are added to ``printer.names``, so that
    printing an expression afterwards prints them by name. The trees are read,
    never rebuilt: ``sympy.cse`` rebuilds what it reduces, and every new SymPy
    object pays for automatic evaluation and assumption queries (seconds on a
    7 KB right-hand side and its derivatives).

    Returns
    -------
    lines : list of str
        Assignments of the temporaries, indented, in an order that defines
        each before its use.
    reduced : list of sympy.Expr
        ``exprs``, to print with ``printer``.
    depends : callable
        ``depends(expr)``: the input symbols an expression depends on.
    used : set
        Every input symbol the expressions read.
    """
    facts = facts or _Facts()
    names = printer.names
    counts = _repeats(exprs, names) if (cse is None or cse) else {}
    lines = []
    fresh = {"_c": itertools.count(), "_p": itertools.count()}
    done = set()

    def assign(prefix, text):
        sym = f"{prefix}{next(fresh[prefix])}"
        lines.append(f"{indent}{sym} = {text}")
        return sym

    def define(e):
        # post-order: the temporaries of e's subtree, then e's own if it needs one
        if not e.args or e in names or e in done:
            return
        done.add(e)
        for a in e.args:
            define(a)
        if (e.is_Add or e.is_Mul) and len(e.args) > CHUNK:
            op = " + " if e.is_Add else "*"
            parts = [
                assign("_p", printer.doprint(e.func(*e.args[i : i + CHUNK], evaluate=False)))
                for i in range(0, len(e.args), CHUNK)
            ]
            while len(parts) > CHUNK:
                parts = [assign("_p", op.join(parts[i : i + CHUNK])) for i in range(0, len(parts), CHUNK)]
            names[e] = assign("_p", op.join(parts))
        elif counts.get(e, 0) > 1:
            names[e] = assign("_c", printer.doprint(e))

    for e in exprs:
        define(e)
    used = set().union(*(facts.free(e) for e in exprs))
    return lines, list(exprs), facts.free, used


def _internal_names(symbols):
    """``{symbol: "_s<k>"}`` in order; the source names no user text."""
    return {s: f"_s{k}" for k, s in enumerate(symbols)}


def generate_source(groups, exprs, *, name="kernel", cse=None):
    """Python source of a function of ``groups`` returning a tuple of ``exprs``.

    Parameters
    ----------
    groups : sequence of Group
    exprs : sequence of sympy.Expr
    name : str
        Function name in the source.
    cse : bool or None
        Common-subexpression elimination; on unless False.

    Returns
    -------
    str
    """
    exprs = [sp.sympify(e) for e in exprs]
    names = _internal_names([s for g in groups for s in g.symbols])
    lines = [f"def {name}({', '.join(g.name for g in groups)}):"]
    # Operations on 0-d arrays cost ten times those on NumPy scalars: a single
    # sample's entries and a 0-d time are unpacked as NumPy scalars (not Python
    # numbers, whose division by zero raises and whose negative base to a
    # fractional power is complex).
    for g in groups:
        internal = [names[s] for s in g.symbols]
        if g.scalar:
            lines.append(f"    {internal[0]} = {g.name}")
            lines.append(f"    if type({g.name}) is numpy.ndarray and not {g.name}.ndim:")
            lines.append(f"        {internal[0]} = {g.name}[()]")
        elif internal:
            # a vector group is an array whose last axis holds the symbols, or
            # (for differentiation with few traced operations) a list of them
            lines.append(f"    if isinstance({g.name}, (list, tuple)):")
            lines.append(f"        {', '.join(internal)}, = {g.name}")
            lines.append(f"    elif type({g.name}) is numpy.ndarray and {g.name}.ndim == 1:")
            for j, nm in enumerate(internal):
                lines.append(f"        {nm} = {g.name}[{j}]")
            lines.append("    else:")
            for j, nm in enumerate(internal):
                lines.append(f"        {nm} = {g.name}[..., {j}]")
    printer = _NamedPrinter(names)
    body, reduced, _, _ = _body(exprs, cse, "    ", printer)
    lines.extend(body)
    outs = [printer.doprint(e) for e in reduced]
    lines.append(f"    return ({''.join(o + ', ' for o in outs)})")
    return "\n".join(lines) + "\n"


def generate_solver_source(states, adjoint, params, time, f, adj, adj_theta, adj_t, *, style, cse=None):
    """Python source of the solver kernels of one ODE.

    The source defines ``make(theta, B) -> (f, backward, adjoint)``.

    The kernels work on the flat arrays the solvers step, for one batch size
    B and one parameter vector (unpacked once, when ``make`` is called), and
    write into a preallocated ``out``; products with theta and t are summed
    over the batch in the generated code. The state layout is sample-major,
    ``y[b*n + i] = z[b, i]``:

    * ``f(t, y, out)``: ``y`` is z (B*n), ``out`` receives f;
    * ``backward(t, y, out)``: ``y = [z, a, a_theta, a_t]`` (2*B*n + p + 1),
      ``out = [f, adj, sum_b adj_theta, sum_b adj_t]``;
    * ``adjoint(t, z, y, out)``: ``y = [a, a_theta, a_t]`` (B*n + p + 1),
      ``out = [adj, sum_b adj_theta, sum_b adj_t]``.

    Parameters
    ----------
    states, adjoint, params : sequence of sympy.Symbol
        z (n), a (n) and theta (p).
    time : sympy.Symbol
    f, adj, adj_theta, adj_t : sequence of sympy.Expr
        f (n), the adjoint right-hand sides -f_z^T a (n), -f_theta^T a (p)
        and -f_t^T a (1), per sample.
    style : {'batch', 'scalar'}
        ``'batch'``: NumPy operations on strided views of the samples;
        ``'scalar'``: NumPy scalars for B = 1, no slicing.
    cse : bool or None
        See :func:`generate_source`.

    Returns
    -------
    str
    """
    n, p = len(states), len(params)
    inputs = _internal_names([*states, *adjoint, *params, time])  # symbol -> "_s<k>"
    order = {sym: k for k, sym in enumerate(inputs)}
    per_sample = {*states, *adjoint}
    t_sym = inputs[time]
    facts = _Facts()

    def renamed(exprs):
        return [sp.sympify(e) for e in exprs]

    batch = style == "batch"
    if style not in ("batch", "scalar"):
        raise InvalidArgumentError(f"style={style!r} is not one of 'batch', 'scalar'")
    unpack_theta = f"{', '.join(f'_s{2 * n + j}' for j in range(p))}, = theta" if p else ""
    lines = ["def make(theta, B):", f"    Bn = B * {n}", "    _ones = numpy.ones(B)"]
    if p:
        lines.append(f"    {unpack_theta}")
    setup_printer = _NamedPrinter(dict(inputs))
    per_solve = {}  # scalar subexpressions of theta only: computed once, in make()
    hoisted = {}  # symbols of per_solve (and of each kernel's per_call) -> their names

    def kernel(name, args, exprs, sources, layout):
        """One kernel: ``sources`` maps input symbol -> (array name, offset in sample-major blocks)."""
        per_call = {}  # scalar subexpressions that depend on t: once per call

        def scalar_symbol(e):
            table, prefix = (per_call, "_r") if time in facts.free(e) else (per_solve, "_q")
            if e not in table:
                table[e] = sp.Symbol(f"{prefix}{len(table)}", real=True)
                hoisted[table[e]] = table[e].name
            return table[e]

        memo = {}  # subtrees already hoisted (per kernel: per_call is the kernel's own)
        exprs = [_hoist_scalars(e, per_sample, scalar_symbol, facts, memo) for e in exprs]
        printer = _NamedPrinter({**inputs, **hoisted})
        body, reduced, depends, used = _body(exprs, cse, "        ", printer, facts)
        if not batch:
            return scalar_kernel(name, args, exprs, sources, body, reduced, used, per_call, printer)
        out_lines = [f"    def {name}({args}):"]
        for x in sorted(used & per_sample, key=order.get):
            sym, (array, offset) = inputs[x], sources[x]
            out_lines.append(f"        {sym} = {array}[{offset}:{offset} + Bn:{n}]")
        if time in used or per_call:
            out_lines.append(f"        {t_sym} = numpy.float64(t)")
        out_lines.extend(f"        {sym} = {setup_printer.doprint(e)}" for e, sym in per_call.items())
        out_lines.extend(body)
        for (kind, pos), e in zip(layout, reduced):
            if kind == "sample":  # pos: offset of a sample-major block entry
                out_lines.append(f"        out[{pos}:{pos} + Bn:{n}] = {printer.doprint(e)}")
            else:  # pos: a flat index; summed over the batch
                out_lines.append(f"        out[{pos}] = {batch_sum(e, depends, printer)}")
        return out_lines

    def scalar_kernel(name, args, exprs, sources, body, reduced, used, per_call, printer):
        """The B = 1 kernel: on Python floats where that gives NumPy's numbers, else on NumPy scalars.

        Python float arithmetic is IEEE double arithmetic like NumPy's float64
        scalars, at a fraction of their per-operation cost; it differs only
        where it raises (a division by zero, an overflowing power), which
        falls back to the NumPy-scalar evaluation, and in fractional powers
        of negative numbers (complex in Python, NaN in NumPy): expressions
        with such powers, and complex inputs, always take the NumPy path.
        """
        xs = sorted(used & per_sample, key=order.get)
        arrays = sorted({sources[x][0] for x in xs})
        outs = [printer.doprint(e) for e in reduced]
        if len(outs) <= SCALAR_ITEM_WRITES:  # item writes beat one tuple assignment on short outputs
            writes = [f"out[{i}] = {o}" for i, o in enumerate(outs)]
        else:
            writes = [f"out[:] = ({''.join(o + ', ' for o in outs)})"]
        t_used = time in used or per_call
        per_call_lines = [f"{sym} = {setup_printer.doprint(e)}" for e, sym in per_call.items()]
        body = [line.strip() for line in body]
        out_lines = [f"    def {name}({args}):"]
        if _float_safe([*exprs, *per_call]):
            out_lines += [f"        _l{a} = {a}.tolist()" for a in arrays]
            out_lines += [f"        {inputs[x]} = _l{sources[x][0]}[{sources[x][1]}]" for x in xs]
            first = {}  # one input per array: its type says whether the array is real
            for x in xs:
                first.setdefault(sources[x][0], inputs[x])
            real = " and ".join(f"type({name_}) is float" for name_ in first.values()) or "True"
            out_lines.append(f"        if {real}:")
            out_lines.append("            try:")
            fast = ([f"{t_sym} = float(t)"] if t_used else []) + per_call_lines + body + writes + ["return"]
            out_lines += [f"                {line}" for line in fast]
            out_lines.append("            except (ArithmeticError, TypeError, ValueError):")
            out_lines.append("                pass  # evaluated again below with NumPy's semantics")
        out_lines += [f"        {inputs[x]} = {sources[x][0]}[{sources[x][1]}]" for x in xs]
        slow = ([f"{t_sym} = numpy.float64(t)"] if t_used else []) + per_call_lines + body + writes
        out_lines += [f"        {line}" for line in slow]
        return out_lines

    def batch_sum(e, depends, printer):
        """Source of sum_b e: scalar factors outside, a product of two per-sample factors as a dot."""
        factors = e.args if (e.is_Mul and printer._named(e) is None) else (e,)
        outer = [x for x in factors if not depends(x) & per_sample]
        inner = [x for x in factors if depends(x) & per_sample]
        scale = printer.doprint(sp.Mul(*outer, evaluate=False)) if outer else "1"
        if not inner:
            return f"B * ({scale})"
        if len(inner) == 2:
            total = f"numpy.dot({printer.doprint(inner[0])}, {printer.doprint(inner[1])})"
        else:  # a dot with ones sums strided views faster than .sum()
            total = f"numpy.dot({printer.doprint(sp.Mul(*inner, evaluate=False))}, _ones)"
        if scale == "1":
            return total
        return f"-{total}" if scale == "-1" else f"({scale}) * {total}"

    z_src = {x: ("y", f"{i}") for i, x in enumerate(states)}
    a_src = {x: ("y", f"Bn + {i}") for i, x in enumerate(adjoint)}
    sample = [("sample", f"{i}") for i in range(n)]
    sample_a = [("sample", f"Bn + {i}") for i in range(n)]
    lines += kernel("f", "t, y, out", renamed(f), z_src, sample)
    lines += kernel(
        "backward",
        "t, y, out",
        renamed([*f, *adj, *adj_theta, *adj_t]),
        {**z_src, **a_src},
        sample + sample_a + [("sum", f"2 * Bn + {j}") for j in range(p + 1)],
    )
    lines += kernel(
        "adjoint",
        "t, z, y, out",
        renamed([*adj, *adj_theta, *adj_t]),
        {**{x: ("z", f"{i}") for i, x in enumerate(states)}, **{x: ("y", f"{i}") for i, x in enumerate(adjoint)}},
        sample + [("sum", f"Bn + {j}") for j in range(p + 1)],
    )
    setup = [f"    {sym} = {setup_printer.doprint(e)}" for e, sym in per_solve.items()]
    if not batch:  # NumPy computed them; as Python floats they keep the kernels' NumPy inputs NumPy scalars
        setup += [f"    {sym} = float({sym})" for sym in [*(f"_s{2 * n + j}" for j in range(p)), *per_solve.values()]]
    lines[4 if p else 3 : 4 if p else 3] = setup
    lines.append("    return f, backward, adjoint")
    return "\n".join(lines) + "\n"


#: outputs up to which a B = 1 kernel writes item by item
SCALAR_ITEM_WRITES = 32


def _float_safe(exprs):
    """True when Python floats evaluate ``exprs`` as NumPy float64 scalars do, or raise.

    Integer powers and square roots (printed as ``numpy.sqrt``) qualify; a
    fractional or symbolic power does not (a negative base gives a complex
    number in Python, NaN in NumPy).
    """
    for e in exprs:
        for pw in sp.sympify(e).atoms(sp.Pow):
            x = pw.exp
            if not ((x.is_Integer and abs(int(x)) <= 64) or x in (sp.S.Half, -sp.S.Half)):
                return False
    return True


def _rebuild(expr, args):
    """``expr`` with new arguments, unevaluated where SymPy allows it (no automatic simplification to pay)."""
    if all(a is b for a, b in zip(args, expr.args)):
        return expr
    try:
        return expr.func(*args, evaluate=False)
    except TypeError:  # a class without the option, e.g. ExprCondPair
        return expr.func(*args)


def _hoist_scalars(expr, per_sample, scalar_symbol, facts, memo):
    """Group the batch-independent factors of each product (terms of each sum) into one symbol.

    In batch code every operation on a per-sample value is an array
    operation, while operations between scalars (parameters, time) are cheap:
    ``-a*b*x`` evaluated left to right costs three array operations, ``_q0*x``
    with ``_q0 = -a*b`` computed once costs one. ``scalar_symbol(e)`` returns
    the symbol that holds the scalar expression ``e``; ``memo`` maps the
    subtrees already rewritten to their results.
    """
    if not expr.args:
        return expr
    if not facts.free(expr) & per_sample:
        return expr if expr.is_Number else scalar_symbol(expr)
    return _hoist_inner(expr, per_sample, scalar_symbol, facts, memo)


def _hoist_inner(expr, per_sample, scalar_symbol, facts, memo):
    if not expr.args or not facts.free(expr) & per_sample:
        return expr
    out = memo.get(expr)
    if out is not None:
        return out
    args = [_hoist_inner(a, per_sample, scalar_symbol, facts, memo) for a in expr.args]
    out = None
    if expr.is_Mul or expr.is_Add:
        scalars = [a for a in args if not facts.free(a) & per_sample]
        if len(scalars) > 1 or (scalars and scalars[0].args):
            rest = [a for a in args if facts.free(a) & per_sample]
            out = expr.func(scalar_symbol(expr.func(*scalars, evaluate=False)), *rest, evaluate=False)
    if out is None:
        out = _rebuild(expr, args)
    memo[expr] = out
    return out


def compile_solver_kernels(*args, style, cse=None):
    """Compile :func:`generate_solver_source`; returns ``(make, source)``."""
    source = generate_solver_source(*args, style=style, cse=cse)
    label = {"batch": "", "scalar": " (B = 1)"}[style]
    namespace = _namespace("numpy")
    code = compile(source, f"<odeverify-generated solver kernels{label}>", "exec")
    exec(code, namespace)  # noqa: S102 - generated from SymPy trees, never from user text
    return namespace["make"], source


def _compile_source(source, name, backend):
    namespace = _namespace(backend)
    code = compile(source, f"<odeverify-generated {name}>", "exec")
    exec(code, namespace)  # noqa: S102 - generated from SymPy trees, never from user text
    return namespace[name]


def compile_function(groups, exprs, *, name="kernel", backend="numpy", cse=None):
    """Compile ``exprs`` into a Python function of ``groups`` (see :func:`generate_source`).

    The source is generated from SymPy trees only; no user text reaches it.

    Returns
    -------
    function, str
        The function and its source.
    """
    source = generate_source(groups, exprs, name=name, cse=cse)
    return _compile_source(source, name, backend), source


class ArrayKernel:
    """A compiled, vectorized evaluator of one or more SymPy matrices.

    Parameters
    ----------
    groups : sequence of Group
        The inputs, in call order.
    blocks : sequence of (str, sympy.Matrix) or (str, sympy.Matrix, "matrix")
        The outputs. A column vector block of ``m`` rows evaluates to shape
        ``batch + (m,)`` unless the third element ``"matrix"`` asks for
        ``batch + (m, 1)``; any other matrix of shape ``(r, c)`` evaluates
        to ``batch + (r, c)``.
    name : str
        Used in generated code and error messages.
    cse : bool or None
        See :func:`generate_source`.

    Notes
    -----
    The batch shape is the broadcast of every argument's batch shape (a
    vector group's shape without its last axis, a scalar group's whole
    shape). All blocks are generated together, so subexpressions shared
    between them are computed once. The source is generated once; the
    NumPy, complex-step and autograd variants compile the same source in
    different namespaces.
    """

    def __init__(self, groups, blocks, *, name="kernel", cse=None):
        self.groups = tuple(groups)
        self.name = name
        self.block_names = []
        self.block_shapes = []
        self._entries = []  # per block: list of (flat index, position in exprs)
        exprs = []
        for block in blocks:
            bname, mat = block[0], sp.Matrix(block[1])
            as_matrix = len(block) > 2 and block[2] == "matrix"
            shape = (mat.rows,) if (mat.cols == 1 and not as_matrix) else (mat.rows, mat.cols)
            entries = []
            for idx, e in enumerate(mat):
                if e != 0:
                    entries.append((idx, len(exprs)))
                    exprs.append(e)
            self.block_names.append(bname)
            self.block_shapes.append(shape)
            self._entries.append(entries)
        self._exprs = exprs
        self.source = generate_source(self.groups, exprs, name=name, cse=cse)
        self._fun = _compile_source(self.source, name, "numpy")
        self._autograd_fun = None
        self._complex_fun = None
        # per block: (shape, size, slice of exprs if every entry is non-zero (dense), else the entries);
        # the entries of a block are consecutive in exprs
        self._layout = []
        for shape, entries in zip(self.block_shapes, self._entries):
            size = int(np.prod(shape))
            dense = len(entries) == size and size > 0
            where = slice(entries[0][1], entries[-1][1] + 1) if dense else entries
            self._layout.append((shape if len(shape) > 1 else None, size, dense, where))
        self._scalar_groups = tuple(g.scalar for g in self.groups)

    def batch_shape(self, args):
        batch = ()
        for scalar, a in zip(self._scalar_groups, args):
            s = np.shape(a)
            if not scalar:
                s = s[:-1]
            if s != batch and s:
                batch = np.broadcast_shapes(batch, s) if batch else s
        return batch

    def check_args(self, args):
        """Convert and validate arguments; returns a list of arrays."""
        if len(args) != len(self.groups):
            raise InvalidTypeError(
                f"{self.name}() takes {len(self.groups)} arguments "
                f"({', '.join(g.name for g in self.groups)}), got {len(args)}"
            )
        out = []
        for g, a in zip(self.groups, args):
            try:
                arr = np.asarray(a)
            except Exception as exc:  # noqa: BLE001 - reported with the argument's name
                raise InvalidTypeError(f"{self.name}(): {g.name} could not be read as an array: {exc}") from None
            if arr.dtype.kind not in "biufc":
                raise InvalidTypeError(f"{self.name}(): {g.name} must be numeric, got dtype {arr.dtype}")
            if not g.scalar:
                if arr.ndim == 0 or arr.shape[-1] != len(g.symbols):
                    raise InvalidArgumentError(
                        f"{self.name}(): {g.name} must have last axis of length {len(g.symbols)} "
                        f"({', '.join(map(str, g.symbols)) or 'no symbols'}), got shape {arr.shape}"
                    )
            out.append(arr)
        try:
            self.batch_shape(out)
        except ValueError:
            raise InvalidArgumentError(
                f"{self.name}(): the batch shapes of "
                + ", ".join(f"{g.name} {np.shape(a)}" for g, a in zip(self.groups, out))
                + " do not broadcast"
            ) from None
        return out

    def __call__(self, *args, check=True):
        """Evaluate every block; returns a tuple of arrays (one per block).

        ``check=False`` (for the solvers' inner loops) skips the validation:
        the vector arguments must then be NumPy arrays of the right shapes.
        """
        if check:
            args = self.check_args(args)
        return self._pack(self._fun(*args), self.batch_shape(args), _result_dtype(args))

    def evaluate_complex(self, *args, check=True):
        """Like ``__call__`` but with complex-safe activation functions (for complex-step)."""
        if self._complex_fun is None:
            self._complex_fun = _compile_source(self.source, self.name, "complex")
        if check:
            args = self.check_args(args)
        return self._pack(self._complex_fun(*args), self.batch_shape(args), complex)

    def _pack(self, vals, batch, dtype):
        """The generated function's entries placed into one array per block (zeros elsewhere)."""
        results = []
        for shape, size, dense, where in self._layout:
            if dense and not batch:
                out = np.array(vals[where], dtype=dtype)
            elif dense:
                out = np.empty(batch + (size,), dtype=dtype)
                for i, value in enumerate(vals[where]):
                    out[..., i] = value
            else:
                out = np.zeros(batch + (size,), dtype=dtype)
                for idx, pos in where:
                    out[..., idx] = vals[pos]
            results.append(out if shape is None else out.reshape(batch + shape))
        return tuple(results)

    def autograd(self, *args):
        """Evaluate every block with ``autograd.numpy`` (differentiable; arguments may be boxes).

        Entries that depend on a symbol of the only batched argument already
        have the batch shape; every other entry is broadcast by adding zeros.
        """
        import autograd.numpy as anp

        if self._autograd_fun is None:
            self._autograd_fun = _compile_source(self.source, self.name, "autograd")
            self._entry_symbols = [e.free_symbols for e in self._exprs]
            self._plans = [(shape, int(np.prod(shape)), dict(entries)) for shape, entries in zip(self.block_shapes, self._entries)]
        shapes = [anp.shape(a) for a in args]
        batched = [
            gi for gi, (g, s) in enumerate(zip(self.groups, shapes)) if (s if g.scalar else s[:-1]) != ()
        ]
        batch = self.batch_shape(args)
        vals = self._autograd_fun(*args)
        carrier = set(self.groups[batched[0]].symbols) if len(batched) == 1 else None
        zeros = None
        results = []
        for shape, size, by_idx in self._plans:
            cols = []
            for i in range(size):
                pos = by_idx.get(i)
                if pos is not None and carrier is not None and self._entry_symbols[pos] & carrier:
                    cols.append(vals[pos])
                    continue
                if zeros is None:
                    zeros = anp.zeros(batch)
                cols.append(zeros if pos is None else vals[pos] + zeros)
            if size == 0:
                results.append(anp.zeros(batch + shape))
            elif len(shape) == 1:
                results.append(anp.stack(cols, axis=-1))
            else:
                results.append(anp.reshape(anp.stack(cols, axis=-1), batch + shape))
        return tuple(results)


def _result_dtype(args):
    """``numpy.result_type(*args, numpy.float64)``, cheaply for the usual float64 arrays and Python floats."""
    for a in args:
        dt = getattr(a, "dtype", None)
        if dt is None:
            if isinstance(a, float):
                continue
            return np.result_type(*args, np.float64)
        if dt != np.float64:
            return np.result_type(*args, np.float64)
    return np.dtype(np.float64)
