#!/usr/bin/env bash
# c3's encoder and PyTorch's, one chunk each in turn, on a shared (noisy) host.
#
#   benches/compare/alternate.sh [RUNS] [extra env for c3, e.g. C3_BLAS=off]
#   C3_ENCODER=i16 benches/compare/alternate.sh [RUNS]   # c3's i16 encoder (encode/i16)
#   C3_TORCH_DTYPE=f32|bf16 ...   # PyTorch's dtype; default: its best CPU path here,
#                                 # bf16 where the CPU has avx512_bf16, else f32
#
# Both build their random release-geometry encoder first (~30 s each, ~13 GB
# together); then c3 encodes, then PyTorch, then c3 ... RUNS times each, so
# every pair of runs sees the same state of the machine. Prints each run and
# the c3 / PyTorch ratio of every consecutive pair. Needs torch and
# transformers (benches/compare/README.md).
set -euo pipefail
cd "$(dirname "$0")/../.."
runs=${1:-5}
shift || true
case $runs in
  '' | *[!0-9]* | 0) echo "alternate.sh: RUNS must be a positive whole number, not '$runs'" >&2; exit 2 ;;
esac
encoder=${C3_ENCODER:-f32}
case $encoder in
  f32 | i16) ;;
  *) echo "alternate.sh: C3_ENCODER must be f32 or i16, not '$encoder'" >&2; exit 2 ;;
esac
torch_dtype=${C3_TORCH_DTYPE:-auto}
if [ "$torch_dtype" = auto ]; then
  if grep -qw avx512_bf16 /proc/cpuinfo 2>/dev/null; then torch_dtype=bf16; else torch_dtype=f32; fi
fi
case $torch_dtype in
  f32 | bf16) ;;
  *) echo "alternate.sh: C3_TORCH_DTYPE must be auto, f32 or bf16, not '$torch_dtype'" >&2; exit 2 ;;
esac
python=${C3_PYTHON:-python3}
echo "c3 encoder: $encoder; PyTorch encoder: $torch_dtype"
dir=$(mktemp -d)
turns=$dir/turns
echo none >"$turns"
bench=$(cargo bench --bench c3 --no-run 2>&1 | sed -n 's/.*Executable benches\/c3.rs (\(.*\))/\1/p')
# No limits measurement: it would run while PyTorch builds its model.
env C3_TURNS="$turns" C3_BENCH_RUNS="$runs" C3_GEMM_PEAK=NaN C3_READ_GBS=NaN "$@" \
  "$bench" --bench "encode/$encoder" >"$dir/c3.log" 2>&1 &
c3_pid=$!
C3_TURNS="$turns" "$python" benches/compare/pytorch_qwen2.py encoder --dtype "$torch_dtype" --runs "$runs" \
  >"$dir/torch.log" 2>&1 &
torch_pid=$!
while [ ! -e "$turns.c3.ready" ] || [ ! -e "$turns.torch.ready" ]; do
  sleep 0.2
  kill -0 "$c3_pid" 2>/dev/null || { cat "$dir/c3.log"; exit 1; }
  kill -0 "$torch_pid" 2>/dev/null || { cat "$dir/torch.log"; exit 1; }
done
echo c3 >"$turns"
wait "$c3_pid" "$torch_pid"
grep -E "^dense|^i16 kernel|^encode i16 raw" "$dir/c3.log" || true
python3 - "$dir/c3.log" "$dir/torch.log" "$encoder" "$torch_dtype" <<'PY'
import re, statistics, sys
c3 = [float(x) for x in re.findall(r"^encode run \d+: ([0-9.]+) s", open(sys.argv[1]).read(), re.M)]
pt = [float(x) for x in re.findall(r"^encoder run \d+: ([0-9.]+) s", open(sys.argv[2]).read(), re.M)]
ratios = []
for i, (a, b) in enumerate(zip(c3, pt)):
    ratios.append(a / b)
    print(f"run {i}: c3 ({sys.argv[3]}) {a:.2f} s, pytorch {sys.argv[4]} {b:.2f} s, c3/pytorch {a / b:.3f}")
print(f"c3 median {statistics.median(c3):.2f} s (min {min(c3):.2f}), pytorch {sys.argv[4]} median "
      f"{statistics.median(pt):.2f} s (min {min(pt):.2f}); c3/pytorch per pair: median "
      f"{statistics.median(ratios):.3f}, range {min(ratios):.3f}-{max(ratios):.3f}")
PY
rm -rf "$dir"
