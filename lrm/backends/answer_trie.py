"""Answer options scored as a token trie: one prompt pass, one tree pass, no copy of the prompt's KV cache.

Logits mode needs P(option) for every answer option: the product of the
probabilities of the option's answer tokens after the prompt. The options share
most of those tokens: all of them start with the answer prefix
(`{"completion_progress": `), and the eleven progress values share `0.` or `1.`
after it. Laid out as a trie (one node per distinct token prefix), every
probability needed is the next-token distribution at the trie's root or at one
of its inner nodes (prefixes some option goes on after), and there are few of
those: 15 for the progress values, 3 for "yes"/"no" and for "ImageA"/"ImageB".

1. The tokens all options share are appended to the prompt; one forward pass
   gives the root's distribution and the prompt's KV cache.
2. Every inner node of the trie goes into one more forward pass of the same B
   rows as one token, laid out as a tree: a 4D attention mask lets a node see the
   prompt and its own ancestors only, and its position is the one its depth gives
   it. Its logits are the distribution after that prefix (tree attention, as
   speculative decoding verifies a tree of drafts).

The prompt's KV cache is read by every node and never copied, so extra memory is
the inner nodes' tokens per row, independent of the prompt's length; copying the
cache once per option grew as options x prompt (tens of GB for Qwen3-VL-8B at
batch 32 with 1k-token prompts).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator, Sequence
from typing import Any

# Attention implementations that apply an arbitrary 4D mask; flash kernels take none.
_MASKED_ATTENTION = ("sdpa", "eager")


@dataclasses.dataclass(frozen=True)
class AnswerTrie:
    """The token trie of one prompt's answer options (each option a token sequence).

    `prefix`: the tokens every option starts with (appended to the prompt).
    `nodes`/`parents`/`depths`: the inner nodes below the root, parents before
    children: each node's token, its parent's index (-1 for the root) and its depth
    (1 for a child of the root). `paths[k]`: option k's tokens after the prefix as
    (source, token) pairs, source 0 being the root's distribution and i + 1 that
    of inner node i.
    """

    prefix: tuple[int, ...]
    nodes: tuple[int, ...]
    parents: tuple[int, ...]
    depths: tuple[int, ...]
    paths: tuple[tuple[tuple[int, int], ...], ...]

    @classmethod
    def build(cls, options: Sequence[Sequence[int]]) -> AnswerTrie:
        sequences = [tuple(seq) for seq in options]
        if len(set(sequences)) != len(sequences):
            raise ValueError("answer options are not distinguishable by tokens (two tokenise the same)")
        shared = _common_prefix_length(sequences)
        rests = [seq[shared:] for seq in sequences]
        # An inner node is a prefix that some option continues after; sorting by length puts parents first.
        inner = sorted({rest[:j] for rest in rests for j in range(1, len(rest))}, key=len)
        index = {prefix: i for i, prefix in enumerate(inner)}
        paths = tuple(
            tuple((0 if j == 0 else index[rest[:j]] + 1, rest[j]) for j in range(len(rest))) for rest in rests
        )
        return cls(
            prefix=sequences[0][:shared],
            nodes=tuple(p[-1] for p in inner),
            parents=tuple(index[p[:-1]] if len(p) > 1 else -1 for p in inner),
            depths=tuple(len(p) for p in inner),
            paths=paths,
        )

    def ancestry(self) -> list[list[bool]]:
        """[i][j]: whether inner node i sees node j (j is i or an ancestor of i)."""
        seen = [[False] * len(self.nodes) for _ in self.nodes]
        for i in range(len(self.nodes)):
            j = i
            while j >= 0:
                seen[i][j] = True
                j = self.parents[j]
        return seen


def option_probs(model: Any, batch: dict, tries: Sequence[AnswerTrie]) -> Any:
    """P(option | prompt), normalised over the options; a (B, K) tensor.

    `batch` is the model's left-padded input with each row's `tries[b].prefix`
    already appended; every trie has the same number of options K.
    """
    import torch

    tree = any(trie.nodes for trie in tries)
    out = model(**batch, use_cache=tree, logits_to_keep=1)
    root = torch.log_softmax(out.logits[:, -1, :].float(), dim=-1)  # (B, V)
    inner = _tree_pass(model, batch["attention_mask"], out, tries) if tree else None

    rows, options, sources, tokens = [], [], [], []
    for b, trie in enumerate(tries):
        for k, path in enumerate(trie.paths):
            for source, token in path:
                rows.append(b)
                options.append(k)
                sources.append(source)
                tokens.append(token)
    device = root.device
    rows_t, sources_t, tokens_t = (torch.tensor(x, device=device) for x in (rows, sources, tokens))
    logp = root[rows_t, tokens_t]
    if inner is not None:
        below = sources_t > 0
        logp[below] = inner[rows_t[below], sources_t[below] - 1, tokens_t[below]]
    scores = torch.zeros(len(tries), len(tries[0].paths), device=device)
    scores.index_put_((rows_t, torch.tensor(options, device=device)), logp, accumulate=True)
    return torch.softmax(scores, dim=-1)


def _tree_pass(model: Any, prompt_mask: Any, prompt_out: Any, tries: Sequence[AnswerTrie]) -> Any:
    """Log-distributions after every inner node, (B, N, V), in one pass over the prompt's cache."""
    import torch

    device = prompt_mask.device
    bsz, width = len(tries), max(len(trie.nodes) for trie in tries)
    ids = torch.zeros((bsz, width), dtype=torch.long)
    depth = torch.ones((bsz, width), dtype=torch.long)
    # A padding slot (rows whose trie is smaller) sees only itself and the prompt; its output is unused.
    sees = torch.eye(width, dtype=torch.bool).repeat(bsz, 1, 1)
    layouts: dict[int, tuple[Any, Any, Any]] = {}  # rows usually share one trie: build its tensors once
    for b, trie in enumerate(tries):
        if id(trie) not in layouts:
            layouts[id(trie)] = (torch.tensor(trie.nodes), torch.tensor(trie.depths), torch.tensor(trie.ancestry()))
        n = len(trie.nodes)
        ids[b, :n], depth[b, :n], sees[b, :n, :n] = layouts[id(trie)]
    ids, depth, sees = ids.to(device), depth.to(device), sees.to(device)

    # Text after the prompt continues M-RoPE at (valid length + the row's rope delta) on all three
    # axes; a node at depth d is the d-th token after the prompt.
    deltas = getattr(prompt_out, "rope_deltas", None)
    start = prompt_mask.sum(dim=1) + (deltas.view(-1).to(device) if deltas is not None else 0)
    positions = (start[:, None] + depth - 1)[None].expand(3, -1, -1)

    allowed = torch.cat([prompt_mask.bool()[:, None, :].expand(-1, width, -1), sees], dim=2)
    dtype = model.get_input_embeddings().weight.dtype
    mask = torch.zeros(allowed.shape, dtype=dtype, device=device).masked_fill(~allowed, torch.finfo(dtype).min)
    with _attention_taking_masks(model.config):
        out = model(
            input_ids=ids,
            attention_mask=mask[:, None],  # (B, 1, N, prompt + N): taken as given, not made causal
            position_ids=positions,
            past_key_values=prompt_out.past_key_values,
            use_cache=True,
        )
    return torch.log_softmax(out.logits.float(), dim=-1)


@contextlib.contextmanager
def _attention_taking_masks(config: Any) -> Iterator[None]:
    """Run under SDPA when the model uses an attention kernel that ignores a 4D mask (flash attention).

    Attention layers read the implementation from their config at every call and
    SDPA reads the same KV cache, so switching for the tree pass is enough.
    """
    configs = list(_config_tree(config))
    saved = [(c, c._attn_implementation) for c in configs]
    if all(impl in _MASKED_ATTENTION for _, impl in saved):
        yield
        return
    config._attn_implementation = "sdpa"  # the setter recurses into the sub-configs
    try:
        yield
    finally:
        for c, impl in saved:  # parents before children: each ends with its own setting
            c._attn_implementation = impl


def _config_tree(config: Any) -> Iterator[Any]:
    yield config
    for key in getattr(config, "sub_configs", {}):
        sub = getattr(config, key, None)
        if sub is not None:
            yield from _config_tree(sub)


def _common_prefix_length(sequences: Sequence[Sequence[int]]) -> int:
    length = 0
    for column in zip(*sequences):
        if any(token != column[0] for token in column):
            break
        length += 1
    return length
