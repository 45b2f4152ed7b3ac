"""A partial last line of ``metrics.jsonl`` is skipped with a warning; a damaged corpus names its file."""

import logging
import re

import numpy as np
import pytest

from harmono.data.text import TokenCorpus, link_token_files
from harmono.training.runs import read_metric_log


def test_a_partial_last_metric_line_is_skipped_with_a_warning(tmp_path, unchanged, caplog):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1, "loss": 2.0}\n{"step": 2, "loss": 1.5}\n{"step": 3, "lo')
    same = unchanged(tmp_path)
    with caplog.at_level(logging.WARNING, logger="harmono.training.runs"):
        assert read_metric_log(tmp_path) == [{"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.5}]
    assert str(path) in caplog.text and "partial last line 3" in caplog.text
    assert same()


def test_a_corrupt_metric_line_before_the_last_is_a_value_error_naming_file_and_line(tmp_path, unchanged):
    (tmp_path / "metrics.jsonl").write_text('{"step": 1}\n{"st\n{"step": 3}\n')
    same = unchanged(tmp_path)
    with pytest.raises(ValueError, match=re.escape(str(tmp_path / "metrics.jsonl")) + ": line 2 is corrupt"):
        read_metric_log(tmp_path)
    assert same()


@pytest.fixture
def corpus(tmp_path):
    bins = tmp_path / "bins"
    bins.mkdir()
    for split, count in (("train", 1000), ("val", 200)):
        np.arange(count, dtype=np.uint16).tofile(bins / f"{split}.bin")
    link_token_files(bins, tmp_path / "corpus", vocab_size=1000)
    return tmp_path / "corpus"


def test_an_odd_sized_train_bin_names_the_file_and_the_expected_size(corpus, unchanged):
    train = corpus / "train.bin"
    with train.open("ab") as handle:
        handle.write(b"\x01")
    same = unchanged(corpus.parent)
    with pytest.raises(
        ValueError, match=re.escape(f"{train}: expected 1000 uint16 tokens (2000 bytes)") + ".* got 2001"
    ):
        TokenCorpus.open(corpus)
    assert same()


@pytest.mark.parametrize(
    ("text", "expected"),
    [('{"vocab_size": 10', "is corrupt: expected the JSON record of a prepared corpus"),
     ("[1, 2]", "expected a JSON object, got list"),
     ('{"vocab_size": "1000", "dtype": "uint16", "train_tokens": 1000, "val_tokens": 200}',
      "field 'vocab_size' expected an int >= 1, got '1000'"),
     ('{"vocab_size": 1000, "dtype": "float", "train_tokens": 1000, "val_tokens": 200}',
      "field 'dtype' expected 'uint16' or 'uint32', got 'float'")],
)  # fmt: skip
def test_a_corrupt_meta_json_names_the_file_and_the_expected_format(corpus, unchanged, text, expected):
    meta = corpus / "meta.json"
    meta.write_text(text)
    same = unchanged(corpus.parent)
    with pytest.raises(ValueError, match=re.escape(f"{meta}") + ".*" + re.escape(expected)):
        TokenCorpus.open(corpus)
    assert same()
