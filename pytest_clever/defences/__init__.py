"""Defences for CLEVER with BPDA: the :class:`~pytest_clever.defences.bpda.BPDA` wrapper and non-differentiable input transforms."""
