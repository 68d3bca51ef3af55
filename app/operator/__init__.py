"""The operator app (`lrm-robot operate`): self-improvement rounds under a person's eye, sim or robot.

- `config`: the YAML config (`OperateConfig`);
- `session`: the rounds without any UI (`OperatorSession`, thread-safe commands, events out);
- `events`: what the session reports;
- `widgets`: the live rollout panel and the round dashboard;
- `app`: the Textual app that runs the session in a worker thread and maps keys to commands;
- `rerun`: one episode into a .rrd file or the rerun viewer (app.rerun_log).
"""
