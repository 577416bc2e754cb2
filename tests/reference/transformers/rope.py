"""Reference rotary frequencies for eva's rope scaling (host/engine/src/config/rope.rs).

Run with transformers (5.24 wrote rope.json): python rope.py > rope.json
"""

import json

from transformers import LlamaConfig
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

THETA, MAX_POSITIONS = 500000.0, 131072
CASES = {
    "default": None,
    "linear": {"rope_type": "linear", "factor": 4.0},
    "llama3": {
        "rope_type": "llama3",
        "factor": 8.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 8192,
    },
    "yarn": {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768},
}

out = {}
for name, scaling in CASES.items():
    config = LlamaConfig(
        hidden_size=2048,
        num_attention_heads=32,
        head_dim=64,
        rope_theta=THETA,
        max_position_embeddings=MAX_POSITIONS,
        rope_scaling=scaling,
    )
    kind = config.rope_parameters["rope_type"]
    init = ROPE_INIT_FUNCTIONS.get(kind)
    if init is None:  # plain rope has no init function of its own in some versions
        from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

        inv, attention = LlamaRotaryEmbedding.compute_default_rope_parameters(config)
    else:
        inv, attention = init(config, "cpu")
    out[name] = {
        "config": scaling,
        "rope_theta": THETA,
        "max_position_embeddings": MAX_POSITIONS,
        "inv_freq": [float(x) for x in inv.double()],
        "attention_factor": float(attention),
    }
print(json.dumps(out, indent=1))
