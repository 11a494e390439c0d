"""Doctests of the framework adapters run only where their framework is installed (the optional extras)."""

import importlib.util

collect_ignore = [f"odeverify/adapters/{module}.py" for module in ("jax", "torch")
                  if importlib.util.find_spec(module) is None]
