"""The dual-encoder backbone seam: what `MetaPromptModel` and the prompt injection need from a frozen
image-text model (docs/method.md §1.5), and nothing else.

A backbone wraps a stock transformers model (never a copy of its code) and names:

- text side: the token embedding (layer-0 injection point), the encoder layers (deep injection points), the
  position of the first placeholder token (`text_prompt_start`), how token rows are padded, and the pooled and
  projected text features;
- vision side: the embeddings module (where prompt tokens are appended), the encoder layers, an optional module whose
  output drops the prompt tokens before pooling, and the pooled and projected image features;
- the logit scale (log-space, as stored) and an optional logit bias.

Subclasses register themselves under the base model's `config.model_type` (see `backbones/__init__.py`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import torch
from torch import nn


class DualEncoderBackbone:
    """Adapter over one frozen transformers dual encoder.

    Class attributes:
        model_type: the transformers `config.model_type` this backbone serves (registry key).
        model_class: the transformers class loaded for a base model of that type.
        text_prompt_start: index of the first placeholder token in a tokenized prompt ("X X <name>."): 1 after a
            start-of-text token (CLIP), 0 where the tokenizer adds none (SigLIP).
    """

    model_type: ClassVar[str]
    model_class: ClassVar[type]
    text_prompt_start: ClassVar[int] = 0

    def __init__(self, model: nn.Module) -> None:
        if not isinstance(model, self.model_class):
            raise TypeError(
                f"base model: expected a transformers {self.model_class.__name__}, got {type(model).__name__}"
            )
        self.model = model

    # ------------------------------------------------------------------ structure (injection points)
    @property
    def text_config(self) -> Any:
        return self.model.config.text_config

    @property
    def vision_config(self) -> Any:
        return self.model.config.vision_config

    @property
    def text_tower(self) -> nn.Module:
        return self.model.text_model

    @property
    def vision_tower(self) -> nn.Module:
        return self.model.vision_model

    @property
    def token_embedding(self) -> nn.Module:
        """`nn.Embedding` of the text tower; its output rows at the placeholders become θ_t[0]."""
        return self.text_tower.embeddings.token_embedding

    @property
    def text_layers(self) -> Sequence[nn.Module]:
        return self.text_tower.encoder.layers

    @property
    def vision_embeddings(self) -> nn.Module:
        """The module whose output (B, 1 + n_patches, d) receives the appended vision prompts θ_v[0]."""
        return self.vision_tower.embeddings

    @property
    def vision_layers(self) -> Sequence[nn.Module]:
        return self.vision_tower.encoder.layers

    @property
    def vision_prompt_sink(self) -> nn.Module | None:
        """A module whose output's `last_hidden_state` must lose the n_pro prompt rows before pooling (pooling heads
        that read every token), or None when pooling reads a fixed token (CLIP's CLS)."""
        return None

    @property
    def name_or_path(self) -> str:
        return getattr(self.model, "name_or_path", "") or ""

    @property
    def text_hidden_size(self) -> int:
        return self.text_config.hidden_size

    @property
    def vision_hidden_size(self) -> int:
        return self.vision_config.hidden_size

    @property
    def text_num_layers(self) -> int:
        return self.text_config.num_hidden_layers

    @property
    def vision_num_layers(self) -> int:
        return self.vision_config.num_hidden_layers

    @property
    def max_text_length(self) -> int:
        return self.text_config.max_position_embeddings

    @property
    def device(self) -> torch.device:
        return self.logit_scale.device

    @property
    def dtype(self) -> torch.dtype:
        return self.token_embedding.weight.dtype

    # ------------------------------------------------------------------ calling convention of the encoder layers
    def with_layer_hidden(
        self, args: tuple, kwargs: dict, fn: Callable[[torch.Tensor], torch.Tensor]
    ) -> tuple[tuple, dict]:
        """The (args, kwargs) of an encoder-layer call with its hidden states (B, L, d) replaced by `fn(hidden)`.
        Default: transformers 5.x calls a layer as `layer(hidden_states, attention_mask, **kwargs)`; a backbone whose
        layers take their inputs otherwise overrides this (and `with_layer_attention_mask`)."""
        if args:
            return (fn(args[0]), *args[1:]), kwargs
        kwargs = dict(kwargs)
        return (fn(kwargs.pop("hidden_states")),), kwargs

    def with_layer_attention_mask(self, args: tuple, kwargs: dict, mask: torch.Tensor) -> tuple[tuple, dict]:
        """The (args, kwargs) of a vision-layer call with the additive attention mask (B, 1, 1, L) that hides the
        prompt tokens from the frozen rows of a batched frozen+prompted call; the call must carry no mask of its
        own. Called after `with_layer_hidden`, so the hidden states are the first positional argument."""
        rest = list(args[1:])
        if rest:
            if rest[0] is not None:
                raise RuntimeError("unexpected attention mask in a vision layer; cannot batch frozen passes")
            rest[0] = mask
        else:
            if kwargs.get("attention_mask") is not None:
                raise RuntimeError("unexpected attention mask in a vision layer; cannot batch frozen passes")
            kwargs = {**kwargs, "attention_mask": mask}
        return (args[0], *rest), kwargs

    # ------------------------------------------------------------------ computation
    def pad_token_id(self, tokenizer: Any) -> int:
        pad_id = getattr(tokenizer, "pad_token_id", None)
        return pad_id if pad_id is not None else self.text_config.eos_token_id

    def pad(self, rows: list[list[int]], pad_id: int) -> torch.Tensor:
        """(N, L) token ids, rows right-padded with `pad_id` to a common width chosen by `padded_length`."""
        width = self.padded_length(max(len(r) for r in rows))
        out = torch.full((len(rows), width), pad_id, dtype=torch.long)
        for i, r in enumerate(rows):
            out[i, : len(r)] = torch.tensor(r, dtype=torch.long)
        return out.to(self.device)

    def padded_length(self, longest: int) -> int:
        """Width of a padded chunk whose longest row has `longest` tokens."""
        raise NotImplementedError

    def text_features(self, input_ids: torch.Tensor) -> torch.Tensor:
        """(N, L) ids → (N, P) pooled and projected text features, not normalised, in the base model's dtype."""
        raise NotImplementedError

    def image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) → (B, P) pooled and projected image features, not normalised."""
        raise NotImplementedError

    @property
    def logit_scale(self) -> torch.Tensor:
        """The stored log-space logit scale (s = exp of it)."""
        return self.model.logit_scale

    @property
    def logit_bias(self) -> torch.Tensor | None:
        """An additive logit bias (SigLIP), or None."""
        return None

    def supports_masked_frozen_batch(self) -> bool:
        """Whether frozen and prompted images may share one vision call (needs a float attention mask)."""
        return getattr(self.model.config, "_attn_implementation", "eager") in ("eager", "sdpa")

    # ------------------------------------------------------------------ loading
    @classmethod
    def load_model(cls, name_or_path: str, **kwargs: Any) -> nn.Module:
        """`model_class.from_pretrained` restricted to safetensors weights (never pickle, never remote code)."""
        return cls.model_class.from_pretrained(name_or_path, use_safetensors=True, **kwargs)

    @classmethod
    def load_processor(cls, name_or_path: str, **kwargs: Any) -> Any:
        from transformers import AutoProcessor

        return AutoProcessor.from_pretrained(name_or_path, **kwargs)
