"""CLIP (transformers' `CLIPModel`) as a dual-encoder backbone (docs/method.md §1.5).

Text: a start-of-text token, then the placeholders (prompts start at position 1); a causal mask, so padding after
the end-of-text token cannot reach the pooled EOS row and chunks are padded only to their longest row. Pooling at EOS
and the projections are transformers' own. Vision: CLS pooling, so appended prompt tokens never need dropping.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import CLIPModel

from .base import DualEncoderBackbone


class CLIPBackbone(DualEncoderBackbone):
    model_type = "clip"
    model_class = CLIPModel
    text_prompt_start = 1

    def padded_length(self, longest: int) -> int:
        return longest

    def text_features(self, input_ids: torch.Tensor) -> torch.Tensor:
        pooled = self.model.text_model(input_ids=input_ids).pooler_output
        return self.model.text_projection(pooled)

    def image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        pooled = self.model.vision_model(pixel_values=pixel_values).pooler_output
        return self.model.visual_projection(pooled)

    @property
    def dtype(self) -> torch.dtype:
        return self.model.text_projection.weight.dtype

    @classmethod
    def load_processor(cls, name_or_path: str, **kwargs: Any) -> Any:
        from transformers import CLIPProcessor

        return CLIPProcessor.from_pretrained(name_or_path, **kwargs)
