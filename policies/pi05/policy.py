"""pi0.5 through LeRobot: LeRobot's own `PI05Policy` and its own pre/post-processors behind the Policy interface.

LeRobot's layout: a config dataclass (`Pi05Config`, YAML-friendly), the policy
class (`Pi05Policy`, implementing `policies.base.Policy`) and a factory
(`make_policy`).

What this wrapper adds to LeRobot, and nothing more:

- Env observations -> LeRobot batch, by config: each env camera is mapped to
  one of the policy's image features (`cameras`; by default camera `X` feeds
  `observation.images.X`), the state vector to `state_key`, the task sentence
  to LeRobot's `task`. A new robot needs a config, not code.
- Device and dtype chosen at run time ("auto": CUDA + bfloat16 where a GPU is
  present, CPU + float32 otherwise), passed to LeRobot's config before the
  model is built and to the processors' device step.
- `act` returns the first `n_action_steps` actions of each predicted chunk,
  (K, A) in the env's units (the post-processor unnormalises); the rollout
  loop executes them step by step. A fixed `seed` makes the flow-matching
  noise, and so the actions, reproducible.
- The tokenizer: LeRobot's pi0.5 processor names `google/paligemma-3b-pt-224`
  (gated, hub only). A checkpoint may carry its own tokenizer in a
  `tokenizer/` subfolder, or the config names one (`tokenizer`); either
  replaces the processor's through LeRobot's own override mechanism.

Checkpoint directory (LeRobot's own format, `save_pi05`): `config.json` and
`model.safetensors` (`PI05Policy.save_pretrained`),
`policy_preprocessor.json` / `policy_postprocessor.json` plus their state
files (normalisation statistics), optionally `tokenizer/`.

LeRobot pitfalls handled here: `PI05Policy.from_pretrained` prints instead
of logging and, if the weights fail to load, *prints a warning and returns a
randomly initialised model*; `load_pi05` captures that output and refuses.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from common.checkpoint_files import check_tensors
from common.numbers import Seed
from policies.base import ObservationLike
from policies.errors import PolicyError

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

__all__ = [
    "IMAGE_PREFIX",
    "TOKENIZER_DIR",
    "Pi05Config",
    "Pi05Policy",
    "load_pi05",
    "make_pi05_processors",
    "make_policy",
    "resolve_device_dtype",
    "save_pi05",
]

IMAGE_PREFIX = "observation.images."
TOKENIZER_DIR = "tokenizer"  # a checkpoint's own tokenizer, if it carries one
PALIGEMMA_TOKENIZER = "google/paligemma-3b-pt-224"  # what LeRobot's pi0.5 processor hard-codes

# Messages PI05Policy.from_pretrained prints when the weights did not load as saved.
_LOAD_FAILURES = ("Could not load state dict", "Returning model without loading", "Missing keys", "Unexpected keys")


@dataclass
class Pi05Config:
    """How to load pi0.5 and feed it Env observations; YAML-friendly."""

    type: Literal["pi05"] = "pi05"
    pretrained: str = "lerobot/pi05_base"  # checkpoint folder or hub id (base or fine-tuned)
    # env camera name -> policy image feature ("observation.images.<name>"). Empty: camera X feeds
    # observation.images.X for every image feature the checkpoint declares.
    cameras: dict[str, str] = field(default_factory=dict)
    state_key: str = "observation.state"
    n_action_steps: int | None = None  # actions executed per predicted chunk; None = the checkpoint's
    num_inference_steps: int | None = None  # flow-matching steps; None = the checkpoint's
    device: str = "auto"  # "auto": cuda if available, else cpu
    dtype: Literal["auto", "bfloat16", "float32"] = "auto"  # "auto": bfloat16 on a GPU, float32 on a CPU
    tokenizer: str | None = None  # path or hub id replacing the processor's tokenizer; None = see module doc
    seed: Seed | None = None  # fixes the flow-matching noise (identical actions for identical inputs)

    def __post_init__(self) -> None:
        if not self.pretrained:
            raise ValueError("pretrained must name a checkpoint folder or hub id")
        for camera, key in self.cameras.items():
            if not key.startswith(IMAGE_PREFIX):
                raise ValueError(f"cameras[{camera!r}] must be a feature named {IMAGE_PREFIX}<name>, got {key!r}")
        if len(set(self.cameras.values())) != len(self.cameras):
            raise ValueError(f"two cameras feed the same image feature: {self.cameras}")
        if self.n_action_steps is not None and self.n_action_steps < 1:
            raise ValueError(f"n_action_steps must be at least 1, got {self.n_action_steps}")
        if self.num_inference_steps is not None and self.num_inference_steps < 1:
            raise ValueError(f"num_inference_steps must be at least 1, got {self.num_inference_steps}")
        if self.dtype not in ("auto", "bfloat16", "float32"):
            raise ValueError(f"dtype must be 'auto', 'bfloat16' or 'float32', got {self.dtype!r}")


def resolve_device_dtype(device: str = "auto", dtype: str = "auto") -> tuple[str, str]:
    """("cuda" | "cpu" | as given, "bfloat16" | "float32"): bf16 only where a GPU runs the model."""
    import torch

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if dtype == "auto":
        dtype = "bfloat16" if device.startswith("cuda") else "float32"
    return device, dtype


@contextlib.contextmanager
def _replace_tokenizer(tokenizer: str | None) -> Iterator[None]:
    """While active, LeRobot's pi0.5 processor factory builds its tokenizer step from `tokenizer`."""
    if tokenizer is None:
        yield
        return
    from unittest import mock

    from lerobot.policies.pi05 import processor_pi05
    from lerobot.processor import TokenizerProcessorStep

    def step(**kwargs: Any) -> Any:
        return TokenizerProcessorStep(**{**kwargs, "tokenizer_name": tokenizer})

    with mock.patch.object(processor_pi05, "TokenizerProcessorStep", step):
        yield


def make_pi05_processors(
    lerobot_config: Any, dataset_stats: Mapping[str, Any] | None = None, *, tokenizer: str | None = None
) -> tuple[Any, Any]:
    """LeRobot's fresh pi0.5 (preprocessor, postprocessor) for a new policy; `tokenizer` replaces PaliGemma's."""
    from lerobot.policies.factory import make_pre_post_processors

    with _replace_tokenizer(tokenizer):
        return make_pre_post_processors(lerobot_config, dataset_stats=dataset_stats)


def save_pi05(policy: Any, preprocessor: Any, postprocessor: Any, path: str | os.PathLike[str],
              tokenizer: Any | None = None) -> Path:
    """Save a LeRobot PI05Policy and its processors (and optionally a tokenizer) as one checkpoint folder."""
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    policy.save_pretrained(out)
    preprocessor.save_pretrained(out)
    postprocessor.save_pretrained(out)
    if tokenizer is not None:
        tokenizer.save_pretrained(out / TOKENIZER_DIR)
    return out


def load_pi05(config: Pi05Config) -> tuple[Any, Any, Any]:
    """(PI05Policy, preprocessor, postprocessor) from `config.pretrained`, on the run-time device and dtype."""
    from lerobot.configs import PreTrainedConfig
    from lerobot.policies.factory import make_pre_post_processors
    from lerobot.policies.pi05 import PI05Config, PI05Policy

    device, dtype = resolve_device_dtype(config.device, config.dtype)
    source = config.pretrained
    local = Path(source).expanduser()
    if local.exists() and not local.is_dir():
        raise PolicyError(f"{source} is a file; pretrained must be a checkpoint folder or hub id")
    if local.is_dir():
        source = str(local)
        if not (local / "config.json").is_file():
            raise PolicyError(f"{local} has no config.json: not a LeRobot policy checkpoint")
    try:
        lerobot_config = PreTrainedConfig.from_pretrained(source)
    except Exception as exc:  # noqa: BLE001 - LeRobot/hub raise many kinds; one line for the user
        raise PolicyError(f"cannot read the policy config of {source}: {exc}") from None
    if not isinstance(lerobot_config, PI05Config):
        raise PolicyError(f"{source} holds a {lerobot_config.type!r} policy, not pi05")
    lerobot_config.device = device
    lerobot_config.dtype = dtype
    if config.n_action_steps is not None:
        if config.n_action_steps > lerobot_config.chunk_size:
            raise PolicyError(
                f"n_action_steps {config.n_action_steps} exceeds the checkpoint's "
                f"chunk_size {lerobot_config.chunk_size}"
            )
        lerobot_config.n_action_steps = config.n_action_steps
    if config.num_inference_steps is not None:
        lerobot_config.num_inference_steps = config.num_inference_steps

    if (local / "model.safetensors").is_file():
        check_tensors(local / "model.safetensors")  # a damaged file: one line, not LeRobot's traceback
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        policy = PI05Policy.from_pretrained(source, config=lerobot_config)
    text = printed.getvalue()
    log.debug("PI05Policy.from_pretrained said: %s", text)
    failures = [line.strip() for line in text.splitlines() if any(f in line for f in _LOAD_FAILURES)]
    if failures:
        raise PolicyError(f"the weights of {source} did not load: {failures[0]}")
    policy.eval()

    tokenizer = config.tokenizer
    if tokenizer is None and local.is_dir() and (local / TOKENIZER_DIR).is_dir():
        tokenizer = str(local / TOKENIZER_DIR)
    overrides: dict[str, Any] = {"device_processor": {"device": device}}
    if tokenizer is not None:
        overrides["tokenizer_processor"] = {"tokenizer_name": tokenizer}
    try:
        preprocessor, postprocessor = make_pre_post_processors(
            lerobot_config, pretrained_path=source, preprocessor_overrides=overrides
        )
    except Exception as exc:  # noqa: BLE001
        raise PolicyError(f"cannot load the pi0.5 processors of {source}: {exc}") from None
    return policy, preprocessor, postprocessor


class Pi05Policy:
    """LeRobot's PI05Policy behind `policies.base.Policy`: Env observation in, (K, A) actions out."""

    def __init__(self, config: Pi05Config, policy: Any = None, preprocessor: Any = None,
                 postprocessor: Any = None) -> None:
        """Load `config.pretrained`, or wrap an already built (policy, preprocessor, postprocessor)."""
        self.config = config
        if policy is None:
            policy, preprocessor, postprocessor = load_pi05(config)
        elif preprocessor is None or postprocessor is None:
            raise PolicyError("a given PI05Policy needs its preprocessor and postprocessor too")
        else:
            if config.n_action_steps is not None:
                policy.config.n_action_steps = config.n_action_steps
            if config.num_inference_steps is not None:
                policy.config.num_inference_steps = config.num_inference_steps
        self.policy = policy
        self.preprocessor = preprocessor
        self.postprocessor = postprocessor
        self.lerobot_config = policy.config
        self._camera_map = self._resolve_cameras()
        self._generator: torch.Generator | None = None
        self.reset()

    # -- Policy interface -----------------------------------------------------------------------

    @property
    def needs_images(self) -> bool:
        return bool(self._camera_map)

    @property
    def camera_names(self) -> list[str]:
        return list(self._camera_map)

    @property
    def n_action_steps(self) -> int:
        return int(self.lerobot_config.n_action_steps)

    @property
    def chunk_size(self) -> int:
        return int(self.lerobot_config.chunk_size)

    @property
    def action_dim(self) -> int:
        return int(self.lerobot_config.output_features["action"].shape[0])

    @property
    def state_dim(self) -> int | None:
        feature = self.lerobot_config.input_features.get(self.config.state_key)
        return None if feature is None else int(feature.shape[0])

    def reset(self) -> None:
        """New episode: forget LeRobot's action queue; re-seed the noise if a seed is set."""
        import torch

        self.policy.reset()
        if self.config.seed is not None:
            device = next(self.policy.parameters()).device
            self._generator = torch.Generator(device=device).manual_seed(self.config.seed)

    def act(self, observation: ObservationLike) -> np.ndarray:
        """The first n_action_steps actions of a freshly predicted chunk, (K, A) float32 in env units."""
        import torch

        batch = self.to_batch(observation)
        with torch.inference_mode():
            batch = self.preprocessor(batch)
            chunk = self.policy.predict_action_chunk(batch, **self._noise_kwargs())
            chunk = chunk[:, : self.n_action_steps]
            actions = self.postprocessor(chunk)
        return np.asarray(actions[0].float().cpu().numpy(), dtype=np.float32)

    # -- helpers --------------------------------------------------------------------------------

    def to_batch(self, observation: ObservationLike) -> dict[str, Any]:
        """An Env observation as an unbatched LeRobot frame (images CHW float in [0, 1])."""
        import torch

        state = np.asarray(observation.state, dtype=np.float32)
        if self.state_dim is not None and state.shape != (self.state_dim,):
            raise PolicyError(f"the policy expects a state of size {self.state_dim}, the env gives {state.shape}")
        batch: dict[str, Any] = {self.config.state_key: torch.from_numpy(state.copy()), "task": observation.task}
        for camera, key in self._camera_map.items():
            image = observation.images.get(camera)
            if image is None:
                raise PolicyError(f"the observation has no image from camera {camera!r} (capture before act)")
            image = np.asarray(image)
            if image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8:
                raise PolicyError(f"camera {camera!r} must give (H, W, 3) uint8, got {image.dtype} {image.shape}")
            batch[key] = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float() / 255.0
        return batch

    def _noise_kwargs(self) -> dict[str, Any]:
        if self._generator is None:
            return {}
        import torch

        param = next(self.policy.parameters())
        shape = (1, self.chunk_size, int(self.lerobot_config.max_action_dim))
        noise = torch.randn(shape, generator=self._generator, device=self._generator.device, dtype=torch.float32)
        return {"noise": noise.to(param.device)}

    def _resolve_cameras(self) -> dict[str, str]:
        image_keys = [k for k in self.lerobot_config.image_features if ".empty_camera_" not in k]
        if self.config.cameras:
            unknown = [k for k in self.config.cameras.values() if k not in image_keys]
            if unknown:
                raise PolicyError(
                    f"the checkpoint has no image feature {unknown[0]!r}; it has {', '.join(image_keys) or 'none'}"
                )
            return dict(self.config.cameras)
        return {key.removeprefix(IMAGE_PREFIX): key for key in image_keys}


def make_policy(config: Pi05Config) -> Pi05Policy:
    """The pi0.5 policy a config describes."""
    return Pi05Policy(config)
