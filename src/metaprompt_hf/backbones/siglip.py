"""SigLIP (transformers' `SiglipModel`) as a dual-encoder backbone.

Text: no start-of-text token, so the placeholders are the first tokens (prompts start at position 0); attention is
bidirectional and the pooled row is the LAST position, so every chunk is padded to the fixed length the model was
trained with (`max_position_embeddings`, 64), as SigLIP's processor does with `padding="max_length"`. The text head
is part of the text tower. Vision: an attention-pooling head reads every token, so the appended prompt tokens are
dropped from the encoder output before it (they act on the patch tokens through attention only, as on CLIP's CLS).
The logits carry SigLIP's learned bias; softmax over classes is unchanged by it.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import SiglipModel

from .base import DualEncoderBackbone


class SiglipBackbone(DualEncoderBackbone):
    model_type = "siglip"
    model_class = SiglipModel
    text_prompt_start = 0

    def padded_length(self, longest: int) -> int:
        return self.max_text_length

    def text_features(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.model.text_model(input_ids=input_ids).pooler_output

    def image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.model.vision_model(pixel_values=pixel_values).pooler_output

    @property
    def vision_prompt_sink(self) -> nn.Module | None:
        return self.vision_tower.encoder

    @property
    def logit_scale(self) -> torch.Tensor:
        return self.model.logit_scale.reshape(())  # stored with shape (1,)

    @property
    def logit_bias(self) -> torch.Tensor | None:
        return self.model.logit_bias.reshape(())
