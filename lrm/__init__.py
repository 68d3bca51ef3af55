"""Reward models: prompts, backends, parsing, batching, interval-hold.

Public API (heavy backends are imported from their modules, not here, so that
importing `lrm` stays cheap):

- `lrm.types`: RewardRequest, Reward, RewardModel, validation and resizing
- `lrm.prompts`: PromptTemplate, load_prompt, load_default_prompts
- `lrm.parsing`: parse_answer, fallback_value, ParseStats
- `lrm.qwen3vl`: Qwen3VLBackendConfig, Qwen3VLRewardModel, make_reward_model
- `lrm.interval_hold`: IntervalHoldConfig, IntervalHoldReward
- `lrm.tiny_model`: build_tiny_checkpoint (a tiny random Qwen3-VL for tests/benchmarks)
"""

from lrm.types import MODALITIES, Reward, RewardModel, RewardRequest

__all__ = ["MODALITIES", "Reward", "RewardModel", "RewardRequest"]
