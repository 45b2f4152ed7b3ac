"""Stacks of toy configurations: the same models as each configuration alone, AdamW as torch's, resume."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from harmono.data.official_toy_draws import official_split
from harmono.data.toy import split_task, toy_task
from harmono.experiments.harmonic import toy_training
from harmono.experiments.harmonic.stacked_adamw import StackedAdamW
from harmono.experiments.harmonic.toy_batches import EvaluationSet
from harmono.experiments.harmonic.toy_suite import paper_configs
from harmono.experiments.harmonic.toy_tasks import ToyConfiguration
from harmono.experiments.harmonic.toy_training import train_toy_configs
from harmono.models.toy_stack import DROPOUT_SITES, BatchedToyModel


def _configuration(task, arch, head, seeds, model_overrides=None, **train_overrides):
    model, train = paper_configs(task, arch, head, **train_overrides)
    return ToyConfiguration(replace(model, **(model_overrides or {})), train, seeds)


def _assert_same_run(stacked, alone):
    np.testing.assert_allclose(stacked.embedding, alone.embedding, atol=2e-6, rtol=0)
    np.testing.assert_allclose(stacked.output_centers, alone.output_centers, atol=2e-6, rtol=0)
    np.testing.assert_array_equal(stacked.train_acc, alone.train_acc)
    np.testing.assert_array_equal(stacked.test_acc, alone.test_acc)
    for mine, reference in zip(stacked.seeds, alone.seeds, strict=True):
        assert mine.ev_top2 == pytest.approx(reference.ev_top2, abs=1e-5)
        assert (mine.seed, mine.leakage) == (reference.seed, reference.leakage)
    assert (stacked.model, stacked.train) == (alone.model, alone.train)


@pytest.mark.parametrize("arch", ["mlp", "transformer"])
def test_a_stack_trains_each_configuration_as_it_trains_alone(arch):
    # heads, samplings, train fractions (so epochs of different lengths), exponents and learning rates mixed
    common = {"epochs": 2, "data_size": 300}
    configurations = [
        _configuration("modadd", arch, "standard", (0, 52), **common),
        _configuration("modadd", arch, "harmonic", (0, 105), paper_sampling=True, **common),
        _configuration("modadd", arch, "harmonic", (7,), {"exponent": 8.0}, train_fraction=0.3, **common),
        _configuration(
            "modadd", arch, "standard", (3,), lr=5e-3, weight_decay=0.0, embedding_reg="l2", **common
        ),
    ]
    task = toy_task("modadd")
    stacked = train_toy_configs(task, configurations, progress=False)
    assert len(stacked) == len(configurations)
    for configuration, result in zip(configurations, stacked, strict=True):
        _assert_same_run(result, train_toy_configs(task, [configuration], progress=False)[0])


def test_official_draws_train_on_the_official_splits_and_stack_as_alone():
    # genealogy: the official list has a fact harmono's task lacks, so the stack indexes the longer list
    common = {"epochs": 2, "paper_sampling": True}
    official = _configuration("genealogy", "mlp", "standard", (0, 52), official_draws=True, **common)
    own = _configuration("genealogy", "mlp", "harmonic", (0,), **common)
    task = toy_task("genealogy")
    stacked = train_toy_configs(task, [official, own], progress=False)
    for configuration, result in zip((official, own), stacked, strict=True):
        _assert_same_run(result, train_toy_configs(task, [configuration], progress=False)[0])
    assert [s.leakage for s in stacked[0].seeds] == [official_split("genealogy", s).leakage for s in (0, 52)]
    assert stacked[1].seeds[0].leakage == split_task(task, 0.8, 0, paper_sampling=True).leakage


def test_models_whose_epochs_are_shorter_sit_out_the_extra_steps():
    # 0.2 x 300 = 60 examples (2 steps) beside 0.9 x 300 = 270 (9 steps): the short one must not move
    # in the 7 steps it has no batch, or it would differ from training alone
    short = _configuration(
        "equivalence", "mlp", "harmonic", (1,), epochs=3, data_size=300, train_fraction=0.2
    )
    long = _configuration("equivalence", "mlp", "harmonic", (1,), epochs=3, data_size=300, train_fraction=0.9)
    task = toy_task("equivalence")
    together = train_toy_configs(task, [short, long], progress=False)
    _assert_same_run(together[0], train_toy_configs(task, [short], progress=False)[0])
    assert not np.allclose(together[0].embedding, together[1].embedding)


def test_stacked_adamw_follows_torch_adamw_row_by_row():
    generator = torch.Generator().manual_seed(0)
    start = torch.randn(3, 7, generator=generator, dtype=torch.float64)
    lr = torch.tensor([1e-3, 5e-2, 2e-2], dtype=torch.float64)
    decay = torch.tensor([0.0, 0.01, 0.5], dtype=torch.float64)
    param = start.clone().requires_grad_(True)
    stacked = StackedAdamW(param, lr, decay)
    rows = [start[k].clone().requires_grad_(True) for k in range(3)]
    references = [
        torch.optim.AdamW([rows[k]], lr=float(lr[k]), weight_decay=float(decay[k]), foreach=False)
        for k in range(3)
    ]
    active_pattern = [[1, 1, 1], [1, 0, 1], [0, 0, 1], [1, 1, 0], [1, 1, 1]]
    for active in active_pattern:
        grad = torch.randn(3, 7, generator=generator, dtype=torch.float64)
        param.grad = grad.clone()
        stacked.step(torch.tensor(active, dtype=torch.bool))
        for k in range(3):
            if active[k]:  # a row left out neither steps nor counts the step
                rows[k].grad = grad[k].clone()
                references[k].step()
    saved = stacked.state_tensors()
    for k in range(3):
        torch.testing.assert_close(param.detach()[k], rows[k].detach(), rtol=0, atol=1e-14)
        state = references[k].state[rows[k]]
        torch.testing.assert_close(saved["exp_avg_sq"][k], state["exp_avg_sq"], rtol=0, atol=1e-14)
        assert saved["steps"][k].item() == state["step"].item() == sum(a[k] for a in active_pattern)
    # a restored optimizer continues exactly where this one is
    copy = param.detach().clone().requires_grad_(True)
    restored = StackedAdamW(copy, lr, decay)
    restored.load_state_tensors(saved)
    grad = torch.randn(3, 7, generator=generator, dtype=torch.float64)
    for p, optimizer in ((param, stacked), (copy, restored)):
        p.grad = grad.clone()
        optimizer.step()
    torch.testing.assert_close(copy, param, rtol=0, atol=0)


def test_stacked_adamw_refuses_bad_shapes():
    param = torch.zeros(2, 3, requires_grad=True)
    with pytest.raises(ValueError, match=r"lr must have shape \(S=2,\), got \(3,\)"):
        StackedAdamW(param, torch.ones(3), torch.ones(2))
    with pytest.raises(ValueError, match=r"param must have shape \(S, P\), got \(6,\)"):
        StackedAdamW(torch.zeros(6, requires_grad=True), torch.ones(6), torch.ones(6))
    with pytest.raises(RuntimeError, match="needs param.grad"):
        StackedAdamW(param, torch.ones(2), torch.ones(2)).step()


@pytest.mark.parametrize("eval_dropout", [False, True])
def test_a_killed_stack_resumes_from_its_checkpoint_to_the_same_result(tmp_path, monkeypatch, eval_dropout):
    common = {"epochs": 4, "data_size": 200, "eval_dropout": eval_dropout}
    configurations = [
        _configuration("lattice", "transformer", "harmonic", (0, 52), **common),
        _configuration("lattice", "transformer", "standard", (0,), paper_sampling=True, **common),
    ]
    task = toy_task("lattice")
    whole = train_toy_configs(task, configurations, progress=False)
    checkpoint = tmp_path / "stack.safetensors"

    class Killed(Exception):
        pass

    real_save = toy_training._save_checkpoint

    def save_then_die(path, spec, epoch, state):
        real_save(path, spec, epoch, state)
        if epoch == 2:
            raise Killed  # as if killed right after the checkpoint of epoch 2

    monkeypatch.setattr(toy_training, "_save_checkpoint", save_then_die)
    with pytest.raises(Killed):
        train_toy_configs(task, configurations, progress=False, checkpoint=checkpoint, checkpoint_every=1)
    monkeypatch.setattr(toy_training, "_save_checkpoint", real_save)
    resumed = train_toy_configs(
        task, configurations, progress=False, checkpoint=checkpoint, checkpoint_every=1
    )
    for a, b in zip(
        whole, resumed, strict=True
    ):  # dropout (of evaluation too), shuffling, AdamW carried over
        np.testing.assert_array_equal(a.embedding, b.embedding)
        np.testing.assert_array_equal(a.train_acc, b.train_acc)
        np.testing.assert_array_equal(a.test_acc, b.test_acc)
    other = [_configuration("lattice", "transformer", "harmonic", (0,), **common)]
    with pytest.raises(ValueError, match="checkpoint of another stack"):
        train_toy_configs(task, other, progress=False, checkpoint=checkpoint)
    checkpoint.write_bytes(checkpoint.read_bytes()[:100])  # truncated
    with pytest.raises(ValueError, match=f"{checkpoint}: not a readable toy-stack checkpoint"):
        train_toy_configs(task, configurations, progress=False, checkpoint=checkpoint)


def test_predict_is_the_argmax_of_the_logits():
    task = toy_task("genealogy")
    configs = [paper_configs("genealogy", "mlp", head)[0] for head in ("standard", "harmonic", "harmonic")]
    configs[2] = replace(configs[2], exponent=6.0)
    model = BatchedToyModel(configs, [0, 1, 2])
    with torch.no_grad():
        model.flat.add_(0.3 * torch.randn(model.flat.shape, generator=torch.Generator().manual_seed(0)))
    tokens = torch.tensor(task.inputs[:50]).expand(3, -1, -1)
    assert torch.equal(model.predict(tokens), model(tokens).argmax(-1))


def test_mixed_stack_forward_equals_each_model_alone():
    configs = [paper_configs("permutation", "transformer", head)[0] for head in ("harmonic", "standard")]
    stack = BatchedToyModel(configs, [4, 9])
    tokens = torch.randint(0, 24, (2, 5, 2), generator=torch.Generator().manual_seed(3))
    logits = stack(tokens)
    for k, (config, seed) in enumerate(zip(configs, [4, 9], strict=True)):
        alone = BatchedToyModel(config, [seed])
        torch.testing.assert_close(logits[k], alone(tokens[k : k + 1])[0])
        torch.testing.assert_close(stack.output_centers[k], alone.output_centers[0])


def test_stack_refuses_configurations_that_cannot_share_a_model():
    task = toy_task("modadd")
    mlp = _configuration("modadd", "mlp", "harmonic", (0,), epochs=2)
    with pytest.raises(ValueError, match="must share arch"):
        train_toy_configs(task, [mlp, _configuration("modadd", "transformer", "harmonic", (0,), epochs=2)])
    with pytest.raises(ValueError, match="must share epochs: configuration 0 has 2, configuration 1 has 3"):
        train_toy_configs(task, [mlp, _configuration("modadd", "mlp", "harmonic", (0,), epochs=3)])
    with pytest.raises(ValueError, match="expected at least one configuration"):
        train_toy_configs(task, [])
    with pytest.raises(ValueError, match="seeds must be distinct"):
        _configuration("modadd", "mlp", "harmonic", (1, 1))


def test_splits_report_the_rows_they_drew():
    task = toy_task("modadd")
    for paper in (False, True):
        split = split_task(task, 0.8, 5, paper_sampling=paper)
        np.testing.assert_array_equal(task.inputs[split.train_ids], split.train_inputs)
        np.testing.assert_array_equal(task.labels[split.test_ids], split.test_labels)
        leaked = np.isin(split.test_ids, split.train_ids).mean()
        assert split.leakage == pytest.approx(leaked)


def _keep_masks(config, generator, rows):
    """The masks of ``rows`` examples as documented: ``(rows, mask_width)`` uniforms, 0 or 1/(1-p), split."""
    rate = config.dropout
    keep = (torch.rand((rows, config.mask_width), generator=generator) >= rate) / (1 - rate)
    t, d = config.seq_len, config.embed_dim
    return keep.split([config.num_heads * t * t, t * d, t * config.ff_dim, t * d] * config.num_layers, dim=1)


@pytest.mark.parametrize("sites", [DROPOUT_SITES, ("attention output", "feed-forward output")])
def test_accuracy_with_dropout_on_equals_a_loop_over_the_drawn_examples(sites):
    task = toy_task("modadd")
    configs = [paper_configs("modadd", "transformer", head)[0] for head in ("harmonic", "standard")]
    seeds = [0, 52]
    # the paper's sampling draws examples twice (each distinct one gets one mask), the other split not
    splits = [
        split_task(task, 0.8, 0, data_size=120, paper_sampling=True),
        split_task(task, 0.8, 52, data_size=90),
    ]
    model = BatchedToyModel(configs, seeds)
    with torch.no_grad():
        model.flat.add_(0.3 * torch.randn(model.flat.shape, generator=torch.Generator().manual_seed(1)))
    inputs, labels = torch.tensor(task.inputs), torch.tensor(task.labels)
    evaluation = EvaluationSet(splits, torch.device("cpu"), seeds, sites)
    passes = [evaluation.accuracy(model, inputs, labels) for _ in range(2)]
    off = EvaluationSet(splits, torch.device("cpu")).accuracy(model, inputs, labels)
    for k, (config, seed, split) in enumerate(zip(configs, seeds, splits, strict=True)):
        alone = BatchedToyModel(config, [seed])
        with torch.no_grad():  # model k's weights (a mixed stack holds more parameters than one head)
            for name, value in alone.params.items():
                value.copy_(model.params[name][k : k + 1])
        distinct = np.unique(np.concatenate([split.train_ids, split.test_ids]))
        stream = np.random.SeedSequence([seed, 2]).generate_state(1)[0]  # the seed's evaluation stream
        generator = torch.Generator().manual_seed(int(stream))
        for train_acc, test_acc in passes:  # the second pass draws the stream's next masks
            parts = _keep_masks(config, generator, len(distinct))
            correct = {}
            for row, example in enumerate(distinct):
                masks = [
                    part[row].view(1, 1, -1)
                    if DROPOUT_SITES[j % 4] in sites
                    else torch.ones(1, 1, part.shape[1])
                    for j, part in enumerate(parts)
                ]  # the layers' masks in the documented order, dropout at the chosen sites only
                logits = alone(torch.tensor(task.inputs[example]).view(1, 1, -1), masks)
                correct[example] = logits.argmax(-1).item() == task.labels[example]
            assert train_acc[k].item() == pytest.approx(np.mean([correct[i] for i in split.train_ids]))
            assert test_acc[k].item() == pytest.approx(np.mean([correct[i] for i in split.test_ids]))
        assert (passes[0][0][k], passes[0][1][k]) != (off[0][k], off[1][k])


def test_dropout_at_no_site_is_dropout_off_and_unknown_sites_are_refused():
    task = toy_task("modadd")
    model = BatchedToyModel(paper_configs("modadd", "transformer", "harmonic")[0], [0, 52])
    splits = [split_task(task, 0.8, seed, data_size=60) for seed in (0, 52)]
    inputs, labels = torch.tensor(task.inputs), torch.tensor(task.labels)
    nowhere = EvaluationSet(splits, torch.device("cpu"), [0, 52], sites=())
    off = EvaluationSet(splits, torch.device("cpu"))
    mine, reference = nowhere.accuracy(model, inputs, labels), off.accuracy(model, inputs, labels)
    torch.testing.assert_close(mine, reference, rtol=0, atol=0)
    with pytest.raises(ValueError, match=r"sites must be among .* got \['attention'\]"):
        EvaluationSet(splits, torch.device("cpu"), [0, 52], ["attention"])


def test_dropout_at_evaluation_leaves_training_unchanged_and_stacks_as_alone():
    common = {"epochs": 3, "data_size": 150, "eval_dropout": True}
    configurations = [
        _configuration("modadd", "transformer", "harmonic", (0, 52), **common),
        _configuration("modadd", "transformer", "standard", (105,), paper_sampling=True, **common),
    ]
    task = toy_task("modadd")
    stacked = train_toy_configs(task, configurations, progress=False)
    for configuration, result in zip(configurations, stacked, strict=True):
        _assert_same_run(result, train_toy_configs(task, [configuration], progress=False)[0])
        dropout_off = replace(configuration, train=replace(configuration.train, eval_dropout=False))
        off = train_toy_configs(task, [dropout_off], progress=False)[0]
        np.testing.assert_array_equal(result.embedding, off.embedding)  # training drew the same masks
        assert not np.array_equal(result.test_acc, off.test_acc)
        assert result.record()["train"]["eval_dropout"] is True
        assert "eval_dropout" not in off.record()["train"]  # as in the records written before the field
    mlp = _configuration("modadd", "mlp", "harmonic", (0,), epochs=2, eval_dropout=True)
    with pytest.raises(
        ValueError, match="eval_dropout needs a transformer with dropout; configuration 0 has arch 'mlp'"
    ):
        train_toy_configs(task, [mlp])
    on = _configuration("modadd", "transformer", "harmonic", (0,), epochs=2, eval_dropout=True)
    with pytest.raises(ValueError, match="must share eval_dropout: configuration 0 has True"):
        train_toy_configs(task, [on, _configuration("modadd", "transformer", "standard", (0,), epochs=2)])
