"""Lipschitz bounds and the Picard–Lindelöf interval (notes §2.3, §4.2) against closed forms."""

import autograd
import autograd.numpy as anp
import numpy as np
import pytest
import sympy as sp

import odeverify as ov
from odeverify.errors import EnclosureError, InvalidArgumentError, InvalidTypeError
from odeverify.theory import hypothesis_warnings, lipschitz, neural_ode_system, pack_mlp_params


@pytest.mark.parametrize("a", [-2.5, 0.0, 0.7, 13.0])
def test_linear_scalar_bound_is_abs_a(a):
    rep = lipschitz(ov.ODESystem.from_strings("x", "a", ["a*x"]), [a], [(-1.0, 4.0)])
    assert rep.upper == abs(a)
    assert rep.lower == pytest.approx(abs(a), rel=1e-12)
    assert rep.hypotheses_hold and rep.differentiable and rep.continuous_in_t


@pytest.mark.parametrize("R", [0.5, 1.0, 3.0, 10.0])
def test_square_on_symmetric_interval_has_bound_2R(R):
    rep = lipschitz(ov.ODESystem.from_strings("x", "", ["x**2"]), [], [(-R, R)], samples=4000)
    assert rep.upper == 2 * R
    assert 0.99 * 2 * R <= rep.lower <= 2 * R  # |x + y| sampled close to 2R
    assert rep.sup_f == R**2


def test_linear_system_bound_is_the_max_row_sum():
    A = np.array([[0.5, -2.0, 0.1], [1.5, 0.25, -0.75], [0.0, 3.0, -1.0]])
    sym = sp.symbols("x0:3", real=True)
    sys = ov.ODESystem(sym, [], list(sp.Matrix(A) * sp.Matrix(sym)))
    rep = lipschitz(sys, [], [(-1, 1)] * 3)
    assert rep.upper == pytest.approx(np.abs(A).sum(axis=1).max(), rel=1e-15)  # the ∞-norm of A
    assert rep.lower == pytest.approx(rep.upper, rel=1e-12)


def test_tanh_network_bound_is_sound_against_autograd_jacobians():
    # a rigorous bound must dominate the Jacobian norm wherever it is evaluated
    # independently (autograd on a NumPy version of the network)
    rng = np.random.default_rng(3)
    n, m = 2, 6
    W1, b1, W2, b2 = rng.normal(size=(m, n)), rng.normal(size=m), rng.normal(size=(n, m)), rng.normal(size=n)
    sys = neural_ode_system(n, m)
    theta = pack_mlp_params(W1, b1, W2, b2)
    box = [(-1.0, 2.0), (-0.5, 0.5)]
    rep = lipschitz(sys, theta, box, splits=4)
    jac = autograd.jacobian(lambda z: anp.dot(W2, anp.tanh(anp.dot(W1, z) + b1)) + b2)
    pts = np.column_stack([rng.uniform(-1, 2, 3000), rng.uniform(-0.5, 0.5, 3000)])
    norms = np.array([np.abs(jac(p)).sum(axis=1).max() for p in pts])
    assert norms.max() <= rep.upper
    assert rep.lower <= rep.upper
    # and the bound is not vacuous: within a factor 2 of what was observed
    assert rep.upper <= 2 * norms.max()
    # splitting tightens the enclosure while staying above the observed maximum
    coarse = lipschitz(sys, theta, box, splits=1, samples=0)
    assert norms.max() <= rep.upper <= coarse.upper


def test_relu_field_is_flagged():
    W = np.array([[1.0, -0.5], [0.3, 0.8]])
    sys = ov.ODESystem.from_strings(
        "x y", "w1 w2 w3 w4 b1 b2", ["relu(w1*x + w2*y + b1)", "relu(w3*x + w4*y + b2)"]
    )
    rep = lipschitz(sys, [*W.ravel(), 0.1, -0.2], [(-1, 1), (-1, 1)])
    assert rep.nonsmooth == ["relu"]
    assert rep.differentiable is False
    assert rep.hypotheses_hold is False
    assert any("relu" in p and "not differentiable" in p for p in rep.problems)
    # ReLU is Lipschitz, so Picard–Lindelöf itself holds, with the bound of the linear part
    assert rep.picard_lindelof_holds
    assert rep.upper == pytest.approx(np.abs(W).sum(axis=1).max(), rel=1e-15)
    # away from the kinks, it is smooth
    far = lipschitz(sys, [*W.ravel(), 5.0, 5.0], [(-1, 1), (-1, 1)])
    assert far.differentiable and far.hypotheses_hold


def test_blow_up_interval_lies_inside_the_blow_up_time():
    # dx/dt = x^2, x(0) = 1: x(t) = 1 / (1 - t) blows up at t = 1
    sq = ov.ODESystem.from_strings("x", "", ["x**2"])
    for top in [1.5, 2.0, 3.0, 10.0]:
        rep = lipschitz(sq, [], [(0.0, top)], z0=[1.0])
        t0, t1 = rep.picard_lindelof_interval
        T_exact = (top - 1) / top**2  # (hi - x0) / max x^2, the theorem's T
        assert t0 == 0.0
        assert T_exact - 1e-15 <= t1 <= T_exact
        assert 0 < t1 < 1.0
        assert 1.0 / (1.0 - t1) <= top  # the true solution stays in the box on the interval
    # the best box gives T = 1/4
    assert lipschitz(sq, [], [(0.0, 2.0)], z0=[1.0]).picard_lindelof_interval == (0.0, 0.25)


def test_interval_is_capped_by_t_span_and_uses_both_directions():
    decay = ov.ODESystem.from_strings("x", "", ["-x"])
    rep = lipschitz(decay, [], [(0.5, 3.0)], z0=[1.0])  # f in [-3, -0.5]: falls at rate <= 3 to 0.5
    assert rep.picard_lindelof_interval == pytest.approx((0.0, 0.5 / 3.0), rel=1e-15)
    capped = lipschitz(decay, [], [(0.5, 3.0)], z0=[1.0], t_span=(2.0, 2.1))
    assert capped.picard_lindelof_interval == pytest.approx((2.0, 2.1), rel=1e-15)


def test_continuity_in_time():
    forced = ov.ODESystem.from_strings("x", "", ["sin(t)*x"])
    rep = lipschitz(forced, [], [(-1, 1)], t_span=(0.0, 2.0))
    assert rep.continuous_in_t is True and rep.upper == pytest.approx(1.0, abs=1e-15)
    switch = ov.ODESystem.from_strings("x", "", ["heaviside(t - 1)*x"])
    bad = lipschitz(switch, [], [(-1, 1)], t_span=(0.0, 2.0))
    assert bad.continuous_in_t is False and not bad.picard_lindelof_holds
    assert any("discontinuous in t" in p for p in bad.problems)
    good = lipschitz(switch, [], [(-1, 1)], t_span=(0.0, 0.5))
    assert good.continuous_in_t is True and good.upper == 0.0
    with pytest.raises(InvalidArgumentError, match="t_span"):
        lipschitz(switch, [], [(-1, 1)])
    # a pole in t: f is unbounded, so continuity is not established and no interval is given
    pole = lipschitz(ov.ODESystem.from_strings("x", "", ["x/(t - 1)"]), [], [(-1, 1)], t_span=(0.0, 2.0))
    assert pole.continuous_in_t is None and pole.sup_f == np.inf and pole.picard_lindelof_interval is None
    assert any("unbounded" in p for p in pole.problems)


def test_discontinuous_and_non_lipschitz_fields():
    sgn = ov.ODESystem.from_strings("x", "", ["sign(x)"])
    rep = lipschitz(sgn, [], [(-1, 1)])
    assert rep.upper == np.inf and rep.picard_lindelof_interval is None
    assert any("discontinuous in z" in p for p in rep.problems)
    assert lipschitz(sgn, [], [(0.5, 1)]).upper == 0.0
    root = ov.ODESystem.from_strings("x", "", ["sqrt(x)"])
    assert lipschitz(root, [], [(0.0, 1.0)]).upper == np.inf  # x(t) = t^2/4 and x = 0 both solve x' = sqrt(x)
    assert lipschitz(root, [], [(1.0, 4.0)]).upper == 0.5


def test_errors():
    sq = ov.ODESystem.from_strings("x y", "", ["x", "y"])
    with pytest.raises(InvalidArgumentError, match=r"shape \(2, 2\)"):
        lipschitz(sq, [], [(0, 1)])
    with pytest.raises(InvalidArgumentError, match=r"box\[1\].*lo > hi"):
        lipschitz(sq, [], [(0, 1), (2, 1)])
    with pytest.raises(InvalidArgumentError, match=r"box\[0\].*not finite"):
        lipschitz(sq, [], [(0, np.inf), (0, 1)])
    with pytest.raises(InvalidArgumentError, match=r"z0\[1\].*outside"):
        lipschitz(sq, [], [(0, 1), (0, 1)], z0=[0.5, 2.0])
    with pytest.raises(InvalidArgumentError, match="splits"):
        lipschitz(sq, [], [(0, 1), (0, 1)], splits=100)
    with pytest.raises(EnclosureError, match="erf"):
        lipschitz(ov.ODESystem.from_strings("x", "", ["erf(x)"]), [], [(0, 1)])
    with pytest.raises(EnclosureError, match="log"):
        lipschitz(ov.ODESystem.from_strings("x", "", ["log(x)"]), [], [(-1, 1)])
    with pytest.raises(InvalidTypeError, match="symbolic"):
        lipschitz(_NotSymbolic(), [], [(0, 1)])


class _NotSymbolic(ov.AbstractVectorField):
    n_states, n_params = 1, 0

    def eval_f(self, z, t, theta):
        return z

    def eval_vjp(self, a, z, t, theta, *, with_f=False):
        return (z if with_f else None), a, np.zeros(0), 0.0

    def f_autograd(self, z, t, theta):
        return z


def test_report_text():
    text = str(lipschitz(ov.ODESystem.from_strings("x", "", ["x**2"]), [], [(0, 2)], z0=[1.0]))
    assert "L ≤ 4" in text and "[0, 0.25]" in text and "hypotheses hold: yes" in text


def test_hypothesis_warnings():
    relu_net = ov.ODESystem.from_strings("x", "w b", ["relu(w*x + b)"])
    warns = hypothesis_warnings(relu_net, [1.0, 0.0], [0.05], [0.0, 1.0])
    assert len(warns) == 2 and "relu" in warns[0] and "near z0" in warns[1]
    # far from its kink the field is smooth near z0, but relu is still reported
    far = hypothesis_warnings(relu_net, [1.0, 0.0], [5.0], [0.0, 1.0])
    assert len(far) == 1 and "relu" in far[0]
    smooth = neural_ode_system(2, 3)
    theta = np.random.default_rng(0).normal(size=smooth.n_params)
    assert hypothesis_warnings(smooth, theta, [[0.1, 0.2], [0.3, -1.0]], [0.0, 0.5, 1.0]) == []
    sgn = ov.ODESystem.from_strings("x", "", ["-sign(x)"])
    assert any("discontinuous in z" in w for w in hypothesis_warnings(sgn, [], [0.0], [0.0, 1.0]))
    unbounded = ov.ODESystem.from_strings("x", "", ["erf(x)"])
    assert any("could not be bounded" in w for w in hypothesis_warnings(unbounded, [], [0.0], [0.0, 1.0]))
    assert hypothesis_warnings(_NotSymbolic(), [], [0.0], [0.0, 1.0]) == []

