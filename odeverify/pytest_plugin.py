"""pytest plugin: the ``gradient_check`` fixture, the ``gradient_tolerance`` marker, hypothesis profiles.

Installed with odeverify, pytest loads it through the ``pytest11`` entry
point ``odeverify`` (disable it with ``-p no:odeverify``); from a source tree
that is not installed, load it with ``-p odeverify.pytest_plugin`` or
``pytest_plugins = ["odeverify.pytest_plugin"]`` in a top-level conftest.

* ``gradient_check(system, z0, ts, theta, loss, *, candidate=None,
  references=None, rtol=None, atol=None, quantities=None)`` runs
  :func:`odeverify.testing.assert_gradients_close`: it returns the
  :class:`~odeverify.GradientReport` when the check passes and raises an
  AssertionError whose message is the report's table when it fails.
* ``@pytest.mark.gradient_tolerance(rtol=..., atol=...)`` on a test, class or
  module sets the fixture's tolerances; markers at several levels combine key
  by key, the closest winning (arguments given in the call win over all).
* a ``@given`` test that uses the fixture runs without hypothesis's default
  deadline (a gradient check takes 0.05-0.5 s); a deadline that the test or a
  loaded profile sets is kept.
* hypothesis profiles ``odeverify-ci`` (10 examples, no deadline,
  derandomized, no example database: fast and reproducible) and
  ``odeverify-thorough`` (300 examples, no deadline, randomized), selected with
  ``pytest --hypothesis-profile=odeverify-ci``. Both derive from hypothesis's
  ``default`` profile, whatever profile is loaded (hypothesis loads its own
  derandomized ``ci`` profile when ``CI`` is set). They are registered under
  their own names so that installing odeverify changes no other test's
  settings; alias them in a conftest to use shorter names.

Examples
--------
.. code-block:: python

    import pytest
    from odeverify import catalog

    @pytest.mark.gradient_tolerance(rtol=1e-6)
    def test_exponential(gradient_check):
        gradient_check(*catalog.exponential().args(), references=["forward", "fd"])
"""

from __future__ import annotations

import numbers

import pytest

from .errors import InvalidArgumentError, InvalidTypeError

__all__ = ["MARKER", "PROFILES", "gradient_check", "register_profiles"]

#: the marker that sets the fixture's tolerances
MARKER = "gradient_tolerance"
#: the hypothesis profiles this plugin registers, with their settings
PROFILES = {
    # no "explain" phase: after shrinking it reruns the failing test dozens of times to say which parts
    # of the example matter, which costs minutes when one run is a gradient check
    "odeverify-ci": dict(
        max_examples=10, deadline=None, derandomize=True, database=None, print_blob=True,
        phases=("explicit", "reuse", "generate", "target", "shrink"),
    ),
    # explicit, not inherited: under CI hypothesis loads its own derandomized "ci" profile on import
    "odeverify-thorough": dict(max_examples=300, deadline=None, derandomize=False),
}


def register_profiles():
    """Register :data:`PROFILES` with hypothesis (nothing happens without hypothesis)."""
    try:
        from hypothesis import HealthCheck, Phase, settings
    except ImportError:  # pragma: no cover - hypothesis is optional
        return
    for name, options in PROFILES.items():
        options = dict(options)
        if "phases" in options:
            options["phases"] = [Phase[p] for p in options["phases"]]
        # one gradient check takes 0.1-1 s: too slow for hypothesis's default health check.
        # The parent is hypothesis's own "default" profile, not whatever profile is loaded now (with
        # CI=true hypothesis loads its derandomized "ci" profile, which a nightly run must not inherit).
        settings.register_profile(
            name, parent=settings.get_profile("default"),
            suppress_health_check=[HealthCheck.too_slow], **options,
        )


register_profiles()


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        f"{MARKER}(rtol=None, atol=None): tolerances of the gradient_check fixture "
        "(see odeverify.check_gradients)",
    )


def _marker_tolerances(node):
    """The tolerances of every ``gradient_tolerance`` marker on ``node``, merged: a closer marker
    (test over class over module) wins key by key, so rtol on the module and atol on the test combine."""
    merged = {}
    for marker in reversed(list(node.iter_markers(MARKER))):  # farthest first, closest last
        if marker.args:
            raise InvalidArgumentError(
                f"@pytest.mark.{MARKER} takes keyword arguments only, e.g. @pytest.mark.{MARKER}(rtol=1e-6); "
                f"got positional arguments {marker.args!r} on {node.nodeid}"
            )
        unknown = set(marker.kwargs) - {"rtol", "atol"}
        if unknown:
            raise InvalidArgumentError(
                f"@pytest.mark.{MARKER} on {node.nodeid} got unknown arguments {sorted(unknown)}; it takes rtol and "
                "atol"
            )
        for key, value in marker.kwargs.items():
            if value is not None and (isinstance(value, bool) or not isinstance(value, numbers.Real)):
                raise InvalidTypeError(
                    f"@pytest.mark.{MARKER}({key}={value!r}) on {node.nodeid}: {key} must be a number"
                )
        merged.update(marker.kwargs)
    return merged


_CURRENT_ITEM = pytest.StashKey()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    # the session-scoped fixture reads the markers of the test that calls it, at call time; a misused
    # marker is an error of the test's set-up, before the test runs
    item.config.stash[_CURRENT_ITEM] = item
    if "gradient_check" in getattr(item, "fixturenames", ()):
        _marker_tolerances(item)
        _without_default_deadline(item)


def _without_default_deadline(item):
    """A ``@given`` test that uses ``gradient_check`` runs without hypothesis's default deadline.

    One gradient check takes 0.05-0.5 s, so hypothesis's default of 200 ms fails such a test now and
    then for no fault of the gradient. Only tests that ask for the fixture (gradient tests by their own
    declaration) are changed, and only when their deadline is hypothesis's default: a deadline the test
    or a loaded profile chose stays. Nothing changes where hypothesis's settings cannot be read.
    """
    test = getattr(item, "obj", None)
    current = getattr(test, "_hypothesis_internal_use_settings", None)
    if current is None or not getattr(test, "is_hypothesis_test", False):
        return
    try:
        from hypothesis import settings

        if current.deadline == settings.get_profile("default").deadline:
            test._hypothesis_internal_use_settings = settings(current, deadline=None)
    except Exception:  # noqa: BLE001 - a hypothesis without these internals: its own settings apply
        return


@pytest.fixture(scope="session")
def gradient_check(request):
    """Assert that a gradient agrees with odeverify's references; tolerances from ``@pytest.mark.gradient_tolerance``.

    Returns a function ``check(system, z0, ts, theta, loss, *, candidate=None,
    references=None, rtol=None, atol=None, quantities=None) -> GradientReport`` (see
    :func:`odeverify.check_gradients`); a failed check raises an
    AssertionError whose message is the report's table.

    The function holds no state, so the fixture is session-scoped and works
    inside ``@given`` tests (hypothesis refuses function-scoped fixtures
    there); the marker is read from the calling test at each call.
    """
    from .testing import assert_gradients_close

    config = request.config

    def check(system, z0, ts, theta, loss, *, candidate=None, references=None, rtol=None, atol=None, quantities=None):
        item = config.stash.get(_CURRENT_ITEM, None)
        defaults = {} if item is None else _marker_tolerances(item)
        return assert_gradients_close(
            system, z0, ts, theta, loss,
            candidate=candidate,
            references=references,
            rtol=defaults.get("rtol") if rtol is None else rtol,
            atol=defaults.get("atol") if atol is None else atol,
            quantities=quantities,
        )

    return check
