#!/usr/bin/env bash
# c3 and llama.cpp on the same random release-geometry decoder, q8_0, in turns: each
# run is one prefill of the prompt then greedy decode steps, c3 first, then llama.cpp,
# then c3 ... so every pair sees the same state of a shared host.
#
#   benches/compare/alternate_llama.sh [RUNS] [c3|lclm]
#   C3_PYTHON=PATH     the Python with numpy, gguf and llama-cpp-python
#                      (default target/compare-venv/bin/python; benches/compare/README.md)
#   C3_LLAMA_DIR=DIR   where the decoder is written once and reused
#                      (default target/llama-side-FAMILY; 6-8 GB bf16 + 3-4 GB GGUF)
#   C3_BENCH_POSITIONS, C3_BENCH_STEPS   prompt length (default 1149; LCLM's table
#                      row uses 1040) and decode steps per run (default 16)
#   C3_LLAMA_TINY=1    a 2-layer, 256-wide decoder: a smoke test of the whole path
set -euo pipefail
cd "$(dirname "$0")/../.."
runs=${1:-3}
family=${2:-c3}
case $runs in '' | *[!0-9]* | 0) echo "alternate_llama.sh: RUNS must be a positive whole number" >&2; exit 2 ;; esac
case $family in c3 | lclm) ;; *) echo "alternate_llama.sh: FAMILY must be c3 or lclm" >&2; exit 2 ;; esac
python=${C3_PYTHON:-target/compare-venv/bin/python}
tiny=${C3_LLAMA_TINY:-0}
suffix=$([ "$tiny" = 1 ] && echo -tiny || true)
wdir=${C3_LLAMA_DIR:-target/llama-side-$family$suffix}
positions=${C3_BENCH_POSITIONS:-1149}
steps=${C3_BENCH_STEPS:-16}
if [ ! -s "$wdir/model-q8_0.gguf" ]; then
  "$python" benches/compare/llama_cpp.py write "$wdir" --family "$family" $([ "$tiny" = 1 ] && echo --tiny)
fi
dir=$(mktemp -d)
turns=$dir/turns
echo none >"$turns"
bench=$(cargo bench --bench decoder_dir --no-run 2>&1 | sed -n 's/.*Executable benches\/decoder_dir.rs (\(.*\))/\1/p')
env C3_TURNS="$turns" C3_BENCH_WEIGHTS="$wdir" C3_BENCH_RUNS="$runs" C3_BENCH_POSITIONS="$positions" \
  C3_BENCH_STEPS="$steps" "$bench" --bench >"$dir/c3.log" 2>&1 &
c3_pid=$!
C3_TURNS="$turns" "$python" benches/compare/llama_cpp.py run "$wdir" --runs "$runs" \
  --positions "$positions" --steps "$steps" >"$dir/llama.log" 2>&1 &
llama_pid=$!
while [ ! -e "$turns.c3.ready" ] || [ ! -e "$turns.torch.ready" ]; do
  sleep 0.2
  kill -0 "$c3_pid" 2>/dev/null || { cat "$dir/c3.log"; kill "$llama_pid" 2>/dev/null; exit 1; }
  kill -0 "$llama_pid" 2>/dev/null || { cat "$dir/llama.log"; kill "$c3_pid" 2>/dev/null; exit 1; }
done
echo c3 >"$turns"
wait "$c3_pid" "$llama_pid"
grep -E "^c3 q8_0 decoder from|^llama.cpp \(" "$dir/c3.log" "$dir/llama.log" -h || true
python3 - "$dir/c3.log" "$dir/llama.log" "$family" <<'PY'
import re, statistics, sys
pat = r"^{} run \d+: prefill \d+ positions ([0-9.]+) s, decode step median ([0-9.]+) ms"
c3 = re.findall(pat.format("c3"), open(sys.argv[1]).read(), re.M)
ll = re.findall(pat.format("llama.cpp"), open(sys.argv[2]).read(), re.M)
pr, dr = [], []
for i, ((cp, cd), (lp, ld)) in enumerate(zip(c3, ll)):
    cp, cd, lp, ld = map(float, (cp, cd, lp, ld))
    pr.append(cp / lp)
    dr.append(cd / ld)
    print(f"pair {i}: prefill c3 {cp:.2f} s, llama.cpp {lp:.2f} s, c3/llama.cpp {cp / lp:.3f}; "
          f"decode step c3 {cd:.1f} ms, llama.cpp {ld:.1f} ms, c3/llama.cpp {cd / ld:.3f}")
print(f"{sys.argv[3]} q8_0, c3/llama.cpp per pair: prefill median {statistics.median(pr):.3f} "
      f"(range {min(pr):.3f}-{max(pr):.3f}); decode step median {statistics.median(dr):.3f} "
      f"(range {min(dr):.3f}-{max(dr):.3f})")
PY
grep -h -E "^c3 q8_0: |^llama.cpp q8_0: " "$dir/c3.log" "$dir/llama.log"
rm -rf "$dir"
