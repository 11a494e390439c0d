"""Assertion helpers for test suites."""

from __future__ import annotations

from ._check import check_gradients

__all__ = ["assert_gradients_close"]


def assert_gradients_close(
    system, z0, ts, theta, loss, *, candidate=None, references=None, rtol=None, atol=None, quantities=None
):
    """Assert that a gradient agrees with odeverify's independent references.

    Same arguments as :func:`odeverify.check_gradients`.

    Returns
    -------
    GradientReport
        When the check passes.

    Raises
    ------
    AssertionError
        When it fails; the message is the report's table (candidate and
        reference values, differences, tolerances, and the worst offender in
        words).
    """
    report = check_gradients(
        system, z0, ts, theta, loss, candidate=candidate, references=references, rtol=rtol, atol=atol,
        quantities=quantities,
    )
    if not report.passed:
        raise AssertionError("\n" + str(report))
    return report


def __dir__():
    # tab completion shows the public names, not the modules imported here (np, sp, ...)
    return sorted(__all__)
