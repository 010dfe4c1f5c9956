#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
#
# PyTorch under Spillway, the smallest real check: a Llama built from a LlamaConfig with
# random weights (transformers, when importable; nothing is downloaded) or else a plain
# stack of torch transformer blocks, generating greedily in bf16 on the GPU. It runs the
# same generation in fresh processes: plainly; with LD_PRELOAD=libspillway.so and
# SPILLWAY_HBM_LIMIT below the model's footprint; and with Spillway as PyTorch's allocator
# (CUDAPluggableAllocator over spw_malloc/spw_free, docs/c-api.md) under the same preload.
# Each child writes its tokens and a logits checksum; the parent compares them with the
# plain run's and writes one JSON object (--out).
#
# Contract: exit 0 whenever the JSON was written, whatever the variants did (a failure is
# recorded with its last output line); children are killed after --timeout seconds. With
# no CUDA device it writes {"status": "skipped"}. Deterministic algorithms are asked for so
# that identical inputs give identical bits; "match" is exact equality of the tokens and of
# the logits' bytes.
"""PyTorch smoke test with and without libspillway.so (see the header comment)."""

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time


def child(args):
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    import torch

    if args.allocator == "spillway":
        alloc = torch.cuda.memory.CUDAPluggableAllocator(args.lib, "spw_malloc", "spw_free")
        torch.cuda.memory.change_current_allocator(alloc)
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.manual_seed(0)
    model_name = "torch-blocks"
    try:
        from transformers import LlamaConfig, LlamaForCausalLM

        config = LlamaConfig(vocab_size=32000, hidden_size=2048, intermediate_size=5632,
                             num_hidden_layers=8, num_attention_heads=16,
                             num_key_value_heads=16, max_position_embeddings=256)
        # Built in bf16 directly: an fp32 model first would double the footprint, and under
        # a tight HBM limit its conversion alone thrashed for minutes on the first H200 run.
        torch.set_default_dtype(torch.bfloat16)
        with torch.device("cuda"):
            model = LlamaForCausalLM(config).eval()
        model_name = "transformers LlamaForCausalLM (8 layers, dim 2048, random weights)"
    except ImportError:
        class Stack(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.embed = torch.nn.Embedding(32000, 2048)
                self.blocks = torch.nn.ModuleList(
                    torch.nn.TransformerEncoderLayer(2048, 16, 5632, dropout=0.0,
                                                     batch_first=True, norm_first=True)
                    for _ in range(8))
                self.head = torch.nn.Linear(2048, 32000, bias=False)

            def forward(self, ids):
                x = self.embed(ids)
                mask = torch.nn.Transformer.generate_square_subsequent_mask(
                    ids.shape[1], device=ids.device)
                for b in self.blocks:
                    x = b(x, src_mask=mask, is_causal=True)
                return self.head(x)

        torch.set_default_dtype(torch.bfloat16)
        with torch.device("cuda"):
            model = Stack().eval()
        model_name = "8 torch TransformerEncoderLayer blocks, dim 2048 (no transformers)"

    footprint = sum(p.numel() * p.element_size() for p in model.parameters())
    ids = torch.randint(0, 32000, (1, 16), device="cuda", generator=None)
    torch.cuda.synchronize()
    start = time.perf_counter()
    with torch.no_grad():
        tokens = ids
        for _ in range(args.gen):  # greedy, recomputing the whole sequence: simple and exact
            out = model(tokens)
            logits = out.logits if hasattr(out, "logits") else out
            nxt = logits[:, -1, :].float().argmax(-1, keepdim=True)
            tokens = torch.cat([tokens, nxt], dim=1)
    torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    last = logits[:, -1, :].float().cpu().contiguous()
    result = {"model": model_name, "param_bytes": footprint,
              "tokens": tokens[0, ids.shape[1]:].tolist(),
              "logits_sha256": hashlib.sha256(last.numpy().tobytes()).hexdigest(),
              "generate_seconds": seconds,
              "max_memory_allocated": torch.cuda.max_memory_allocated()}
    with open(args.result, "w") as f:
        json.dump(result, f)


def parent(args):
    out = {"status": "ok", "variants": []}
    try:
        import torch
        if not torch.cuda.is_available():
            out.update(status="skipped", note="torch.cuda.is_available() is False")
            write(args.out, out)
            return 0
        out["torch"] = torch.__version__
    except ImportError as e:
        out.update(status="skipped", note=f"torch is not importable: {e}")
        write(args.out, out)
        return 0
    try:
        import transformers
        out["transformers"] = transformers.__version__
    except ImportError:
        out["transformers"] = None

    base = os.path.splitext(args.out)[0]
    variants = [("plain", {}, "torch"),
                ("preload", {"LD_PRELOAD": args.lib, "SPILLWAY_HBM_LIMIT": args.hbm_limit},
                 "torch"),
                ("pluggable", {"LD_PRELOAD": args.lib, "SPILLWAY_HBM_LIMIT": args.hbm_limit},
                 "spillway")]
    reference = None
    for name, extra, allocator in variants:
        result_path = f"{base}.{name}.json"
        log_path = f"{base}.{name}.log"
        if os.path.exists(result_path):
            os.remove(result_path)
        env = dict(os.environ, **extra)
        env["SPILLWAY_LOG_FILE"] = f"{base}.{name}.spwlog"
        cmd = [sys.executable, os.path.abspath(__file__), "--child", "--lib", args.lib,
               "--allocator", allocator, "--gen", str(args.gen), "--result", result_path]
        start = time.perf_counter()
        v = {"name": name, "env": extra, "allocator": allocator}
        try:
            with open(log_path, "w") as log:
                rc = subprocess.run(cmd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                    timeout=args.timeout).returncode
        except subprocess.TimeoutExpired:
            rc = None
        v["seconds"] = time.perf_counter() - start
        result = None
        if rc == 0 and os.path.exists(result_path):
            with open(result_path) as f:
                result = json.load(f)
        if result is None:
            v["status"] = "timeout" if rc is None else f"failed (exit {rc})"
            v["note"] = last_line(log_path)
        else:
            v["status"] = "ok"
            v.update(result)
            out["model"] = result["model"]
            if reference is None and name == "plain":
                reference = result
            if reference is not None and name != "plain":
                v["match"] = (result["tokens"] == reference["tokens"]
                              and result["logits_sha256"] == reference["logits_sha256"])
                if not v["match"] and result["tokens"] == reference["tokens"]:
                    v["note"] = "same tokens, logits differ in their bits"
        out["variants"].append(v)
    if any(v["status"] != "ok" or v.get("match") is False for v in out["variants"]):
        out["status"] = "problems"
    write(args.out, out)
    return 0


def last_line(path):
    try:
        with open(path) as f:
            lines = [line.strip() for line in f if line.strip()]
        return lines[-1][:300] if lines else ""
    except OSError:
        return ""


def write(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--lib", required=True, help="path of libspillway.so")
    p.add_argument("--out", default="torch.json", help="result JSON (parent)")
    p.add_argument("--hbm-limit", default="768M",
                   help="SPILLWAY_HBM_LIMIT of the Spillway variants (default 768M, about "
                        "70%% of the model's 1.1 GB of bf16 weights)")
    p.add_argument("--gen", type=int, default=8, help="tokens generated (default 8)")
    p.add_argument("--timeout", type=float, default=70.0, help="seconds per variant")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--allocator", default="torch", help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    args = p.parse_args()
    args.lib = os.path.abspath(args.lib)
    return child(args) if args.child else parent(args)


if __name__ == "__main__":
    sys.exit(main() or 0)
