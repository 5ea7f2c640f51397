"""The model-based quality step: perplexity under the bundled SmolLM2 orders prose above noise."""

from __future__ import annotations

import random

import pytest

from engine.data.lm_score import LmPerplexity, perplexity
from engine.data.recipe import parse_recipe

PROSE = ("The river runs through the old town, past the market and the stone bridge. In the morning, "
         "fishermen bring their catch to the square, and children walk to school along the water.")


def test_prose_scores_lower_than_shuffled_words_and_keyword_spam(bundled_model_dir):
    words = PROSE.split()
    random.Random(0).shuffle(words)
    shuffled = " ".join(words)
    spam = "cheap pills buy now cheap pills best price " * 6
    model = str(bundled_model_dir)
    prose_ppl = perplexity(model, PROSE)
    assert prose_ppl < perplexity(model, shuffled) and prose_ppl < 100
    step = LmPerplexity(model=model, max_perplexity=prose_ppl * 1.5)
    kept, shuffled_rec = {"text": PROSE}, {"text": shuffled}
    assert step.apply(kept) is None and kept["perplexity"] == pytest.approx(prose_ppl, rel=1e-3)
    assert step.apply(shuffled_rec) == "high_perplexity"
    assert LmPerplexity(model=model).apply({"text": spam}) is None  # threshold 0 only labels


def test_recipe_checks_the_model_folder(tmp_path):
    with pytest.raises(ValueError, match="model"):
        parse_recipe({"steps": [{"step": "lm_perplexity", "model": str(tmp_path)}]})
