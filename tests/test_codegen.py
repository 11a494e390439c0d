"""Code generation: exact literals, long expressions, CSE on and off."""

import numpy as np
import pytest
import sympy as sp

from odeverify._codegen import CHUNK, ArrayKernel, Group, generate_source


def test_float_literals_round_trip():
    x = sp.Symbol("x", real=True)
    vals = [0.1, 1 / 3, 2.0**-40, 123456789.123456789, sp.Rational(1, 3), sp.Integer(2**60)]
    exprs = [sp.Float(v) * x if not isinstance(v, sp.Basic) else v * x for v in vals]
    k = ArrayKernel([Group("z", (x,))], [("out", sp.Matrix(exprs))])
    out = k(np.array([1.0]))[0]
    want = [0.1, 1 / 3, 2.0**-40, 123456789.123456789, 1 / 3, float(2**60)]
    assert out.tolist() == want  # bit for bit


def test_long_sum_is_split_and_correct():
    xs = sp.symbols("x0:10", real=True)
    e = sp.Add(*[(i + 2 * j + k) * xs[i] ** k * xs[j] for i in range(10) for j in range(10) for k in range(1, 5)])
    assert len(e.args) > 4 * CHUNK
    src = generate_source([Group("z", xs)], [e], cse=False)
    assert "_p" in src  # partial sums were introduced
    k = ArrayKernel([Group("z", xs)], [("e", sp.Matrix([e]))], cse=False)
    z = np.linspace(-0.9, 0.9, 10)
    assert k(z)[0][0] == pytest.approx(float(e.subs(dict(zip(xs, z)))), rel=1e-12)


def test_cse_on_and_off_agree():
    x, y = sp.symbols("x y", real=True)
    e = sp.Matrix([sp.sin(x * y) ** 2 + sp.cos(x * y), sp.exp(sp.sin(x * y)) * y])
    k1 = ArrayKernel([Group("z", (x, y))], [("e", e)], cse=True)
    k2 = ArrayKernel([Group("z", (x, y))], [("e", e)], cse=False)
    z = np.random.default_rng(0).normal(size=(10, 2))
    np.testing.assert_allclose(k1(z)[0], k2(z)[0], rtol=1e-15)
    assert "_c0" in k1.source and "_c0" not in k2.source


def test_user_names_never_reach_generated_source():
    # even a symbol named like a module or builtin is renamed before printing
    s = [sp.Symbol(n, real=True) for n in ("numpy", "os", "exec")]
    k = ArrayKernel([Group("z", tuple(s))], [("e", sp.Matrix([s[0] * s[1] + s[2]]))])
    assert "os" not in k.source.replace("_s", "")
    assert k(np.array([2.0, 3.0, 4.0]))[0][0] == 10.0
