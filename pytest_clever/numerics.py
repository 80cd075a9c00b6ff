"""Exact float32 numerics while scoring: TF32 off for the call, the user's flags restored afterwards.

On Ampere and newer GPUs PyTorch runs convolutions in TF32 by default
(``torch.backends.cudnn.allow_tf32``), and matmuls too when
``torch.backends.cuda.matmul.allow_tf32`` is set: ~10 bits of mantissa, which
moves scores by far more than rounding and would make them depend on a
global flag that any other test may flip. Scoring therefore forces both off
and restores them, so a seed reproduces the same score whatever the session
set. (A faster, recorded TF32 setting could be offered later as an explicit
option; it is not silent.) Autocast and channels_last are never applied by us.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch


@contextlib.contextmanager
def exact_float32() -> Iterator[None]:
    """Disable TF32 for matmuls and cuDNN inside the block; restore the caller's flags on exit."""
    matmul, cudnn = torch.backends.cuda.matmul, torch.backends.cudnn
    saved = (matmul.allow_tf32, cudnn.allow_tf32)
    matmul.allow_tf32, cudnn.allow_tf32 = False, False
    try:
        yield
    finally:
        matmul.allow_tf32, cudnn.allow_tf32 = saved


__all__ = ["exact_float32"]
