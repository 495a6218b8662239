#!/usr/bin/env python3
"""Trains a C3 checkpoint with PyTorch + transformers' Qwen2 and the recipe of
C3-TRAIN.md, for comparison with `c3 train` (learning curve and speed).

The examples come already tokenized (`cargo bench --bench train -- records ...
--ids FILE`), so both sides read the same ids and labels; the model is read from
the checkpoint directory in the released layout (upcast to f32). Output: one
JSON object per step and evaluation, then a report, on stdout.

    python3 benches/compare/pytorch_train.py --model DIR --data TRAIN.ids.jsonl \
        [--eval EVAL.ids.jsonl --eval-every 50] --steps 200 --micro-batch 2 \
        --grad-accum 1 --lr 1e-4 --threads 2

Recipe (as `c3 train`): micro-batch loss = mean cross entropy over its label
rows (logits[t] predicts labels[t+1]), divided by --grad-accum, gradients
summed; global-norm clipping at 1.0; AdamW betas (0.9, 0.999), eps 1e-8,
weight decay 0; transformers' cosine schedule with ceil(ratio x steps) warmup
steps (the first step runs at lr 0); records in file order, consecutive
micro-batches, cycling through the data. Everything trains.
"""

import argparse
import json
import math
import resource
import sys
import time

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from transformers import Qwen2Config, Qwen2Model, get_cosine_schedule_with_warmup

PAD = 151643


def qwen2(cfg):
    keys = ["vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
            "num_attention_heads", "num_key_value_heads", "max_position_embeddings",
            "rms_norm_eps", "rope_theta", "tie_word_embeddings"]
    c = Qwen2Config(**{k: cfg[k] for k in keys if k in cfg})
    c._attn_implementation = "eager"
    return c


def load_weights(path):
    t = {}
    for f in path:
        t.update(load_file(f))
    return {k: v.float() for k, v in t.items()}


def stack(cfg, tensors):
    m = Qwen2Model(qwen2(cfg))
    state = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")
             and not k.startswith(("model.Q.", "model.mm_projector.", "model.llm1."))}
    missing, unexpected = m.load_state_dict(state, strict=False)
    missing = [k for k in missing if "rotary_emb" not in k]
    if missing or unexpected:
        sys.exit(f"weights do not fit: missing {missing[:5]}, unexpected {unexpected[:5]}")
    return m.float()


class C3(torch.nn.Module):
    def __init__(self, d):
        super().__init__()
        cfg = json.load(open(f"{d}/config.json"))
        ecfg = json.load(open(f"{d}/llm1/config.json"))
        dec_t = load_weights([f"{d}/model.safetensors"])
        enc_t = load_weights([f"{d}/llm1/model.safetensors"])
        self.enc = stack(ecfg, enc_t)
        self.dec = stack(cfg, dec_t)
        self.Q = torch.nn.Parameter(dec_t["model.Q.weight"])
        self.proj = torch.nn.Linear(ecfg["hidden_size"], cfg["hidden_size"])
        self.proj.weight.data.copy_(dec_t["model.mm_projector.weight"])
        self.proj.bias.data.copy_(dec_t["model.mm_projector.bias"])
        self.latent_len = cfg["latent_token_len"]

    def forward(self, batch):
        """Mean cross entropy over the batch's label rows, and (correct, rows)."""
        dev = self.Q.device
        L = self.latent_len

        def pad(seqs, fill):
            t = max(len(s) for s in seqs)
            ids = torch.full((len(seqs), t), fill, dtype=torch.long, device=dev)
            mask = torch.zeros((len(seqs), t), dtype=torch.long, device=dev)
            for i, s in enumerate(seqs):
                ids[i, :len(s)] = torch.tensor(s, device=dev)
                mask[i, :len(s)] = 1
            return ids, mask

        ids, mask = pad([e["enc_ids"] for e in batch], PAD)
        x = self.enc.embed_tokens(ids)
        rows = []
        for i, e in enumerate(batch):
            s = e["query_start"]
            rows.append(torch.cat([x[i, :s], self.Q, x[i, s + L:]], 0))
        h = self.enc(inputs_embeds=torch.stack(rows), attention_mask=mask).last_hidden_state
        lat = self.proj(torch.stack([h[i, e["query_start"]:e["query_start"] + L] for i, e in enumerate(batch)]))

        ids, mask = pad([e["dec_ids"] for e in batch], PAD)
        labels, _ = pad([e["labels"] for e in batch], -100)
        x = self.dec.embed_tokens(ids)
        rows = []
        for i, e in enumerate(batch):
            s = e["latent_start"]
            rows.append(torch.cat([x[i, :s], lat[i], x[i, s + L:]], 0))
        h = self.dec(inputs_embeds=torch.stack(rows), attention_mask=mask).last_hidden_state
        # Upstream applies the (tied) output matrix to every position.
        logits = (h @ self.dec.embed_tokens.weight.t()).float()
        logits, target = logits[:, :-1], labels[:, 1:]
        loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), target.reshape(-1), ignore_index=-100)
        keep = target != -100
        correct = (logits.argmax(-1) == target)[keep].sum().item()
        return loss, correct, int(keep.sum().item())


def read(path):
    return [json.loads(l) for l in open(path) if l.strip()]


def evaluate(model, data, mb):
    model.eval()
    loss_sum, correct, rows = 0.0, 0, 0
    with torch.no_grad():
        for i in range(0, len(data), mb):
            loss, c, r = model(data[i:i + mb])
            loss_sum += loss.item() * r
            correct += c
            rows += r
    model.train()
    return loss_sum / max(rows, 1), correct / max(rows, 1), rows


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--eval")
    p.add_argument("--eval-every", type=int, default=0)
    p.add_argument("--steps", type=int, required=True)
    p.add_argument("--micro-batch", type=int, default=2)
    p.add_argument("--grad-accum", type=int, default=1)
    p.add_argument("--lr", type=float, default=1e-5)
    p.add_argument("--warmup-ratio", type=float, default=0.01)
    p.add_argument("--max-grad-norm", type=float, default=1.0)
    p.add_argument("--threads", type=int, default=0)
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    model = C3(a.model)
    data = read(a.data)
    held = read(a.eval) if a.eval else None
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    sched = get_cosine_schedule_with_warmup(opt, math.ceil(a.warmup_ratio * a.steps), a.steps)
    micro = [data[i:i + a.micro_batch] for i in range(0, len(data), a.micro_batch)]
    if held is not None:
        l, acc, r = evaluate(model, held, a.micro_batch)
        print(json.dumps({"event": "eval", "step": 0, "loss": l, "accuracy": acc, "targets": r}), flush=True)
    started = time.perf_counter()
    eval_time = 0.0
    cursor = 0
    for step in range(a.steps):
        lr = opt.param_groups[0]["lr"]
        total = 0.0
        for _ in range(a.grad_accum):
            loss, _, _ = model(micro[cursor % len(micro)])
            cursor += 1
            (loss / a.grad_accum).backward()
            total += loss.item() / a.grad_accum
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), a.max_grad_norm).item()
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        print(json.dumps({"event": "step", "step": step, "lr": lr, "loss": total, "grad_norm": norm}), flush=True)
        done = step + 1
        if held is not None and ((a.eval_every and done % a.eval_every == 0) or done == a.steps):
            t = time.perf_counter()
            l, acc, r = evaluate(model, held, a.micro_batch)
            eval_time += time.perf_counter() - t
            print(json.dumps({"event": "eval", "step": done, "loss": l, "accuracy": acc, "targets": r}), flush=True)
    seconds = time.perf_counter() - started - eval_time
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"event": "report", "steps": a.steps, "seconds": seconds,
                      "steps_per_s": a.steps / seconds, "peak_rss_bytes": peak,
                      "torch": torch.__version__, "threads": torch.get_num_threads()}), flush=True)


if __name__ == "__main__":
    main()
