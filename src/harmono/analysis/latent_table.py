"""An evaluated SAE as a table: per latent its scores and its top-activating store rows, and their images.

An SAE run evaluated by ``harmono sae eval`` holds ``evaluation.json`` (per
latent: MonoScore, frequency, dominant class, purity; and the directory of the
evaluated feature store) and ``top_activations.safetensors`` (per latent the
store rows of its strongest activations). The store's manifest names the image
dataset it was extracted from; when that dataset loads, the rows become
thumbnails. A token store's rows become text instead: each top token with
its neighbours, decoded by the tokenizer the store names, and the latent's
activation on each of them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harmono.core.io import read_json
from harmono.sae.evaluate import EVALUATION_FILE, TOP_ACTIVATIONS_FILE
from harmono.sae.top_activations import load_neighbours, load_top_activations

logger = logging.getLogger("harmono")


@dataclass(frozen=True)
class LatentTable:
    """One evaluated SAE: its summary, per-latent rows and top-activating store rows."""

    name: str
    """Label of the SAE in the report."""
    summary: dict
    """The evaluation summary (``SAEEvaluation`` fields)."""
    latents: list[dict]
    """Per latent: ``latent``, ``mono_score`` (None when dead), ``frequency``, and with labels
    ``dominant_class``, ``purity_binary``, ``purity_weighted``."""
    top_rows: np.ndarray | None
    """``(M, m)`` store rows of each latent's strongest activations, -1 padded (None: not computed)."""
    top_values: np.ndarray | None
    """``(M, m)`` those activations (-inf padded)."""
    images: Callable[[int], np.ndarray] | None
    """Store row -> its image, when the store's dataset could be loaded."""
    images_note: str
    """Why there are no images or texts, or where they come from."""
    texts: Callable[[int], list[str]] | None = None
    """Token store: store row -> the ``2 width + 1`` tokens centred on it, decoded ("" past the stream)."""
    neighbours: np.ndarray | None = None
    """Token store: ``(M, examples, 2 width + 1)`` the latent's activation on those tokens (NaN: unknown)."""

    def scores(self) -> np.ndarray:
        """``(M,)`` MonoScores, NaN for dead latents."""
        return np.array([np.nan if row["mono_score"] is None else row["mono_score"] for row in self.latents])


def store_images(store_dir: str | Path) -> tuple[Callable[[int], np.ndarray] | None, str]:
    """A function from store row to image, or None and the reason none is available."""
    from harmono.data.images import load_image_dataset
    from harmono.features import FeatureStore

    try:
        store = FeatureStore(store_dir, verify="shape")
    except (OSError, ValueError) as err:
        return None, f"the feature store cannot be opened: {err}"
    dataset = str(store.metadata.get("dataset", ""))
    name, _, split = dataset.partition("/")
    try:
        images = load_image_dataset(name, split or None)
    except (OSError, ValueError, ModuleNotFoundError, ImportError) as err:
        return None, f"the images of dataset {dataset!r} cannot be loaded: {err}"
    position = {sample_id: index for index, sample_id in enumerate(images.ids)}
    ids = store.ids
    missing = next((sample_id for sample_id in ids if sample_id not in position), None)
    if missing is not None:
        return None, f"the store's ids are not those of dataset {dataset!r} (e.g. {missing!r})"
    return (lambda row: images.image(position[ids[row]])), f"images of {dataset}"


def store_texts(store_dir: str | Path, width: int) -> tuple[Callable[[int], list[str]] | None, str]:
    """For a token store, a function from store row to its ``2 width + 1`` tokens as text; or None and why."""
    from harmono.core.io import read_safetensors
    from harmono.features import FeatureStore
    from harmono.features.token_activations import TOKENS_FILE

    try:
        store = FeatureStore(store_dir, verify="shape")
        table, _ = read_safetensors(Path(store_dir) / TOKENS_FILE)
    except (OSError, ValueError) as err:
        return None, f"the store's tokens cannot be read: {err}"
    tokenizer_file = store.metadata.get("tokenizer")
    if not tokenizer_file or not Path(tokenizer_file).is_file():
        return None, f"the tokenizer the store names ({tokenizer_file!r}) is not a file"
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(tokenizer_file))
    if "stream" not in table:
        return None, f"{TOKENS_FILE} holds no token stream: extract the store again"
    stream, offsets = table["stream"].numpy(), table["offset"].numpy()
    pieces: dict[int, str] = {}

    def piece(token: int) -> str:
        if token not in pieces:
            pieces[token] = tokenizer.decode([token])
        return pieces[token]

    def texts(row: int) -> list[str]:
        centre = int(offsets[row])
        return [
            piece(int(stream[o])) if 0 <= o < len(stream) else ""
            for o in range(centre - width, centre + width + 1)
        ]

    return texts, f"text of {store.metadata.get('tokens', 'the token stream')}"


def read_latent_table(
    run_dir: str | Path, name: str | None = None, features: str | Path | None = None
) -> LatentTable:
    """Read an evaluated SAE run; ``features`` overrides the store recorded by the evaluation."""
    run_dir = Path(run_dir)
    path = run_dir / EVALUATION_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: run `harmono sae eval {run_dir} --features STORE` first")
    record = read_json(path, "an SAE evaluation", ("summary", "latents"))
    top_rows = top_values = None
    if (run_dir / TOP_ACTIVATIONS_FILE).is_file():
        values, rows = load_top_activations(run_dir / TOP_ACTIVATIONS_FILE)
        top_rows, top_values = rows.numpy(), values.numpy()
        if len(top_rows) != len(record["latents"]):
            raise ValueError(
                f"{run_dir}: expected top activations of {len(record['latents'])} latents, "
                f"got {len(top_rows)}: re-run `harmono sae eval`"
            )
    store_dir = features or record.get("features")
    neighbours = load_neighbours(run_dir / TOP_ACTIVATIONS_FILE) if top_rows is not None else None
    images = texts = None
    if top_rows is None:
        note = f"no {TOP_ACTIVATIONS_FILE}: re-run `harmono sae eval` to list top-activating samples"
    elif store_dir is None:
        note = "the evaluation does not name its feature store (pass --features)"
    elif neighbours is not None:
        texts, note = store_texts(store_dir, neighbours.shape[2] // 2)
    else:
        images, note = store_images(store_dir)
    if images is None and texts is None:
        logger.warning("%s: no images or texts in the latent browser: %s", run_dir, note)
    return LatentTable(
        name or run_dir.name, record["summary"], record["latents"], top_rows, top_values, images, note, texts,
        None if neighbours is None else neighbours.numpy(),
    )  # fmt: skip
