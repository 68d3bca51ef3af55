"""Reward models: prompts, backends, parsing, batching, interval-hold.

Public API (heavy backends are imported from their modules, not here, so that
importing `lrm` stays cheap):

- `lrm.types`: RewardRequest, Reward, RewardModel, validation and resizing
- `lrm.prompts`: PromptTemplate, load_prompt, load_default_prompts
- `lrm.parsing`: parse_answer, fallback_value, ParseStats
- `lrm.qwen3vl`: Qwen3VLBackendConfig, Qwen3VLRewardModel, make_reward_model
- `lrm.interval_hold`: IntervalHoldConfig, IntervalHoldReward
- `lrm.backends`: RewardBackendConfig, make_reward_backend (one YAML per backend:
  qwen3vl | roboreward | oracle | robometer | topreward | lite; configs/lrm/backends/)
- `lrm.oracle`: OracleRewardModel, oracle_values (the simulator's reward, sim only)
- `lrm.lerobot_rewards`: Robometer and TOPReward through `lerobot.rewards`
- `lrm.score_episode`: score_query_frames, EpisodeScores (offline interval-hold scoring)
- `lrm.plots`: plot_traces (PNG of reward traces against time)
- `lrm.dataset`: build_dataset, Example, RewardDataset (11 keyframes per episode, completion
  negatives, contrastive pairs, seeded split by episode, from store episodes)
- `lrm.lite`, `lrm.lite_config`: the compact CNN reward model with the three heads
  (LiteRewardModel, train_lite, distill_lite, evaluate_lite)
- `lrm.synthetic`: make_bar_store (a store whose progress is visible, for tests)
- `lrm.tiny_model`: build_tiny_checkpoint, build_tiny_robometer (tiny random models for tests/benchmarks)
"""

from lrm.types import MODALITIES, Reward, RewardModel, RewardRequest

__all__ = ["MODALITIES", "Reward", "RewardModel", "RewardRequest"]
