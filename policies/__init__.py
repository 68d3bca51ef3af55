"""Policies behind one interface (`policies.base.Policy`): act on Env observations, train from the store.

- `policies.base`: the Policy / ActorCriticPolicy protocols, and `PPOAgent` with its `Decision`.
- `policies.factory`: the one place that picks a kind: `load_policy` (any checkpoint),
  `PolicyConfig` (a round's policy: kind, trainer settings, runtime), `train_policy`,
  `load_train_config` (`lrm-robot train-policy`), `PPOPolicyConfig` + `make_ppo_agent`.
- `policies.actor_critic/`: a small Gaussian actor-critic for the CPU (`model`: state, images or
  both; relative actions and action chunking), its behaviour cloning from the store (`bc_train`)
  and its PPO agent (`ppo_agent`).
- `policies.pi05/`: pi0.5 through LeRobot's own `PI05Policy` and processors (`policy`: env cameras
  and state mapped onto its input features by config), fine-tuning with LeRobot's training pieces
  (`finetune`) and its flow-noise PPO agent (`ppo_agent`).
- `policies.scripted`: `RandomPolicy` (the floor to beat) and `HoldPolicy` (the arm stays put).
- `policies.eval_report`: an evaluation's success rate with a Wilson 95% interval (pure); the
  evaluation itself rolls out through `app.rollout.run_rollout` (`app.evaluate`).

Importing this package imports neither torch nor ManiSkill; the modules do. `policies` never
imports `sim`: observations are anything with `state`, `images` and `task`.
"""
