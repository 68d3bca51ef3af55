"""`train_ppo`: PPO with GAE on vectorised ManiSkill envs, readable top to bottom (CleanRL / ManiSkill style).

One iteration:
1. rollout: every env resets (seeds seed + i * num_envs + e) and runs one
   episode of `episode_steps` env steps. The agent decides every
   `executed_steps` steps (a chunk); after each env step the reward wrapper
   asks which envs are due for a reward query, only those envs render, and
   r_t comes back for all (`app.ppo.rewards`), divided by the running std of
   the discounted return (`normalize_reward`). A decision's reward is the
   discounted sum over its executed steps. The episode is truncated, not
   terminated, at the end: GAE bootstraps from V(s_T).
2. advantages: GAE(gamma, lambda) over decisions (discount gamma**n for n
   executed steps), and the explained variance of these returns by the
   values the critic predicted before it saw them.
3. critic warm-up: a behaviour-cloned checkpoint has an untrained critic, so
   until that explained variance reaches `value_warmup_min_ev` (at most
   `value_warmup_iterations` iterations) the update trains the critic alone,
   for `value_warmup_epochs` epochs.
4. update: `update_epochs` passes over shuffled minibatches of the clipped
   PPO loss (one ratio per action element or per decision, value loss
   optionally clipped, entropy bonus); the actor's and the critic's gradient
   norms clipped apart; optional early stop at `target_kl`.
5. metrics: one JSON line (+ rerun, + PNG, + TensorBoard / W&B with `report_to`), see `app.ppo.report`; one warning
   line when the critic still explains nothing after its warm-up or when
   most of an update is clipped.
6. checkpoint every `checkpoint_every` iterations: the policy (its own
   checkpoint format, loadable by eval-policy), optimiser state, reward
   scaler, warm-up state and the iteration counter. The torch seed of iteration i is derived from
   (seed, i) and the env seeds from i, so a run killed and resumed from a
   checkpoint continues exactly as the uninterrupted run would have.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from common.checkpoint_files import load_training_state
from common.config import config_to_dict
from common.errors import FileError
from common.outputs import MARKER, is_marked, make_output_dir
from common.progress import progress_bar
from common.tracking import make_tracker
from app.ppo.algo import RewardScaler, compute_gae, critic_is_warm, explained_variance, linear_anneal, ppo_loss
from app.ppo.config import PPOConfig
from app.ppo.report import MetricsLog, agreement
from app.ppo.rewards import StepReward
from lrm.types import RewardModel
from policies.base import PPOAgent
from policies.errors import PolicyError
from policies.factory import make_ppo_agent
from sim.vector_env import VecSim, make_vec_sim

log = logging.getLogger(__name__)

__all__ = ["PPOResult", "Rollout", "advantages_and_returns", "collect_rollout", "train_ppo", "update"]

CHECKPOINT = "checkpoints/last"
STATE_FILE = "training_state.pt"
POLICY_DIR = "policy"


@dataclass
class Rollout:
    """One iteration's decisions, (T, N) first: what the update needs, plus what the metrics need."""

    obs: list[dict[str, Any]]  # T observation batches
    stored: torch.Tensor  # (T, N, ...)
    log_probs: torch.Tensor  # (T, N, D): one term per element that reached the env
    values: torch.Tensor
    rewards: torch.Tensor  # discounted sum over the decision's executed steps of the (scaled) reward
    discounts: torch.Tensor  # (T,) gamma**executed
    next_value: torch.Tensor  # (N,) V(s_T)
    success_once: np.ndarray  # (N,) bool
    success_end: np.ndarray
    step_rewards: np.ndarray  # (steps, N) r_t, before scaling
    dense: np.ndarray  # (steps, N) the simulator's dense reward
    env_steps: int
    seconds: float
    queries: list[Any]


@dataclass
class PPOResult:
    output_dir: Path
    policy: Path
    iterations: int
    env_steps: int
    last: dict[str, Any]

    def summary(self) -> str:
        s = self.last
        return (f"PPO: {self.iterations} iterations, {self.env_steps} env steps; last iteration success "
                f"{s.get('success_rate', 0):.1%}, mean reward {s.get('mean_reward', 0):.3f}; policy {self.policy}")


def _obs(states: np.ndarray, images: dict[int, dict[str, np.ndarray]] | None, cameras: list[str], task: str,
         device: torch.device) -> dict[str, Any]:
    batch: dict[str, Any] = {"state": torch.as_tensor(states, dtype=torch.float32, device=device),
                             "task": [task] * len(states)}
    if cameras:
        assert images is not None
        batch["images"] = {c: torch.as_tensor(np.stack([images[i][c] for i in range(len(states))]), device=device)
                           for c in cameras}
    return batch


def collect_rollout(agent: PPOAgent, sim: VecSim, reward: StepReward, *, seeds: list[int], episode_steps: int,
                    gamma: float, reward_camera: str | None, device: torch.device,
                    scaler: RewardScaler | None = None) -> Rollout:
    """One synchronised episode in every env (module doc, step 1)."""
    started = time.perf_counter()
    n = sim.num_envs
    everyone = list(range(n))
    result = sim.reset(seeds)
    reward.reset(reward.timed_render(sim.capture, everyone) if reward.needs_reset_frames else None, reward_camera)
    if scaler is not None:
        scaler.reset()
    success_once = result.success.copy()
    obs_list, stored, log_probs, values, rewards, discounts = [], [], [], [], [], []
    step_rewards, dense = [], []
    t = 0
    while t < episode_steps:
        images = sim.capture(everyone) if agent.camera_names else None  # the policy looks only when it decides
        obs = _obs(result.states, images, agent.camera_names, sim.task, device)
        decision = agent.decide(obs)
        executed = min(decision.env_actions.shape[1], episode_steps - t)
        total = np.zeros(n)
        for j in range(executed):
            result = sim.step(decision.env_actions[:, j])
            due = reward.due()
            frames = reward.timed_render(sim.capture, due) if due else {}
            r = reward.step(result, frames, reward_camera)
            total += gamma**j * (r if scaler is None else scaler(r))
            step_rewards.append(r)
            dense.append(result.dense_reward)
            success_once |= result.success
        t += executed
        obs_list.append(obs)
        stored.append(decision.stored)
        log_probs.append(decision.log_prob)
        values.append(decision.value)
        rewards.append(torch.as_tensor(total, dtype=torch.float32, device=decision.value.device))
        discounts.append(gamma**executed)
    images = sim.capture(everyone) if agent.camera_names else None
    with torch.no_grad():
        next_value = agent.value(_obs(result.states, images, agent.camera_names, sim.task, device))
    return Rollout(
        obs=obs_list, stored=torch.stack(stored), log_probs=torch.stack(log_probs), values=torch.stack(values),
        rewards=torch.stack(rewards), discounts=torch.tensor(discounts, dtype=torch.float32, device=rewards[0].device),
        next_value=next_value, success_once=success_once, success_end=result.success.copy(),
        step_rewards=np.array(step_rewards), dense=np.array(dense), env_steps=t * n,
        seconds=time.perf_counter() - started, queries=reward.take_queries(),
    )


def _index_obs(obs: list[dict[str, Any]], t_idx: torch.Tensor, e_idx: torch.Tensor) -> dict[str, Any]:
    """The minibatch's observations out of the per-decision batches."""
    states = torch.stack([o["state"] for o in obs])[t_idx, e_idx]
    batch: dict[str, Any] = {"state": states, "task": [obs[int(t)]["task"][int(e)] for t, e in zip(t_idx, e_idx)]}
    if "images" in obs[0]:
        batch["images"] = {c: torch.stack([o["images"][c] for o in obs])[t_idx, e_idx] for c in obs[0]["images"]}
    return batch


def advantages_and_returns(rollout: Rollout, gae_lambda: float) -> tuple[torch.Tensor, torch.Tensor]:
    """GAE over the rollout's decisions (module doc, step 2); every env starts its episode at decision 0."""
    T, N = rollout.rewards.shape
    dones = torch.zeros(T, N, device=rollout.rewards.device)
    dones[0] = 1.0
    same = bool((rollout.discounts == rollout.discounts[0]).all())  # a truncated last chunk executes fewer steps
    gamma = float(rollout.discounts[0]) if same else rollout.discounts
    with torch.no_grad():
        return compute_gae(rollout.rewards, rollout.values, dones, rollout.next_value,
                           torch.zeros_like(rollout.next_value), gamma, gae_lambda)


def update(agent: PPOAgent, optimizer: torch.optim.Optimizer, rollout: Rollout, advantages: torch.Tensor,
           returns: torch.Tensor, config: PPOConfig, generator: torch.Generator, *, train_actor: bool = True
           ) -> dict[str, float]:
    """Minibatch PPO over the rollout (module doc, steps 3-4); the critic alone when not `train_actor`."""
    h = config.ppo
    T, N = rollout.rewards.shape
    b_t = torch.arange(T).repeat_interleave(N)
    b_e = torch.arange(N).repeat(T)
    flat = lambda x: x.reshape(T * N, *x.shape[2:])  # noqa: E731
    b_stored, b_logp, b_adv = flat(rollout.stored), flat(rollout.log_probs), flat(advantages)
    b_ret, b_val = flat(returns), flat(rollout.values)
    per_decision = h.ratio == "per_decision"
    if per_decision:
        b_logp = b_logp.sum(-1)
    critic_ids = {id(p) for p in agent.value_parameters()}
    critic = [p for p in agent.parameters() if id(p) in critic_ids]
    actor = [p for p in agent.parameters() if id(p) not in critic_ids]
    batch = T * N
    mb = max(1, batch // h.num_minibatches)
    stats: dict[str, list[float]] = {k: [] for k in ("policy_loss", "value_loss", "entropy", "approx_kl", "clipfrac")}
    agent.train(True)
    for _epoch in range(h.update_epochs if train_actor else h.value_warmup_epochs):
        order = torch.randperm(batch, generator=generator)
        stop = False
        for start in range(0, batch, mb):
            idx = order[start : start + mb]
            obs = _index_obs(rollout.obs, b_t[idx], b_e[idx])
            new_logp, entropy, new_value = agent.evaluate(obs, b_stored[idx])
            if per_decision:
                new_logp = new_logp.sum(-1)
            loss = ppo_loss(new_logp, b_logp[idx], b_adv[idx], new_value, b_val[idx], b_ret[idx], entropy,
                            clip_coef=h.clip_coef, clip_vloss=h.clip_vloss, ent_coef=h.ent_coef,
                            vf_coef=h.vf_coef, norm_adv=h.norm_adv, policy_weight=1.0 if train_actor else 0.0)
            optimizer.zero_grad(set_to_none=True)
            loss.total.backward()
            torch.nn.utils.clip_grad_norm_(actor, h.max_grad_norm)
            torch.nn.utils.clip_grad_norm_(critic, h.value_max_grad_norm or h.max_grad_norm)
            optimizer.step()
            for key, value in (("policy_loss", loss.policy), ("value_loss", loss.value), ("entropy", loss.entropy),
                               ("approx_kl", loss.approx_kl), ("clipfrac", loss.clipfrac)):
                stats[key].append(value)
            if train_actor and h.target_kl is not None and loss.approx_kl > h.target_kl:
                stop = True
                break
        if stop:
            break
    agent.train(False)
    out = {k: float(np.mean(v)) for k, v in stats.items()}
    out["mean_return"] = float(returns[0].mean())
    out["std"] = agent.exploration_std()
    return out


# -- building the pieces from the config ---------------------------------------------------------------------


def make_agent(config: PPOConfig, sim: VecSim, device: torch.device) -> PPOAgent:
    """The policy of `config.policy`, checked against the envs, wrapped for PPO (policies.factory)."""
    env = config.env.sim
    try:
        return make_ppo_agent(config.policy, state_size=sim.state_size, camera_names=list(sim.camera_names),
                              action_low=sim.action_low, action_high=sim.action_high,
                              env_name=f"{env.env_id} (state_mode {env.state_mode})", device=device)
    except PolicyError as exc:
        raise PPOSetupError(str(exc)) from None


class PPOSetupError(ValueError):
    """A config that cannot run (wrong checkpoint, env/policy mismatch); one line."""


def make_reward_model(config: PPOConfig) -> RewardModel | None:
    if config.reward.source == "env":
        return None
    from lrm.backends import make_reward_backend

    backend = config.reward.backend.config
    unsupported = [m for m in config.reward.hold.weights if m not in backend.modalities]
    if unsupported:
        raise PPOSetupError(f"reward backend {backend.type!r} does not answer {unsupported[0]!r} "
                            f"(it answers {', '.join(backend.modalities)})")
    try:
        return make_reward_backend(backend)
    except (FileNotFoundError, ValueError) as exc:
        raise PPOSetupError(f"reward.backend {config.reward.backend}: {exc}") from None


# -- the run -------------------------------------------------------------------------------------------------


def _optimizer(agent: PPOAgent, config: PPOConfig) -> torch.optim.Optimizer:
    """Adam (CleanRL's eps) with the critic in its own group when it has its own rate."""
    h = config.ppo
    critic = {id(p) for p in agent.value_parameters()}
    actor = [p for p in agent.parameters() if id(p) not in critic]
    value = [p for p in agent.parameters() if id(p) in critic]
    groups = [{"params": actor, "lr": h.learning_rate, "initial_lr": h.learning_rate},
              {"params": value, "lr": h.value_learning_rate or h.learning_rate,
               "initial_lr": h.value_learning_rate or h.learning_rate}]
    return torch.optim.Adam([g for g in groups if g["params"]], eps=1e-5)


def _save_checkpoint(out: Path, agent: PPOAgent, optimizer: torch.optim.Optimizer, iteration: int,
                     env_steps: int, failures: dict[int, int], extra: dict[str, Any]) -> None:
    """Write into a fresh folder, then swap it in: a kill mid-save leaves the previous checkpoint whole."""
    final = out / CHECKPOINT
    tmp = final.with_name("last.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    agent.save(tmp / POLICY_DIR)
    torch.save({"iteration": iteration, "env_steps": env_steps, "optimizer": optimizer.state_dict(),
                "failures": failures, **extra}, tmp / STATE_FILE)
    old = final.with_name("last.old")
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    if old.exists():
        shutil.rmtree(old)


def _load_checkpoint(out: Path) -> dict[str, Any] | None:
    final = out / CHECKPOINT
    for candidate in (final, final.with_name("last.old")):  # .old survives a kill between the two renames
        if (candidate / STATE_FILE).is_file():
            state = load_training_state(candidate / STATE_FILE)  # plain data only: a received run cannot run code
            state["path"] = candidate
            return state
    return None


def train_ppo(config: PPOConfig, *, reward_model: RewardModel | None = None,
              on_iteration: Callable[[dict[str, Any]], None] | None = None) -> PPOResult:
    """Run (or resume) PPO as `config` says; `reward_model` replaces the configured backend (tests)."""
    out = Path(config.output_dir)
    # the checkpoint is read before any work: a damaged or planted one ends the run here
    state = _load_checkpoint(out) if config.resume else None
    if state is None and (out / CHECKPOINT).exists() and not is_marked(out):
        raise FileError(f"output_dir {out}: has no {MARKER}, so lrm-robot did not make it; refusing to delete "
                        f"its {CHECKPOINT} to start over (resume: false)")
    make_output_dir(out, "ppo")
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    device = torch.device("cuda" if config.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if config.device == "auto" else config.device))
    if reward_model is None:
        reward_model = make_reward_model(config)
    if config.reward.source == "lrm" and config.env.sim.cameras == []:
        raise PPOSetupError("reward.source lrm needs a camera: env.sim.cameras is empty")
    sim = make_vec_sim(config.env.sim, config.env.num_envs, config.env.backend, config.env.workers)
    metrics: MetricsLog | None = None
    try:
        agent = make_agent(config, sim, device)
        reward = StepReward.make(config.reward, sim.num_envs, sim.task, reward_model)
        optimizer = _optimizer(agent, config)
        metrics = MetricsLog(out, rerun=config.rerun, plot=config.plot, title=f"PPO {config.env.sim.env_id}")
        scaler = RewardScaler(sim.num_envs, config.ppo.gamma) if config.ppo.normalize_reward else None
        start, env_steps, failures, warm = 0, 0, {}, config.ppo.value_warmup_iterations == 0
        warned: set[str] = set()
        if state is not None:
            agent.load(state["path"] / POLICY_DIR)
            optimizer.load_state_dict(state["optimizer"])
            start, env_steps, failures = state["iteration"], state["env_steps"], dict(state["failures"])
            warm = bool(state.get("critic_warm", warm))
            if scaler is not None and "reward_scaler" in state:
                scaler.load_state_dict(state["reward_scaler"])
            log.info("resuming from %s at iteration %d", state["path"], start)
            if reward.guard is not None:
                reward.guard.failures.update(failures)
        elif (out / CHECKPOINT).exists():
            shutil.rmtree(out / CHECKPOINT)  # resume: false starts over
        metrics.truncate(start)
        # TensorBoard / W&B get the same rows; metrics.jsonl stays PPO's own (app.ppo.report)
        metrics.tracker = make_tracker([r for r in config.report_to if r != "jsonl"], out, run_name=f"ppo-{out.name}",
                                       config=config_to_dict(config), resume_step=start - 1)
        (out / "config.json").write_text(json.dumps(config_to_dict(config), indent=2, default=str) + "\n")
        last: dict[str, Any] = {}
        bar = _progress(config, start)
        for it in range(start, config.iterations):
            torch.manual_seed(config.seed * 1_000_003 + it)
            generator = torch.Generator().manual_seed(config.seed * 1_000_003 + it)
            factor = linear_anneal(it, config.iterations) if config.ppo.anneal_lr else 1.0
            for group in optimizer.param_groups:
                group["lr"] = group["initial_lr"] * factor
            lr = config.ppo.learning_rate * factor
            seeds = [config.env.seed + it * sim.num_envs + e for e in range(sim.num_envs)]
            queries_before, renders_before = reward.query_count, reward.renders
            score_before, render_before = reward.score_seconds, reward.render_seconds
            agent.train(False)
            rollout = collect_rollout(agent, sim, reward, seeds=seeds, episode_steps=config.env.episode_steps,
                                      gamma=config.ppo.gamma, reward_camera=config.reward.camera, device=device,
                                      scaler=scaler)
            updating = time.perf_counter()
            advantages, returns = advantages_and_returns(rollout, config.ppo.gae_lambda)
            explained = explained_variance(rollout.values, returns)  # the critic before it saw these returns
            if not warm and critic_is_warm(it, explained, max_iterations=config.ppo.value_warmup_iterations,
                                           min_explained=config.ppo.value_warmup_min_ev):
                warm = True
                log.info("critic warm at iteration %d (explained variance %.2f): the actor trains from now on",
                         it, explained)
                if explained != explained or explained < WARN_EXPLAINED:
                    _warn_once(warned, "critic", f"the critic explains nothing after its warm-up (explained "
                               f"variance {explained:.2f} after {it} iterations): raise ppo.value_warmup_iterations "
                               "or ppo.value_learning_rate")
            stats = update(agent, optimizer, rollout, advantages, returns, config, generator, train_actor=warm)
            if warm and stats["clipfrac"] > WARN_CLIPFRAC:
                _warn_once(warned, "clip", f"iteration {it}: {stats['clipfrac']:.0%} of the ratios were clipped, "
                           "so the update barely moves the policy: lower ppo.learning_rate or use ppo.ratio: per_element")
            update_s = time.perf_counter() - updating
            env_steps += rollout.env_steps
            queries = reward.query_count - queries_before
            row: dict[str, Any] = {
                "iteration": it, "env_steps": env_steps, "lr": lr, "policy_trained": warm,
                # measured once, on the values the critic predicted before this update; `explained_variance`
                # is the same number under the name earlier metrics files used
                "explained_variance_before": explained, "explained_variance": explained,
                "reward_scale": None if scaler is None else float(np.sqrt(scaler.var + scaler.epsilon)),
                "success_rate": float(rollout.success_once.mean()),
                "success_at_end": float(rollout.success_end.mean()),
                "mean_reward": float(rollout.step_rewards.mean()),
                "mean_dense_reward": float(rollout.dense.mean()),
                "env_steps_per_s": rollout.env_steps / rollout.seconds,
                "reward_queries": queries,
                "reward_queries_per_s": queries / rollout.seconds,
                "reward_score_s": reward.score_seconds - score_before,
                "renders": reward.renders - renders_before,
                "render_s": reward.render_seconds - render_before,
                "rollout_s": rollout.seconds, "update_s": update_s,
                "backend_failures": sum(reward.failures.values()),
                **stats,
                **agreement(rollout.queries, rollout.success_once),
            }
            metrics.append(row)
            last = row
            if bar is not None:
                bar.update(1)
                bar.set_postfix(success=f"{row['success_rate']:.2f}", reward=f"{row['mean_reward']:.3f}")
            log.info("iteration %d: success %.3f, mean reward %.4f, %.0f env-steps/s, kl %.4f", it,
                     row["success_rate"], row["mean_reward"], row["env_steps_per_s"], row["approx_kl"])
            if on_iteration is not None:
                on_iteration(row)
            if (it + 1) % config.checkpoint_every == 0 or it + 1 == config.iterations:
                _save_checkpoint(out, agent, optimizer, it + 1, env_steps, reward.failures, {
                    "critic_warm": warm, "reward_scaler": None if scaler is None else scaler.state_dict()})
        if bar is not None:
            bar.close()
        final = out / POLICY_DIR
        if final.exists():
            shutil.rmtree(final)
        agent.save(final)
        return PPOResult(out, final, config.iterations, env_steps, last or (metrics.rows() or [{}])[-1])
    finally:
        if metrics is not None and metrics.tracker is not None:
            metrics.tracker.close()
        sim.close()


WARN_EXPLAINED = 0.0  # a critic below this predicts worse than the mean return
WARN_CLIPFRAC = 0.5  # an update where most ratios sit at the clip is not a trust region, it is a wall


def _warn_once(warned: set[str], key: str, message: str) -> None:
    if key not in warned:
        warned.add(key)
        log.warning(message)


def _progress(config: PPOConfig, start: int) -> Any:
    if not config.progress:
        return None
    return progress_bar(config.iterations, initial=start, desc="ppo", unit="iter")

