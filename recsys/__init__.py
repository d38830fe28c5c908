"""Shared core of the platform: the data contract's names, workspace, config and splits.

Every other package of the platform (``shop``, ``lake``, ``training``, ...) imports from here;
this package imports none of them at module level, so the dependency graph has no cycles.
"""

__version__ = "0.1.0"
