#!/usr/bin/env bash
# One GPU check, in under 10 minutes on one GPU: the GPU-marked tests, every benchmark on cuda,
# and the toy MLP suite (both samplings, 20 seeds) on cuda. Writes JSON (and logs) into $OUT
# (default benchmarks/results/gpu), the suite's results into $OUT/toy.
#
#   bash benchmarks/gpu_check.sh                   # from the repository root, .venv made by `make test`
#   PYTHON=python3 bash benchmarks/gpu_check.sh    # a Python that has torch and the dependencies, no .venv
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-benchmarks/results/gpu}"
PY="${PYTHON:-.venv/bin/python}"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"  # harmono from this checkout, installed or not
mkdir -p "$OUT"
"$PY" -c "import torch; assert torch.cuda.is_available(), 'no CUDA GPU'; print(torch.cuda.get_device_name())" \
    | tee "$OUT/device.txt" || exit 1
status=0
step() {  # step NAME SECONDS COMMAND...: run with a time limit, log, remember failures
    local name=$1 limit=$2; shift 2
    local start=$SECONDS
    timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
    local rc=$?
    echo "$name: exit $rc in $((SECONDS - start)) s" | tee -a "$OUT/steps.txt"
    [ $rc -eq 0 ] || status=1
}
step tests 120 "$PY" -m pytest -q -m gpu tests/test_gpu.py
step harmonic_head 60 "$PY" benchmarks/harmonic_head.py --device cuda --json "$OUT/harmonic_head.json"
step monoscore 60 "$PY" benchmarks/monoscore.py --device cuda --json "$OUT/monoscore.json"
step sae_train 60 "$PY" benchmarks/sae_train.py --device cuda --json "$OUT/sae_train.json"
step gpt_throughput 60 "$PY" benchmarks/gpt_throughput.py --device cuda --size gpt2-small --json "$OUT/gpt_throughput.json"
step toy_seeds 60 "$PY" benchmarks/toy_seeds.py --device cuda --json "$OUT/toy_seeds.json"
step feature_store 40 "$PY" benchmarks/feature_store.py --gib 0.25 --json "$OUT/feature_store.json"
# what is left of the 10 minutes goes to the toy MLP suite; finished tasks are kept, the rest resume
step toy_suite $((570 - SECONDS > 30 ? 570 - SECONDS : 30)) "$PY" -m harmono.cli toy suite --archs mlp \
    --samplings leak-free paper --device cuda --no-progress --out "$OUT/toy-suite" --results "$OUT/toy"
exit $status
