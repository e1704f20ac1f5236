"""What keeps the base model frozen while the prompts train, and PEFT's housekeeping: train/eval mode (the base model
always stays in eval mode), activation checkpointing of the base model's layers, and trainable-parameter counts."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ..backbones import DualEncoderBackbone

if TYPE_CHECKING:
    from typing import Self


class FrozenBaseMixin:
    """Mode, dtype, checkpointing and counts of a module holding a frozen base (`clip`, `backbone`) and adapters.

    The dtype rule: the prompts are fp32 master copies whatever the base model's dtype, cast to the hidden states'
    dtype where they are injected, whether the base was loaded with `from_pretrained(dtype=...)` or cast with
    `.to(dtype)`; `.to(device)` moves both.
    """

    clip: nn.Module
    backbone: DualEncoderBackbone
    adapters: nn.ModuleDict
    _checkpointing: bool
    training: bool

    def train(self, mode: bool = True) -> Self:
        """Prompts follow `mode`; the frozen base model always stays in eval mode (no dropout on frozen weights)."""
        self.training = mode
        for adapter in self.adapters.values():
            adapter.train(mode)
        self.clip.eval()
        self._sync_checkpointing_flags()
        return self

    def to(self, *args: Any, **kwargs: Any) -> Self:
        """`nn.Module.to` for the base model; the prompts follow the device but stay fp32 (see the class doc)."""
        device, _dtype, non_blocking, _ = torch._C._nn._parse_to(*args, **kwargs)
        self.clip.to(*args, **kwargs)
        if device is not None:
            for adapter in self.adapters.values():
                adapter.to(device=device, non_blocking=non_blocking)
        return self

    def gradient_checkpointing_enable(self, gradient_checkpointing_kwargs: dict | None = None) -> None:
        """Activation checkpointing of the base model's encoder layers (transformers' own mechanism)."""
        kwargs = {"use_reentrant": False, **(gradient_checkpointing_kwargs or {})}
        enable = getattr(self.clip, "activation_checkpointing_enable", None)
        if enable is not None:
            enable(activation_checkpointing_kwargs=kwargs)
        else:  # transformers < 5.24
            self.clip.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
        self._checkpointing = True
        self._sync_checkpointing_flags()

    def gradient_checkpointing_disable(self) -> None:
        disable = (
            getattr(self.clip, "activation_checkpointing_disable", None) or self.clip.gradient_checkpointing_disable
        )
        disable()
        self._checkpointing = False
        self._sync_checkpointing_flags()

    @property
    def is_gradient_checkpointing(self) -> bool:
        return self._checkpointing

    def _sync_checkpointing_flags(self) -> None:
        # transformers only checkpoints layers whose `training` flag is set, but the frozen base stays in eval mode.
        # Setting the flag on the layer modules alone (not on their attention/MLP children) turns checkpointing on
        # without switching on any dropout.
        for layer in (*self.backbone.text_layers, *self.backbone.vision_layers):
            layer.training = self._checkpointing and self.training

    def get_nb_trainable_parameters(self) -> tuple[int, int]:
        """(trainable, all) parameter counts, as in PEFT."""
        trainable = sum(p.numel() for p in self.parameters() if p.requires_grad)
        return trainable, sum(p.numel() for p in self.parameters())

    def print_trainable_parameters(self) -> None:
        """Print `trainable params: N || all params: M || trainable%: x.xxxx` (PEFT's format)."""
        trainable, total = self.get_nb_trainable_parameters()
        print(
            f"trainable params: {trainable:,d} || all params: {total:,d} || trainable%: {100 * trainable / total:.4f}"
        )
