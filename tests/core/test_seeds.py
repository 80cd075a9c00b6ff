"""Seeds: one derivation scheme (SHA-256 of the text key), validated in one place, one seed per input."""

import hashlib

import pytest
import torch

from pytest_clever import InvalidInputError, clever_score, clever_scores
from pytest_clever.core.seeds import derive_seed


def test_derive_seed_is_the_sha256_text_scheme():
    digest = hashlib.sha256(b"5\x1ftests/test_a.py::test_b\x1f\x1f0").digest()
    assert derive_seed(5, "tests/test_a.py::test_b", "", 0) == int.from_bytes(digest[:8], "big") >> 1
    seeds = {derive_seed(0, i) for i in range(100)}
    assert len(seeds) == 100 and all(0 <= s < 2**63 for s in seeds)


@pytest.mark.parametrize("bad", [-1, 2**63, 1.0, True, "3"])
def test_seeds_are_validated_in_one_place(bad, linear_model):
    with pytest.raises(InvalidInputError, match="seed must be an integer"):
        derive_seed(bad, "x")
    with pytest.raises(InvalidInputError, match="seed must be an integer"):
        clever_score(linear_model[0], torch.zeros(6), radius=1.0, seed=bad, n_batches=10, batch_size=4)


def test_clever_scores_seeds_each_input_with_derive_seed(linear_model):
    model = linear_model[0]
    xs = torch.randn(2, 6, generator=torch.Generator().manual_seed(2))
    report = clever_scores(model, xs, radius=1.0, seed=11, n_batches=10, batch_size=8)
    for i, result in enumerate(report):
        assert result.seed == derive_seed(11, i)
        alone = clever_score(model, xs[i], radius=1.0, seed=derive_seed(11, i), n_batches=10, batch_size=8)
        assert alone.per_target == result.per_target
