"""Reward models: prompts, backends, parsing, batching, interval-hold.

Public API (heavy backends are imported from their modules, not here, so that
importing `lrm` stays cheap):

- `lrm.types`: RewardRequest, Reward, RewardModel, validation, resizing and pixel budgets
- `lrm.interval_hold`: IntervalHoldConfig, IntervalHoldReward (the paper's protocol or the legacy one)
- `lrm.guarded`: GuardedRewardModel (a failed query holds the env's previous value and is counted)
- `lrm.backends`: RewardBackendConfig, make_reward_backend, build_reward_backend (one YAML per backend:
  qwen3vl | roboreward | oracle | robometer | topreward | lite; configs/lrm/backends/), and
  the backends:
  - `lrm.backends.qwen3vl`: Qwen3VLBackendConfig, Qwen3VLRewardModel, make_reward_model;
    `lrm.backends.qwen3vl_loading`: ModelSource, load_model, check_adapters (the base with its
    adapters attached as the published LRM needs them, and a refusal of adapters that did not load);
    `lrm.backends.prompts`: PromptTemplate, load_prompt, load_default_prompts;
    `lrm.backends.parsing`: parse_answer, unusable_answer_value, fallback_value, ParseStats;
    `lrm.backends.reference_parsing`: read_reference, reference_fallback (answers read as the
    reference LRM server reads them)
  - `lrm.backends.oracle`: OracleRewardModel, oracle_values (the simulator's reward, sim only)
  - `lrm.backends.lerobot_rewards`: Robometer and TOPReward through `lerobot.rewards`;
    `lrm.backends.roboreward`: RoboReward (a Qwen3-VL video judge, 1-5 rubric);
    `lrm.backends.video`: what these video baselines are shown (frames at an fps, capped,
    resized keeping the aspect ratio), as the LRM reference shows them
  - `lrm.backends.lite`, `lrm.backends.lite_config`: the compact CNN reward model with the
    three heads (LiteRewardModel, make_lite_backend) and its configs
- `lrm.training`: building examples and training reward models
  - `lrm.training.dataset`: build_dataset, Example, RewardDataset (11 keyframes per episode,
    completion negatives, contrastive pairs with optional rewound segments, rationales, seeded
    split by episode); `lrm.training.lerobot_source`: LeRobotDatasets on disk as a source
  - `lrm.training.lite_train`: train_lite, distill_lite, evaluate_lite (the compact model);
    `lrm.training.lite_runs`: its runs of `lrm-robot train-lrm`
  - `lrm.training.lora_data`, `lrm.training.lora_train`: Qwen3-VL LoRA adapters with TRL (SFT
    for progress and completion, DPO for contrastive), prompts exactly the qwen3vl backend's
- `lrm.evaluation`: how good a reward model is, and what it says about recorded episodes
  - `lrm.evaluation.metrics`: the reward-quality metrics (contrastive, progress, completion,
    per trajectory)
  - `lrm.evaluation.openloop_reference`: the LRM paper's open-loop metrics, defined exactly as its
    evaluation script defines them (reported beside ours as "openloop_reference")
  - `lrm.evaluation.reward_eval`: the reward-quality suite of `lrm-robot eval-reward` (JSON + PNGs)
  - `lrm.evaluation.score_episode`: score_query_frames, EpisodeScores (offline interval-hold scoring);
    `lrm.evaluation.score_store`: EpisodeQueries, ScoredEpisode (one stored episode scored, its
    traces written back: `lrm-robot score`)
  - `lrm.evaluation.plots`: plot_traces (PNG of reward traces against time) and the suite's plots

Tiny random models and synthetic stores for tests and benchmarks live in `tests.support`.
"""

from lrm.types import MODALITIES, Reward, RewardModel, RewardRequest

__all__ = ["MODALITIES", "Reward", "RewardModel", "RewardRequest"]
