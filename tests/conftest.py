import os
import sys

import pytest
from hypothesis import settings

# Make `helpers` importable from the tests without installing it.
sys.path.insert(0, os.path.dirname(__file__))

from helpers import plugin_autoloaded  # noqa: E402

# pytester runs the plugin's own tests; odeverify's plugin comes from its entry point when odeverify is
# installed (CI) and from here when the tests run from a source tree (PYTHONPATH=.), never from both.
pytest_plugins = ["pytester"] + ([] if plugin_autoloaded() else ["odeverify.pytest_plugin"])


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    # The suite's hypothesis profiles: `ci`, the default (few examples, derandomized, fast), and
    # `thorough` (nightly: pytest --hypothesis-profile=thorough -m 'slow or not slow'). This runs before
    # hypothesis's own pytest_configure, which then loads a profile named on the command line.
    settings.register_profile("ci", settings.get_profile("odeverify-ci"))
    settings.register_profile("thorough", settings.get_profile("odeverify-thorough"))
    settings.load_profile("ci")
