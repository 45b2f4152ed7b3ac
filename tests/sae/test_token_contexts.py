"""The text view of a token store's latents: neighbour activations by direct encoding, the browser payload."""

import numpy as np
import pytest
import torch

from harmono.analysis.latent_table import read_latent_table
from harmono.data.text import TokenCorpus, prepare_corpus
from harmono.features import FeatureStore
from harmono.features.token_activations import TokenExtractConfig, extract_token_activations
from harmono.models.gpt import GPT, GPTConfig
from harmono.report.latents import browser_payload
from harmono.sae import SAEConfig, create_sae
from harmono.sae.evaluate import TOP_ACTIVATIONS_FILE, evaluate_sae
from harmono.sae.token_contexts import neighbour_activations
from harmono.sae.top_activations import load_neighbours, load_top_activations

WIDTH = 4


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    """``(run_dir, store, sae, corpus)``: a TopK SAE evaluated on a token store of a tiny GPT."""
    root = tmp_path_factory.mktemp("tokens")
    rng = np.random.default_rng(0)
    words = ["king", "queen", "sword", "crown", "love", "night", "day", "death", "war", "peace"]
    prepare_corpus({f"d{i}": " ".join(rng.choice(words, 300)) for i in range(2)}, root / "corpus", 300, 0.5)
    corpus = TokenCorpus.open(root / "corpus")
    torch.manual_seed(0)
    gpt = GPT(GPTConfig(vocab_size=corpus.vocab_size, block_size=16, n_layer=1, n_head=2, n_embd=8)).eval()
    config = TokenExtractConfig(hook="mlp.0", context=16, skip_first=2, device="cpu")
    metadata = {"tokenizer": str(root / "corpus" / "tokenizer.json")}
    extract_token_activations(gpt, corpus.splits["val"], root / "store", config, metadata, progress=False)
    store = FeatureStore(root / "store")
    sae = create_sae(SAEConfig("topk", d_in=store.dim, d_sae=24, k=3)).eval()
    (root / "run").mkdir()
    evaluate_sae(sae, store, batch_size=50, l2_normalize=False, table=root / "run" / "evaluation.json",
                 top_activations=root / "run" / TOP_ACTIVATIONS_FILE, progress=False)  # fmt: skip
    return root / "run", store, sae, corpus


def test_neighbour_activations_are_the_latent_on_the_neighbouring_tokens(evaluated):
    run, store, sae, _ = evaluated
    _, rows = load_top_activations(run / TOP_ACTIVATIONS_FILE)
    saved = load_neighbours(run / TOP_ACTIVATIONS_FILE)
    assert torch.equal(saved.isnan(), neighbour_activations(sae, store, rows, l2_normalize=False).isnan())
    offsets = [int(i) for i in store.ids]
    row_of = {offset: row for row, offset in enumerate(offsets)}
    with torch.no_grad():
        everything = sae.encode(torch.from_numpy(store.take(np.arange(len(store)), "float32")))
    checked = 0
    for latent in range(saved.shape[0]):
        for example in range(saved.shape[1]):
            top = int(rows[latent, example])
            for k, shift in enumerate(range(-WIDTH, WIDTH + 1)):
                neighbour = row_of.get(offsets[top] + shift) if top >= 0 else None
                same = neighbour is not None and (offsets[top] // 16 == offsets[neighbour] // 16)
                if top < 0 or not same:
                    assert saved[latent, example, k].isnan()
                else:
                    assert saved[latent, example, k] == pytest.approx(
                        float(everything[neighbour, latent]), abs=1e-6
                    )
                    checked += 1
    assert checked > 50 and (saved[:, :, WIDTH][rows[:, :3] >= 0] > 0).all()  # the centre is the top token


def test_the_browser_shows_each_top_token_with_its_neighbours_as_text(evaluated):
    run, store, _, corpus = evaluated
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(corpus.directory / "tokenizer.json"))
    table = read_latent_table(run)
    payload, sprite = browser_payload([table])
    assert sprite is None and payload["notes"][0].startswith("text of")
    stream = corpus.splits["val"]
    end = len(stream) // 16 * 16  # the contexts the store was cut from
    shown = 0
    for entry in payload["latents"]:
        for example, snippet in enumerate(entry.get("x", [])):
            offset = int(store.ids[int(table.top_rows[entry["i"], example])])
            window = range(offset - WIDTH, offset + WIDTH + 1)
            expected = [tokenizer.decode([int(stream[o])]) if 0 <= o < end else "" for o in window]
            assert snippet["w"] == expected and snippet["c"] == WIDTH and snippet["a"][WIDTH] > 0
            shown += 1
    assert shown > 10


def test_token_identity_monoscore_of_the_evaluation_equals_the_definition(evaluated):
    import torch.nn.functional as F

    from harmono.mono import mono_score, summarize

    _, store, sae, _ = evaluated
    result = evaluate_sae(sae, store, batch_size=37, l2_normalize=False, progress=False, token_identity=True)
    with torch.no_grad():
        latents = sae.encode(torch.from_numpy(store.take(np.arange(len(store)), "float32")))
    labels = torch.from_numpy(np.asarray(store.labels, dtype=np.int64))
    expected = summarize(mono_score(latents.double(), F.one_hot(labels).double())).as_dict()
    assert result.mono_tokens["num_dead"] == expected["num_dead"]
    assert result.mono_tokens["mean"] == pytest.approx(expected["mean"], abs=1e-9)
