"""Defences for CLEVER with BPDA.

The :class:`~pytest_clever.defences.bpda.BPDA` wrapper and non-differentiable input transforms.
"""
