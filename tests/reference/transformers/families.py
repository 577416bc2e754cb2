"""Run eva's tiny model of every supported family with Hugging Face transformers.

    cargo run --example tiny_families -- /tmp/eva-fam
    python families.py /tmp/eva-fam/tiny-* > families.json

Needs torch and transformers (pip). For each directory (written by eva: config.json and
model.safetensors) this records the weights' sha256, the logits of every position of two
sequences, and the config as transformers itself writes it (`save_pretrained`), so that
`testing/tests/integration/engine_families.rs` checks eva's forward pass, the directories eva saves and eva's
reading of transformers' own config.json.
"""

import hashlib
import json
import sys
import tempfile

import torch
import transformers
from transformers import AutoConfig, AutoModelForCausalLM

SEQUENCES = [
    [1, 5, 17, 33, 2, 90, 64, 12, 7, 45, 81, 3],
    [95, 0, 44, 44, 44, 18, 27, 36, 50, 61, 72, 83],
]


def run(path):
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, attn_implementation="eager").eval()
    with torch.no_grad():
        logits = [model(torch.tensor([s])).logits[0].tolist() for s in SEQUENCES]
    with open(f"{path}/model.safetensors", "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    with tempfile.TemporaryDirectory() as tmp:
        AutoConfig.from_pretrained(path).save_pretrained(tmp)
        with open(f"{tmp}/config.json") as f:
            config = json.load(f)
    return {
        "model_type": config["model_type"],
        "safetensors_sha256": digest,
        "transformers_config": config,
        "logits": [[[round(v, 7) for v in row] for row in seq] for seq in logits],
    }


def main(paths):
    json.dump({
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "sequences": SEQUENCES,
        "models": [run(p) for p in paths],
    }, sys.stdout, indent=None)
    print()


if __name__ == "__main__":
    main(sys.argv[1:])
