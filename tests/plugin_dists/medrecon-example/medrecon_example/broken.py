"""A plugin module that cannot be imported (its dependency is missing)."""

import medrecon_example_missing_dependency  # noqa: F401
