"""The functions user expressions may call, as SymPy objects.

Three activation functions that SymPy lacks are defined here with exact
derivatives, so that derivations stay readable (``sigmoid(x)`` rather than
``1/(1 + exp(-x))``) and numerically stable kernels can be generated for them:

* ``sigmoid(x) = 1 / (1 + exp(-x))`` with ``sigmoid' = sigmoid (1 - sigmoid)``;
* ``softplus(x) = log(1 + exp(x))`` with ``softplus' = sigmoid``;
* ``relu(x) = max(x, 0)`` with ``relu' = Heaviside(x, 0)`` (the derivative
  at 0 is taken as 0, as in PyTorch and JAX).

``ALLOWED_FUNCTIONS`` is the whitelist of the expression parser: name, SymPy
constructor and accepted numbers of arguments.
"""

from __future__ import annotations

import sympy as sp

__all__ = ["sigmoid", "softplus", "relu", "ALLOWED_FUNCTIONS", "CONSTANTS", "NONSMOOTH_FUNCTIONS"]


class sigmoid(sp.Function):
    """The logistic function ``1 / (1 + exp(-x))``."""

    nargs = 1

    def fdiff(self, argindex=1):
        s = sigmoid(self.args[0])
        return s * (1 - s)

    @classmethod
    def eval(cls, x):
        if x.is_zero:
            return sp.Rational(1, 2)
        return None

    def _eval_rewrite_as_exp(self, x, **kwargs):
        return 1 / (1 + sp.exp(-x))

    def _eval_is_real(self):
        return self.args[0].is_real

    def _eval_is_positive(self):
        return True if self.args[0].is_real else None

    def _latex(self, printer):
        return r"\sigma\left(%s\right)" % printer._print(self.args[0])


class softplus(sp.Function):
    """``log(1 + exp(x))``, the smooth ReLU."""

    nargs = 1

    def fdiff(self, argindex=1):
        return sigmoid(self.args[0])

    def _eval_rewrite_as_log(self, x, **kwargs):
        return sp.log(1 + sp.exp(x))

    def _eval_is_real(self):
        return self.args[0].is_real

    def _latex(self, printer):
        return r"\operatorname{softplus}\left(%s\right)" % printer._print(self.args[0])


class relu(sp.Function):
    """``max(x, 0)``; its derivative at 0 is taken as 0."""

    nargs = 1

    def fdiff(self, argindex=1):
        return sp.Heaviside(self.args[0], 0)

    @classmethod
    def eval(cls, x):
        if x.is_number and x.is_real:
            return sp.Max(x, 0)
        return None

    def _eval_rewrite_as_Max(self, x, **kwargs):
        return sp.Max(x, 0)

    def _eval_is_real(self):
        return self.args[0].is_real

    def _latex(self, printer):
        return r"\operatorname{ReLU}\left(%s\right)" % printer._print(self.args[0])


def _heaviside(x):
    # H(0) = 1/2, SymPy's default, for a user-written step.
    return sp.Heaviside(x)


def _log(*args):
    return sp.log(*args)


#: name -> (constructor, accepted argument counts)
ALLOWED_FUNCTIONS = {
    "sin": (sp.sin, (1,)),
    "cos": (sp.cos, (1,)),
    "tan": (sp.tan, (1,)),
    "asin": (sp.asin, (1,)),
    "acos": (sp.acos, (1,)),
    "atan": (sp.atan, (1,)),
    "atan2": (sp.atan2, (2,)),
    "sinh": (sp.sinh, (1,)),
    "cosh": (sp.cosh, (1,)),
    "tanh": (sp.tanh, (1,)),
    "asinh": (sp.asinh, (1,)),
    "acosh": (sp.acosh, (1,)),
    "atanh": (sp.atanh, (1,)),
    "exp": (sp.exp, (1,)),
    "log": (_log, (1,)),
    "sqrt": (sp.sqrt, (1,)),
    "abs": (sp.Abs, (1,)),
    "sign": (sp.sign, (1,)),
    "erf": (sp.erf, (1,)),
    "sigmoid": (sigmoid, (1,)),
    "softplus": (softplus, (1,)),
    "relu": (relu, (1,)),
    "heaviside": (_heaviside, (1,)),
    "min": (sp.Min, (2, 3, 4, 5, 6, 7, 8)),
    "max": (sp.Max, (2, 3, 4, 5, 6, 7, 8)),
}

#: names of constants usable in expressions
CONSTANTS = {"pi": sp.pi, "e": sp.E, "E": sp.E}

#: SymPy classes whose presence makes a right-hand side non-smooth
NONSMOOTH_FUNCTIONS = (sp.Abs, sp.Max, sp.Min, sp.Heaviside, sp.sign, sp.Piecewise, relu, sp.DiracDelta)
