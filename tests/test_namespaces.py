"""Public namespaces hold the intended names only (issue 11: ``version``, ``PackageNotFoundError`` and
``catalog.np`` leaked into what a user sees with tab completion)."""

import importlib

import pytest

import odeverify

PUBLIC = ["odeverify", "odeverify.catalog", "odeverify.losses", "odeverify.tableaux", "odeverify.testing",
          "odeverify.errors", "odeverify.implicit", "odeverify.theory", "odeverify.fields",
          "odeverify.strategies", "odeverify.spec", "odeverify.cli", "odeverify.plotting"]
# (not odeverify.pytest_plugin: pytest finds its hooks and fixtures through dir(), which must show them)
#: names no public namespace may show: imported modules and helpers
LEAKS = {"np", "sp", "anp", "scipy", "autograd", "math", "numbers", "warnings", "annotations", "dataclass",
         "field", "version", "PackageNotFoundError", "InvalidArgumentError", "InvalidTypeError", "check_rng",
         "parse_expression", "ArrayKernel", "Group", "ODESystem"}


@pytest.mark.parametrize("name", PUBLIC)
def test_a_public_namespace_shows_its_api_only(name):
    module = importlib.import_module(name)
    shown = {n for n in dir(module) if not n.startswith("_")}
    expected = set(module.__all__)
    if name == "odeverify":
        expected |= {"cli", "fields", "losses", "plotting", "spec", "strategies", "tableaux", "pytest_plugin"}  # once imported
        assert "ODESystem" in shown
    assert shown <= expected, shown - expected
    assert not (shown & LEAKS) - (expected & LEAKS)
    for public in module.__all__:
        assert hasattr(module, public), public
    star = {}
    exec(f"from {name} import *", star)
    assert {n for n in star if not n.startswith("__")} == expected & set(module.__all__)


def test_version_is_kept():
    assert isinstance(odeverify.__version__, str) and odeverify.__version__
    assert not hasattr(odeverify, "version") and not hasattr(odeverify, "PackageNotFoundError")


def test_the_look_alike_modules_say_which_is_which():
    import odeverify.losses
    import odeverify.tableaux
    import odeverify.theory
    from odeverify import _loss

    assert "odeverify.losses" in _loss.__doc__ and "_loss" in odeverify.losses.__doc__
    assert "_rk" in odeverify.tableaux.__doc__
    assert "MLPField" in odeverify.theory.MLP.__doc__
