#!/usr/bin/env bash
# Re-measures every row of issue 26's table (AVX-512 CPUs: encoders and prefills against
# PyTorch bf16, the q8_0 decode step against the read bandwidth and llama.cpp) in turns,
# and writes the raw output, headed by this machine's CPU flags, to one file.
#
#   benches/compare/measure_avx512.sh [OUT]        (default target/measure-avx512-DATE.txt)
#   RUNS=3                                          pairs per comparison
#   SKIP_SETUP=1                                    the venv is already there
#
# Run it on a quiet machine: ~1.5-2 hours on 2 cores, ~16 GB of memory at the peak
# (PyTorch's bf16 4B decoder beside c3's q8_0 one), ~25 GB of disk under target/
# (the two random decoders as bf16 safetensors + q8_0 GGUF, reused by later runs).
# Every step is one command of docs/performance.md; the file holds their whole output.
set -uo pipefail
cd "$(dirname "$0")/../.."
out=${1:-target/measure-avx512-$(date +%Y%m%d-%H%M).txt}
runs=${RUNS:-3}
venv=target/compare-venv
py=$venv/bin/python
mkdir -p "$(dirname "$out")"
: >"$out"
say() { echo "== $* ($(date +%H:%M:%S), load $(cut -d' ' -f1-3 /proc/loadavg))" | tee -a "$out"; }
step() {
  say "$1"
  shift
  "$@" 2>&1 | tee -a "$out" | grep -E "median|GB/s|GOP/s|GFLOP/s|pair|kernel|products|SKIPPED" || true
}

{
  echo "# issue 26 measurement, $(date -u +%Y-%m-%dT%H:%MZ)"
  echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-) (family $(grep -m1 'cpu family' /proc/cpuinfo | cut -d: -f2 | tr -d ' '), model $(grep -m1 '^model\s' /proc/cpuinfo | cut -d: -f2 | tr -d ' '))"
  echo "cores: $(nproc); memory: $(free -g | awk '/Mem:/ {print $2}') GiB"
  echo "flags: $(grep -m1 '^flags' /proc/cpuinfo | tr ' ' '\n' | grep -E '^(avx2|fma|f16c|avx512[a-z_0-9]*|amx[a-z_0-9]*)$' | sort | tr '\n' ' ')"
  echo "load at start: $(cat /proc/loadavg)"
  echo "rustc: $(rustc --version)"
  echo "openblas: $(ls /usr/lib/x86_64-linux-gnu/libopenblas.so.0 2>/dev/null || echo none)"
} | tee -a "$out"
grep -qw avx512_bf16 /proc/cpuinfo || echo "WARNING: no avx512_bf16 here: the issue's table is for such a CPU" | tee -a "$out"

if [ "${SKIP_SETUP:-0}" != 1 ]; then
  say "setup: $venv (numpy gguf safetensors llama-cpp-python torch transformers from PyPI)"
  [ -x "$py" ] || python3 -m venv "$venv"
  "$py" -m pip install -q numpy gguf safetensors llama-cpp-python torch transformers 2>&1 | tail -3 | tee -a "$out"
fi
"$py" -m pip list 2>/dev/null | grep -iE "^(torch|transformers|llama.cpp.python|gguf|numpy) " | tee -a "$out"
say "build"
cargo bench --no-run --bench limits --bench c3 --bench lclm --bench decoder_dir 2>&1 | tail -2 | tee -a "$out"

# The machine's limits, and each kernel against them in turns: the i16 / bf16 products
# on the encoders' shapes, the one-row Q8_0 / Q4_K products against a plain read.
step "limits (GEMM peak, read bandwidth, i16/bf16 products per shape, one-row products per kernel)" \
  cargo bench --bench limits

# The decode rows first: they are the issue's bandwidth goal and the quickest to take.
# Rows 5-6 against the bandwidth the bench measures at its start (the goal: >= 80%),
# with the AVX-512 one-row kernel (default here) and the AVX2 one forced.
step "row 5: C3 decode step vs the read bandwidth, AVX-512 one-row kernel" \
  env C3_BENCH_RUNS=1 cargo bench --bench c3 -- decode/q8_0
step "row 5: the same with the AVX2 one-row kernel" \
  env C3_BENCH_RUNS=1 C3_GEMV_KERNEL=avx2 cargo bench --bench c3 -- decode/q8_0
step "row 6: LCLM 4B q8_0 prefill and decode step (GB/s)" \
  env C3_BENCH_RUNS=1 cargo bench --bench lclm -- decode
# Rows 3-6: the decoders on one random checkpoint each (written once), c3 q8_0 in turns
# with PyTorch bf16 and with llama.cpp q8_0: prefill of the prompt, then 16 decode steps.
step "rows 3 and 5: C3 3B decoder, c3 q8_0 vs PyTorch bf16, prefill 1149 + decode, $runs pairs" \
  env C3_PYTHON="$py" C3_BENCH_POSITIONS=1149 benches/compare/alternate_decoder.sh "$runs" c3 torch
step "rows 3 and 5: C3 3B decoder, c3 q8_0 vs llama.cpp q8_0, $runs pairs" \
  env C3_PYTHON="$py" C3_BENCH_POSITIONS=1149 benches/compare/alternate_decoder.sh "$runs" c3 llama
step "rows 4 and 6: LCLM 4B decoder, c3 q8_0 vs PyTorch bf16, prefill 1040 + decode, $runs pairs" \
  env C3_PYTHON="$py" C3_BENCH_POSITIONS=1040 benches/compare/alternate_decoder.sh "$runs" lclm torch
step "rows 4 and 6: LCLM 4B decoder, c3 q8_0 vs llama.cpp q8_0, $runs pairs" \
  env C3_PYTHON="$py" C3_BENCH_POSITIONS=1040 benches/compare/alternate_decoder.sh "$runs" lclm llama

# Rows 1-2: the encoders against PyTorch bf16, in turns; c3 with its default (i16 VNNI)
# and with the bf16 product (to keep whichever is faster at equal accuracy).
step "row 1: C3 encoder, c3 i16 (default kernel) vs PyTorch bf16, $runs pairs" \
  env C3_PYTHON="$py" C3_ENCODER=i16 C3_TORCH_DTYPE=bf16 benches/compare/alternate.sh "$runs"
step "row 1: C3 encoder, c3 bf16 product vs PyTorch bf16, $runs pairs" \
  env C3_PYTHON="$py" C3_ENCODER=i16 C3_TORCH_DTYPE=bf16 C3_I16_KERNEL=avx512bf16 benches/compare/alternate.sh "$runs"
step "row 1: C3 encoder, c3's kernels in one process (i16 AVX2 / VNNI), raw states vs f32" \
  env C3_BENCH_RUNS="$runs" cargo bench --bench c3 -- encode/kernels
step "row 2: LCLM encoder, c3 i16 (default kernel) vs PyTorch bf16, $runs pairs" \
  env C3_PYTHON="$py" benches/compare/alternate_lclm.sh "$runs" i16 bf16
step "row 2: LCLM encoder, c3 bf16 product vs PyTorch bf16, $runs pairs" \
  env C3_PYTHON="$py" C3_I16_KERNEL=avx512bf16 benches/compare/alternate_lclm.sh "$runs" i16 bf16

step "limits again (the bandwidth at the end of the session)" cargo bench --bench limits

say "done: $out"
