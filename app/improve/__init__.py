"""Self-improvement rounds (`lrm-robot improve`): roll out, judge the last frame, keep the successes,
fine-tune, evaluate, repeat; resumable at every step.

- `config`: the YAML config (`ImproveConfig`);
- `loop`: the rounds, top to bottom (`ImproveRun`);
- `judge`: the completion verdict of a rollout's last frame(s), and training the compact judge;
- `selection`: which episodes each round trains on;
- `state`: the run's manifest of finished steps;
- `report`: report.json, success.png and the printed table.

The rollouts themselves go through `app.rollout.run_rollout`, the function the operator UI drives.
"""
