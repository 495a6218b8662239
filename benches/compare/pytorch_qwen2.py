#!/usr/bin/env python3
"""The same geometry as c3's benchmarks, run by PyTorch + transformers' Qwen2
on CPU (same thread count) or a GPU (`--device cuda`) with random weights,
for the c3 / PyTorch ratios of docs/performance.md. Optional, not in CI (needs
torch and transformers: `pip install torch transformers`).

  python3 benches/compare/pytorch_qwen2.py encoder --dtype bf16
  python3 benches/compare/pytorch_qwen2.py decoder --dtype bf16 --steps 8

encoder: one 1000-token chunk + 34 frame/query positions through Qwen2.5-1.5B
(final norm included), like `cargo bench --bench c3 -- encode`; `--batch N`
runs N such chunks in one forward (like `encode/batch`).
decoder: prefill of the 32-chunk prompt (1149 positions) through Qwen2.5-3B
with the 151860-row output matrix, then greedy decode steps with the KV cache,
like `cargo bench --bench c3 -- decode`.
"""
import argparse
import os
import statistics
import time

import torch
from transformers import Qwen2Config, Qwen2ForCausalLM, Qwen2Model


def config(which):
    if which == "encoder":  # Qwen2.5-1.5B
        h, i, layers, heads, vocab = 1536, 8960, 28, 12, 151936
    else:  # Qwen2.5-3B with the C3 vocabulary
        h, i, layers, heads, vocab = 2048, 11008, 36, 16, 151860
    return Qwen2Config(
        vocab_size=vocab,
        hidden_size=h,
        intermediate_size=i,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=2,
        max_position_embeddings=32768,
        rms_norm_eps=1e-6,
        rope_theta=1e6,
        tie_word_embeddings=True,
        attn_implementation="sdpa",
    )


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("part", choices=["encoder", "decoder"])
    ap.add_argument("--dtype", choices=["f32", "bf16"], default="bf16")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--batch", type=int, default=1, help="encoder: chunks per forward")
    a = ap.parse_args()
    dev = torch.device(a.device)

    def sync():
        if a.device == "cuda":
            torch.cuda.synchronize()

    torch.set_num_threads(a.threads)
    dtype = torch.bfloat16 if a.dtype == "bf16" else torch.float32
    torch.set_default_dtype(dtype)  # random init directly in the target dtype
    cfg = config(a.part)
    t0 = time.time()
    with dev:  # random init directly on the device
        model = (Qwen2Model if a.part == "encoder" else Qwen2ForCausalLM)(cfg).eval()
    print(f"built random {a.part} ({a.dtype}) on {a.device} in {time.time() - t0:.1f} s, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    with torch.inference_mode():
        if a.part == "encoder":
            x = torch.randn(a.batch, 1034, cfg.hidden_size, dtype=dtype, device=dev) * 0.02
            times = []
            turns = os.environ.get("C3_TURNS")  # see benches/compare/alternate.sh
            if turns:
                open(turns + ".torch.ready", "w").close()
            for r in range(a.runs):
                while turns and open(turns).read().strip() != "torch":
                    time.sleep(0.05)
                t = time.time()
                model(inputs_embeds=x)
                sync()
                times.append(time.time() - t)
                if turns:
                    with open(turns, "w") as f:
                        f.write("c3")
                print(f"encoder run {r}: {times[-1]:.2f} s", flush=True)
            med = statistics.median(times)
            print(f"pytorch encoder {a.dtype} on {a.device}: {a.batch} x 1034 positions: "
                  f"{med:.4f} s median (min {min(times):.4f}), {med / a.batch:.4f} s/chunk")
        else:
            n = 1149
            x = torch.randn(1, n, cfg.hidden_size, dtype=dtype, device=dev) * 0.02
            t = time.time()
            out = model(inputs_embeds=x, use_cache=True)
            sync()
            print(f"pytorch decoder {a.dtype} on {a.device}: prefill {n} positions: {time.time() - t:.2f} s")
            past = out.past_key_values
            tok = out.logits[:, -1].argmax(-1, keepdim=True)
            times = []
            for _ in range(a.steps):
                t = time.time()
                out = model(input_ids=tok, past_key_values=past, use_cache=True)
                past = out.past_key_values
                tok = out.logits[:, -1].argmax(-1, keepdim=True)
                sync()
                times.append(time.time() - t)
            print(f"pytorch decoder {a.dtype} on {a.device}: decode step after {n} positions: "
                  f"{1e3 * statistics.median(times):.0f} ms/token median "
                  f"(min {1e3 * min(times):.0f})")


if __name__ == "__main__":
    main()
