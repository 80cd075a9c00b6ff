"""The documented import path ``pytest_clever.transforms``.

It is the same module object as :mod:`pytest_clever.defences.transforms`.
"""

import sys

from pytest_clever.defences import transforms as _module

sys.modules[__name__] = _module
