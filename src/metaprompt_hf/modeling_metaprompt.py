"""`MetaPromptModel`: deep text and vision prompts around a frozen transformers `CLIPModel` (METHOD.md §1, §5).

Four encoder paths share one frozen CLIP (METHOD.md §1.1):

    E_I⁰  frozen image encoder            → x    (B, P)
    E_Iᴾ  image encoder + θ_v             → x̃    (B, P)
    E_T⁰  text encoder on the templates   → h_c  (C, P), cached per class list
    E_Tᴾ  text encoder + θ_t              → t_c  (C, P)

and give z^i = s<x̃, h>, z^t = s<x, t>, z^o = ½(z^i + z^t); evaluation uses z^o (METHOD.md §5). With
`config.coupled_branches=False` the logits are IVLP/CoOp's s<x̃, t>.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torch.utils.checkpoint import checkpoint
from transformers import CLIPModel
from transformers.utils import ModelOutput

from .configuration_metaprompt import CONFIG_NAME, MetaPromptConfig
from .images import to_rgb
from .injection import text_prompt_hooks, vision_prompt_hooks
from .losses import asymmetric_contrastive_loss, coupled_logits
from .utils import atomic_write_with, resolve_file

WEIGHTS_NAME = "metaprompt_model.safetensors"
PROMPT_KEYS = ("text_prompts", "vision_prompts")


@dataclass
class MetaPromptOutput(ModelOutput):
    """Output of `MetaPromptModel.forward`.

    Attributes:
        loss: L_AC (coupled) or CE (IVLP/CoOp) when `labels` were given.
        logits: (B, C) evaluation logits: z^o for MetaPrompt, s<x̃, t> for IVLP/CoOp.
        logits_image: (B, C) z^i = s<x̃, h> (coupled only).
        logits_text: (B, C) z^t = s<x, t> (coupled only).
        logits_zero_shot: (B, C) s<x, h>, frozen CLIP with the template, when asked for.
        image_embeds: (B, P) x̃, prompted image features, L2-normalised.
        frozen_image_embeds: (B, P) x, frozen image features, L2-normalised.
        text_embeds: (C, P) t, prompted class features, L2-normalised.
        template_embeds: (C, P) h, frozen template class features, L2-normalised.
        logit_scale: s = exp(CLIP's frozen logit_scale).
    """

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    logits_image: torch.Tensor | None = None
    logits_text: torch.Tensor | None = None
    logits_zero_shot: torch.Tensor | None = None
    image_embeds: torch.Tensor | None = None
    frozen_image_embeds: torch.Tensor | None = None
    text_embeds: torch.Tensor | None = None
    template_embeds: torch.Tensor | None = None
    logit_scale: torch.Tensor | None = None


class MetaPromptModel(nn.Module):
    """MetaPrompt adapter: a frozen `CLIPModel` plus deep prompts θ_t (depth, n_ctx, d_text) and θ_v
    (depth, n_pro, d_vision). Only the prompts require grad.

    Args:
        clip_model: any transformers `CLIPModel`; widths and depths are read from its config. It is frozen
            (`requires_grad_(False)`) and kept in eval mode.
        config: the adapter configuration; depths left at None become the base model's layer counts.
        processor: a `CLIPProcessor` (tokenizer + image processor) of the base model; needed for class names
            and PIL images.
        class_chunk_size: classes encoded per text-encoder call, so memory stays bounded for 1000 classes.

    Example:
        ```python
        >>> model = MetaPromptModel.from_pretrained("org/metaprompt-vitb16")
        >>> probs = model.predict(images, ["dog", "cat", "giraffe"])  # (n_images, 3)
        ```
    """

    def __init__(
        self,
        clip_model: CLIPModel,
        config: MetaPromptConfig | None = None,
        processor: Any | None = None,
        *,
        class_chunk_size: int = 128,
    ) -> None:
        super().__init__()
        if not isinstance(clip_model, CLIPModel):
            raise TypeError(f"clip_model: expected a transformers CLIPModel, got {type(clip_model).__name__}")
        if class_chunk_size < 1:
            raise ValueError(f"class_chunk_size: expected >= 1, got {class_chunk_size}")
        config = config if config is not None else MetaPromptConfig()
        self.config = _fit_config_to_base(config, clip_model)
        self.clip = clip_model
        self.clip.requires_grad_(False)
        self.clip.eval()
        self.processor = processor
        self.class_chunk_size = class_chunk_size
        self._checkpointing = False
        # Hooks are module-global while installed: one lock per model keeps concurrent callers (a Gradio queue
        # with several workers, say) from seeing each other's prompts.
        self._hook_lock = threading.RLock()
        self._token_cache: OrderedDict[tuple, list[list[int]]] = OrderedDict()
        self._feature_cache: OrderedDict[tuple, torch.Tensor] = OrderedDict()

        cfg = self.config
        tc, vc = clip_model.config.text_config, clip_model.config.vision_config
        device = clip_model.logit_scale.device
        self.text_prompts = (
            self._new_prompt((cfg.text_depth, cfg.n_ctx, tc.hidden_size), device) if cfg.n_ctx else None
        )
        self.vision_prompts = (
            self._new_prompt((cfg.vision_depth, cfg.n_pro, vc.hidden_size), device) if cfg.n_pro else None
        )
        if cfg.ctx_init is not None:
            self._init_text_prompts_from_words(cfg.ctx_init)

    def _new_prompt(self, shape: tuple[int, int, int], device: torch.device) -> nn.Parameter:
        # N(0, 0.02²) i.i.d. (meta.py:87, 152); fp32 master copy whatever CLIP's dtype, cast in the hooks.
        return nn.Parameter(torch.randn(shape, device=device) * self.config.init_std)

    # ------------------------------------------------------------------ properties
    @property
    def device(self) -> torch.device:
        return self.clip.logit_scale.device

    @property
    def dtype(self) -> torch.dtype:
        return self.clip.text_projection.weight.dtype

    @property
    def logit_scale(self) -> torch.Tensor:
        """s = exp(CLIP's frozen logit_scale), clamped at 100 as CLIP does."""
        return _at_least_fp32(self.clip.logit_scale.detach()).exp().clamp(max=100.0)

    @property
    def tokenizer(self) -> Any:
        tokenizer = getattr(self.processor, "tokenizer", None)
        if tokenizer is None:
            raise ValueError(
                "this MetaPromptModel has no processor/tokenizer: pass processor=CLIPProcessor.from_pretrained(...) "
                "or load it with MetaPromptModel.from_pretrained, which loads the base model's processor"
            )
        return tokenizer

    def prompt_parameters(self) -> list[nn.Parameter]:
        """The trainable tensors, θ_t then θ_v (those that exist)."""
        return [p for p in (self.text_prompts, self.vision_prompts) if p is not None]

    # ------------------------------------------------------------------ mode, checkpointing, counts
    def train(self, mode: bool = True) -> MetaPromptModel:
        """Prompts follow `mode`; the frozen CLIP always stays in eval mode (no dropout on frozen weights)."""
        self.training = mode
        self.clip.eval()
        self._sync_checkpointing_flags()
        return self

    def gradient_checkpointing_enable(self, gradient_checkpointing_kwargs: dict | None = None) -> None:
        """Activation checkpointing of CLIP's encoder layers (transformers' own mechanism)."""
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
        # transformers only checkpoints layers whose `training` flag is set, but the frozen CLIP stays in eval mode.
        # Setting the flag on the layer modules alone (not on their attention/MLP children) turns checkpointing on
        # without switching on any dropout.
        for tower in (self.clip.text_model, self.clip.vision_model):
            for layer in tower.encoder.layers:
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

    # ------------------------------------------------------------------ text side
    def _prompted_strings(self, class_names: Sequence[str]) -> list[str]:
        # "X X <class name>." with `_` → space (meta.py:153-158).
        prefix = " ".join([self.config.placeholder_token] * self.config.n_ctx)
        return [f"{prefix} {_clean(name)}.".strip() for name in class_names]

    def _template_strings(self, class_names: Sequence[str], template: str) -> list[str]:
        # The reference formats the raw name here (quirk 8 of METHOD.md §3.3); we clean `_` in both branches so the
        # two branches read the same words.
        return [template.format(_clean(name)) for name in class_names]

    def _tokenize(self, texts: Sequence[str], check_placeholders: bool) -> list[list[int]]:
        key = (tuple(texts), check_placeholders)
        cached = self._token_cache.get(key)
        if cached is not None:
            self._token_cache.move_to_end(key)
            return cached
        max_len = self.clip.config.text_config.max_position_embeddings
        ids = self.tokenizer(list(texts), padding=False, truncation=True, max_length=max_len)["input_ids"]
        if check_placeholders and self.config.n_ctx:
            expected = self.tokenizer(self.config.placeholder_token, add_special_tokens=False)["input_ids"]
            if len(expected) != 1:
                raise ValueError(
                    f"placeholder_token {self.config.placeholder_token!r} is not a single token for this tokenizer"
                )
            n = self.config.n_ctx
            for text, row in zip(texts, ids):
                if row[1 : 1 + n] != expected * n:
                    raise ValueError(f"prompt {text!r}: the {n} placeholder tokens are not at positions 1..{n}")
        _cache_put(self._token_cache, key, ids, 64)
        return ids

    def _pad(self, rows: list[list[int]]) -> torch.Tensor:
        pad_id = self.tokenizer.pad_token_id
        if pad_id is None:
            pad_id = self.clip.config.text_config.eos_token_id
        # HF CLIP's causal mask means padding after EOS cannot reach the EOS row, so sequences only need to be as
        # long as the longest one in the chunk, not 77.
        width = max(len(r) for r in rows)
        out = torch.full((len(rows), width), pad_id, dtype=torch.long)
        for i, r in enumerate(rows):
            out[i, : len(r)] = torch.tensor(r, dtype=torch.long)
        return out.to(self.device)

    def _text_features(self, ids: torch.Tensor, prompts: torch.Tensor | None) -> torch.Tensor:
        """One text-encoder call on `ids` (N, L) with prompts θ_t (or none) → (N, P) L2-normalised fp32."""
        with self._hook_lock, text_prompt_hooks(self.clip.text_model, prompts):
            pooled = self.clip.text_model(input_ids=ids).pooler_output
        return F.normalize(_at_least_fp32(self.clip.text_projection(pooled)), dim=-1)

    def _encode_ids_chunked(self, rows: list[list[int]], prompts: torch.Tensor | None) -> torch.Tensor:
        # Classes are sorted by length so chunks carry little padding, then put back in order.
        order = sorted(range(len(rows)), key=lambda i: len(rows[i]))
        chunks = [order[i : i + self.class_chunk_size] for i in range(0, len(order), self.class_chunk_size)]
        use_ckpt = len(chunks) > 1 and torch.is_grad_enabled() and prompts is not None and prompts.requires_grad
        feats = []
        for n, chunk in enumerate(chunks):
            ids = self._pad([rows[i] for i in chunk])
            # Only the (chunk, P) features stay alive; activations are recomputed in backward. Hooks are installed
            # inside the checkpointed function, so the recomputation sees the same prompts. The LAST chunk keeps its
            # activations: autograd runs its backward first (it was created last) and frees them before any other
            # chunk is recomputed, so the peak stays at one chunk while one recomputation per call is saved.
            if use_ckpt and n < len(chunks) - 1:
                feats.append(checkpoint(self._text_features, ids, prompts, use_reentrant=False))
            else:
                feats.append(self._text_features(ids, prompts))
        out = torch.cat(feats)
        inverse = torch.empty(len(order), dtype=torch.long)
        inverse[torch.tensor(order)] = torch.arange(len(order))
        return out[inverse.to(out.device)]

    def encode_text(self, class_names: Sequence[str], text_prompts: torch.Tensor | None = None) -> torch.Tensor:
        """Prompted class features t_c (E_Tᴾ, METHOD.md §1.2): (C, P), L2-normalised, fp32.

        Args:
            class_names: C class names; `_` becomes a space.
            text_prompts: override of θ_t, (depth, n_ctx, d_text), e.g. adapted prompts θ' in the meta step.
        """
        _check_class_names(class_names)
        prompts = self.text_prompts if text_prompts is None else text_prompts
        if prompts is not None and text_prompts is not None and prompts.shape != self.text_prompts.shape:
            raise ValueError(
                f"text_prompts: expected shape {tuple(self.text_prompts.shape)}, got {tuple(prompts.shape)}"
            )
        rows = self._tokenize(self._prompted_strings(class_names), check_placeholders=True)
        cacheable = text_prompts is None and not torch.is_grad_enabled()
        key = ("prompted", tuple(class_names), _version_of(prompts))
        if cacheable and key in self._feature_cache:
            self._feature_cache.move_to_end(key)
            return self._feature_cache[key]
        feats = self._encode_ids_chunked(rows, prompts)
        if cacheable:
            _cache_put(self._feature_cache, key, feats, 16)
        return feats

    @torch.no_grad()
    def encode_templates(self, class_names: Sequence[str]) -> torch.Tensor:
        """Frozen hand-crafted class features h_c (E_T⁰, METHOD.md §1.4): (C, P), L2-normalised, cached per class
        list. Several templates are averaged after normalisation and renormalised."""
        _check_class_names(class_names)
        key = ("template", tuple(class_names), tuple(self.config.templates), str(self.device), self.dtype)
        if key in self._feature_cache:
            self._feature_cache.move_to_end(key)
            return self._feature_cache[key]
        total = None
        for template in self.config.templates:
            rows = self._tokenize(self._template_strings(class_names, template), check_placeholders=False)
            feats = self._encode_ids_chunked(rows, None)
            total = feats if total is None else total + feats
        feats = F.normalize(total, dim=-1)
        _cache_put(self._feature_cache, key, feats, 16)
        return feats

    def clear_cache(self) -> None:
        """Drop cached token ids and class features."""
        self._token_cache.clear()
        self._feature_cache.clear()

    # ------------------------------------------------------------------ image side
    def _image_features(
        self, pixel_values: torch.Tensor, prompts: torch.Tensor | None, frozen_rows: int = 0
    ) -> torch.Tensor:
        with self._hook_lock, vision_prompt_hooks(self.clip.vision_model, prompts, frozen_rows=frozen_rows):
            pooled = self.clip.vision_model(pixel_values=pixel_values.to(self.device)).pooler_output
        return F.normalize(_at_least_fp32(self.clip.visual_projection(pooled)), dim=-1)

    @torch.no_grad()
    def encode_frozen_image(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """x = E_I⁰(image): (B, P), L2-normalised; equals `CLIPModel.get_image_features` normalised."""
        return self._image_features(pixel_values, None)

    def encode_image(self, pixel_values: torch.Tensor, vision_prompts: torch.Tensor | None = None) -> torch.Tensor:
        """x̃ = E_Iᴾ(image) with θ_v (or the override `vision_prompts`): (B, P), L2-normalised."""
        prompts = self.vision_prompts if vision_prompts is None else vision_prompts
        if prompts is None:
            return self.encode_frozen_image(pixel_values)
        return self._image_features(pixel_values, prompts)

    def encode_image_pair(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(x, x̃) for the same images. Without grad (inference) both come from ONE batched encoder call: the frozen
        half masks the prompt tokens out of attention (see `vision_prompt_hooks`)."""
        if self.vision_prompts is None:
            x = self.encode_frozen_image(pixel_values)
            return x, x
        attn = getattr(self.clip.config, "_attn_implementation", "eager")
        if torch.is_grad_enabled() or attn not in ("eager", "sdpa"):
            return self.encode_frozen_image(pixel_values), self.encode_image(pixel_values)
        b = pixel_values.shape[0]
        both = self._image_features(torch.cat([pixel_values, pixel_values]), self.vision_prompts, frozen_rows=b)
        return both[:b], both[b:]

    # ------------------------------------------------------------------ forward
    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        class_names: Sequence[str] | None = None,
        labels: torch.Tensor | None = None,
        *,
        frozen_image_embeds: torch.Tensor | None = None,
        return_zero_shot: bool = False,
    ) -> MetaPromptOutput:
        """Logits of every path for a batch of images against a class list (METHOD.md §1.1, §2, §5).

        Args:
            pixel_values: (B, 3, H, W) from the base model's image processor.
            class_names: the C classes to classify among (any names; θ_t is class-agnostic).
            labels: (B,) indices into `class_names`; when given, `loss` is L_AC (coupled) or CE (IVLP/CoOp).
            frozen_image_embeds: (B, P) precomputed x, reused instead of a frozen image pass.
            return_zero_shot: also return s<x, h>, frozen CLIP's zero-shot logits.
        """
        if pixel_values is None or class_names is None:
            raise ValueError("forward needs pixel_values (B, 3, H, W) and class_names (a list of C names)")
        if pixel_values.ndim != 4:
            raise ValueError(f"pixel_values: expected shape (B, 3, H, W), got {tuple(pixel_values.shape)}")
        s = self.logit_scale
        out = MetaPromptOutput(logit_scale=s)
        cfg = self.config
        need_frozen = cfg.coupled_branches or return_zero_shot or self.vision_prompts is None
        if frozen_image_embeds is not None:
            x = _at_least_fp32(frozen_image_embeds)
            x_tilde = self.encode_image(pixel_values)
        elif need_frozen and self.vision_prompts is not None:
            x, x_tilde = self.encode_image_pair(pixel_values)
        elif need_frozen:
            x = x_tilde = self.encode_frozen_image(pixel_values)
        else:
            x, x_tilde = None, self.encode_image(pixel_values)
        t = self.encode_text(class_names)
        out.image_embeds, out.frozen_image_embeds, out.text_embeds = x_tilde, x, t
        if cfg.coupled_branches or return_zero_shot:
            out.template_embeds = self.encode_templates(class_names)
        if cfg.coupled_branches:
            out.logits, out.logits_image, out.logits_text = coupled_logits(x_tilde, x, t, out.template_embeds, s)
        else:
            out.logits = s * x_tilde @ t.t()
        if return_zero_shot:
            out.logits_zero_shot = s * x @ out.template_embeds.t()
        if labels is not None:
            labels = labels.to(out.logits.device)
            if cfg.coupled_branches:
                out.loss = asymmetric_contrastive_loss(out.logits, out.logits_image, out.logits_text, labels).loss
            else:
                out.loss = F.cross_entropy(out.logits, labels)
        return out

    # ------------------------------------------------------------------ inference
    def preprocess(self, images: Any) -> torch.Tensor:
        """PIL image(s), numpy arrays (a list, or any sequence such as a `datasets` column) or `pixel_values`
        → (B, 3, H, W) with the base model's image processor."""
        if isinstance(images, torch.Tensor):
            if images.ndim == 3:
                images = images.unsqueeze(0)
            if images.ndim != 4:
                raise ValueError(f"pixel_values: expected shape (B, 3, H, W), got {tuple(images.shape)}")
            return images
        image_processor = getattr(self.processor, "image_processor", None)
        if image_processor is None:
            raise ValueError("PIL images need a processor: pass processor= or use MetaPromptModel.from_pretrained")
        if hasattr(images, "convert") or (hasattr(images, "ndim") and images.ndim == 3):  # one PIL image / array
            images = [images]
        elif not isinstance(images, (list, tuple)):
            # any other sequence of images, e.g. a `datasets` column (`dataset["image"]`)
            try:
                images = list(images)
            except TypeError:
                kind = type(images).__name__
                raise ValueError(f"images: expected PIL image(s), arrays or pixel_values, got {kind}") from None
        if not images:
            raise ValueError("images: got an empty list")
        images = [to_rgb(im) if isinstance(im, Image.Image) else im for im in images]
        return image_processor(images=images, return_tensors="pt")["pixel_values"]

    # no_grad rather than inference_mode: cached class features must stay usable by a later training step.
    @torch.no_grad()
    def predict(
        self,
        images: Any,
        class_names: Sequence[str],
        *,
        batch_size: int = 64,
        return_zero_shot: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Class probabilities for any class names (METHOD.md §5): softmax of z^o, shape (n_images, n_classes).

        Args:
            images: a PIL image, a list of them, or `pixel_values` (B, 3, H, W).
            class_names: C names, new ones included.
            batch_size: images per encoder call.
            return_zero_shot: also return frozen CLIP's zero-shot probabilities with the template(s), computed in
                the same pass.
        """
        _check_class_names(class_names)
        pixel_values = self.preprocess(images)
        probs, zs = [], []
        for start in range(0, pixel_values.shape[0], batch_size):
            out = self(pixel_values[start : start + batch_size], class_names, return_zero_shot=return_zero_shot)
            probs.append(out.logits.softmax(-1).cpu())
            if return_zero_shot:
                zs.append(out.logits_zero_shot.softmax(-1).cpu())
        if return_zero_shot:
            return torch.cat(probs), torch.cat(zs)
        return torch.cat(probs)

    # ------------------------------------------------------------------ state
    def prompt_state_dict(self) -> dict[str, torch.Tensor]:
        """The adapter's tensors only, under package-owned keys (never transformers module paths)."""
        return {k: getattr(self, k).detach() for k in PROMPT_KEYS if getattr(self, k) is not None}

    def load_prompt_state_dict(self, state: dict[str, torch.Tensor], source: str = "state dict") -> None:
        """Strictly load prompt tensors: a missing, unexpected or mis-shaped key raises `ValueError` naming it."""
        expected = {k: tuple(v.shape) for k, v in self.prompt_state_dict().items()}
        base = self.config.base_model_name_or_path or self.clip.name_or_path or "the base model"
        missing = sorted(set(expected) - set(state))
        unexpected = sorted(set(state) - set(expected))
        if missing or unexpected:
            raise ValueError(
                f"{source}: keys do not match the adapter for {base}: missing {missing}, unexpected {unexpected} "
                f"(expected {sorted(expected)})"
            )
        for key, shape in expected.items():
            if tuple(state[key].shape) != shape:
                raise ValueError(
                    f"{source}: tensor {key!r} has shape {tuple(state[key].shape)}, but the adapter on base model "
                    f"{base} expects {shape} (depth, tokens, width)"
                )
        with torch.no_grad():
            for key in expected:
                getattr(self, key).copy_(state[key].to(device=self.device, dtype=torch.float32))
        self._feature_cache.clear()

    def save_pretrained(self, save_directory: str | os.PathLike, *, overwrite: bool = False) -> None:
        """Write `metaprompt_config.json` and `metaprompt_model.safetensors` (prompts only, never the frozen CLIP).

        Existing files are only replaced with `overwrite=True`; each file is written atomically.
        """
        from safetensors.torch import save_file

        save_directory = os.fspath(save_directory)
        if os.path.exists(save_directory) and not os.path.isdir(save_directory):
            raise NotADirectoryError(f"{save_directory} exists and is not a folder")
        if not overwrite:
            for name in (CONFIG_NAME, WEIGHTS_NAME):
                if os.path.exists(os.path.join(save_directory, name)):
                    raise FileExistsError(f"{os.path.join(save_directory, name)} exists; pass overwrite=True")
        os.makedirs(save_directory, exist_ok=True)
        # Contiguous clones: shared or strided storage must not leak into the file.
        tensors = {
            k: v.detach().to("cpu", torch.float32).contiguous().clone() for k, v in self.prompt_state_dict().items()
        }
        from . import __version__

        metadata = {"format": "pt", "metaprompt_version": __version__}
        atomic_write_with(os.path.join(save_directory, WEIGHTS_NAME), lambda tmp: save_file(tensors, tmp, metadata))
        config = dataclasses.replace(self.config, inference_mode=True, metaprompt_version=__version__)
        config.save_pretrained(save_directory, overwrite=True)

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: str | os.PathLike,
        base_model: str | os.PathLike | CLIPModel | None = None,
        revision: str | None = None,
        *,
        processor: Any | None = None,
        base_model_revision: str | None = None,
        subfolder: str | None = None,
        cache_dir: str | os.PathLike | None = None,
        token: str | bool | None = None,
        local_files_only: bool = False,
        force_download: bool = False,
        dtype: torch.dtype | str | None = None,
        device: str | torch.device | None = None,
        is_trainable: bool = False,
        class_chunk_size: int = 128,
    ) -> MetaPromptModel:
        """Load an adapter from a local folder or a Hub repo, with its base CLIP (METHOD.md §5 for inference).

        Args:
            pretrained_model_name_or_path: folder holding `metaprompt_config.json` and
                `metaprompt_model.safetensors`, or a Hub repo id (resolved from the cache with `HF_HUB_OFFLINE=1`).
            base_model: a `CLIPModel`, or a Hub id / path to load instead of the config's
                `base_model_name_or_path`.
            revision: revision of the adapter repo.
            processor: the base model's processor; loaded from the base model when omitted.
            base_model_revision: revision of the base model (default: the config's `revision`).
            dtype: dtype to load the base CLIP in (e.g. torch.bfloat16).
            device: device for CLIP and prompts.
            is_trainable: leave the prompts trainable (default: frozen, inference mode).
        """
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        hub_kwargs = dict(
            subfolder=subfolder,
            revision=revision,
            cache_dir=cache_dir,
            token=token,
            local_files_only=local_files_only,
            force_download=force_download,
        )
        source = os.fspath(pretrained_model_name_or_path)
        config = MetaPromptConfig.from_pretrained(source, **hub_kwargs)
        weights_file = resolve_file(source, WEIGHTS_NAME, **hub_kwargs)
        try:
            state = load_file(weights_file)
        except (SafetensorError, OSError, ValueError) as err:
            raise ValueError(f"{weights_file}: not a readable safetensors file ({err})") from err

        if isinstance(base_model, CLIPModel):
            clip_model = base_model
        else:
            base_id = os.fspath(base_model) if base_model is not None else config.base_model_name_or_path
            if not base_id:
                raise ValueError(f"{source}: the config names no base_model_name_or_path; pass base_model=")
            from .embedded import resolve_base_model

            base_id = resolve_base_model(base_id)  # "embedded" = the small CLIP shipped in the package
            base_rev = base_model_revision or (config.revision if base_model is None else None)
            clip_model = load_clip(
                base_id,
                revision=base_rev,
                cache_dir=cache_dir,
                token=token,
                local_files_only=local_files_only,
                dtype=dtype,
            )
            if processor is None:
                processor = load_processor(
                    base_id, revision=base_rev, cache_dir=cache_dir, token=token, local_files_only=local_files_only
                )
        if processor is None and getattr(clip_model, "name_or_path", None):
            with contextlib.suppress(Exception):
                processor = load_processor(clip_model.name_or_path, local_files_only=local_files_only)
        if device is not None:
            clip_model = clip_model.to(device)
        if dtype is not None and isinstance(base_model, CLIPModel):
            clip_model = clip_model.to(dtype=_as_dtype(dtype))
        model = cls(clip_model, config, processor, class_chunk_size=class_chunk_size)
        model.load_prompt_state_dict(state, source=weights_file)
        for p in model.prompt_parameters():
            p.requires_grad_(is_trainable)
        model.config = dataclasses.replace(model.config, inference_mode=not is_trainable)
        return model.train(is_trainable)

    def push_to_hub(self, repo_id: str, **kwargs: Any) -> Any:
        """Upload the two adapter files and a generated model card in one commit; see `hub.push_to_hub`."""
        from .hub import push_to_hub

        return push_to_hub(self, repo_id, **kwargs)

    def _init_text_prompts_from_words(self, words: str) -> None:
        ids = self.tokenizer(words, add_special_tokens=False)["input_ids"]
        if len(ids) != self.config.n_ctx:
            raise ValueError(f"ctx_init: {words!r} is {len(ids)} tokens, but n_ctx = {self.config.n_ctx}")
        with torch.no_grad():
            emb = self.clip.text_model.embeddings.token_embedding(torch.tensor(ids, device=self.device))
            self.text_prompts[0].copy_(emb.float())


def get_metaprompt_model(
    clip_model: CLIPModel, config: MetaPromptConfig | None = None, processor: Any | None = None, **kwargs: Any
) -> MetaPromptModel:
    """Wrap a `CLIPModel` in a fresh MetaPrompt adapter (like PEFT's `get_peft_model`); the base model's
    `name_or_path` is recorded in the config when it has none."""
    return MetaPromptModel(clip_model, config, processor, **kwargs)


def load_clip(
    name_or_path: str,
    *,
    revision: str | None = None,
    dtype: torch.dtype | str | None = None,
    **kwargs: Any,
) -> CLIPModel:
    """`CLIPModel.from_pretrained` restricted to safetensors weights (never pickle, never remote code)."""
    extra = {"dtype": _as_dtype(dtype)} if dtype is not None else {}
    try:
        return CLIPModel.from_pretrained(name_or_path, revision=revision, use_safetensors=True, **kwargs, **extra)
    except OSError as err:
        raise OSError(f"could not load the base CLIP {name_or_path!r} (revision {revision or 'main'}): {err}") from err


def load_processor(name_or_path: str, *, revision: str | None = None, **kwargs: Any) -> Any:
    """The base model's `CLIPProcessor`."""
    from transformers import CLIPProcessor

    return CLIPProcessor.from_pretrained(name_or_path, revision=revision, **kwargs)


def _fit_config_to_base(config: MetaPromptConfig, clip_model: CLIPModel) -> MetaPromptConfig:
    """Resolve depths to the base model's layer counts and check recorded dimensions against the base model."""
    tc, vc = clip_model.config.text_config, clip_model.config.vision_config
    base = getattr(clip_model, "name_or_path", "") or "the given CLIPModel"
    actual = {
        "text_hidden_size": tc.hidden_size,
        "vision_hidden_size": vc.hidden_size,
        "text_num_layers": tc.num_hidden_layers,
        "vision_num_layers": vc.num_hidden_layers,
    }
    for name, value in actual.items():
        recorded = getattr(config, name)
        if recorded is not None and recorded != value:
            raise ValueError(
                f"{name}: the adapter was made for a base model with {name} = {recorded}, but base model {base} has "
                f"{value}; load it with the base model it was trained on ({config.base_model_name_or_path})"
            )
    for depth, layers in (("text_depth", "text_num_layers"), ("vision_depth", "vision_num_layers")):
        value = getattr(config, depth)
        if value is not None and value > actual[layers]:
            raise ValueError(f"{depth}: {value} exceeds the {actual[layers]} layers of base model {base}")
    return dataclasses.replace(
        config,
        text_depth=config.text_depth or tc.num_hidden_layers,
        vision_depth=config.vision_depth or vc.num_hidden_layers,
        base_model_name_or_path=config.base_model_name_or_path or (getattr(clip_model, "name_or_path", "") or None),
        **actual,
    )


def _at_least_fp32(t: torch.Tensor) -> torch.Tensor:
    # Logits and losses in fp32 even under bf16/fp16 CLIP; fp64 stays fp64 (finite-difference tests).
    return t.to(torch.promote_types(t.dtype, torch.float32))


def _clean(name: str) -> str:
    return name.replace("_", " ").strip()


def _check_class_names(class_names: Sequence[str]) -> None:
    if isinstance(class_names, str) or not isinstance(class_names, Sequence):
        raise ValueError(f"class_names: expected a list of strings, got {type(class_names).__name__}")
    if not class_names:
        raise ValueError("class_names: got an empty list")
    for i, name in enumerate(class_names):
        if not isinstance(name, str) or not _clean(name):
            raise ValueError(f"class_names[{i}]: expected a non-empty string, got {name!r}")


def _version_of(prompts: torch.Tensor | None) -> tuple:
    # `_version` counts in-place updates (optimizer steps), so cached features are never stale.
    return (None,) if prompts is None else (prompts.data_ptr(), prompts._version, str(prompts.device))


def _cache_put(cache: OrderedDict, key: tuple, value: Any, max_items: int) -> None:
    cache[key] = value
    cache.move_to_end(key)
    while len(cache) > max_items:
        cache.popitem(last=False)


def _as_dtype(dtype: torch.dtype | str) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    value = getattr(torch, str(dtype), None)
    if not isinstance(value, torch.dtype):
        raise ValueError(f"dtype: unknown torch dtype {dtype!r}")
    return value
