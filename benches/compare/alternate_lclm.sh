#!/usr/bin/env bash
# LCLM's encoder in c3 and in PyTorch (transformers' Qwen3), one 1024-token window each in
# turn (C3_TURNS), so every pair sees the same state of a shared host.
#
#   benches/compare/alternate_lclm.sh [RUNS] [C3_KIND] [TORCH_DTYPE]
#   benches/compare/alternate_lclm.sh 3 i16 bf16     # c3's default CPU encoder vs PyTorch bf16
#   benches/compare/alternate_lclm.sh 3 f32 f32
#   C3_I16_KERNEL=avx512bf16 benches/compare/alternate_lclm.sh 3 i16 bf16   # c3's bf16 products
#   C3_PYTHON=PATH   the Python with torch and transformers (default python3)
set -euo pipefail
cd "$(dirname "$0")/../.."
runs=${1:-3}
kind=${2:-i16}
dtype=${3:-bf16}
dir=$(mktemp -d)
echo none >"$dir/turns"
bench=$(cargo bench --bench lclm --no-run 2>&1 | sed -n 's/.*Executable benches\/lclm.rs (\(.*\))/\1/p')
C3_TURNS="$dir/turns" C3_BENCH_RUNS="$runs" "$bench" --bench "lclm/encode/$kind" >"$dir/c3.log" 2>&1 &
c3_pid=$!
C3_TURNS="$dir/turns" "${C3_PYTHON:-python3}" benches/compare/pytorch_qwen3.py encoder --dtype "$dtype" \
  --runs "$runs" >"$dir/torch.log" 2>&1 &
torch_pid=$!
while [ ! -e "$dir/turns.c3.ready" ] || [ ! -e "$dir/turns.torch.ready" ]; do
  sleep 0.2
  kill -0 "$c3_pid" 2>/dev/null || { cat "$dir/c3.log"; exit 1; }
  kill -0 "$torch_pid" 2>/dev/null || { cat "$dir/torch.log"; exit 1; }
done
echo c3 >"$dir/turns"
wait "$c3_pid" "$torch_pid"
grep -h "^lclm/encode" "$dir/c3.log" || true
python3 - "$dir/c3.log" "$dir/torch.log" "$kind" "$dtype" <<'PY'
import re, statistics, sys
c3 = [float(x) for x in re.findall(r"^encode run \d+: ([0-9.]+) s", open(sys.argv[1]).read(), re.M)]
pt = [float(x) for x in re.findall(r"^encoder run \d+: ([0-9.]+) s", open(sys.argv[2]).read(), re.M)]
r = [a / b for a, b in zip(c3, pt)]
for i, (a, b) in enumerate(zip(c3, pt)):
    print(f"run {i}: c3 ({sys.argv[3]}) {a:.2f} s, pytorch {sys.argv[4]} {b:.2f} s, c3/pytorch {a / b:.3f}")
print(f"c3/pytorch per pair: median {statistics.median(r):.3f}, range {min(r):.3f}-{max(r):.3f}")
PY
rm -rf "$dir"
