"""Torch-free core: norms, seeds, the settings validator and defaults, target specs, progress events.

Nothing here imports torch or numpy, so the pytest plugin can parse and check
every setting without loading the engine.
"""
