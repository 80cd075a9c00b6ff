"""Scoring runs without TF32 whatever the session set, and hands the flags back."""

import pytest
import torch
from torch import nn

from pytest_clever import clever_score


class Spy(nn.Module):
    """Records the TF32 flags in force while the model runs."""

    def __init__(self) -> None:
        super().__init__()
        self.linear, self.seen = nn.Linear(4, 3), set()

    def forward(self, x):
        self.seen.add((torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32))
        return self.linear(x.flatten(1))


@pytest.mark.parametrize("flags", [(True, True), (False, True), (True, False)])
def test_tf32_is_off_while_scoring_and_restored(flags):
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = flags
    try:
        model = Spy()
        clever_score(model, torch.rand(1, 2, 2), radius=1.0, n_batches=10, batch_size=2, seed=0)
        assert model.seen == {(False, False)}
        assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == flags
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved
