"""bench/backends.py's own logic: its corpus and its verdicts (the figures are never asserted)."""

from __future__ import annotations

from bench import backends


def figures(onnx_rate: float, int8_rate: float, int8_top1: float) -> dict:
    quality = {"mean_cosine": 0.999, "min_cosine": 0.99, "same_top1": 1.0}
    return {
        "torch": {**quality, "texts_per_second": 100.0},
        "onnx": {**quality, "texts_per_second": onnx_rate},
        "onnx-int8": {**quality, "same_top1": int8_top1, "texts_per_second": int8_rate},
    }


def test_the_corpus_is_fixed_and_mixes_lengths():
    texts = backends.corpus(30)
    assert texts == backends.corpus(30)
    assert len(texts) == 30 and len({len(text) for text in texts}) > 10


def test_each_target_is_judged_against_torch_in_the_same_run():
    found = backends.verdicts(figures(onnx_rate=150.0, int8_rate=200.0, int8_top1=0.9))
    assert found["onnx"] == {"ratio": True, "mean_cosine": True, "same_top1": True}
    assert found["onnx-int8"] == {"ratio": False, "mean_cosine": True, "same_top1": False}


def test_the_table_shows_each_ratio_to_torch():
    table = backends.table(figures(onnx_rate=150.0, int8_rate=260.0, int8_top1=1.0))
    assert "| onnx | 150.0 | 1.50× |" in table
    assert "| onnx-int8 | 260.0 | 2.60× |" in table
