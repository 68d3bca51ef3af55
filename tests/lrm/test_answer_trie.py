"""Logits mode's token trie: its layout, and on the tiny Qwen3-VL that it gives the brute-force probabilities.

Brute force is the definition: for every option, one full forward pass over
prompt + answer tokens (no cache), the sum of the answer tokens' log-probs,
softmax over the options. The trie must give the same distribution with two
passes and without ever copying the prompt's KV cache.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from transformers import DynamicCache

from lrm.backends.answer_trie import AnswerTrie, _attention_taking_masks, option_probs
from lrm.backends.prompts import AnswerOption, PromptTemplate
from lrm.backends.qwen3vl import Qwen3VLBackendConfig, Qwen3VLRewardModel, _append_tokens
from lrm.types import RewardRequest, prepare_frames
from tests.support.tiny_reward_models import TinyModelPaths, build_config, build_tokenizer

PROGRESS = tuple(AnswerOption(f"{v / 10:.1f}", v / 10) for v in range(11))
YES_NO = (AnswerOption('"yes"', 1.0), AnswerOption('"no"', 0.0))
IMAGE_AB = (AnswerOption('"ImageA"', -1.0), AnswerOption('"ImageB"', 1.0))
# The published adapters' option sets, under the JSON keys they answer with.
OPTION_SETS = {
    "contrastive": ("more_complete_image", IMAGE_AB),
    "completion": ("task_completed", YES_NO),
    "progress": ("completion_progress", PROGRESS),
}


# ---------------------------------------------------------------- layout (no model)


def test_progress_like_trie_shares_prefixes() -> None:
    # token ids: 7 = ' ', 0..9 = digits, 10 = '.', 11 = '}'
    options = [[5, 7, v // 10, 10, v % 10, 11] for v in range(0, 11)]
    trie = AnswerTrie.build(options)
    assert trie.prefix == (5, 7)
    # inner nodes: '0', '1', '0.', '1.', '0.0'..'0.9', '1.0': 15, not 11 options x 4 tokens
    assert len(trie.nodes) == 15
    assert all(p < i for i, p in enumerate(trie.parents))  # parents before children
    assert [d for d in trie.depths] == sorted(trie.depths)
    # option 0.3: '0' from the root, '.' after '0', '3' after '0.', '}' after '0.3'
    path = trie.paths[3]
    assert [token for _, token in path] == [0, 10, 3, 11]
    assert path[0][0] == 0
    nodes = [trie.nodes[source - 1] for source, _ in path[1:]]
    assert nodes == [0, 10, 3]
    # each node sees exactly its ancestors and itself
    seen = trie.ancestry()
    last = path[-1][0] - 1
    assert sum(seen[last]) == trie.depths[last] == 3


def test_option_that_is_a_prefix_of_another_ends_inside_the_trie() -> None:
    trie = AnswerTrie.build([[4, 1], [4, 1, 0], [4, 2]])
    assert trie.prefix == (4,)
    assert trie.paths[0] == ((0, 1),)  # p('1')
    assert trie.paths[1] == ((0, 1), (1, 0))  # p('1') p('0' | '1')
    assert trie.nodes == (1,)


def test_options_that_tokenise_the_same_are_refused() -> None:
    with pytest.raises(ValueError, match="not distinguishable"):
        AnswerTrie.build([[1, 2], [1, 2], [1, 3]])


def test_tree_pass_runs_under_sdpa_when_the_model_uses_flash_attention() -> None:
    config = build_config(build_tokenizer())
    config._attn_implementation = "flash_attention_2"
    config.vision_config._attn_implementation = "eager"
    with _attention_taking_masks(config):
        assert config.text_config._attn_implementation == "sdpa"
    assert config.text_config._attn_implementation == "flash_attention_2"
    assert config._attn_implementation == "flash_attention_2"
    assert config.vision_config._attn_implementation == "eager"


# ---------------------------------------------------------------- on the tiny model


def frame(seed: int, h: int, w: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 255, (h, w, 3), dtype=np.uint8)


def requests_for(modality: str) -> list[RewardRequest]:
    """Three requests whose prompts differ in length (task text, frame sizes): the batch is padded."""
    sizes = [(64, 64), (96, 128), (64, 96)]
    tasks = ["lift the cube", "pick up the red cube and lift it", "stack the green cube on the red one"]
    out = []
    for i, ((h, w), task) in enumerate(zip(sizes, tasks, strict=True)):
        frames = {"current": frame(i, h, w)}
        if modality == "progress":
            frames["first"] = frame(10 + i, h, w)
        if modality == "contrastive":
            frames["previous"] = frame(20 + i, h, w)
        out.append(RewardRequest(modality, frames, task))
    return out


@pytest.fixture(scope="module")
def model(tiny_qwen3vl: TinyModelPaths) -> Qwen3VLRewardModel:
    return load(tiny_qwen3vl, "sdpa")


def load(paths: TinyModelPaths, attn: str) -> Qwen3VLRewardModel:
    config = Qwen3VLBackendConfig(
        model=str(paths.base),
        adapters={m: str(p) for m, p in paths.adapters.items()},
        mode="logits",
        reasoning=False,
        image_size=None,  # native sizes: rows differ in image tokens and rope deltas
        max_batch_size=8,
        device="cpu",
        attn_implementation=attn,
    )
    model = Qwen3VLRewardModel(config)
    for modality, (key, options) in OPTION_SETS.items():
        model.templates[modality] = dataclasses.replace(
            model.templates[modality], answer_key=key, options=options, reasoning=False
        )
    return model


def brute_force(model: Qwen3VLRewardModel, template: PromptTemplate, request: RewardRequest) -> np.ndarray:
    """Each option scored by a full uncached forward pass of prompt + answer, alone in its batch."""
    frames = [prepare_frames(request, 0, model.config.image_size)]
    with torch.inference_mode(), model._adapter(template.modality):
        inputs = model._encode(template, [request], frames)
        scores = []
        for option in template.options:
            answer = model.tokenizer(template.answer_text(option), add_special_tokens=False)["input_ids"]
            batch = _append_tokens(inputs, [answer], model.tokenizer.pad_token_id)
            logp = model.model(**batch).logits[0].float().log_softmax(-1)
            n = len(answer)
            positions = torch.arange(logp.shape[0] - n - 1, logp.shape[0] - 1)
            scores.append(logp[positions, torch.tensor(answer)].sum())
    return torch.softmax(torch.stack(scores), dim=0).numpy()


@pytest.mark.parametrize("modality", list(OPTION_SETS))
def test_trie_equals_brute_force_for_the_published_option_sets(model: Qwen3VLRewardModel, modality: str) -> None:
    template = model.templates[modality]
    requests = requests_for(modality)
    rewards = model.score(requests)  # one padded batch of three
    for request, reward in zip(requests, rewards, strict=True):
        assert list(reward.probs) == [o.name for o in template.options]
        expected = brute_force(model, template, request)
        assert np.allclose(list(reward.probs.values()), expected, atol=1e-5), (modality, reward.probs, expected)


def test_rows_with_tries_of_different_sizes(model: Qwen3VLRewardModel) -> None:
    """Each row has its own trie (with reasoning, contexts differ): smaller ones are padded in the tree pass."""
    base = model.templates["progress"]
    per_row = [PROGRESS[3:8:4], PROGRESS[0:11:10], PROGRESS[5:7]]  # 0.3/0.7, 0.0/1.0, 0.5/0.6
    templates = [dataclasses.replace(base, options=options) for options in per_row]
    requests = requests_for("progress")
    frames = [prepare_frames(r, i, model.config.image_size) for i, r in enumerate(requests)]
    tries = [
        AnswerTrie.build(
            [model.tokenizer(t.answer_text(o), add_special_tokens=False)["input_ids"] for o in t.options]
        )
        for t in templates
    ]
    assert len({len(trie.nodes) for trie in tries}) > 1
    with torch.inference_mode(), model._adapter("progress"):
        inputs = model._encode(base, requests, frames)
        batch = _append_tokens(inputs, [list(t.prefix) for t in tries], model.tokenizer.pad_token_id)
        got = option_probs(model.model, batch, tries).numpy()
    for row, template, request in zip(got, templates, requests, strict=True):
        assert np.allclose(row, brute_force(model, template, request), atol=1e-5)


def test_eager_attention_reads_the_tree_mask_too(tiny_qwen3vl: TinyModelPaths, model: Qwen3VLRewardModel) -> None:
    eager = load(tiny_qwen3vl, "eager")
    requests = requests_for("progress")
    for a, b in zip(eager.score(requests), model.score(requests), strict=True):
        assert a.probs == pytest.approx(b.probs, abs=1e-5)


@pytest.mark.parametrize("modality", list(OPTION_SETS))
def test_two_passes_and_the_prompt_cache_is_never_copied(
    model: Qwen3VLRewardModel, modality: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Per batch: the prompt pass, then one tree pass of the trie's inner nodes over the same B cache rows."""
    for name in ("batch_repeat_interleave", "batch_select_indices", "reorder_cache"):

        def refuse(*args, _name=name, **kwargs):
            raise AssertionError(f"the prompt's KV cache was copied ({_name})")

        monkeypatch.setattr(DynamicCache, name, refuse, raising=False)
    passes = []

    def record(module, args, kwargs):
        cache = kwargs.get("past_key_values")
        past = cache.get_seq_length() if cache is not None else 0
        embeds = kwargs["inputs_embeds"]
        passes.append((embeds.shape[0], embeds.shape[1], past))

    language_model = model.model.get_base_model().model.language_model
    handle = language_model.register_forward_pre_hook(record, with_kwargs=True)
    try:
        requests = requests_for(modality)
        model.score(requests)
    finally:
        handle.remove()
    template = model.templates[modality]
    trie = AnswerTrie.build(
        [model.tokenizer(template.answer_text(o), add_special_tokens=False)["input_ids"] for o in template.options]
    )
    (rows, prompt, past), (tree_rows, tree_tokens, tree_past) = passes
    assert (rows, past) == (len(requests), 0)
    assert (tree_rows, tree_past) == (len(requests), prompt)  # same rows, reading the prompt's cache
    assert tree_tokens == len(trie.nodes)  # the inner nodes, whatever the number of options
    assert tree_tokens < sum(len(path) for path in trie.paths)
