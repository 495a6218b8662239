#!/usr/bin/env bash
# c3 (q8_0) and llama.cpp (q8_0) or PyTorch (bf16) on the same random release-geometry
# decoder, in turns: each run is one prefill of the prompt then greedy decode steps, c3
# first, then the other, then c3 ... so every pair sees the same state of a shared host.
#
#   benches/compare/alternate_decoder.sh [RUNS] [c3|lclm] [llama|torch]
#   C3_PYTHON=PATH     the Python with numpy, gguf, llama-cpp-python, torch, transformers
#                      (default target/compare-venv/bin/python; benches/compare/README.md)
#   C3_TORCH_DTYPE     PyTorch's dtype, bf16 (default) or f32
#   C3_DECODER_DIR=DIR   where the decoder is written once and reused
#                      (default target/decoder-side-FAMILY; 6-8 GB bf16 + 3-4 GB GGUF)
#   C3_BENCH_POSITIONS, C3_BENCH_STEPS   prompt length (default 1149; LCLM's table
#                      row uses 1040) and decode steps per run (default 16)
#   C3_DECODER_TINY=1    a 2-layer, 256-wide decoder: a smoke test of the whole path
set -euo pipefail
cd "$(dirname "$0")/../.."
runs=${1:-3}
family=${2:-c3}
engine=${3:-llama}
case $engine in llama | torch) ;; *) echo "alternate_decoder.sh: ENGINE must be llama or torch" >&2; exit 2 ;; esac
name=$([ "$engine" = llama ] && echo llama.cpp || echo pytorch)
case $runs in '' | *[!0-9]* | 0) echo "alternate_decoder.sh: RUNS must be a positive whole number" >&2; exit 2 ;; esac
case $family in c3 | lclm) ;; *) echo "alternate_decoder.sh: FAMILY must be c3 or lclm" >&2; exit 2 ;; esac
python=${C3_PYTHON:-target/compare-venv/bin/python}
tiny=${C3_DECODER_TINY:-0}
suffix=$([ "$tiny" = 1 ] && echo -tiny || true)
wdir=${C3_DECODER_DIR:-target/decoder-side-$family$suffix}
positions=${C3_BENCH_POSITIONS:-1149}
steps=${C3_BENCH_STEPS:-16}
if [ ! -s "$wdir/model-q8_0.gguf" ]; then
  "$python" benches/compare/decoder_side.py write "$wdir" --family "$family" $([ "$tiny" = 1 ] && echo --tiny)
fi
dir=$(mktemp -d)
turns=$dir/turns
echo none >"$turns"
bench=$(cargo bench --bench decoder_dir --no-run 2>&1 | sed -n 's/.*Executable benches\/decoder_dir.rs (\(.*\))/\1/p')
env C3_TURNS="$turns" C3_BENCH_WEIGHTS="$wdir" C3_BENCH_RUNS="$runs" C3_BENCH_POSITIONS="$positions" \
  C3_BENCH_STEPS="$steps" "$bench" --bench >"$dir/c3.log" 2>&1 &
c3_pid=$!
C3_TURNS="$turns" "$python" benches/compare/decoder_side.py run "$wdir" --engine "$engine" \
  --dtype "${C3_TORCH_DTYPE:-bf16}" --runs "$runs" --positions "$positions" --steps "$steps" \
  >"$dir/other.log" 2>&1 &
other_pid=$!
while [ ! -e "$turns.c3.ready" ] || [ ! -e "$turns.torch.ready" ]; do
  sleep 0.2
  kill -0 "$c3_pid" 2>/dev/null || { cat "$dir/c3.log"; kill "$other_pid" 2>/dev/null; exit 1; }
  kill -0 "$other_pid" 2>/dev/null || { cat "$dir/other.log"; kill "$c3_pid" 2>/dev/null; exit 1; }
done
echo c3 >"$turns"
wait "$c3_pid" "$other_pid"
grep -h -E "^c3 q8_0 decoder from|engine: " "$dir/c3.log" "$dir/other.log" || true
python3 - "$dir/c3.log" "$dir/other.log" "$family" "$name" <<'PY'
import re, statistics, sys
pat = r"^{} run \d+: prefill \d+ positions ([0-9.]+) s, decode step median ([0-9.]+) ms"
c3 = re.findall(pat.format("c3"), open(sys.argv[1]).read(), re.M)
ll = re.findall(pat.format(re.escape(sys.argv[4])), open(sys.argv[2]).read(), re.M)
other = sys.argv[4]
pr, dr = [], []
for i, ((cp, cd), (lp, ld)) in enumerate(zip(c3, ll)):
    cp, cd, lp, ld = map(float, (cp, cd, lp, ld))
    pr.append(cp / lp)
    dr.append(cd / ld)
    print(f"pair {i}: prefill c3 {cp:.3f} s, {other} {lp:.3f} s, c3/{other} {cp / lp:.3f}; "
          f"decode step c3 {cd:.1f} ms, {other} {ld:.1f} ms, c3/{other} {cd / ld:.3f}")
print(f"{sys.argv[3]}: c3 q8_0 / {other} per pair: prefill median {statistics.median(pr):.3f} "
      f"(range {min(pr):.3f}-{max(pr):.3f}); decode step median {statistics.median(dr):.3f} "
      f"(range {min(dr):.3f}-{max(dr):.3f})")
PY
grep -h -E "^c3 q8_0: |^$name: " "$dir/c3.log" "$dir/other.log"
rm -rf "$dir"
