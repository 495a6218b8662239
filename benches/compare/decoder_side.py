#!/usr/bin/env python3
"""llama.cpp and PyTorch beside c3 on the same random decoder (optional, not in CI).

  write DIR --family c3|lclm   random release-geometry decoder: DIR/config.json +
                               DIR/model.safetensors (bf16, what c3 loads and quantizes
                               to q8_0 at load) and DIR/model-q8_0.gguf (the same bf16
                               values in GGML Q8_0, what llama.cpp loads)
  run DIR [--engine llama|torch]
                               llama.cpp on the GGUF (q8_0), or PyTorch + transformers on
                               the safetensors (--dtype bf16 or f32): prefill of
                               --positions token ids, then --steps greedy decode steps,
                               --runs times (in turns with c3 when C3_TURNS is set:
                               benches/compare/alternate_decoder.sh)

Needs numpy and gguf (write), llama-cpp-python (llama) or torch + transformers (torch),
from the Python package registry into a venv: benches/compare/README.md. Both quantize the same bf16 values
with the GGML Q8_0 rule (scale amax/127 in f16, values rounded to nearest); they can
differ only where a value sits exactly half-way between two steps.
"""
import argparse
import json
import os
import statistics
import struct
import sys
import time

import numpy as np


def geometry(family, tiny):
    """(config.json dict, GGUF architecture) of the release decoder (random weights)."""
    if family == "c3":  # Qwen2.5-3B with the C3 vocabulary
        cfg = dict(model_type="qwen2", vocab_size=151860, hidden_size=2048,
                   intermediate_size=11008, num_hidden_layers=36, num_attention_heads=16,
                   num_key_value_heads=2, rope_theta=1e6, max_position_embeddings=32768)
    else:  # LCLM: Qwen3-4B with the 3 memory tokens
        cfg = dict(model_type="qwen3", vocab_size=151672, hidden_size=2560,
                   intermediate_size=9728, num_hidden_layers=36, num_attention_heads=32,
                   num_key_value_heads=8, head_dim=128, attention_bias=False,
                   rope_theta=5e6, max_position_embeddings=262144)
    if tiny:  # smoke test of the whole path in seconds
        cfg.update(vocab_size=1024, hidden_size=256, intermediate_size=512,
                   num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2)
        if family == "lclm":
            cfg["head_dim"] = 64
    cfg.update(rms_norm_eps=1e-6, tie_word_embeddings=True, hidden_act="silu",
               use_sliding_window=False, rope_scaling=None)
    return cfg, cfg["model_type"]


def tensors(cfg):
    """(checkpoint name, GGUF name, shape, quantized?) of every tensor, in write order."""
    h, i = cfg["hidden_size"], cfg["intermediate_size"]
    hd = cfg.get("head_dim") or h // cfg["num_attention_heads"]
    q, kv = cfg["num_attention_heads"] * hd, cfg["num_key_value_heads"] * hd
    qwen3 = cfg["model_type"] == "qwen3"
    out = [("model.embed_tokens.weight", "token_embd.weight", (cfg["vocab_size"], h), True),
           ("model.norm.weight", "output_norm.weight", (h,), False)]
    for l in range(cfg["num_hidden_layers"]):
        p, b = f"model.layers.{l}", f"blk.{l}"
        out += [(f"{p}.input_layernorm.weight", f"{b}.attn_norm.weight", (h,), False),
                (f"{p}.self_attn.q_proj.weight", f"{b}.attn_q.weight", (q, h), True),
                (f"{p}.self_attn.k_proj.weight", f"{b}.attn_k.weight", (kv, h), True),
                (f"{p}.self_attn.v_proj.weight", f"{b}.attn_v.weight", (kv, h), True)]
        if not qwen3:
            out += [(f"{p}.self_attn.{x}_proj.bias", f"{b}.attn_{x}.bias", (n,), False)
                    for x, n in (("q", q), ("k", kv), ("v", kv))]
        else:
            out += [(f"{p}.self_attn.q_norm.weight", f"{b}.attn_q_norm.weight", (hd,), False),
                    (f"{p}.self_attn.k_norm.weight", f"{b}.attn_k_norm.weight", (hd,), False)]
        out += [(f"{p}.self_attn.o_proj.weight", f"{b}.attn_output.weight", (h, q), True),
                (f"{p}.post_attention_layernorm.weight", f"{b}.ffn_norm.weight", (h,), False),
                (f"{p}.mlp.gate_proj.weight", f"{b}.ffn_gate.weight", (i, h), True),
                (f"{p}.mlp.up_proj.weight", f"{b}.ffn_up.weight", (i, h), True),
                (f"{p}.mlp.down_proj.weight", f"{b}.ffn_down.weight", (h, i), True)]
    return out


def values(index, name, shape):
    """bf16 bits (uint16) of a tensor: uniform(-0.02, 0.02) like c3's random models
    (src/model/synthetic.rs), ones for norms."""
    if name.endswith("norm.weight") or "layernorm" in name:
        f = np.ones(shape, np.float32)
    else:
        f = np.random.default_rng(1000 + index).uniform(-0.02, 0.02, shape).astype(np.float32)
    bits = f.view(np.uint32)
    # Round to nearest even into the top 16 bits (bf16).
    return ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)


def write(a):
    import gguf

    cfg, arch = geometry(a.family, a.tiny)
    os.makedirs(a.dir, exist_ok=True)
    with open(os.path.join(a.dir, "config.json"), "w") as f:
        json.dump(cfg, f, indent=1)
    ts = tensors(cfg)
    # safetensors header: every offset is known from the shapes.
    header, off = {}, 0
    for name, _, shape, _ in ts:
        n = int(np.prod(shape)) * 2
        header[name] = {"dtype": "BF16", "shape": list(shape), "data_offsets": [off, off + n]}
        off += n
    hj = json.dumps(header).encode()
    hj += b" " * (-len(hj) % 8)
    st = open(os.path.join(a.dir, "model.safetensors"), "wb")
    st.write(struct.pack("<Q", len(hj)) + hj)

    w = gguf.GGUFWriter(os.path.join(a.dir, "model-q8_0.gguf"), arch)
    h, heads = cfg["hidden_size"], cfg["num_attention_heads"]
    hd = cfg.get("head_dim") or h // heads
    w.add_context_length(cfg["max_position_embeddings"])
    w.add_embedding_length(h)
    w.add_feed_forward_length(cfg["intermediate_size"])
    w.add_block_count(cfg["num_hidden_layers"])
    w.add_head_count(heads)
    w.add_head_count_kv(cfg["num_key_value_heads"])
    w.add_key_length(hd)
    w.add_value_length(hd)
    w.add_layer_norm_rms_eps(cfg["rms_norm_eps"])
    w.add_rope_freq_base(cfg["rope_theta"])
    w.add_file_type(gguf.LlamaFileType.MOSTLY_Q8_0)
    # A vocabulary llama.cpp accepts: the 256 byte-level tokens first (so any text
    # tokenizes), then placeholders. The runs feed token ids; no text is tokenized.
    byte_chars = [chr(c) for c in list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))]
    byte_chars += [chr(256 + n) for n in range(256 - len(byte_chars))]
    toks = byte_chars + [f"<t{n}>" for n in range(cfg["vocab_size"] - 256)]
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("qwen2")
    w.add_token_list(toks)
    w.add_token_types([gguf.TokenType.NORMAL] * len(toks))
    w.add_token_merges([f"{byte_chars[0]} {byte_chars[1]}"])
    w.add_eos_token_id(cfg["vocab_size"] - 1)
    w.add_bos_token_id(cfg["vocab_size"] - 1)
    q8 = gguf.GGMLQuantizationType.Q8_0
    for _, gname, shape, quant in ts:
        if quant:
            nbytes = shape[0] * shape[1] // 32 * 34
            w.add_tensor_info(gname, (shape[0], shape[1] // 32 * 34), np.dtype(np.uint8), nbytes, raw_dtype=q8)
        else:
            w.add_tensor_info(gname, shape, np.dtype(np.float32), int(np.prod(shape)) * 4)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    t0 = time.time()
    for index, (name, gname, shape, quant) in enumerate(ts):
        bits = values(index, name, shape)
        st.write(bits.tobytes())
        f32 = (bits.astype(np.uint32) << 16).view(np.float32)
        w.write_tensor_data(gguf.quants.quantize(f32, q8) if quant else f32)
        if index % 20 == 0:
            print(f"{index + 1}/{len(ts)} tensors, {time.time() - t0:.0f} s", flush=True)
    st.close()
    w.close()
    print(f"wrote {a.dir}: config.json, model.safetensors (bf16), model-q8_0.gguf ({arch})")


class LlamaCpp:
    """llama.cpp on the q8_0 GGUF."""

    def __init__(self, a, n_ctx):
        import llama_cpp

        self.llm = llama_cpp.Llama(model_path=os.path.join(a.dir, "model-q8_0.gguf"), n_ctx=n_ctx,
                                   n_threads=a.threads, n_threads_batch=a.threads, n_batch=a.batch,
                                   n_ubatch=a.batch, verbose=False)
        self.label = (f"llama.cpp (llama-cpp-python {llama_cpp.__version__}) q8_0, {a.threads} "
                      f"threads, batch {a.batch}: "
                      f"{llama_cpp.llama_print_system_info().decode().strip()}")

    def reset(self):
        self.llm.reset()

    def eval(self, ids):
        self.llm.eval(ids)

    def next_token(self):
        # llama-cpp-python 0.3.x fills `scores` only with logits_all=True; without it
        # the context still holds the last token's logits.
        last = self.llm._ctx.get_logits_ith(-1)
        return int(np.argmax(np.ctypeslib.as_array(last, shape=(self.llm.n_vocab(),))))


class Torch:
    """transformers' Qwen2 / Qwen3 on the safetensors, with LlamaCpp's calls."""

    def __init__(self, a):
        import torch
        import transformers

        torch.set_num_threads(a.threads)
        self.torch = torch
        dtype = torch.bfloat16 if a.dtype == "bf16" else torch.float32
        qwen3 = json.load(open(os.path.join(a.dir, "config.json")))["model_type"] == "qwen3"
        cls = transformers.Qwen3ForCausalLM if qwen3 else transformers.Qwen2ForCausalLM
        self.model = cls.from_pretrained(a.dir, torch_dtype=dtype, attn_implementation="sdpa").eval()
        self.label = (f"PyTorch {torch.__version__} + transformers {transformers.__version__} "
                      f"{a.dtype}, {torch.get_num_threads()} threads")
        self.reset()

    def reset(self):
        self.past, self.last = None, None

    def eval(self, ids):
        with self.torch.inference_mode():
            out = self.model(input_ids=self.torch.tensor([ids]), past_key_values=self.past,
                             use_cache=True, logits_to_keep=1)
        self.past, self.last = out.past_key_values, out.logits[0, -1]

    def next_token(self):
        return int(self.last.argmax())


def run(a):
    cfg = json.load(open(os.path.join(a.dir, "config.json")))
    name = {"llama": "llama.cpp", "torch": "pytorch"}[a.engine]
    eng = LlamaCpp(a, a.positions + a.steps + 16) if a.engine == "llama" else Torch(a)
    print(f"{name} engine: {eng.label}", flush=True)
    ids = [(i * 7919) % cfg["vocab_size"] for i in range(a.positions)]
    turns = os.environ.get("C3_TURNS")  # the protocol of benches/compare/alternate.sh
    if turns:
        open(turns + ".torch.ready", "w").close()
    pre, steps = [], []
    for r in range(a.runs):
        while turns and open(turns).read().strip() != "torch":
            time.sleep(0.05)
        if r == 0:
            # Untimed, in the first turn: a short prompt and two steps (llama.cpp's first
            # calls of each batch size allocate; PyTorch's first calls are slow too).
            eng.reset()
            eng.eval(ids[:32])
            for _ in range(2):
                eng.eval([eng.next_token()])
        eng.reset()
        t = time.time()
        eng.eval(ids)
        tok = eng.next_token()
        pre.append(time.time() - t)
        times = []
        for _ in range(a.steps):
            t = time.time()
            eng.eval([tok])
            tok = eng.next_token()
            times.append(time.time() - t)
        steps += times
        if turns:
            with open(turns, "w") as f:
                f.write("c3")
        print(f"{name} run {r}: prefill {a.positions} positions {pre[-1]:.3f} s, decode step "
              f"median {1e3 * statistics.median(times):.1f} ms", flush=True)
    print(f"{name}: prefill {a.positions} positions: {statistics.median(pre):.2f} s median "
          f"(min {min(pre):.2f}); decode step after {a.positions}: "
          f"{1e3 * statistics.median(steps):.1f} ms/token median (min {1e3 * min(steps):.1f})")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("write")
    w.add_argument("dir")
    w.add_argument("--family", choices=["c3", "lclm"], default="c3")
    w.add_argument("--tiny", action="store_true", help="2 layers, 256 wide: a smoke test")
    r = sub.add_parser("run")
    r.add_argument("dir")
    r.add_argument("--engine", choices=["llama", "torch"], default="llama")
    r.add_argument("--dtype", choices=["bf16", "f32"], default="bf16", help="torch only")
    r.add_argument("--positions", type=int, default=1149)
    r.add_argument("--steps", type=int, default=16)
    r.add_argument("--runs", type=int, default=3)
    r.add_argument("--threads", type=int, default=os.cpu_count())
    r.add_argument("--batch", type=int, default=512, help="llama.cpp's n_batch = n_ubatch (its default)")
    a = ap.parse_args()
    {"write": write, "run": run}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
