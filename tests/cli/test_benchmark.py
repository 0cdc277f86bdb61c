"""``sise benchmark``'s command-line defaults (the benchmark itself: tests/eval)."""

from __future__ import annotations


def test_benchmark_score_defaults_to_softmax_on_the_single_label_photo_set() -> None:
    from sise.cli.benchmark import _default_benchmark_score

    assert _default_benchmark_score("photos") == "softmax"
    assert _default_benchmark_score("Photos:/data/set") == "softmax"
    assert _default_benchmark_score("voc2007:/data/VOCdevkit") == "sigmoid"
    assert _default_benchmark_score("synthetic") == "sigmoid"
