"""A length-penalised regret info metric for eva, written in Python.

score = (max reward - min reward) - penalty * (tokens of the best answer - tokens of
the shortest answer): the reward gap, minus a cost when the best answer is best by being
longer, since a gap that comes from verbosity teaches less.
"""

from typing import List

from componentize_py_types import Err
from wit_world import exports
from wit_world.exports import info
from wit_world.imports import log, types

PENALTY = 0.001


class Info(exports.Info):
    def describe(self) -> types.Metadata:
        return types.Metadata(
            name="length-regret",
            version="0.1.0",
            description="Reward gap minus a penalty per token the best answer is longer than the shortest.",
            config=[
                types.ConfigField(
                    name="penalty",
                    kind=types.ConfigKind.FLOAT,
                    default_value="0.001",
                    description="reward units per extra token of the best answer",
                )
            ],
        )

    def configure(self, config: List[types.ConfigEntry]) -> None:
        global PENALTY
        for entry in config:
            if entry.key == "penalty":
                if entry.value.value < 0:
                    raise Err(types.PluginError_InvalidConfig(f"penalty must not be negative, not {entry.value.value}"))
                PENALTY = entry.value.value

    def score(self, item: info.PromptRewards) -> float:
        rewards, tokens = item.rewards, item.token_counts
        if not rewards:
            raise Err(types.PluginError_InvalidInput(f"prompt {item.prompt.id} has no rewards"))
        best = max(range(len(rewards)), key=lambda i: rewards[i])
        extra = tokens[best] - min(tokens)
        return (max(rewards) - min(rewards)) - PENALTY * extra

    def score_batch(self, items: List[info.PromptRewards]) -> List[float]:
        log.write(log.Level.DEBUG, f"scoring {len(items)} prompts", [])
        return [self.score(item) for item in items]
