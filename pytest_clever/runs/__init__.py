"""Run records and what is done with them: storage, baseline comparison, gates, text reports, files.

Torch-free and numpy-free at import; the statistics layer is loaded only by
the functions that compute intervals.
"""
