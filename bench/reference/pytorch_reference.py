"""The trainer's model and training step in plain PyTorch eager, for `trainer bench`.

Same architecture (Llama layout: RMSNorm, rotary in rotate_half layout, GQA via repeat_kv,
SwiGLU, no biases, optional tied embeddings, SDPA with is_causal), same initialisation
scheme, same loop (micro-batches of random windows, summed cross-entropy divided by the
step's target tokens, global-norm clipping, AdamW with decay on matrices only, warmup +
cosine), bf16 compute with fp32 master weights on CUDA (autocast), fp32 on CPU.

    python bench/reference/pytorch_reference.py --config configs/trainer/tiny.toml --device cpu \
        --threads 2 --steps 10 --warmup 2 [--micro-batch-size B --grad-accum A --seq-len T]

Prints one JSON line with tokens_per_s, step_ms, mfu (CUDA) and peak memory.
"""

import argparse
import json
import math
import resource
import time
import tomllib

import torch
import torch.nn.functional as F
from torch import nn

INIT_STD = 0.02


class RMSNorm(nn.Module):
    def __init__(self, size, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size))
        self.eps = eps

    def forward(self, x):
        dtype = x.dtype
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight.to(dtype) * xf.to(dtype)


def rotate_half(x):
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


class Attention(nn.Module):
    def __init__(self, c):
        super().__init__()
        h, d = c["hidden_size"], c["hidden_size"] // c["num_attention_heads"]
        self.heads, self.kv_heads, self.head_dim = c["num_attention_heads"], c["num_key_value_heads"], d
        self.q_proj = nn.Linear(h, self.heads * d, bias=False)
        self.k_proj = nn.Linear(h, self.kv_heads * d, bias=False)
        self.v_proj = nn.Linear(h, self.kv_heads * d, bias=False)
        self.o_proj = nn.Linear(self.heads * d, h, bias=False)

    def forward(self, x, cos, sin):
        b, t, _ = x.shape
        q = self.q_proj(x).view(b, t, self.heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(b, t, self.kv_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(b, t, self.kv_heads, self.head_dim).transpose(1, 2)
        cos, sin = cos.to(q.dtype), sin.to(q.dtype)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        groups = self.heads // self.kv_heads
        if groups > 1:
            k = k[:, :, None].expand(b, self.kv_heads, groups, t, self.head_dim).reshape(b, self.heads, t, self.head_dim)
            v = v[:, :, None].expand(b, self.kv_heads, groups, t, self.head_dim).reshape(b, self.heads, t, self.head_dim)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.o_proj(y.transpose(1, 2).reshape(b, t, self.heads * self.head_dim))


class Mlp(nn.Module):
    def __init__(self, c):
        super().__init__()
        h, i = c["hidden_size"], c["intermediate_size"]
        self.gate_proj = nn.Linear(h, i, bias=False)
        self.up_proj = nn.Linear(h, i, bias=False)
        self.down_proj = nn.Linear(i, h, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Layer(nn.Module):
    def __init__(self, c):
        super().__init__()
        eps = c.get("rms_norm_eps", 1e-5)
        self.input_layernorm = RMSNorm(c["hidden_size"], eps)
        self.self_attn = Attention(c)
        self.post_attention_layernorm = RMSNorm(c["hidden_size"], eps)
        self.mlp = Mlp(c)

    def forward(self, x, cos, sin):
        h = x + self.self_attn(self.input_layernorm(x), cos, sin)
        return h + self.mlp(self.post_attention_layernorm(h))


class Llama(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        self.embed_tokens = nn.Embedding(c["vocab_size"], c["hidden_size"])
        self.layers = nn.ModuleList(Layer(c) for _ in range(c["num_hidden_layers"]))
        self.norm = RMSNorm(c["hidden_size"], c.get("rms_norm_eps", 1e-5))
        self.tied = c.get("tie_word_embeddings", False)
        self.lm_head = None if self.tied else nn.Linear(c["hidden_size"], c["vocab_size"], bias=False)
        d = c["hidden_size"] // c["num_attention_heads"]
        theta = c.get("rope_theta", 10000.0)
        inv_freq = 1.0 / (theta ** (torch.arange(0, d, 2, dtype=torch.int64).float() / d))
        freqs = torch.outer(torch.arange(c["max_position_embeddings"]).float(), inv_freq)
        emb = torch.cat((freqs, freqs), dim=-1)
        self.register_buffer("cos", emb.cos(), persistent=False)
        self.register_buffer("sin", emb.sin(), persistent=False)
        out_std = INIT_STD / math.sqrt(2 * c["num_hidden_layers"])
        for name, p in self.named_parameters():
            if p.dim() == 2:
                std = out_std if name.endswith(("o_proj.weight", "down_proj.weight")) else INIT_STD
                nn.init.normal_(p, 0.0, std)

    def forward(self, ids):
        t = ids.shape[1]
        cos, sin = self.cos[:t], self.sin[:t]
        x = self.embed_tokens(ids)
        for layer in self.layers:
            x = layer(x, cos, sin)
        x = self.norm(x)
        return x @ self.embed_tokens.weight.t() if self.tied else self.lm_head(x)


def lr_at(o, step, total):
    lr, min_lr, warmup = o["lr"], o.get("min_lr", 0.0), o.get("warmup_steps", 0)
    if warmup and step <= warmup:
        return lr * step / warmup
    progress = min(max((step - warmup) / max(total - warmup, 1), 0.0), 1.0)
    return min_lr + 0.5 * (lr - min_lr) * (1 + math.cos(math.pi * progress))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", required=True)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--micro-batch-size", type=int)
    ap.add_argument("--grad-accum", type=int)
    ap.add_argument("--seq-len", type=int)
    ap.add_argument("--vocab-size", type=int, default=32000, help="when the config says 0")
    ap.add_argument("--compile", action="store_true", help="torch.compile the model (not eager)")
    args = ap.parse_args()
    with open(args.config, "rb") as f:
        cfg = tomllib.load(f)
    m, t, o = cfg["model"], cfg["train"], cfg["optim"]
    if not m.get("vocab_size"):
        m["vocab_size"] = args.vocab_size
    batch = args.micro_batch_size or t["micro_batch_size"]
    accum = args.grad_accum or t.get("grad_accum", 1)
    seq = args.seq_len or cfg["data"]["seq_len"]
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(t.get("seed", 0))
    model = Llama(m).to(device)
    step_fn = torch.compile(model) if args.compile else model
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    optim = torch.optim.AdamW(
        [{"params": decay, "weight_decay": o.get("weight_decay", 0.1)}, {"params": no_decay, "weight_decay": 0.0}],
        lr=o["lr"], betas=(o.get("beta1", 0.9), o.get("beta2", 0.95)), eps=o.get("eps", 1e-8),
        fused=device.type == "cuda",
    )
    gen = torch.Generator().manual_seed(0)
    data = torch.randint(1, m["vocab_size"], ((seq + 1) * 64 + (1 << 20),), generator=gen)
    use_bf16 = device.type == "cuda"
    total = args.warmup + args.steps
    clip = o.get("grad_clip", 1.0)

    def train_step(step):
        starts = torch.randint(0, len(data) - seq - 1, (accum, batch), generator=gen)
        targets_total = accum * batch * seq
        optim.zero_grad(set_to_none=False)
        loss_sum = torch.zeros((), device=device)
        for micro in range(accum):
            windows = torch.stack([data[s : s + seq + 1] for s in starts[micro].tolist()]).to(device)
            x, y = windows[:, :-1], windows[:, 1:]
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
                logits = step_fn(x)
            loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), y.reshape(-1), reduction="sum")
            (loss / targets_total).backward()
            loss_sum += loss.detach()
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), clip if clip > 0 else float("inf"))
        for g in optim.param_groups:
            g["lr"] = lr_at(o, step, total)
        optim.step()
        return (loss_sum / targets_total).item(), norm.item()

    for s in range(1, args.warmup + 1):
        train_step(s)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    cpu_started = sum(resource.getrusage(resource.RUSAGE_SELF)[:2])
    loss = float("nan")
    for s in range(args.warmup + 1, total + 1):
        loss, _ = train_step(s)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    cpu_seconds = sum(resource.getrusage(resource.RUSAGE_SELF)[:2]) - cpu_started
    tokens_per_s = batch * accum * seq * args.steps / seconds
    n = sum(p.numel() for p in model.parameters())
    matmul = n - (0 if m.get("tie_word_embeddings") else m["vocab_size"] * m["hidden_size"])
    flops = 6 * matmul + 12 * m["num_hidden_layers"] * m["hidden_size"] * seq
    report = {
        "impl": "pytorch-compile" if args.compile else "pytorch-eager",
        "params": n,
        "device": str(device),
        "threads": torch.get_num_threads(),
        "tokens_per_step": batch * accum * seq,
        "steps": args.steps,
        "tokens_per_s": tokens_per_s,
        "step_ms": seconds * 1e3 / args.steps,
        "tokens_per_cpu_s": batch * accum * seq * args.steps / max(cpu_seconds, 1e-9),
        "final_loss": loss,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    if device.type == "cuda":
        report["mfu"] = tokens_per_s * flops / (t.get("gpu_peak_tflops", 989.0) * 1e12)
        report["peak_gpu_mib"] = torch.cuda.max_memory_allocated() / 2**20
    print(json.dumps(report))


if __name__ == "__main__":
    main()
