"""The one place where SymPy expressions become vectorized NumPy code.

Expressions are reduced by common-subexpression elimination (CSE), printed
with a NumPy printer whose output names no user text (every symbol is renamed
to an internal ``_s<k>`` before printing), and compiled once. The generated
functions take *groups* of inputs -- a state vector, a time, a parameter
vector -- whose last axis indexes the group's symbols, so an argument with
leading batch axes evaluates a whole batch in one call; constant entries
broadcast against the batch.

Two knobs bound the cost of code generation on large inputs: CSE is skipped
when the expressions hold more than :data:`CSE_MAX_NODES` nodes (its cost
grows faster than linearly), and sums and products of more than
:data:`CHUNK` terms are split into partial results so that Python's compiler
does not recurse too deeply.
"""

from __future__ import annotations

import types
from dataclasses import dataclass

import numpy as np
import scipy.special
import sympy as sp
from sympy.printing.numpy import NumPyPrinter

from .errors import InvalidArgumentError, InvalidTypeError

__all__ = ["Group", "ArrayKernel", "compile_function", "compile_solver_kernels", "CSE_MAX_NODES", "CHUNK"]

#: Largest expression size (in tree nodes) on which CSE is run.
CSE_MAX_NODES = 200_000
#: Largest number of terms of one printed sum or product.
CHUNK = 64


def _heaviside_np(x, h0):
    return np.heaviside(x, h0)


def _relu_np(x):
    return np.maximum(x, 0.0)


def _softplus_np(x):
    return np.logaddexp(0.0, x)


def _make_autograd_ops():
    import autograd.numpy as anp
    import autograd.scipy.special as asp

    def heaviside(x, h0):
        return anp.where(x > 0, 1.0, anp.where(x < 0, 0.0, h0))

    return types.SimpleNamespace(
        sigmoid=asp.expit,
        softplus=lambda x: anp.logaddexp(0.0, x),
        relu=lambda x: anp.maximum(x, 0.0),
        heaviside=heaviside,
        erf=asp.erf,
        where=anp.where,
    )


def _complex_sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _complex_softplus(x):
    return np.log1p(np.exp(x))


_NUMPY_OPS = types.SimpleNamespace(
    sigmoid=scipy.special.expit,
    softplus=_softplus_np,
    relu=_relu_np,
    heaviside=_heaviside_np,
    erf=scipy.special.erf,
    where=np.where,
)

_COMPLEX_OPS = types.SimpleNamespace(
    sigmoid=_complex_sigmoid,
    softplus=_complex_softplus,
    relu=_relu_np,
    heaviside=_heaviside_np,
    erf=scipy.special.erf,
    where=np.where,
)


def _namespace(backend: str) -> dict:
    if backend == "numpy":
        return {"numpy": np, "_ops": _NUMPY_OPS}
    if backend == "complex":
        return {"numpy": np, "_ops": _COMPLEX_OPS}
    if backend == "autograd":
        import autograd.numpy as anp

        return {"numpy": anp, "_ops": _make_autograd_ops()}
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


def _count_nodes(exprs, limit):
    n = 0
    for e in exprs:
        for _ in sp.preorder_traversal(e):
            n += 1
            if n > limit:
                return n
    return n


def _split_long(expr, fresh, assignments):
    """Replace sums and products of more than CHUNK terms by partial results."""
    if expr.is_Atom:
        return expr
    args = [_split_long(a, fresh, assignments) for a in expr.args]
    if (expr.is_Add or expr.is_Mul) and len(args) > CHUNK:
        parts = []
        for i in range(0, len(args), CHUNK):
            sym = next(fresh)
            assignments.append((sym, expr.func(*args[i : i + CHUNK], evaluate=False)))
            parts.append(sym)
        while len(parts) > CHUNK:
            merged = []
            for i in range(0, len(parts), CHUNK):
                sym = next(fresh)
                assignments.append((sym, expr.func(*parts[i : i + CHUNK], evaluate=False)))
                merged.append(sym)
            parts = merged
        return expr.func(*parts, evaluate=False)
    if args == list(expr.args):
        return expr
    return expr.func(*args, evaluate=False)


def generate_source(groups, exprs, *, name="kernel", cse=None):
    """Python source of a function of ``groups`` returning a tuple of ``exprs``.

    Parameters
    ----------
    groups : sequence of Group
    exprs : sequence of sympy.Expr
    name : str
        Function name in the source.
    cse : bool or None
        Common-subexpression elimination; ``None`` runs it unless the
        expressions exceed :data:`CSE_MAX_NODES` nodes.

    Returns
    -------
    str
    """
    exprs = [sp.sympify(e) for e in exprs]
    rename = {}
    lines = [f"def {name}({', '.join(g.name for g in groups)}):"]
    k = 0
    for g in groups:
        names = []
        for s in g.symbols:
            rename[s] = sp.Symbol(f"_s{k}", real=True)
            names.append(f"_s{k}")
            k += 1
        if g.scalar:
            lines.append(f"    {names[0]} = {g.name}")
        elif names:
            # a vector group is an array whose last axis holds the symbols, or
            # (for differentiation with few traced operations) a list of them
            lines.append(f"    if isinstance({g.name}, (list, tuple)):")
            lines.append(f"        {', '.join(names)}, = {g.name}")
            lines.append("    else:")
            for j, nm in enumerate(names):
                lines.append(f"        {nm} = {g.name}[..., {j}]")
    exprs = [e.xreplace(rename) for e in exprs]
    body, reduced, _, _ = _body(exprs, cse, "    ")
    lines.extend(body)
    printer = _Printer()
    outs = [printer.doprint(e) for e in reduced]
    lines.append(f"    return ({''.join(o + ', ' for o in outs)})")
    return "\n".join(lines) + "\n"


def _body(exprs, cse, indent):
    """CSE and print ``exprs`` (in internal symbols).

    Returns
    -------
    lines : list of str
        Assignments of the subexpressions, indented.
    reduced : list of sympy.Expr
        The expressions in terms of the subexpressions, ready to print.
    depends : callable
        ``depends(expr)``: the input symbols an expression in the
        subexpressions depends on.
    used : set
        Every input symbol the lines and expressions read.
    """
    if cse is None:
        cse = _count_nodes(exprs, CSE_MAX_NODES) <= CSE_MAX_NODES
    if cse and exprs:
        replacements, reduced = sp.cse(
            exprs, symbols=sp.numbered_symbols("_c", real=True), order="none", optimizations=None
        )
    else:
        replacements, reduced = [], exprs
    fresh = sp.numbered_symbols("_p", real=True)
    printer = _Printer()
    lines = []
    inputs = {}  # subexpression symbol -> input symbols it depends on

    def depends(e):
        out = set()
        for sym in e.free_symbols:
            out |= inputs.get(sym, {sym})
        return out

    def assign(sym, value):
        inputs[sym] = depends(value)
        lines.append(f"{indent}{sym} = {printer.doprint(value)}")

    for sym, value in replacements:
        extra = []
        value = _split_long(value, fresh, extra)
        for s2, v2 in extra:
            assign(s2, v2)
        assign(sym, value)
    outs = []
    for e in reduced:
        extra = []
        e = _split_long(e, fresh, extra)
        for s2, v2 in extra:
            assign(s2, v2)
        outs.append(e)
    used = set().union(*inputs.values(), *(depends(e) for e in outs))
    return lines, outs, depends, used


def generate_solver_source(states, adjoint, params, time, f, adj, adj_theta, adj_t, *, style, cse=None):
    """Python source of the solver kernels of one ODE.

    For ``style="batch"`` and ``style="scalar"`` the source defines
    ``make(theta, B) -> (f, backward, adjoint)``; for ``style="loop"`` it
    defines the three functions with ``theta`` as first argument and the
    batch as an explicit loop over samples, for a JIT compiler (numba).

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
    style : {'batch', 'scalar', 'loop'}
        ``'batch'``: NumPy operations on strided views of the samples;
        ``'scalar'``: NumPy scalars for B = 1, no slicing; ``'loop'``: plain
        scalar code in a loop over the samples, accumulating the batch sums
        (for :func:`compile_solver_kernels` with ``jit=True``).
    cse : bool or None
        See :func:`generate_source`.

    Returns
    -------
    str
    """
    n, p = len(states), len(params)
    rename, names = {}, {}
    for k, sym in enumerate([*states, *adjoint, *params, time]):
        internal = sp.Symbol(f"_s{k}", real=True)
        rename[sym] = internal
        names[internal] = k
    z_syms = {rename[x] for x in states}
    a_syms = {rename[x] for x in adjoint}
    per_sample = z_syms | a_syms
    t_sym = rename[time]

    def renamed(exprs):
        return [sp.sympify(e).xreplace(rename) for e in exprs]

    batch, loop = style == "batch", style == "loop"
    if style not in ("batch", "scalar", "loop"):
        raise InvalidArgumentError(f"style={style!r} is not one of 'batch', 'scalar', 'loop'")
    unpack_theta = f"{', '.join(f'_s{2 * n + j}' for j in range(p))}, = theta" if p else ""
    lines = [] if loop else ["def make(theta, B):", f"    Bn = B * {n}", "    _ones = numpy.ones(B)"]
    if p and not loop:
        lines.append(f"    {unpack_theta}")
    printer = _Printer()
    per_solve = {}  # scalar subexpressions of theta only: computed once, in make()
    per_solve_syms = sp.numbered_symbols("_q", real=True)

    def kernel(name, args, exprs, sources, layout):
        """One kernel: ``sources`` maps input symbol -> (array name, offset in sample-major blocks)."""
        per_call = {}  # scalar subexpressions that depend on t: once per call
        per_call_syms = sp.numbered_symbols("_r", real=True)
        if loop:  # no make(): every scalar is computed in the kernel
            per_solve.clear()

        def scalar_symbol(e):
            table, fresh = (per_call, per_call_syms) if t_sym in e.free_symbols else (per_solve, per_solve_syms)
            if e not in table:
                table[e] = next(fresh)
            return table[e]

        exprs = [_hoist_scalars(e, per_sample, scalar_symbol) for e in exprs]
        if loop:
            return loop_kernel(name, args, exprs, sources, layout, per_call)
        body, reduced, depends, used = _body(exprs, cse, "        ")
        out_lines = [f"    def {name}({args}):"]
        for sym in sorted(used & per_sample, key=names.get):
            array, offset = sources[sym]
            if batch:
                out_lines.append(f"        {sym} = {array}[{offset}:{offset} + Bn:{n}]")
            else:
                out_lines.append(f"        {sym} = {array}[{offset}]")
        if t_sym in used or per_call:
            out_lines.append(f"        {t_sym} = numpy.float64(t)")
        out_lines.extend(f"        {sym} = {printer.doprint(e)}" for e, sym in per_call.items())
        out_lines.extend(body)
        if batch:
            for (kind, pos), e in zip(layout, reduced):
                if kind == "sample":  # pos: offset of a sample-major block entry
                    out_lines.append(f"        out[{pos}:{pos} + Bn:{n}] = {printer.doprint(e)}")
                else:  # pos: a flat index; summed over the batch
                    out_lines.append(f"        out[{pos}] = {batch_sum(e, depends)}")
        else:
            out_lines.append(f"        out[:] = ({''.join(printer.doprint(e) + ', ' for e in reduced)})")
        return out_lines

    def loop_kernel(name, args, exprs, sources, layout, per_call):
        body, reduced, depends, used = _body(exprs, cse, "        ")
        out_lines = [f"def {name}(theta, {args}):"]
        if p:
            out_lines.append(f"    {unpack_theta}")
        out_lines.extend(f"    {sym} = {printer.doprint(e)}" for e, sym in per_solve.items())
        # the number of samples from the length of the state
        first = "z" if "z" in args else "y"
        blocks = 2 if name == "backward" else 1
        extra = 0 if name == "f" or first == "z" else p + 1
        out_lines.append(f"    B = ({first}.shape[0] - {extra}) // {blocks * n}")
        out_lines.append(f"    Bn = B * {n}")
        if t_sym in used or per_call:
            out_lines.append(f"    {t_sym} = numpy.float64(t)")
        out_lines.extend(f"    {sym} = {printer.doprint(e)}" for e, sym in per_call.items())
        sums = [(pos, e) for (kind, pos), e in zip(layout, reduced) if kind == "sum"]
        for j, (pos, e) in enumerate(sums):
            out_lines.append(f"    _acc{j} = 0.0" if depends(e) & per_sample else f"    _acc{j} = B * ({printer.doprint(e)})")
        out_lines.append("    for _b in range(B):")
        out_lines.append(f"        _i = _b * {n}")
        for sym in sorted(used & per_sample, key=names.get):
            array, offset = sources[sym]
            out_lines.append(f"        {sym} = {array}[{offset} + _i]")
        out_lines.extend(body)
        j = 0
        for (kind, pos), e in zip(layout, reduced):
            if kind == "sample":
                out_lines.append(f"        out[{pos} + _i] = {printer.doprint(e)}")
            else:
                if depends(e) & per_sample:
                    out_lines.append(f"        _acc{j} += {printer.doprint(e)}")
                j += 1
        for j, (pos, e) in enumerate(sums):
            out_lines.append(f"    out[{pos}] = _acc{j}")
        return out_lines

    def batch_sum(e, depends):
        """Source of sum_b e: scalar factors outside, a product of two per-sample factors as a dot."""
        factors = e.args if e.is_Mul else (e,)
        outer = [x for x in factors if not depends(x) & per_sample]
        inner = [x for x in factors if depends(x) & per_sample]
        scale = printer.doprint(sp.Mul(*outer)) if outer else "1"
        if not inner:
            return f"B * ({scale})"
        if len(inner) == 2:
            total = f"numpy.dot({printer.doprint(inner[0])}, {printer.doprint(inner[1])})"
        else:  # a dot with ones sums strided views faster than .sum()
            total = f"numpy.dot({printer.doprint(sp.Mul(*inner))}, _ones)"
        if scale == "1":
            return total
        return f"-{total}" if scale == "-1" else f"({scale}) * {total}"

    z_src = {rename[x]: ("y", f"{i}") for i, x in enumerate(states)}
    a_src = {rename[x]: ("y", f"Bn + {i}") for i, x in enumerate(adjoint)}
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
        {**{rename[x]: ("z", f"{i}") for i, x in enumerate(states)}, **{rename[x]: ("y", f"{i}") for i, x in enumerate(adjoint)}},
        sample + [("sum", f"Bn + {j}") for j in range(p + 1)],
    )
    if loop:
        return "\n".join(lines) + "\n"
    setup = [f"    {sym} = {printer.doprint(e)}" for e, sym in per_solve.items()]
    lines[4 if p else 3 : 4 if p else 3] = setup
    lines.append("    return f, backward, adjoint")
    return "\n".join(lines) + "\n"


def _hoist_scalars(expr, per_sample, scalar_symbol):
    """Group the batch-independent factors of each product (terms of each sum) into one symbol.

    In batch code every operation on a per-sample value is an array
    operation, while operations between scalars (parameters, time) are cheap:
    ``-a*b*x`` evaluated left to right costs three array operations, ``_q0*x``
    with ``_q0 = -a*b`` computed once costs one. ``scalar_symbol(e)`` returns
    the symbol that holds the scalar expression ``e``.
    """
    if expr.is_Atom:
        return expr
    if not expr.free_symbols & per_sample:
        return expr if expr.is_Number else scalar_symbol(expr)
    return _hoist_inner(expr, per_sample, scalar_symbol)


def _hoist_inner(expr, per_sample, scalar_symbol):
    if expr.is_Atom or not expr.free_symbols & per_sample:
        return expr
    args = [_hoist_inner(a, per_sample, scalar_symbol) for a in expr.args]
    if expr.is_Mul or expr.is_Add:
        scalars = [a for a in args if not a.free_symbols & per_sample]
        if len(scalars) > 1 or (scalars and not scalars[0].is_Atom):
            rest = [a for a in args if a.free_symbols & per_sample]
            return expr.func(scalar_symbol(expr.func(*scalars)), *rest)
    return expr.func(*args)


def compile_solver_kernels(*args, style, cse=None):
    """Compile :func:`generate_solver_source`; returns ``(make or (f, backward, adjoint), source)``.

    ``style="loop"`` compiles the three kernels with numba (imported here:
    an optional dependency); the others return the ``make`` factory.
    """
    source = generate_solver_source(*args, style=style, cse=cse)
    label = {"batch": "", "scalar": " (B = 1)", "loop": " (numba)"}[style]
    if style == "loop":
        import numba

        namespace = {"numpy": np, "_ops": _numba_ops()}
    else:
        namespace = _namespace("numpy")
    code = compile(source, f"<odeverify-generated solver kernels{label}>", "exec")
    exec(code, namespace)  # noqa: S102 - generated from SymPy trees, never from user text
    if style == "loop":
        # error_model="numpy": x/0 gives inf or NaN (reported by the solver as an undefined vector field),
        # as the NumPy kernels do, instead of numba's default ZeroDivisionError
        return tuple(numba.njit(namespace[k], error_model="numpy") for k in ("f", "backward", "adjoint")), source
    return namespace["make"], source


_NUMBA_OPS = None


def _numba_ops():
    """The activation functions of the generated code, compiled with numba, as a module."""
    global _NUMBA_OPS
    if _NUMBA_OPS is None:
        import math

        import numba

        @numba.njit
        def sigmoid(x):
            if x >= 0.0:
                return 1.0 / (1.0 + math.exp(-x))
            e = math.exp(x)
            return e / (1.0 + e)

        @numba.njit
        def softplus(x):
            return max(x, 0.0) + math.log1p(math.exp(-abs(x)))

        @numba.njit
        def relu(x):
            return 0.0 if x < 0.0 else x

        @numba.njit
        def heaviside(x, h0):
            if x > 0.0:
                return 1.0
            if x < 0.0:
                return 0.0
            return h0 if x == 0.0 else x

        @numba.njit
        def erf(x):
            return math.erf(x)

        @numba.njit
        def where(cond, a, b):
            return a if cond else b

        module = types.ModuleType("odeverify_numba_ops")
        for fn in (sigmoid, softplus, relu, heaviside, erf, where):
            setattr(module, fn.__name__, fn)
        _NUMBA_OPS = module
    return _NUMBA_OPS


def compile_function(groups, exprs, *, name="kernel", backend="numpy", cse=None):
    """Compile ``exprs`` into a Python function of ``groups`` (see :func:`generate_source`).

    The source is generated from SymPy trees only; no user text reaches it.

    Returns
    -------
    function, str
        The function and its source.
    """
    source = generate_source(groups, exprs, name=name, cse=cse)
    namespace = _namespace(backend)
    code = compile(source, f"<odeverify-generated {name}>", "exec")
    exec(code, namespace)  # noqa: S102 - generated from SymPy trees, never from user text
    return namespace[name], source


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
    between them are computed once.
    """

    def __init__(self, groups, blocks, *, name="kernel", cse=None):
        self.groups = tuple(groups)
        self.name = name
        self._cse = cse
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
        self._fun, self.source = compile_function(self.groups, exprs, name=name, cse=cse)
        self._autograd_fun = None
        self._complex_fun = None

    def batch_shape(self, args):
        shapes = []
        for g, a in zip(self.groups, args):
            s = np.shape(a)
            shapes.append(s if g.scalar else s[:-1])
        return np.broadcast_shapes(*shapes)

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
        """Evaluate every block; returns a tuple of arrays (one per block)."""
        if check:
            args = self.check_args(args)
        return self._pack(self._fun(*args), self.batch_shape(args), np.result_type(*args, np.float64))

    def evaluate_complex(self, *args):
        """Like ``__call__`` but with complex-safe activation functions (for complex-step)."""
        if self._complex_fun is None:
            self._complex_fun = compile_function(self.groups, self._exprs, name=self.name, backend="complex", cse=self._cse)[0]
        args = self.check_args(args)
        return self._pack(self._complex_fun(*args), self.batch_shape(args), complex)

    def _pack(self, vals, batch, dtype):
        """The generated function's entries placed into one array per block (zeros elsewhere)."""
        results = []
        for shape, entries in zip(self.block_shapes, self._entries):
            out = np.zeros(batch + (int(np.prod(shape)),), dtype=dtype)
            for idx, pos in entries:
                out[..., idx] = vals[pos]
            results.append(out.reshape(batch + shape))
        return tuple(results)

    def autograd(self, *args):
        """Evaluate every block with ``autograd.numpy`` (differentiable; arguments may be boxes).

        Entries that depend on a symbol of the only batched argument already
        have the batch shape; every other entry is broadcast by adding zeros.
        """
        import autograd.numpy as anp

        if self._autograd_fun is None:
            self._autograd_fun = compile_function(
                self.groups, self._exprs, name=self.name, backend="autograd", cse=self._cse
            )[0]
            self._entry_symbols = [e.free_symbols for e in self._exprs]
            self._plans = [(shape, int(np.prod(shape)), dict(entries)) for shape, entries in zip(self.block_shapes, self._entries)]
        shapes = [anp.shape(a) if not g.scalar else anp.shape(a) for g, a in zip(self.groups, args)]
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
