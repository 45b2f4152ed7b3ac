"""The embedded main job behind ``harmono demo``.

It grows with every feature. Today: the harmonic-loss paper's two 2-D toy
cases, harmonic head vs linear head, as a table, a JSON file and a figure;
then what the MonoScore measures, on synthetic latents of known meaning.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path

from harmono._io import write_json_atomically
from harmono.experiments.mono_toy import MonoToyConfig, MonoToyResult, run_mono_toy
from harmono.experiments.toy_points import ToyPointsConfig, ToyResult, run_toy_points

logger = logging.getLogger("harmono")


@dataclass(frozen=True)
class DemoOutputs:
    """What one demo run produced."""

    toy_results: list[ToyResult]
    """The four toy fits (two cases x two heads)."""
    toy_figure: Path
    """PNG of decision regions and learned centers."""
    toy_json: Path
    """JSON with the config and every result."""
    mono_result: MonoToyResult
    """Scores of the synthetic latents."""
    mono_json: Path
    """JSON with the MonoScore toy's config and result."""


def run_demo(
    out_dir: str | Path,
    toy_config: ToyPointsConfig | None = None,
    progress: bool = True,
    mono_config: MonoToyConfig | None = None,
) -> DemoOutputs:
    """Run every demo step and write its outputs under ``out_dir``."""
    from harmono.analysis.toy_plots import plot_toy_points

    toy_config = toy_config or ToyPointsConfig()
    mono_config = mono_config or MonoToyConfig()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    logger.info("toy cases: %d Adam steps per fit, exponent n = %g", toy_config.steps, toy_config.exponent)
    results = run_toy_points(toy_config, progress=progress)
    figure = plot_toy_points(results, out_dir / "toy_points.png")
    toy_json = write_json_atomically(
        out_dir / "toy_points.json",
        {"config": asdict(toy_config), "results": [asdict(r) for r in results]},
        indent=1,
    )
    logger.info("MonoScore toy: %d clusters x %d samples", mono_config.clusters, mono_config.per_cluster)
    mono_result = run_mono_toy(mono_config)
    mono_json = write_json_atomically(
        out_dir / "mono_toy.json", {"config": asdict(mono_config), "result": asdict(mono_result)}, indent=1
    )
    return DemoOutputs(results, figure, toy_json, mono_result, mono_json)
