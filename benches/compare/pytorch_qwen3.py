#!/usr/bin/env python3
"""LCLM's two stacks at the release geometry in PyTorch + transformers' Qwen3
(random weights, same thread count), for the c3 / PyTorch ratios of docs/performance.md
beside `cargo bench --bench lclm`. Optional, not in CI (needs torch and a
transformers with Qwen3: `pip install torch transformers`).

  python3 benches/compare/pytorch_qwen3.py encoder --dtype f32
  python3 benches/compare/pytorch_qwen3.py decoder --dtype bf16 --steps 8

encoder: one 1024-token window through Qwen3-0.6B (final norm included),
like `lclm/encode`. decoder: prefill of a 1040-position prompt through
Qwen3-4B (151672-row tied output matrix), then greedy decode steps with the
KV cache, like `lclm/decode/q8_0`. With C3_TURNS set the encoder runs take
turns with c3's (see benches/compare/alternate.sh).
"""
import argparse
import os
import statistics
import time

import torch
from transformers import Qwen3Config, Qwen3ForCausalLM, Qwen3Model


def config(which):
    if which == "encoder":  # Qwen3-Embedding-0.6B
        h, i, layers, heads, kv, vocab, theta, maxpos = 1024, 3072, 28, 16, 8, 151669, 1e6, 32768
    else:  # Qwen3-4B-Instruct-2507 + 3 memory tokens
        h, i, layers, heads, kv, vocab, theta, maxpos = 2560, 9728, 36, 32, 8, 151672, 5e6, 262144
    return Qwen3Config(
        vocab_size=vocab,
        hidden_size=h,
        intermediate_size=i,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv,
        head_dim=128,
        max_position_embeddings=maxpos,
        rms_norm_eps=1e-6,
        rope_theta=theta,
        tie_word_embeddings=True,
        attention_bias=False,
        attn_implementation="sdpa",
    )


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("part", choices=["encoder", "decoder"])
    ap.add_argument("--dtype", choices=["f32", "bf16"], default="f32")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    dtype = torch.bfloat16 if a.dtype == "bf16" else torch.float32
    torch.set_default_dtype(dtype)
    cfg = config(a.part)
    t0 = time.time()
    model = (Qwen3Model if a.part == "encoder" else Qwen3ForCausalLM)(cfg).eval()
    print(f"built random {a.part} ({a.dtype}) in {time.time() - t0:.1f} s, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads", flush=True)
    with torch.inference_mode():
        if a.part == "encoder":
            x = torch.randn(1, 1024, cfg.hidden_size, dtype=dtype) * 0.02
            turns = os.environ.get("C3_TURNS")
            if turns:
                open(turns + ".torch.ready", "w").close()
            times = []
            for r in range(a.runs):
                while turns and open(turns).read().strip() != "torch":
                    time.sleep(0.05)
                t = time.time()
                model(inputs_embeds=x)
                times.append(time.time() - t)
                if turns:
                    with open(turns, "w") as f:
                        f.write("c3")
                print(f"encoder run {r}: {times[-1]:.2f} s", flush=True)
            print(f"pytorch qwen3 encoder {a.dtype}: one 1024-token window: "
                  f"{statistics.median(times):.2f} s median (min {min(times):.2f})")
        else:
            n = 1040
            x = torch.randn(1, n, cfg.hidden_size, dtype=dtype) * 0.02
            t = time.time()
            out = model(inputs_embeds=x, use_cache=True)
            print(f"pytorch qwen3 decoder {a.dtype}: prefill {n} positions: {time.time() - t:.2f} s")
            past = out.past_key_values
            tok = out.logits[:, -1].argmax(-1, keepdim=True)
            times = []
            for _ in range(a.steps):
                t = time.time()
                out = model(input_ids=tok, past_key_values=past, use_cache=True)
                past = out.past_key_values
                tok = out.logits[:, -1].argmax(-1, keepdim=True)
                times.append(time.time() - t)
            print(f"pytorch qwen3 decoder {a.dtype}: decode step after {n} positions: "
                  f"{1e3 * statistics.median(times):.0f} ms/token median (min {1e3 * min(times):.0f})")


if __name__ == "__main__":
    main()
