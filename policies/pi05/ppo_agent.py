"""pi0.5 under PPO: log-probabilities for the flow-matching action expert (flow-SDE) and a value head.

pi0.5 samples an action chunk by integrating a velocity field from noise
(t = 1) to actions (t = 0) in a few Euler steps; that map is deterministic,
so the chunk has no tractable likelihood. Following Flow-GRPO / pi_RL's
"flow-SDE", each Euler step is replaced by the Euler-Maruyama step of the
SDE with the same marginals as the flow (LeRobot's convention: x_t = t *
noise + (1 - t) * action, v = noise - action, dt = -1 / steps < 0):

    sigma_t = noise_level * sqrt(t / (1 - t))        (t = 1 uses the next step's t)
    mean    = x_t * (1 + sigma_t^2 / (2 t) * dt) + v(x_t, t) * (1 + sigma_t^2 (1 - t) / (2 t)) * dt
    x_{t+dt} = mean + sigma_t * sqrt(-dt) * eps,     eps ~ N(0, I)

Every denoising step is then a Gaussian transition. A decision's
log-probability is kept per entry, (N, D): the per-coordinate Gaussian
log-densities of every transition along the chain that produced it,
concatenated (the chain is stored at rollout time and re-scored with
gradients in the update), so PPO clips each entry's ratio on its own. Only the entries that reach the env count: the
real action dimensions of the executed actions (`n_action_steps`), not the
padding up to `max_action_dim` nor the unexecuted tail of the chunk. The
entropy is that of the transitions, which depends on `noise_level` only (no
gradient; it is reported, and the entropy bonus is a no-op for this policy).

The value head is a small MLP on the mean of the VLM's prefix output (image
and language tokens) over its non-padding positions. With `train_vlm` False
(the default, and what fits a GPU) the PaliGemma backbone is frozen and its
forward runs without gradients; the action expert, its projections and the
value head train.

A checkpoint is LeRobot's pi0.5 folder (`policies.pi05.save_pi05`, loadable
by eval-policy) plus `value_head.safetensors` and `pi05_rl.json`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from policies.base import Decision
from policies.pi05.policy import TOKENIZER_DIR, Pi05Config, Pi05Policy, save_pi05

log = logging.getLogger(__name__)

__all__ = ["Pi05RLAgent", "Pi05RLConfig", "make_pi05_rl", "sde_step"]

VALUE_HEAD = "value_head.safetensors"
RL_CONFIG = "pi05_rl.json"


@dataclass
class Pi05RLConfig:
    """pi0.5 for PPO: where it loads from, how much noise the chain gets, what trains."""

    pretrained: str
    noise_level: float = 0.5  # `a` of sigma_t = a * sqrt(t / (1 - t))
    num_inference_steps: int | None = None  # None = the checkpoint's
    n_action_steps: int | None = None  # executed actions per decision; None = the checkpoint's
    train_vlm: bool = False
    value_hidden: int = 256
    device: str = "auto"
    dtype: str = "auto"
    tokenizer: str | None = None
    cameras: dict[str, str] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.noise_level <= 0:
            raise ValueError(f"noise_level must be positive, got {self.noise_level}")


def sde_step(x: torch.Tensor, v: torch.Tensor, t: float, dt: float, noise_level: float,
             t_cap: float) -> tuple[torch.Tensor, float]:
    """(mean, std) of the flow-SDE transition from x at time t by dt < 0 (module doc); `t_cap` stands in
    for t = 1, where sqrt(t / (1 - t)) is infinite."""
    t_sigma = min(t, t_cap)
    sigma = noise_level * math.sqrt(t_sigma / (1.0 - t_sigma))
    mean = x * (1 + sigma**2 / (2 * t) * dt) + v * (1 + sigma**2 * (1 - t) / (2 * t)) * dt
    return mean, sigma * math.sqrt(-dt)


def _gaussian_log_prob(x: torch.Tensor, mean: torch.Tensor, std: float) -> torch.Tensor:
    """Per-sample N(x; mean, std^2) log-density of each entry, flattened to (N, entries)."""
    z = (x - mean) / std
    per = -0.5 * z**2 - math.log(std) - 0.5 * math.log(2 * math.pi)
    return per.flatten(1)


class Pi05RLAgent(nn.Module):
    """pi0.5 behind the PPO agent interface of `policies.actor_critic.ppo_agent` (decide / evaluate / value / save / load)."""

    def __init__(self, config: Pi05RLConfig, policy: Pi05Policy | None = None) -> None:
        super().__init__()
        self.config = config
        self.pi05 = policy or Pi05Policy(Pi05Config(
            pretrained=config.pretrained, n_action_steps=config.n_action_steps,
            num_inference_steps=config.num_inference_steps, device=config.device, dtype=config.dtype,
            tokenizer=config.tokenizer, cameras=dict(config.cameras),
        ))
        self.lerobot = self.pi05.policy  # LeRobot's PI05Policy (an nn.Module, registered here)
        self.model = self.lerobot.model  # PI05Pytorch
        lc = self.lerobot.config
        self.steps = int(lc.num_inference_steps)
        self.chunk = int(lc.chunk_size)
        self.max_action_dim = int(lc.max_action_dim)
        self.action_dim = self.pi05.action_dim
        self.executed_steps = self.pi05.n_action_steps
        self.camera_names = self.pi05.camera_names
        width = self.model.paligemma_with_expert.paligemma.config.text_config.hidden_size
        self.value_head = nn.Sequential(nn.Linear(width, config.value_hidden), nn.Tanh(), nn.Linear(config.value_hidden, 1))
        self.value_head.to(self.device)
        vlm = self.model.paligemma_with_expert.paligemma
        for p in vlm.parameters():
            p.requires_grad_(config.train_vlm)
        self.action_low: np.ndarray | None = None
        self.action_high: np.ndarray | None = None

    @property
    def device(self) -> torch.device:
        return next(self.lerobot.parameters()).device

    def set_action_bounds(self, low: np.ndarray, high: np.ndarray) -> None:
        self.action_low, self.action_high = np.asarray(low, np.float32), np.asarray(high, np.float32)

    # -- inputs ------------------------------------------------------------------------------------

    def _batch(self, obs: Mapping[str, Any]) -> dict[str, Any]:
        """An env observation batch -> LeRobot's preprocessed batch (normalised state, tokens, images)."""
        state = torch.as_tensor(obs["state"], dtype=torch.float32)
        batch: dict[str, Any] = {self.pi05.config.state_key: state.cpu(), "task": list(obs["task"])}
        images = obs.get("images") or {}
        for camera, key in self.pi05._camera_map.items():  # noqa: SLF001 - the wrapper's resolved mapping
            if camera not in images:
                raise ValueError(f"pi0.5 needs camera {camera!r}; the observation has {', '.join(images) or 'none'}")
            batch[key] = torch.as_tensor(images[camera]).cpu().permute(0, 3, 1, 2).float() / 255.0
        return self.pi05.preprocessor(batch)

    def _prefix(self, batch: dict[str, Any]) -> tuple[torch.Tensor, Any, torch.Tensor]:
        """(prefix pad masks, KV cache, pooled prefix features) of one batch: the VLM pass."""
        from lerobot.policies.pi05 import modeling_pi05 as m

        images, img_masks = self.lerobot._preprocess_images(batch)  # noqa: SLF001 - LeRobot's own preprocessing
        tokens, masks = batch[m.OBS_LANGUAGE_TOKENS], batch[m.OBS_LANGUAGE_ATTENTION_MASK]
        embs, pad_masks, att_masks = self.model.embed_prefix(images, img_masks, tokens, masks)
        att_4d = m.prepare_attention_masks_4d(m.make_att_2d_masks(pad_masks, att_masks))
        position_ids = torch.cumsum(pad_masks, dim=1) - 1
        self.model.paligemma_with_expert.paligemma.model.language_model.config._attn_implementation = "eager"  # noqa: SLF001
        (prefix_out, _), kv = self.model.paligemma_with_expert.forward(
            attention_mask=att_4d, position_ids=position_ids, past_key_values=None,
            inputs_embeds=[embs, None], use_cache=True,
        )
        weights = pad_masks.to(prefix_out.dtype)[..., None]
        pooled = (prefix_out * weights).sum(1) / weights.sum(1).clamp_min(1.0)
        return pad_masks, kv, pooled.float()

    def _transition_log_probs(self, pad_masks: torch.Tensor, kv: Any, chain: torch.Tensor) -> torch.Tensor:
        """log N(x_{k+1}; mean_k, std_k) of every denoising step and entry that reaches the env (N, steps * E)."""
        dt = -1.0 / self.steps
        terms = []
        for k in range(self.steps):
            t = 1.0 + k * dt
            x = chain[:, k]
            v = self.model.denoise_step(pad_masks, kv, x, torch.full((x.shape[0],), t, device=x.device))
            mean, std = sde_step(x, v.float(), t, dt, self.config.noise_level, t_cap=1.0 + dt)
            used = (slice(None), slice(0, self.executed_steps), slice(0, self.action_dim))
            terms.append(_gaussian_log_prob(chain[:, k + 1][used], mean[used], std))
        return torch.cat(terms, dim=1)

    def _entropy(self, n: int) -> torch.Tensor:
        dt = -1.0 / self.steps
        dims = self.executed_steps * self.action_dim
        h = sum(dims * (0.5 * math.log(2 * math.pi * math.e) + math.log(sde_step(
            torch.zeros(1), torch.zeros(1), 1.0 + k * dt, dt, self.config.noise_level, 1.0 + dt)[1]))
            for k in range(self.steps))
        return torch.full((n,), float(h), device=self.device)

    # -- the PPO agent interface -------------------------------------------------------------------

    def decide(self, obs: Mapping[str, Any]) -> Decision:
        """Sample a chunk through the noisy chain; env actions are the executed part, unnormalised and clipped."""
        with torch.no_grad():
            batch = self._batch(obs)
            pad_masks, kv, pooled = self._prefix(batch)
            n = pad_masks.shape[0]
            x = torch.randn(n, self.chunk, self.max_action_dim, device=pad_masks.device)
            chain = [x]
            terms = []
            dt = -1.0 / self.steps
            used = (slice(None), slice(0, self.executed_steps), slice(0, self.action_dim))
            for k in range(self.steps):
                t = 1.0 + k * dt
                v = self.model.denoise_step(pad_masks, kv, x, torch.full((n,), t, device=x.device))
                mean, std = sde_step(x, v.float(), t, dt, self.config.noise_level, t_cap=1.0 + dt)
                x = mean + std * torch.randn_like(mean)
                terms.append(_gaussian_log_prob(x[used], mean[used], std))
                chain.append(x)
            log_prob = torch.cat(terms, dim=1)
            value = self.value_head(pooled).squeeze(-1)
            actions = self.pi05.postprocessor(x[:, : self.executed_steps, : self.action_dim])
        env_actions = np.asarray(actions.float().cpu().numpy(), np.float32)
        if self.action_low is not None and self.action_high is not None:
            env_actions = np.clip(env_actions, self.action_low, self.action_high)
        return Decision(env_actions, torch.stack(chain, 1), log_prob.cpu(), value.float().cpu())

    def evaluate(self, obs: Mapping[str, Any], stored: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(log_prob, entropy, value) of stored chains (N, steps + 1, chunk, max_action_dim), with gradients."""
        batch = self._batch(obs)
        with torch.set_grad_enabled(self.config.train_vlm and torch.is_grad_enabled()):
            pad_masks, kv, pooled = self._prefix(batch)
        log_prob = self._transition_log_probs(pad_masks, kv, stored.to(pad_masks.device))
        value = self.value_head(pooled).squeeze(-1)
        return log_prob.cpu(), self._entropy(len(log_prob)).cpu(), value.float().cpu()

    def exploration_std(self) -> float:
        """The mean std of the chain's transitions (set by noise_level, not learned)."""
        dt = -1.0 / self.steps
        return float(np.mean([sde_step(torch.zeros(1), torch.zeros(1), 1.0 + k * dt, dt, self.config.noise_level,
                                       1.0 + dt)[1] for k in range(self.steps)]))

    def value(self, obs: Mapping[str, Any]) -> torch.Tensor:
        with torch.no_grad():
            _, _, pooled = self._prefix(self._batch(obs))
            return self.value_head(pooled).squeeze(-1).float().cpu()

    def parameters(self, recurse: bool = True) -> Iterable[nn.Parameter]:  # type: ignore[override]
        """The trainable parameters only (a frozen VLM is left out of the optimiser)."""
        return [p for p in super().parameters(recurse) if p.requires_grad]

    def value_parameters(self) -> list[nn.Parameter]:
        return list(self.value_head.parameters())

    def train(self, mode: bool = True) -> Pi05RLAgent:
        super().train(mode)
        self.lerobot.train(mode)
        return self

    def save(self, path: str | Path) -> None:
        """LeRobot's pi0.5 folder (eval-policy loads it) + the value head + this config."""
        from safetensors.torch import save_file

        out = Path(path)
        save_pi05(self.lerobot, self.pi05.preprocessor, self.pi05.postprocessor, out)
        source = Path(self.config.tokenizer or Path(self.config.pretrained) / TOKENIZER_DIR)
        if source.is_dir() and not (out / TOKENIZER_DIR).exists():
            shutil.copytree(source, out / TOKENIZER_DIR)
        save_file({k: v.detach().cpu().contiguous() for k, v in self.value_head.state_dict().items()},
                  str(out / VALUE_HEAD))
        (out / RL_CONFIG).write_text(json.dumps(dataclasses.asdict(self.config), indent=2) + "\n")

    def load(self, path: str | Path) -> None:
        """Weights (policy and value head) from a folder written by `save`."""
        from safetensors.torch import load_model

        from common.checkpoint_files import check_tensors, load_tensors

        root = Path(path)
        check_tensors(root / "model.safetensors")  # a damaged file: one line, not safetensors' traceback
        load_model(self.lerobot, str(root / "model.safetensors"), strict=True, device=str(self.device))
        self.value_head.load_state_dict(load_tensors(root / VALUE_HEAD, device=str(self.device)))


def make_pi05_rl(config: Pi05RLConfig) -> Pi05RLAgent:
    """pi0.5 from `config.pretrained` with a fresh value head (or the one saved next to it)."""
    agent = Pi05RLAgent(config)
    head = Path(config.pretrained) / VALUE_HEAD
    if head.is_file():
        from common.checkpoint_files import load_tensors

        agent.value_head.load_state_dict(load_tensors(head, device=str(agent.device)))
    return agent
