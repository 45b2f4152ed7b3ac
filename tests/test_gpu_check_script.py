"""benchmarks/gpu_check.sh runs every benchmark, the GPU tests and the toy suite, and parses as bash."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.sh"


def test_gpu_check_runs_every_benchmark_and_is_valid_bash():
    text = SCRIPT.read_text()
    benchmarks = sorted(p.name for p in (ROOT / "benchmarks").glob("[!_]*.py"))
    missing = [name for name in benchmarks if f"benchmarks/{name}" not in text]
    assert not missing, f"benchmarks/gpu_check.sh does not run {missing}"
    assert "pytest" in text and "-m gpu" in text and "toy suite" in text
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present: the script would run")
def test_gpu_check_refuses_to_run_without_a_gpu(tmp_path):
    done = subprocess.run(
        ["bash", str(SCRIPT)], env={"OUT": str(tmp_path), "PATH": "/usr/bin:/bin",
                                    "PYTHON": sys.executable},
        capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode != 0 and "no CUDA GPU" in done.stderr
    assert not (tmp_path / "steps.txt").exists()
