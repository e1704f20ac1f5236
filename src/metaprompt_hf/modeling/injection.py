"""Deep prompt injection into a stock transformers dual encoder, with no shared mutable state (docs/method.md §1.2,
§1.3, §1.5).

No modeling code is copied: forward hooks sit on the injection points a backbone names (`backbones/base.py`), so
transformers' own masks, attention backend (eager / SDPA), pooling and gradient checkpointing stay in force.

The hooks are installed ONCE per base model and never removed. They read the prompts of the current call from
context variables (`contextvars`), which every thread (and every asyncio task) holds separately: a forward pass
inside `text_prompts_in_context(...)` sees its own prompts, while any other thread running the same base model at
the same time (with other prompts, or none, or the stock transformers forward) sees its own. Outside such a block the
hooks return at once and the base model behaves exactly as shipped.

Transformers 5.x checkpoints a layer's `forward`, not its `__call__`, so module hooks run outside the checkpoint and
are not replayed during recomputation: the prompts are written once per forward, as they should be.
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from ..backbones import DualEncoderBackbone


@dataclass(frozen=True)
class _TextCall:
    prompts: torch.Tensor  # (depth, n_ctx, d_text), or (depth, N, n_ctx, d_text): one context per sequence
    start: int


@dataclass(frozen=True)
class _VisionCall:
    prompts: torch.Tensor  # (depth, n_pro, d_vision)
    frozen_rows: int
    masks: dict = field(default_factory=dict)  # per-call cache of the frozen-row attention mask


_TEXT: contextvars.ContextVar[_TextCall | None] = contextvars.ContextVar("metaprompt_text_prompts", default=None)
_VISION: contextvars.ContextVar[_VisionCall | None] = contextvars.ContextVar("metaprompt_vision_prompts", default=None)
_INSTALL_LOCK = threading.Lock()
_MARK = "_metaprompt_injection_hooks"


def _replace_rows(hidden: torch.Tensor, rows: torch.Tensor, start: int) -> torch.Tensor:
    """Out-of-place `hidden[:, start:start+n] = rows` with `rows` (n, d) broadcast over the batch, or (N, n, d) one
    block per sequence; `start` may be negative (counted from the end)."""
    if start < 0:
        start += hidden.shape[1]
    if rows.dim() == 3:
        if rows.shape[0] != hidden.shape[0]:
            raise ValueError(
                f"per-sequence prompts: {rows.shape[0]} blocks for a batch of {hidden.shape[0]} sequences"
            )
        rows = rows.to(dtype=hidden.dtype)
    else:
        rows = rows.to(dtype=hidden.dtype).unsqueeze(0).expand(hidden.shape[0], -1, -1)
    return torch.cat([hidden[:, :start], rows, hidden[:, start + rows.shape[1] :]], dim=1)


@contextlib.contextmanager
def text_prompts_in_context(prompts: torch.Tensor | None, start: int) -> Iterator[None]:
    """Deep textual prompts θ_t (depth, n_ctx, d_text) for the text-tower calls made inside the block, in this
    thread only (docs/method.md §1.2). θ_t of shape (depth, N, n_ctx, d_text) gives each of the call's N sequences
    its own context (CoCoOp's image-conditioned contexts, encoded for several images in one call).

    Layer 0: rows start..start+n_ctx of the token embeddings (the placeholder tokens) are replaced by θ_t[0]; position
    embeddings are added afterwards by the model, prompt rows included, as in the reference. Layers 1..depth-1: the
    same rows of the hidden state are overwritten before the block by θ_t[i]. Replacing (not inserting) keeps the
    sequence length and the pooling index unchanged.
    """
    call = _TextCall(prompts, start) if prompts is not None and prompts.shape[-2] else None
    token = _TEXT.set(call)
    try:
        yield
    finally:
        _TEXT.reset(token)


@contextlib.contextmanager
def vision_prompts_in_context(prompts: torch.Tensor | None, frozen_rows: int = 0) -> Iterator[None]:
    """Deep visual prompts θ_v (depth, n_pro, d_vision) for the vision-tower calls made inside the block, in this
    thread only (docs/method.md §1.3, VPT-deep with appended tokens).

    Layer 0: θ_v[0] is appended after CLS + patch tokens, after the position embeddings (so without one). Layers
    1..depth-1: the last n_pro rows are replaced by θ_v[i]. Backbones whose pooling reads every token drop the prompt
    rows before pooling (`vision_prompt_sink`).

    `frozen_rows > 0` batches a frozen pass with the prompted one: the first `frozen_rows` samples get an additive
    attention mask that hides the prompt tokens as keys, so their output equals the unprompted model's (up to float
    rounding) while the other samples see the prompts. Needs an attention backend that takes a float mask.
    """
    call = _VisionCall(prompts, frozen_rows) if prompts is not None and prompts.shape[1] else None
    token = _VISION.set(call)
    try:
        yield
    finally:
        _VISION.reset(token)


def install_prompt_hooks(backbone: DualEncoderBackbone) -> None:
    """Install the context-reading hooks on a base model once (idempotent, thread-safe)."""
    model = backbone.model
    if getattr(model, _MARK, False):
        return
    with _INSTALL_LOCK:
        if getattr(model, _MARK, False):
            return
        backbone.token_embedding.register_forward_hook(_text_embedding_hook)
        for i, layer in enumerate(backbone.text_layers):
            if i >= 1:
                layer.register_forward_pre_hook(_text_layer_hook(i, backbone), with_kwargs=True)
        backbone.vision_embeddings.register_forward_hook(_vision_embedding_hook)
        for i, layer in enumerate(backbone.vision_layers):
            layer.register_forward_pre_hook(_vision_layer_hook(i, backbone), with_kwargs=True)
        sink = backbone.vision_prompt_sink
        if sink is not None:
            sink.register_forward_hook(_vision_sink_hook)
        setattr(model, _MARK, True)


def _text_embedding_hook(_module: nn.Module, _args: tuple, output: torch.Tensor) -> torch.Tensor | None:
    call = _TEXT.get()
    if call is None:
        return None
    return _replace_rows(output, call.prompts[0], call.start)


def _text_layer_hook(index: int, backbone: DualEncoderBackbone) -> Callable:
    def hook(_module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict] | None:
        call = _TEXT.get()
        if call is None or index >= call.prompts.shape[0]:
            return None
        return backbone.with_layer_hidden(args, kwargs, lambda h: _replace_rows(h, call.prompts[index], call.start))

    return hook


def _vision_embedding_hook(_module: nn.Module, _args: tuple, output: torch.Tensor) -> torch.Tensor | None:
    call = _VISION.get()
    if call is None:
        return None
    rows = call.prompts[0].to(dtype=output.dtype).unsqueeze(0).expand(output.shape[0], -1, -1)
    return torch.cat([output, rows], dim=1)


def _vision_layer_hook(index: int, backbone: DualEncoderBackbone) -> Callable:
    def hook(_module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict] | None:
        call = _VISION.get()
        if call is None:
            return None
        replace = 1 <= index < call.prompts.shape[0]
        if not replace and not call.frozen_rows:
            return None
        n_pro = call.prompts.shape[1]
        args, kwargs = backbone.with_layer_hidden(
            args, kwargs, (lambda h: _replace_rows(h, call.prompts[index], -n_pro)) if replace else (lambda h: h)
        )
        if call.frozen_rows:
            args, kwargs = backbone.with_layer_attention_mask(args, kwargs, _frozen_mask(call, args[0]))
        return args, kwargs

    return hook


def _vision_sink_hook(_module: nn.Module, _args: tuple, output: object) -> object:
    call = _VISION.get()
    if call is None:
        return None
    output.last_hidden_state = output.last_hidden_state[:, : -call.prompts.shape[1]]
    return output


def _frozen_mask(call: _VisionCall, hidden: torch.Tensor) -> torch.Tensor:
    key = (hidden.shape[0], hidden.shape[1], hidden.dtype, hidden.device)
    mask = call.masks.get(key)
    if mask is None:
        mask = torch.zeros(hidden.shape[0], 1, 1, hidden.shape[1], dtype=hidden.dtype, device=hidden.device)
        mask[: call.frozen_rows, :, :, -call.prompts.shape[1] :] = torch.finfo(hidden.dtype).min
        call.masks[key] = mask
    return mask


# ------------------------------------------------------------------------------------------------ inserting mode
@dataclass(frozen=True)
class _InsertCall:
    text: torch.Tensor | None  # (n_layers, n, d_text): block k enters before layer layers[k]
    vision: torch.Tensor | None  # (n_layers, n, d_vision)
    layers: tuple[int, ...]  # 0-based indices of the layers that receive a block, increasing


_INSERT: contextvars.ContextVar[_InsertCall | None] = contextvars.ContextVar("metaprompt_inserted", default=None)
_INSERT_MARK = "_metaprompt_insert_hooks"


@contextlib.contextmanager
def inserted_tokens_in_context(
    text: torch.Tensor | None, vision: torch.Tensor | None, layers: Sequence[int]
) -> Iterator[None]:
    """Tokens INSERTED after the first token (CLS / start-of-text) of every tower call made inside the block, in
    this thread only: the sequence grows by n (MMRL's representation tokens, docs/methods/mmrl.md).

    Before layer `layers[0]` (0-based) block 0 of `text` / `vision` (len(layers), n, d) is inserted at position 1;
    before layer `layers[k]` (k >= 1) rows 1..n are replaced by block k; other layers carry them on. From
    `layers[0]` on, the text layers' causal mask is rebuilt for the longer sequence, and the text tower's
    output drops rows 1..n again, so transformers' end-of-text pooling reads its own index (the official code pools
    at `eot + n` of the longer sequence: the same row). The vision output keeps the rows (CLS pooling at 0 is
    unchanged); the caller reads rows 1..n of `last_hidden_state`. Needs `install_insert_hooks` on the base model.
    """
    call = _InsertCall(text, vision, tuple(layers)) if text is not None or vision is not None else None
    token = _INSERT.set(call)
    try:
        yield
    finally:
        _INSERT.reset(token)


def install_insert_hooks(backbone: DualEncoderBackbone) -> None:
    """Install the inserting mode's context-reading hooks once (idempotent, thread-safe); outside
    `inserted_tokens_in_context` they return at once."""
    model = backbone.model
    if getattr(model, _INSERT_MARK, False):
        return
    with _INSTALL_LOCK:
        if getattr(model, _INSERT_MARK, False):
            return
        for i, layer in enumerate(backbone.text_layers):
            layer.register_forward_pre_hook(_insert_hook(i, backbone, text=True), with_kwargs=True)
        for i, layer in enumerate(backbone.vision_layers):
            layer.register_forward_pre_hook(_insert_hook(i, backbone, text=False), with_kwargs=True)
        backbone.text_tower.encoder.register_forward_hook(_insert_text_sink_hook)
        setattr(model, _INSERT_MARK, True)


def _insert_rows(hidden: torch.Tensor, rows: torch.Tensor, replace: bool) -> torch.Tensor:
    rows = rows.to(dtype=hidden.dtype).unsqueeze(0).expand(hidden.shape[0], -1, -1)
    return torch.cat([hidden[:, :1], rows, hidden[:, 1 + (rows.shape[1] if replace else 0) :]], dim=1)


def _causal_mask_like(mask: torch.Tensor, length: int) -> torch.Tensor:
    """A causal mask (…, length, length) in the format of `mask` (bool: True attends; float: 0 or the minimum)."""
    if mask.dtype == torch.bool:
        square = torch.ones(length, length, dtype=torch.bool, device=mask.device).tril()
    else:
        square = torch.full((length, length), torch.finfo(mask.dtype).min, dtype=mask.dtype, device=mask.device)
        square = square.triu(1)
    return square.expand(*mask.shape[:-2], length, length)


def _insert_hook(index: int, backbone: DualEncoderBackbone, text: bool) -> Callable:
    def hook(_module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict] | None:
        call = _INSERT.get()
        tokens = None if call is None else (call.text if text else call.vision)
        if tokens is None or index < call.layers[0]:
            return None
        if index in call.layers:
            k = call.layers.index(index)
            args, kwargs = backbone.with_layer_hidden(args, kwargs, lambda h: _insert_rows(h, tokens[k], k > 0))
        if text:  # the causal mask of the longer sequence (None: the attention backend's own causal flag)
            length = args[0].shape[1]
            if len(args) > 1 and args[1] is not None:
                args = (args[0], _causal_mask_like(args[1], length), *args[2:])
            elif kwargs.get("attention_mask") is not None:
                kwargs = {**kwargs, "attention_mask": _causal_mask_like(kwargs["attention_mask"], length)}
        return args, kwargs

    return hook


def _insert_text_sink_hook(_module: nn.Module, _args: tuple, output: object) -> object:
    call = _INSERT.get()
    if call is None or call.text is None:
        return None
    n = call.text.shape[1]
    hidden = output.last_hidden_state
    output.last_hidden_state = torch.cat([hidden[:, :1], hidden[:, 1 + n :]], dim=1)
    return output
