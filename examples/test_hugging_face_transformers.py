"""A real Hugging Face image classifier, scored as users call it: ``model(pixel_values)`` returns an output object.

Skipped unless ``transformers`` is installed (``pip install transformers``).
Nothing is downloaded: a tiny ViT is built from a config with random weights
(one layer, 8x8 single-channel inputs like the digits), so its "correct
label" is its own prediction. In your repo it would come from
``ViTForImageClassification.from_pretrained(...)``; call ``.eval()`` or let
pytest-clever score it in eval mode.
"""

import pytest
import torch

from pytest_clever import clever_score

transformers = pytest.importorskip("transformers")

SETTINGS = dict(n_batches=20, batch_size=64)


@pytest.fixture(scope="module")
def vit():
    config = transformers.ViTConfig(
        image_size=8,
        patch_size=4,
        num_channels=1,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        num_labels=10,
        initializer_range=0.2,  # the default 0.02 gives near-constant logits, and every score is capped
    )
    torch.manual_seed(0)
    return transformers.ViTForImageClassification(config).eval()


@pytest.mark.clever(**SETTINGS)
def test_a_transformers_classifier_is_scored_as_its_logits(clever, vit, digits_inputs):
    xs = digits_inputs[0][:2]
    with torch.no_grad():
        labels = vit(xs).logits.argmax(1)  # random weights: its own prediction is the label
    report = clever.scores(vit, xs, labels)
    assert all("ImageClassifierOutput objects" in r.notes[0] for r in report)
    assert not any(r.capped for r in report)  # the comparison below has teeth
    # The same number as scoring the logits by hand, with the result's own seed.
    first = report[0]
    by_hand = clever_score(
        lambda x: vit(x).logits, xs[0], seed=first.seed, label=int(labels[0]), radius=2.0, bounds=(0, 1), **SETTINGS
    )
    assert (first.score, first.batch_maxima) == (by_hand.score, by_hand.batch_maxima)
