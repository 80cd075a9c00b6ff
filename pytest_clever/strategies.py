"""The documented import path ``pytest_clever.strategies``.

It is the same module object as :mod:`pytest_clever.extras.strategies`.
"""

import sys

from pytest_clever.extras import strategies as _module

sys.modules[__name__] = _module
