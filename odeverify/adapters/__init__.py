"""Check the gradients of models written for other ODE frameworks, on the user's own code.

* :mod:`odeverify.adapters.torch` -- ``TorchField`` (a torchdiffeq-style ``func(t, y)`` as an
  odeverify vector field) and ``check_odeint`` (the gradients of the user's ``odeint`` /
  ``odeint_adjoint`` solve against odeverify's references); needs the ``torch`` extra.
* :mod:`odeverify.adapters.jax` -- ``JaxField`` (a diffrax-style ``vector_field(t, y, args)``, θ the
  float leaves of ``args``) and ``check_diffeqsolve`` (``jax.grad`` through the user's
  ``diffrax.diffeqsolve`` against odeverify's references); needs the ``jax`` extra.

The framework-neutral part (calibrating the tolerance to the peer's solver, the report's
annotations) is :mod:`odeverify.adapters._common`. Importing this package imports no framework:
each adapter imports its framework when it is used.
"""

__all__ = []
