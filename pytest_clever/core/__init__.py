"""Torch-free core: what a setting is and whether it is valid.

Norms, the seed scheme, the one settings validator with its defaults
(``validation``), a scoring call's validated keywords (``options.ScoreOptions``),
target specifications, the plugin's options registry (``settings``) and
progress events. Nothing here imports torch or numpy, so the pytest plugin can
parse and check every setting without loading the engine.
"""
