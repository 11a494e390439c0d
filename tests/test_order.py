"""Observed orders of the one-step methods (notes §2.4–2.5) against exact and high-accuracy references."""

import numpy as np
import pytest

import odeverify as ov
from odeverify.errors import InvalidArgumentError, InvalidTypeError
from odeverify.tableaux import TABLEAUX
from odeverify.theory import convergence_order, fit_order

GROWTH = ov.ODESystem.from_strings("x", "", ["x"])  # the notes' example, x(t) = e^t
LOGISTIC = ov.ODESystem.from_strings("x", "r K", ["r*x*(1 - x/K)"])
PENDULUM = ov.ODESystem.from_strings("q p", "k", ["p", "-k*sin(q)"])


def logistic_exact(t, r=1.5, K=2.0, x0=0.1):
    return np.array([K / (1 + (K / x0 - 1) * np.exp(-r * t))])


# tsit5 makes its 5th-order error terms small: on e^t they lead only below the rounding floor, so its
# order is checked on the logistic equation (test_tsit5_order_on_the_logistic_equation_with_closed_form)
@pytest.mark.parametrize("method", [m for m in TABLEAUX if m != "tsit5"])
def test_order_on_the_notes_exponential(method):
    order = TABLEAUX[method].order
    steps = (1, 2, 3, 4) if order >= 7 else (4, 8, 16, 32) if order >= 5 else (8, 16, 32, 64, 128)
    rep = convergence_order(GROWTH, [1.0], [], (0.0, 1.0), method, steps=steps, exact=[np.e])
    assert rep.rounded == TABLEAUX[method].order, str(rep)
    assert rep.matches and rep.reference == "the exact solution"


@pytest.mark.parametrize("method", ["euler", "heun", "midpoint", "kutta3", "rk4"])
def test_order_on_the_logistic_equation_with_closed_form(method):
    rep = convergence_order(LOGISTIC, [0.1], [1.5, 2.0], (0.0, 3.0), method, exact=logistic_exact)
    assert rep.rounded == TABLEAUX[method].order, str(rep)
    assert abs(rep.order - rep.expected) < 0.25


def test_tsit5_order_on_the_logistic_equation_with_closed_form():
    rep = convergence_order(LOGISTIC, [0.1], [1.5, 2.0], (0.0, 3.0), "tsit5", steps=(8, 16, 32, 64), exact=logistic_exact)
    assert rep.rounded == 5, str(rep)
    assert abs(rep.order - rep.expected) < 0.5


@pytest.mark.parametrize("method", ["euler", "heun", "midpoint", "rk4"])
def test_order_on_the_pendulum_against_dop853(method):
    rep = convergence_order(PENDULUM, [1.0, 0.0], [2.0], (0.0, 3.0), method)
    assert rep.rounded == TABLEAUX[method].order, str(rep)
    assert rep.reference.startswith("DOP853")
    assert rep.reference_error < 1e-9


def test_points_below_the_rounding_floor_are_left_out():
    rep = convergence_order(GROWTH, [1.0], [], (0.0, 1.0), "dopri5", steps=(4, 8, 16, 64, 256), exact=[np.e])
    assert rep.used.tolist() == [True, True, True, False, False]
    assert rep.rounded == 5
    assert "below floor" in str(rep)
    with pytest.raises(InvalidArgumentError, match="fewer"):
        convergence_order(GROWTH, [1.0], [], (0.0, 1.0), "dopri5", steps=(64, 128, 256), exact=[np.e])


def test_a_wrong_method_is_caught():
    # a tableau that is consistent but misses the second-order condition is first order,
    # so the measurement cannot be fooled by the declared order
    heun = TABLEAUX["heun"]
    wrong = type(heun)("wrong", heun.A * 0.5, heun.b, heun.c * 0.5, 2)
    rep = convergence_order(GROWTH, [1.0], [], (0.0, 1.0), wrong, exact=[np.e])
    assert rep.rounded == 1 and not rep.matches


def test_fit_order_recovers_an_exact_power_law():
    h = np.array([0.1, 0.05, 0.025, 0.0125])
    assert fit_order(h, 3.0 * h**2.5) == pytest.approx(2.5, abs=1e-12)


def test_errors():
    with pytest.raises(InvalidTypeError, match="integers"):
        convergence_order(GROWTH, [1.0], [], (0.0, 1.0), "euler", steps=(1.5, 2, 3))
    with pytest.raises(InvalidArgumentError, match="at least 3"):
        convergence_order(GROWTH, [1.0], [], (0.0, 1.0), "euler", steps=(8, 16))
    with pytest.raises(InvalidArgumentError, match="increasing"):
        convergence_order(GROWTH, [1.0], [], (0.0, 1.0), "euler", steps=(16, 8, 32))
    with pytest.raises(InvalidArgumentError, match="distinct"):
        convergence_order(GROWTH, [1.0], [], (1.0, 1.0), "euler")
    with pytest.raises(InvalidArgumentError, match="not a known tableau"):
        convergence_order(GROWTH, [1.0], [], (0.0, 1.0), "rk99")
    with pytest.raises(InvalidArgumentError, match="not a batch"):
        convergence_order(GROWTH, [[1.0], [2.0]], [], (0.0, 1.0), "euler")
    with pytest.raises(InvalidArgumentError, match="exact must give"):
        convergence_order(GROWTH, [1.0], [], (0.0, 1.0), "euler", exact=[1.0, 2.0])
