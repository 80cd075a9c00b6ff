"""The documented import path ``pytest_clever.densenet``.

It is the same module object as :mod:`pytest_clever.extras.densenet`.
"""

import sys

from pytest_clever.extras import densenet as _module

sys.modules[__name__] = _module
