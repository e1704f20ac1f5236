"""Deep prompt injection into transformers' stock CLIP modules through forward hooks (METHOD.md §1.2, §1.3, §1.5).

No CLIP modeling code is copied: hooks are installed on the stable module paths of CONVENTIONS.md §2.1 for the
duration of one forward (as PEFT's `_enable_peft_forward_hooks` does), so transformers' own causal mask, attention
backend (eager / SDPA), EOS pooling and gradient checkpointing stay in force.

Transformers 5.x checkpoints a layer's `forward`, not its `__call__`, so module hooks run outside the checkpoint and
are not replayed during recomputation: the prompts are written once per forward, as they should be.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn


def _replace_rows(hidden: torch.Tensor, rows: torch.Tensor, start: int) -> torch.Tensor:
    """Out-of-place `hidden[:, start:start+n] = rows` with `rows` (n, d) broadcast over the batch; `start` may be
    negative (counted from the end)."""
    if start < 0:
        start += hidden.shape[1]
    rows = rows.to(dtype=hidden.dtype).unsqueeze(0).expand(hidden.shape[0], -1, -1)
    return torch.cat([hidden[:, :start], rows, hidden[:, start + rows.shape[1] :]], dim=1)


@contextlib.contextmanager
def text_prompt_hooks(text_model: nn.Module, prompts: torch.Tensor | None) -> Iterator[None]:
    """Deep textual prompts θ_t of shape (depth, n_ctx, d_text) (METHOD.md §1.2).

    Layer 0: rows 1..n_ctx of the token embeddings (the placeholder tokens after SOS) are replaced by θ_t[0]; the
    position embeddings are added afterwards by the model, prompt rows included, as in the reference.
    Layers 1..depth-1: rows 1..n_ctx of the hidden state are overwritten before the block by θ_t[i].
    Replacing (not inserting) keeps the sequence length and the EOS pooling index unchanged.
    """
    if prompts is None or prompts.shape[1] == 0:
        yield
        return
    handles = []

    def embed_hook(_module: nn.Module, _args: tuple, output: torch.Tensor) -> torch.Tensor:
        return _replace_rows(output, prompts[0], 1)

    handles.append(text_model.embeddings.token_embedding.register_forward_hook(embed_hook))
    for i, layer in enumerate(text_model.encoder.layers[1 : prompts.shape[0]], start=1):
        handles.append(layer.register_forward_pre_hook(_make_layer_hook(prompts[i], 1), with_kwargs=True))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


@contextlib.contextmanager
def vision_prompt_hooks(vision_model: nn.Module, prompts: torch.Tensor | None, frozen_rows: int = 0) -> Iterator[None]:
    """Deep visual prompts θ_v of shape (depth, n_pro, d_vision) (METHOD.md §1.3, VPT-deep with appended tokens).

    Layer 0: θ_v[0] is appended after CLS + patch tokens, after the position embeddings (so without one), before
    `pre_layrnorm`. Layers 1..depth-1: the last n_pro rows are replaced by θ_v[i]. The CLS output is unchanged in
    form, so pooling and projection are CLIP's.

    `frozen_rows > 0` batches a frozen pass with the prompted one: the first `frozen_rows` samples of the batch get
    an additive attention mask that hides the prompt tokens as keys, so their CLS output equals the unprompted
    CLIP's exactly (up to float rounding) while the remaining samples see the prompts. One call instead of two
    (inference floor of issue 6). Needs an attention backend that takes a float mask (eager, SDPA).
    """
    if prompts is None or prompts.shape[1] == 0:
        yield
        return
    n_pro = prompts.shape[1]
    handles = []

    def embed_hook(_module: nn.Module, _args: tuple, output: torch.Tensor) -> torch.Tensor:
        rows = prompts[0].to(dtype=output.dtype).unsqueeze(0).expand(output.shape[0], -1, -1)
        return torch.cat([output, rows], dim=1)

    handles.append(vision_model.embeddings.register_forward_hook(embed_hook))
    mask_cache: dict[tuple, torch.Tensor] = {}

    def mask_for(hidden: torch.Tensor) -> torch.Tensor:
        key = (hidden.shape[0], hidden.shape[1], hidden.dtype, hidden.device)
        if key not in mask_cache:
            mask = torch.zeros(hidden.shape[0], 1, 1, hidden.shape[1], dtype=hidden.dtype, device=hidden.device)
            mask[:frozen_rows, :, :, -n_pro:] = torch.finfo(hidden.dtype).min
            mask_cache[key] = mask
        return mask_cache[key]

    for i, layer in enumerate(vision_model.encoder.layers):
        rows = prompts[i] if 1 <= i < prompts.shape[0] else None
        if rows is None and not frozen_rows:
            continue
        hook = _make_layer_hook(rows, -n_pro, mask_for if frozen_rows else None)
        handles.append(layer.register_forward_pre_hook(hook, with_kwargs=True))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def _make_layer_hook(rows: torch.Tensor | None, start: int, mask_fn=None):
    """A forward pre-hook on a `CLIPEncoderLayer` (called as `layer(hidden_states, attention_mask, **kwargs)` in
    transformers 5.x): replaces prompt rows of `hidden_states` and, when batching frozen and prompted samples, sets
    the attention mask."""

    def hook(_module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        if args:
            hidden, rest = args[0], list(args[1:])
        else:
            hidden, rest = kwargs.pop("hidden_states"), []
        if rows is not None:
            hidden = _replace_rows(hidden, rows, start)
        if mask_fn is not None:
            mask = mask_fn(hidden)
            if rest:
                if rest[0] is not None:
                    raise RuntimeError("unexpected attention mask in a vision layer; cannot batch frozen passes")
                rest[0] = mask
            else:
                kwargs["attention_mask"] = mask
        return (hidden, *rest), kwargs

    return hook
