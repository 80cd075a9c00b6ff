"""The private torch engine: sampling, batch maxima, gradients, curvature, model borrowing, executors.

Nothing here is public API: the public entry points are :mod:`pytest_clever.api`
and :mod:`pytest_clever.attack`.
"""
