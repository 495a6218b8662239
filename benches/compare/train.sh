#!/usr/bin/env bash
# `c3 train` against benches/compare/pytorch_train.py (transformers' Qwen2,
# the same recipe), CPU f32, on the same ids, labels and weights.
#
#   benches/compare/train.sh speed tiny 5 20   # 5 rounds in turns, 20 steps each
#   benches/compare/train.sh speed mid 3 10    # 4 layers, hidden 512 on both sides
#   benches/compare/train.sh learn 500 50      # golden/c3-tiny, 500 steps, eval every 50
#
# speed: a random checkpoint of the geometry and 64 reconstruction records
# of 256-token chunks; prints each round's steps/s and peak RSS of both and
# their ratio (training loop only, model loading excluded).
# learn: reconstruction of 64-token chunks of one book, teacher-forced token
# accuracy on 64 held-out chunks of the other every N steps, both curves.
# Run on a quiet machine; PYTHON names an interpreter with torch,
# transformers and safetensors (default python3).
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-python3}
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
cargo build --release --bin c3 >&2
C3=target/release/c3
bench() { cargo bench --bench train -- "$@" >&2; }
BOOK_A=tests/fixtures/corpus/alice-in-wonderland.txt
BOOK_B=tests/fixtures/corpus/pride-and-prejudice.txt

case "${1:-}" in
speed)
    G=${2:-tiny}; ROUNDS=${3:-3}; STEPS=${4:-20}
    bench model --geometry "$G" --out "$W/model"
    bench records --text "$BOOK_A" --chunk-tokens 256 --limit 64 --out "$W/r.jsonl" --ids "$W/r.ids.jsonl"
    for i in $(seq "$ROUNDS"); do
        rm -rf "$W/out"
        $C3 --model "$W/model" train --data "$W/r.jsonl" --out "$W/out" --steps "$STEPS" \
            --micro-batch 2 --grad-accum 1 --lr 1e-4 --order file --save-every 0 --json \
            | tail -1 > "$W/c3.json"
        $PY benches/compare/pytorch_train.py --model "$W/model" --data "$W/r.ids.jsonl" \
            --steps "$STEPS" --micro-batch 2 --grad-accum 1 --lr 1e-4 --threads "$(nproc)" \
            | tail -1 > "$W/pt.json"
        python3 - "$W/c3.json" "$W/pt.json" "$G" "$i" <<'PY'
import json, sys
c, p = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
cs, ps = c["steps"] / c["seconds"], p["steps_per_s"]
g = 2 ** 30
print(f"{sys.argv[3]} round {sys.argv[4]}: c3 {cs:.3f} steps/s, peak {c['peak_rss_bytes'] / g:.2f} GiB | "
      f"pytorch {ps:.3f} steps/s, peak {p['peak_rss_bytes'] / g:.2f} GiB | speed ratio {cs / ps:.2f}")
PY
    done
    ;;
learn)
    STEPS=${2:-500}; EVERY=${3:-50}
    M=tests/fixtures/golden/c3-tiny
    bench records --text "$BOOK_A" --chunk-tokens 64 --out "$W/a.jsonl" --ids "$W/a.ids.jsonl"
    bench records --text "$BOOK_B" --chunk-tokens 64 --limit 64 --out "$W/b.jsonl" --ids "$W/b.ids.jsonl"
    $C3 --model "$M" train --data "$W/a.jsonl" --eval-data "$W/b.jsonl" --eval-every "$EVERY" \
        --out "$W/out" --steps "$STEPS" --micro-batch 2 --grad-accum 1 --lr 1e-3 --order file \
        --save-every 0 --json | grep '"event":"eval"' > "$W/c3.evals"
    $PY benches/compare/pytorch_train.py --model "$M" --data "$W/a.ids.jsonl" --eval "$W/b.ids.jsonl" \
        --eval-every "$EVERY" --steps "$STEPS" --micro-batch 2 --grad-accum 1 --lr 1e-3 \
        --threads "$(nproc)" | grep '"event": "eval"' > "$W/pt.evals"
    python3 - "$W/c3.evals" "$W/pt.evals" <<'PY'
import json, sys
c = [json.loads(l) for l in open(sys.argv[1])]
p = [json.loads(l) for l in open(sys.argv[2])]
print("| step | c3 accuracy | PyTorch accuracy | c3 loss | PyTorch loss |")
print("|---|---|---|---|---|")
for a, b in zip(c, p):
    print(f"| {a['step']} | {a['accuracy']:.4f} | {b['accuracy']:.4f} | {a['loss']:.4f} | {b['loss']:.4f} |")
PY
    ;;
*)
    sed -n '2,19p' "$0"
    exit 2
    ;;
esac
