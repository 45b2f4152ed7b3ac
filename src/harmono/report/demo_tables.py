"""The demo's tables and key numbers, from its steps' summaries, for the terminal and the HTML report.

Each ``*_rows`` function takes the summary a demo step stored in its
``step.json`` and returns ``(headers, rows)`` of formatted cells.
"""

from __future__ import annotations

from collections.abc import Mapping

Rows = tuple[list[str], list[list[str]]]


def toy_points_rows(summary: Mapping) -> Rows:
    """Final loss, center-to-point distances and weight norm of each toy fit."""
    rows = [
        [
            r["case"],
            r["head"],
            f"{r['final_loss']:.3e}",
            " ".join(f"{d:.3g}" for d in r["center_distances"]),
            f"{r['weight_norm']:.3f}",
        ]
        for r in summary["results"]
    ]
    return ["case", "head", "final loss", "|center - point| per class", "|W|"], rows


def mono_toy_rows(summary: Mapping) -> Rows:
    """MonoScore range and class purity per kind of synthetic latent."""
    rows = [
        [
            k["kind"],
            f"{k['mean_score']:.3f}",
            f"{k['min_score']:.3f} .. {k['max_score']:.3f}",
            f"{k['mean_purity']:.2f}",
        ]
        for k in summary["result"]["kinds"]
    ]
    return ["latents fire on", "mean MonoScore", "range", "class purity"], rows


def suite_summary_rows(summary: Mapping) -> Rows:
    """Per task and head: top-2 EV of the embeddings, test accuracy, seeds that generalised."""
    rows = [
        [
            r["task"],
            r["head"],
            str(r["epochs"]),
            f"{100 * r['ev_top2_median']:.1f} [{100 * r['ev_top2_min']:.0f}-{100 * r['ev_top2_max']:.0f}]",
            f"{100 * r['test_accuracy_median']:.1f}",
            f"{r['generalised']}/{r['seeds']}",
        ]
        for r in summary["rows"]
    ]
    headers = [
        "task",
        "head",
        "epochs",
        "top-2 EV % median [min-max]",
        "test acc % (median)",
        "seeds test > 0.9",
    ]
    return headers, rows


def prototype_rows(summary: Mapping) -> Rows:
    """Test accuracy and final training loss of the two linear heads."""
    rows = [
        [
            head.replace("_", "-"),
            f"{100 * summary['test_accuracy'][head]:.2f}",
            f"{summary['train_loss'][head]:.4f}",
        ]
        for head in summary["test_accuracy"]
    ]
    size = f"test accuracy % ({summary['test_size']:,} images)"
    return ["head", size, f"train loss ({summary['train_size']:,} images)"], rows


def sae_rows(summary: Mapping) -> Rows:
    """R², L0, dead fraction, MonoScore and purity of each demo SAE."""
    rows = [
        [
            name,
            f"{e['mono_coef']:g}",
            f"{e['r2']:.4f}",
            f"{e['l0']:.1f}",
            f"{e['dead_fraction']:.3f}",
            f"{e['mono']['mean']:.4f}",
            f"{e['mono']['mean_dead_as_zero']:.4f}",
            f"{e['purity_binary']:.3f}",
            f"{e['purity_weighted']:.3f}",
        ]
        for name, e in summary["evaluations"].items()
    ]
    headers = [
        "SAE",
        "mono_coef",
        "R2",
        "L0",
        "dead",
        "MonoScore",
        "MonoScore (dead=0)",
        "purity",
        "purity wtd",
    ]
    return headers, rows


def suite_claims(summary: Mapping) -> list[tuple[str, bool]]:
    """Per task: whether the harmonic embeddings have a higher median top-2 EV than the standard ones."""
    ev = {(r["task"], r["head"]): r["ev_top2_median"] for r in summary["rows"]}
    claims = []
    for task in dict.fromkeys(task for task, _ in ev):
        if (task, "harmonic") in ev and (task, "standard") in ev:
            harmonic, standard = ev[task, "harmonic"], ev[task, "standard"]
            text = (
                f"{task}: the harmonic embeddings are more structured than the standard ones "
                f"(median top-2 EV {100 * harmonic:.1f}% vs {100 * standard:.1f}%)"
            )
            claims.append((text, harmonic > standard))
    return claims


MAX_R2_COST = 0.05
"""Largest R² loss to MonoLoss counted as small (the project's target for the SAE experiments)."""


def sae_claims(summary: Mapping) -> list[tuple[str, bool]]:
    """MonoLoss vs none: higher MonoScore, higher class purity, R² lower by at most ``MAX_R2_COST``."""
    if len(summary["evaluations"]) != 2:
        return []
    without, with_ = summary["evaluations"].values()
    score, purity, r2 = (
        (without["mono"]["mean"], with_["mono"]["mean"]),
        (without["purity_binary"], with_["purity_binary"]),
        (without["r2"], with_["r2"]),
    )
    return [
        (f"MonoLoss raises the mean MonoScore of the alive latents ({score[0]:.3f} → {score[1]:.3f})",
         score[1] > score[0]),
        (f"MonoLoss raises their class purity ({purity[0]:.3f} → {purity[1]:.3f})", purity[1] > purity[0]),
        (f"its cost in reconstruction is small: R² {r2[0]:.4f} → {r2[1]:.4f} (at most {MAX_R2_COST} lower)",
         r2[0] - r2[1] <= MAX_R2_COST),
    ]  # fmt: skip


def demo_headline(steps: Mapping[str, Mapping | None]) -> list[tuple[str, str]]:
    """The key numbers of a demo: (label, value), in the order the report shows them."""
    headline = []
    suite = steps.get("toy-suite")
    if suite:
        ev = {(r["task"], r["head"]): r["ev_top2_median"] for r in suite["rows"]}
        for task, title in (("lattice", "lattice"), ("modadd", "modular addition")):
            if (task, "harmonic") in ev and (task, "standard") in ev:
                value = f"{100 * ev[task, 'harmonic']:.0f}% vs {100 * ev[task, 'standard']:.0f}%"
                headline.append((f"{title}: top-2 EV, harmonic vs standard", value))
    prototypes = steps.get("prototypes")
    if prototypes:
        accuracy = prototypes["test_accuracy"]
        value = f"{100 * accuracy['harmonic']:.1f}% vs {100 * accuracy['cross_entropy']:.1f}%"
        headline.append(("Fashion-MNIST linear: harmonic vs cross-entropy", value))
    sae = steps.get("sae")
    if sae and len(sae["evaluations"]) == 2:
        without, with_ = sae["evaluations"].values()
        headline += [
            (
                "SAE MonoScore: without → with MonoLoss",
                f"{without['mono']['mean']:.3f} → {with_['mono']['mean']:.3f}",
            ),
            ("SAE class purity", f"{without['purity_binary']:.3f} → {with_['purity_binary']:.3f}"),
            ("SAE R²", f"{without['r2']:.4f} → {with_['r2']:.4f}"),
        ]
    return headline
