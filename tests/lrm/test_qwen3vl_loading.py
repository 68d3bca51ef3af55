"""Loading the base with its adapters as the published LRM needs it, and refusing adapters that did not load.

The progress adapter here has the published one's shape: LoRA on the language
model plus its own copy of the vision tower, listed as `visual` and its nested
`merger` (modules_to_save); the other two are language-only. They are laid out
like the hub repository, one subfolder each, and loaded through the backend's
loading code.
"""

from __future__ import annotations

import pathlib
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from lrm.backends.qwen3vl_loading import AdapterLoadError, ModelSource, load_model, load_processor
from tests.support.tiny_reward_models import TinyModelPaths, build_tiny_vision_adapter

MODALITIES = ("contrastive", "progress", "completion")
WEIGHTS = "adapter_model.safetensors"


@pytest.fixture(scope="module")
def repo(tiny_qwen3vl: TinyModelPaths, tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """A folder laid out like USC-PSI-Lab/LRM-models: contrastive/, progress/, completion/."""
    root = tmp_path_factory.mktemp("lrm_models")
    build_tiny_vision_adapter(tiny_qwen3vl.base, root / "progress", seed=5)
    for name in ("contrastive", "completion"):
        shutil.copytree(tiny_qwen3vl.adapters[name], root / name)
    return root


def sources(root: pathlib.Path) -> dict[str, ModelSource]:
    return {name: ModelSource(str(root), subfolder=name) for name in MODALITIES}


def one_input(tiny_qwen3vl: TinyModelPaths) -> dict:
    processor = load_processor(ModelSource(str(tiny_qwen3vl.base)))
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (64, 96, 3), dtype=np.uint8)
    messages = [{"role": "user", "content": [{"type": "text", "text": "Task: stack the cube"}, {"type": "image"}]}]
    text = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return dict(processor(text=[text], images=[image], return_tensors="pt"))


def load(tiny_qwen3vl: TinyModelPaths, adapters: dict[str, ModelSource]):
    return load_model(str(tiny_qwen3vl.base), adapters, dtype=torch.float32, attn="sdpa", device="cpu")


@pytest.fixture(scope="module")
def model(tiny_qwen3vl: TinyModelPaths, repo: pathlib.Path):
    return load(tiny_qwen3vl, sources(repo))


def test_one_base_three_adapters_and_the_vision_copy_of_progress(model) -> None:
    assert set(model.peft_config) == set(MODALITIES)
    # the nested `merger` entry is dropped: the wrapper around `visual` holds it
    assert model.peft_config["progress"].modules_to_save == ["visual"]
    wrapped = [n for n, _ in model.named_modules() if n.endswith("modules_to_save")]
    assert wrapped == ["base_model.model.model.visual.modules_to_save"]
    base_weights = [n for n, _ in model.named_parameters() if "lora" not in n and "modules_to_save" not in n]
    assert len(base_weights) == len(set(base_weights))


def test_every_adapter_changes_the_model_and_only_progress_the_vision_tower(model, tiny_qwen3vl) -> None:
    batch = one_input(tiny_qwen3vl)
    inner = model.get_base_model().model

    def run(adapter: str | None):
        with torch.inference_mode():
            if adapter is None:
                with model.disable_adapter():
                    return model(**batch).logits, inner.get_image_features(batch["pixel_values"], batch["image_grid_thw"])
            model.set_adapter(adapter)
            return model(**batch).logits, inner.get_image_features(batch["pixel_values"], batch["image_grid_thw"])

    base_logits, base_vision = run(None)
    outputs = {name: run(name) for name in MODALITIES}
    for name, (logits, _) in outputs.items():
        assert (logits - base_logits).abs().max() > 1e-3, f"{name} serves the base model"
    for a, b in (("contrastive", "progress"), ("progress", "completion"), ("contrastive", "completion")):
        assert (outputs[a][0] - outputs[b][0]).abs().max() > 1e-3
    # progress sees through its own vision tower; the language-only adapters through the base's
    vision = {name: out[1].pooler_output[0] for name, out in outputs.items()}
    assert (vision["progress"] - base_vision.pooler_output[0]).abs().max() > 1e-3
    assert torch.equal(vision["contrastive"], base_vision.pooler_output[0])
    assert torch.equal(vision["completion"], base_vision.pooler_output[0])


def _rewrite(source: pathlib.Path, target: pathlib.Path, edit) -> pathlib.Path:
    shutil.copytree(source, target)
    tensors = load_file(target / WEIGHTS)
    save_file(edit(tensors), target / WEIGHTS)
    return target


def test_an_adapter_with_zero_lora_b_is_refused(tiny_qwen3vl, repo: pathlib.Path, tmp_path: pathlib.Path) -> None:
    zeroed = _rewrite(repo / "completion", tmp_path / "completion",
                      lambda t: {k: torch.zeros_like(v) if "lora_B" in k else v for k, v in t.items()})
    adapters = {**sources(repo), "completion": ModelSource(str(zeroed))}
    with pytest.raises(AdapterLoadError) as error:
        load(tiny_qwen3vl, adapters)
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith(f"adapter 'completion' ({zeroed}): every lora_B is zero")


def test_a_saved_tensor_that_does_not_reach_the_model_is_refused(
    tiny_qwen3vl, repo: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    def misnamed(tensors: dict) -> dict:
        key = next(k for k in tensors if "layers.1.self_attn.q_proj.lora_B" in k)
        return {**tensors, key.replace("layers.1.", "layers.7."): tensors[key].clone()}

    broken = _rewrite(repo / "contrastive", tmp_path / "contrastive", misnamed)
    with pytest.raises(AdapterLoadError, match=r"^adapter 'contrastive' \(.*\): the saved tensor .*layers\.7\..* "
                                               r"did not reach the model; refusing to start$"):
        load(tiny_qwen3vl, {"contrastive": ModelSource(str(broken))})


def test_a_vision_copy_that_does_not_arrive_is_refused(tiny_qwen3vl, repo: pathlib.Path, monkeypatch) -> None:
    """A loader that drops the saved vision weights (as a silently skipped load would) is caught."""
    import peft

    real = peft.PeftModel.load_adapter

    def skip_vision(self, *args, **kwargs):
        result = real(self, *args, **kwargs)
        with torch.no_grad():
            copy = self.get_base_model().model.visual.modules_to_save["progress"]
            copy.load_state_dict(self.get_base_model().model.visual.original_module.state_dict())
        return result

    monkeypatch.setattr(peft.PeftModel, "load_adapter", skip_vision)
    with pytest.raises(AdapterLoadError, match=r"^adapter 'progress' .*: the saved tensor .*visual.* did not reach"):
        load(tiny_qwen3vl, {"progress": ModelSource(str(repo), subfolder="progress")})
