"""A model that returns its logits inside an output object, as Hugging Face classifiers do.

transformers' classifiers return a ``ModelOutput``: an ``OrderedDict`` whose
fields (``logits``, ``hidden_states``, ...) are also attributes. pytest-clever
scores the tensor under ``"logits"`` (or ``.logits``) as it would score the
bare logits, and each result's ``notes`` say where the logits came from. The
stand-in below has that output type and needs no transformers install; see
``test_hugging_face_transformers.py`` for a real transformers model.
"""

from collections import OrderedDict

import pytest
import torch
from torch import nn


class ModelOutput(OrderedDict):
    """What transformers' ``ModelOutput`` is: a dict whose fields are also attributes."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


class ImageClassifier(nn.Module):
    """The digits CNN with a Hugging Face-style forward: ``model(pixel_values).logits``."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, pixel_values: torch.Tensor) -> ModelOutput:
        return ModelOutput(logits=self.net(pixel_values), hidden_states=None)


@pytest.mark.clever(n_batches=20, batch_size=64)
def test_a_model_output_is_scored_as_its_logits(clever, digits_model, digits_inputs):
    xs, labels = digits_inputs
    report = clever.assert_robust(ImageClassifier(digits_model), xs[:3], labels[:3], min_score=0.20)
    assert all("ModelOutput objects" in r.notes[0] for r in report)
