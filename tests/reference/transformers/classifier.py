"""Score the tiny reward model of eva's classifier test with Hugging Face transformers.

    cargo run --example tiny_classifier -- /tmp/eva-tc
    python classifier.py /tmp/eva-tc/tiny-classifier > classifier.json

Needs torch and transformers (pip). The Rust test `testing/tests/integration/reward_classifier.rs` rebuilds the
same model, checks that its weights hash to `safetensors_sha256`, and compares eva's
classifier backend with the scores below. Each conversation is scored on its own and
again in one right-padded batch; both must agree.
"""

import hashlib
import json
import sys

import torch
import transformers
from transformers import AutoModelForSequenceClassification, AutoTokenizer

ITEMS = [
    {"messages": [{"role": "user", "content": "What is the capital of France?"}],
     "response": "The capital of France is Paris."},
    {"messages": [{"role": "system", "content": "You are terse."},
                  {"role": "user", "content": "Name three primes."}],
     "response": "2, 3, 5"},
    {"messages": [{"role": "user", "content": "Hi!"},
                  {"role": "assistant", "content": "Hello! How can I help?"},
                  {"role": "user", "content": "Write a haiku about rust 🦀."}],
     "response": "Borrowed, never lost—\nlifetimes fold like autumn leaves;\nthe compiler smiles."},
    {"messages": [{"role": "user", "content": "Explain   whitespace\tand digits 1234567."}],
     "response": "Runs of spaces,\ttabs and 1234567 are tokenized separately. " * 8},
]


def main(path):
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path, dtype=torch.float32).eval()
    convs = [item["messages"] + [{"role": "assistant", "content": item["response"]}] for item in ITEMS]
    ids = []
    for conv in convs:
        out = tok.apply_chat_template(conv, tokenize=True)
        ids.append(list(out["input_ids"] if isinstance(out, dict) or hasattr(out, "keys") else out))
    scores = []
    with torch.no_grad():
        for seq in ids:
            scores.append(model(torch.tensor([seq])).logits[0, 0].item())
        width = max(map(len, ids))
        pad = model.config.pad_token_id
        batch = torch.tensor([s + [pad] * (width - len(s)) for s in ids])
        batched = model(batch).logits[:, 0].tolist()
    for a, b in zip(scores, batched):
        assert abs(a - b) < 1e-4, (a, b)
    with open(f"{path}/model.safetensors", "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    json.dump({
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "safetensors_sha256": digest,
        "items": [dict(item, tokens=len(s), score=score) for item, s, score in zip(ITEMS, ids, scores)],
    }, sys.stdout, indent=1, ensure_ascii=False)
    print()


if __name__ == "__main__":
    main(sys.argv[1])
