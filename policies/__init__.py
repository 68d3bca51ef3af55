"""Policies behind one interface (`policies.base.Policy`): act on Env observations, train from the store.

- `policies.base`: the Policy / TrainablePolicy / ActorCriticPolicy protocols.
- `policies.actor_critic`: a small Gaussian actor-critic for the CPU (state,
  images or both; value head for PPO; relative actions and action chunking for
  behaviour cloning); `ActorCriticConfig`, `GaussianActorCritic`, `make_policy`.
- `policies.train`: behaviour cloning from the episode store (`BCTrainConfig`,
  `train_bc`; the pieces: `select_episodes`, `split_episodes`, `load_frames`,
  `fit_bc`), checkpoints and resume. CLI: `lrm-robot train-policy`.
- `policies.evaluate`: roll a policy out in ManiSkill, oracle success rate with
  a Wilson 95% interval, optional recording (`evaluate_policy`, `load_policy`,
  `RandomPolicy`). CLI: `lrm-robot eval-policy`.
- `policies.pi05`: pi0.5 through LeRobot's own `PI05Policy` and processors, with
  env cameras and state mapped onto its input features by config (`Pi05Config`,
  `Pi05Policy`, `make_policy`); `policies.pi05_train`: fine-tuning it from the
  store with LeRobot's training pieces (`Pi05TrainConfig`, `finetune_pi05`;
  `lrm-robot train-policy` with a `type: pi05` config).

Importing this package imports neither torch nor ManiSkill; the modules do.
"""
