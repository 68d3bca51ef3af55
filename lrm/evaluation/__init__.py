"""How good a reward model is, and what it says about recorded episodes.

- `metrics`: the reward-quality metrics (arrays in, numbers out);
- `openloop_reference`: the LRM paper's open-loop metrics, exactly as its evaluation script defines them;
- `reward_eval`: the reward-quality suite of `lrm-robot eval-reward`;
- `score_episode`: a recorded episode scored offline as the RL loop would have queried it;
- `plots`: PNGs of reward traces and of the suite's curves.
"""
