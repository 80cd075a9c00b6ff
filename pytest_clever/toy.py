"""The documented import path ``pytest_clever.toy``.

It is the same module object as :mod:`pytest_clever.extras.digits`.
"""

import sys

from pytest_clever.extras import digits as _module

sys.modules[__name__] = _module
