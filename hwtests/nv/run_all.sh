#!/usr/bin/env bash
# One pass over everything the nvdrv issue checks on a GPU machine, each step bounded, logs under $OUT (default
# out/hw): the GPU's state, hwtests/nv, the benchmark against PyTorch, the device-independent test suite on DEV=NV,
# a DEBUG=4 kernel dump and a short training run (scikit-learn digits: the GPU machine is offline); on request also the
# replay benchmark against PyTorch eager and CUDA graphs, and the SmolLM2 decode benchmark.
# Run from the repository root with numpy, cffi and pyelftools importable:
#   bash hwtests/nv/run_all.sh [steps...]      steps: gpu hw bench tests debug mnist replay stash llm
#                                              (default: gpu hw bench tests debug mnist, in that order)
# llm needs the model file: SOV_CACHE/models/SmolLM2-135M-Instruct.Q4_1.gguf, or its two halves (`split -n 2` of it:
# the machine is offline and one call carries at most 64 MiB, and a carried path does not outlive its call): carry
# .m1 in one call and run the step `stash` (it keeps .m1/p in /tmp), then carry .m2 in the next while the machine is
# warm and run `llm`.
set -u
OUT="${OUT:-out/hw}"
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
steps=("$@")
[ ${#steps[@]} -eq 0 ] && steps=(gpu hw bench tests debug mnist)

for step in "${steps[@]}"; do
  echo "== $step $(date +%T)"
  case "$step" in
    gpu)
      nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,memory.used,memory.total --format=csv \
        2>&1 | tee "$OUT/gpu.txt"
      python -c "import nvdrv.device as d; print(d.NVDevice().describe())" 2>&1 | tee -a "$OUT/gpu.txt" ;;
    hw)
      timeout 240 python -m pytest -q -p no:cacheprovider -rs --tb=short --durations=8 hwtests/nv 2>&1 \
        | tee "$OUT/hwtests.log" | tail -25 ;;
    bench)
      timeout 150 python tools/bench_nv.py 2>&1 | tee "$OUT/bench.log" ;;
    tests)
      # -v: one line per finished test, so a log cut off by the timeout still says what passed and what failed
      DEV=NV timeout "${TESTS_TIMEOUT:-270}" python -m pytest -n "${WORKERS:-12}" -v -p no:cacheprovider --tb=short \
        -rf tests 2>&1 | tee "$OUT/tests_nv.log" | grep -E " (FAILED|ERROR) |^(FAILED|ERROR)|passed|failed" | tail -60
      grep -c " PASSED " "$OUT/tests_nv.log" | sed 's/^/PASSED lines: /' ;;
    debug)
      DEV=NV DEBUG=4 timeout 60 python -c "from frontend import Tensor; print((Tensor([1.0, 2.0, 3.0]).exp() * 2).numpy())" \
        > "$OUT/debug4.log" 2>&1
      grep -c -E "^\s+/\*[0-9a-f]{4}\*/" "$OUT/debug4.log" | sed 's/^/SASS lines in the DEBUG=4 dump: /'
      tail -3 "$OUT/debug4.log" ;;
    mnist)
      DEV=NV timeout 120 python -m tools.sov train-mnist --dataset digits --steps 150 --out /tmp/sov-mnist 2>&1 \
        | tr '\r' '\n' | tee "$OUT/mnist.log" | tail -4 ;;
    replay)
      timeout 240 python tools/bench_replay.py --device NV --steps 200 2>&1 | tee "$OUT/bench_replay.log" | tail -5 ;;
    stash)
      if [ -f .m1/p ]; then cp .m1/p /tmp/sov-model-half1 && echo "kept .m1/p for the llm step"; else echo "no .m1/p"; fi ;;
    llm)
      export SOV_CACHE="${SOV_CACHE:-/tmp/sov-cache}"
      model="$SOV_CACHE/models/SmolLM2-135M-Instruct.Q4_1.gguf"
      first=.m1/p
      [ -f "$first" ] || first=/tmp/sov-model-half1
      if [ ! -f "$model" ] && [ -f "$first" ] && [ -f .m2/p ]; then
        mkdir -p "$SOV_CACHE/models" && cat "$first" .m2/p > "$model"
      fi
      DEV=NV timeout 120 python -m tools.sov run "The capital of France is" --max-tokens 24 2>&1 | tee "$OUT/llm_run.log" | tail -3
      timeout 300 python tools/bench_llm.py --device NV --tokens 64 2>&1 | tee "$OUT/bench_llm.log" | tail -8 ;;
    *) echo "unknown step $step (gpu hw bench tests debug mnist replay stash llm)" ;;
  esac
done
