"""Reward models: prompts, backends, parsing, batching, interval-hold.

Public API (heavy backends are imported from their modules, not here, so that
importing `lrm` stays cheap):

- `lrm.types`: RewardRequest, Reward, RewardModel, validation and resizing
- `lrm.prompts`: PromptTemplate, load_prompt, load_default_prompts
- `lrm.parsing`: parse_answer, fallback_value, ParseStats
- `lrm.qwen3vl`: Qwen3VLBackendConfig, Qwen3VLRewardModel, make_reward_model
- `lrm.interval_hold`: IntervalHoldConfig, IntervalHoldReward
- `lrm.backends`: RewardBackendConfig, make_reward_backend, build_reward_backend (one YAML per backend:
  qwen3vl | roboreward | oracle | robometer | topreward | lite; configs/lrm/backends/)
- `lrm.oracle`: OracleRewardModel, oracle_values (the simulator's reward, sim only)
- `lrm.lerobot_rewards`: Robometer and TOPReward through `lerobot.rewards`
- `lrm.score_episode`: score_query_frames, EpisodeScores (offline interval-hold scoring)
- `lrm.score_store`: EpisodeQueries, ScoredEpisode (one stored episode scored, its traces written back:
  `lrm-robot score`)
- `lrm.plots`: plot_traces (PNG of reward traces against time)
- `lrm.dataset`: build_dataset, Example, RewardDataset (11 keyframes per episode, completion
  negatives, contrastive pairs with optional rewound segments, rationales, seeded split by
  episode); `lrm.lerobot_source`: LeRobotDatasets on disk as a source
- `lrm.lite`, `lrm.lite_config`, `lrm.lite_runs`: the compact CNN reward model with the three
  heads (LiteRewardModel, train_lite, distill_lite, evaluate_lite) and its training runs
- `lrm.lora_data`, `lrm.lora_train`: Qwen3-VL LoRA adapters with TRL (SFT for progress and
  completion, DPO for contrastive), prompts exactly the qwen3vl backend's
- `lrm.metrics`: the reward-quality metrics (contrastive, progress, completion, per trajectory)
- `lrm.reward_eval`: the reward-quality suite of `lrm-robot eval-reward` (JSON + PNGs)
- `lrm.synthetic`: make_bar_store (a store whose progress is visible, for tests)
- `lrm.tiny_model`: build_tiny_checkpoint, build_tiny_robometer (tiny random models for tests/benchmarks)
"""

from lrm.types import MODALITIES, Reward, RewardModel, RewardRequest

__all__ = ["MODALITIES", "Reward", "RewardModel", "RewardRequest"]
