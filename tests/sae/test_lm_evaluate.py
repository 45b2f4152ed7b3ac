"""CE loss recovered and KL with an SAE spliced into a GPT: identity 100%, zero 0%, the losses by hand."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from harmono.models.gpt import GPT, GPTConfig
from harmono.sae import SAEConfig, create_sae
from harmono.sae.lm_evaluate import evaluate_in_model

D, CONTEXT = 16, 12


@pytest.fixture(scope="module")
def gpt():
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=40, block_size=16, n_layer=2, n_head=2, n_embd=D)).eval()


def tokens(n=200):
    return np.random.default_rng(0).integers(0, 40, n)


def logits(model):
    return lambda idx: model.logits(model.hidden(idx))


def relu_sae(identity):
    """A ReLU SAE that reconstructs x exactly (relu(x) - relu(-x)) or returns zeros."""
    sae = create_sae(SAEConfig("relu", d_in=D, d_sae=2 * D, k=1))
    eye = torch.eye(D)
    with torch.no_grad():
        sae.W_enc.copy_(torch.cat([eye, -eye], dim=1))
        sae.W_dec.copy_(torch.cat([eye, -eye], dim=0) if identity else torch.zeros(2 * D, D))
        sae.b_enc.zero_()
        sae.b_dec.zero_()
    return sae.eval()


def by_hand(model, windows, zero_after_first_block, skip_first):
    """Mean next-token cross-entropy, running the blocks one by one (optionally zeroing block 0's output)."""
    idx, targets = windows[:, :-1], windows[:, 1:]
    x = model.wte(idx) + model.wpe(torch.arange(idx.shape[1]))
    x = model.blocks[0](x)
    if zero_after_first_block:
        x = torch.zeros_like(x)
    x = model.ln_f(model.blocks[1](x))
    out = model.logits(x)[:, skip_first:]
    return float(F.cross_entropy(out.reshape(-1, out.shape[-1]), targets[:, skip_first:].reshape(-1)))


@pytest.mark.parametrize("l2_normalize", [False, True])
def test_identity_recovers_everything_and_zero_nothing(gpt, l2_normalize):
    stream = tokens()
    common = dict(hook="resid.0", context=CONTEXT, contexts=10, skip_first=2, l2_normalize=l2_normalize,
                  batch_size=4, progress=False)  # fmt: skip
    same = evaluate_in_model(relu_sae(True), gpt, logits(gpt), stream, **common)
    assert same.ce_recovered == pytest.approx(1.0, abs=1e-5) and same.kl == pytest.approx(0.0, abs=1e-6)
    assert same.ce_spliced == pytest.approx(same.ce_clean, abs=1e-5)
    none = evaluate_in_model(relu_sae(False), gpt, logits(gpt), stream, **common)
    assert none.ce_recovered == pytest.approx(0.0, abs=1e-6) and none.kl > 0
    windows = torch.from_numpy(stream[: 10 * (CONTEXT + 1)].reshape(10, CONTEXT + 1))
    with torch.no_grad():
        assert none.ce_clean == pytest.approx(by_hand(gpt, windows, False, 2), rel=1e-5)
        assert none.ce_zero == pytest.approx(by_hand(gpt, windows, True, 2), rel=1e-5)
    assert none.tokens == 10 * (CONTEXT - 2)


def test_a_partial_sae_lies_between_and_bad_settings_are_named(gpt):
    sae = relu_sae(True)
    with torch.no_grad():
        sae.W_dec[D:] = 0  # keeps only the positive part of each coordinate
    result = evaluate_in_model(sae, gpt, logits(gpt), tokens(), "resid.0", CONTEXT, 10, progress=False)
    assert 0 < result.kl and result.ce_clean < result.ce_spliced
    with pytest.raises(ValueError, match="expected at least 13 tokens"):
        evaluate_in_model(sae, gpt, logits(gpt), tokens(5), "resid.0", CONTEXT, progress=False)


def test_eval_lm_from_the_command_line(tmp_path, gpt, capsys):
    import json

    from harmono.cli import main

    gpt.save_pretrained(tmp_path / "gpt")
    tokens().astype(np.uint16).tofile(tmp_path / "tokens.bin")
    relu_sae(True).save_pretrained(tmp_path / "sae")
    argv = ["sae", "eval-lm", str(tmp_path / "sae"), "--model", str(tmp_path / "gpt"), "--tokens",
            str(tmp_path / "tokens.bin"), "--context", str(CONTEXT), "--contexts", "4",
            "--no-progress"]  # fmt: skip
    assert main(argv) == 2
    assert "records no hook point" in capsys.readouterr().err
    assert main([*argv, "--hook", "resid.0", "--normalize", "none"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["ce_recovered"] == pytest.approx(1.0, abs=1e-5) and printed["tokens"] == 4 * (CONTEXT - 1)
    written = json.loads((tmp_path / "sae" / "lm_evaluation.json").read_text())
    assert (
        written["summary"] == printed
        and written["hook"] == "resid.0"
        and written["sae"]["format"] == "harmono"
    )
