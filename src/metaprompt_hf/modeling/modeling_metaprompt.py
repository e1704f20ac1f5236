"""`MetaPromptModel`: deep text and vision prompts around a frozen dual encoder (CLIP, SigLIP; docs/method.md §1, §5).

Four encoder paths share one frozen base model (docs/method.md §1.1):

    E_I⁰  frozen image encoder            → x    (B, P)
    E_Iᴾ  image encoder + θ_v             → x̃    (B, P)
    E_T⁰  text encoder on the templates   → h_c  (C, P), cached per class list and templates
    E_Tᴾ  text encoder + θ_t              → t_c  (C, P)

and give z^i = s<x̃, h>, z^t = s<x, t>, z^o = ½(z^i + z^t); evaluation uses z^o (docs/method.md §5). With
`config.coupled_branches=False` the logits are IVLP/CoOp's s<x̃, t>.

The base model is reached only through its backbone (`backbones/`) and a call's prompts travel with the call
(`injection.py`): one base model serves any number of adapters (PEFT style, `adapters/`) and threads at once.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from huggingface_hub import ModelHubMixin
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..adapters.multi import AdapterMixin, PromptAdapter
from ..backbones import get_backbone
from ..constants import CODE_URL, DEFAULT_ADAPTER_NAME, LIBRARY_NAME, PAPER_URL, TASK, WEIGHTS_NAME
from ..inputs.checks import as_image_list, check_batch_size, check_class_names, check_pixel_values, clean_class_name
from ..inputs.text_fit import fit_text_rows
from .configuration_metaprompt import MetaPromptConfig, check_templates
from .frozen_base import FrozenBaseMixin
from .heads import adapter_vision_prompts
from .injection import install_prompt_hooks, text_prompts_in_context, vision_prompts_in_context
from .losses import adapter_loss, coupled_logits
from .outputs import MetaPromptOutput

__all__ = ["WEIGHTS_NAME", "MetaPromptModel", "MetaPromptOutput", "get_metaprompt_model"]


class MetaPromptModel(
    AdapterMixin,
    FrozenBaseMixin,
    nn.Module,
    ModelHubMixin,
    library_name=LIBRARY_NAME,
    license="mit",
    pipeline_tag=TASK,
    paper_url=PAPER_URL,
    repo_url=CODE_URL,
    tags=["metaprompt", "prompt-learning", "clip"],
):
    """MetaPrompt adapter(s) on a frozen dual encoder: deep prompts θ_t (depth, n_ctx, d_text) and θ_v
    (depth, n_pro, d_vision) per adapter (and a method's head, heads.py). Only the adapters require grad.

    A `huggingface_hub.ModelHubMixin`: `save_pretrained(..., push_to_hub=True, repo_id=..., model_card_kwargs=...)`,
    `push_to_hub(...)` and `from_pretrained(...)` take the mixin's arguments (`AdapterMixin` implements them for
    adapter folders: namespaced file names, one adapter per folder, nothing overwritten unless asked).

    Args:
        clip_model: the frozen base model, any transformers dual encoder with a registered backbone
            (`CLIPModel`, `SiglipModel`); widths and depths are read from its config. It is frozen
            (`requires_grad_(False)`) and kept in eval mode.
        config: the first adapter's configuration; depths left at None become the base model's layer counts.
        processor: the base model's processor (tokenizer + image processor); needed for class names and images.
        class_chunk_size: classes encoded per text-encoder call, so memory stays bounded for 1000 classes.
        adapter_name: name of the first adapter (PEFT's "default").

    Example:
        ```python
        >>> model = MetaPromptModel.from_pretrained("org/metaprompt-vitb16")
        >>> probs = model.predict(images, ["dog", "cat", "giraffe"])  # (n_images, 3)
        ```
    """

    #: Cut a text longer than the text encoder reads, with a warning, instead of refusing it (text_fit.py).
    truncate_long_texts: bool = False

    def __init__(
        self,
        clip_model: nn.Module,
        config: MetaPromptConfig | None = None,
        processor: Any | None = None,
        *,
        class_chunk_size: int = 128,
        adapter_name: str = DEFAULT_ADAPTER_NAME,
        _init_prompts: bool = True,
    ) -> None:
        super().__init__()
        if not isinstance(class_chunk_size, int) or class_chunk_size < 1:
            raise ValueError(f"class_chunk_size: expected >= 1, got {class_chunk_size}")
        try:
            backbone = get_backbone(clip_model)
        except (TypeError, ValueError) as err:
            raise TypeError(f"clip_model: expected a CLIPModel or another registered dual encoder; {err}") from None
        self.backbone = backbone
        self.clip = clip_model
        self.clip.requires_grad_(False)
        self.clip.eval()
        install_prompt_hooks(backbone)
        self.processor = processor
        self.class_chunk_size = class_chunk_size
        self._checkpointing = False
        self._cache_lock = threading.Lock()
        self._tokenizer_lock = threading.Lock()
        self._token_cache: OrderedDict[tuple, list[list[int]]] = OrderedDict()
        self._feature_cache: OrderedDict[tuple, torch.Tensor] = OrderedDict()
        self.adapters = nn.ModuleDict()
        self._active_adapter = adapter_name
        self.add_adapter(adapter_name, config if config is not None else MetaPromptConfig(), _init=_init_prompts)

    # ------------------------------------------------------------------ properties
    @property
    def base_model(self) -> nn.Module:
        """The frozen transformers dual encoder."""
        return self.clip

    @property
    def device(self) -> torch.device:
        return self.backbone.device

    @property
    def dtype(self) -> torch.dtype:
        return self.backbone.dtype

    @property
    def logit_scale(self) -> torch.Tensor:
        """s = exp(the base model's frozen logit_scale), unclamped.

        Neither `CLIPModel.forward` nor the reference (https://github.com/Vill-Lab/2024-TIP-MetaPrompt/blob/main/
        trainers/meta.py#L270) clamps s outside CLIP's own pre-training; OpenAI checkpoints store ln 100 rounded to
        fp16 (4.60546875, s = 100.03), so a clamp at 100 would scale every logit by 0.9997 (docs/method.md §2)."""
        return _at_least_fp32(self.backbone.logit_scale.detach()).exp()

    @property
    def logit_bias(self) -> torch.Tensor | None:
        """The base model's additive logit bias (SigLIP), or None; it shifts every class alike."""
        bias = self.backbone.logit_bias
        return None if bias is None else _at_least_fp32(bias.detach())

    @property
    def tokenizer(self) -> Any:
        tokenizer = getattr(self.processor, "tokenizer", None)
        if tokenizer is None:
            raise ValueError(
                "this MetaPromptModel has no processor/tokenizer: pass processor=CLIPProcessor.from_pretrained(...) "
                "or load it with MetaPromptModel.from_pretrained, which loads the base model's processor"
            )
        return tokenizer

    # ------------------------------------------------------------------ caches (shared by threads)
    def _cache_get(self, cache: OrderedDict, key: tuple) -> Any:
        with self._cache_lock:
            value = cache.get(key)
            if value is not None:
                cache.move_to_end(key)
            return value

    def _cache_put(self, cache: OrderedDict, key: tuple, value: Any, max_items: int) -> None:
        with self._cache_lock:
            cache[key] = value
            cache.move_to_end(key)
            while len(cache) > max_items:
                cache.popitem(last=False)

    def clear_cache(self) -> None:
        """Drop cached token ids and class features."""
        with self._cache_lock:
            self._token_cache.clear()
            self._feature_cache.clear()

    # ------------------------------------------------------------------ text side
    def _tokenize(
        self, names: Sequence[str], check_placeholders: bool, adapter: PromptAdapter | None = None, template: str = ""
    ) -> list[list[int]]:
        # Each class name (`_` → space) in `template` (default: the prompted "X X {}.", docs/method.md §1.2, whose
        # placeholder words count against the text length); every text must fit (text_fit.py).
        config = (adapter or self._adapter(None)).config
        n = config.n_ctx if check_placeholders else 0
        template = template or " ".join([config.placeholder_token] * config.n_ctx + ["{}."])
        texts = [clean_class_name(name) for name in names]
        key = (tuple(texts), template, n, config.placeholder_token if n else None, self.truncate_long_texts)
        cached = self._cache_get(self._token_cache, key)
        if cached is not None:
            return cached
        max_len = self.backbone.max_text_length
        # Fast tokenizers refuse concurrent calls that change truncation settings ("Already borrowed").
        with self._tokenizer_lock:
            what = "prompted text" if check_placeholders else "template"
            ids = fit_text_rows(
                self.tokenizer, template, texts, max_len, truncation=self.truncate_long_texts, what=what
            )
            expected = self.tokenizer(config.placeholder_token, add_special_tokens=False)["input_ids"] if n else []
        if n:
            if len(expected) != 1:
                raise ValueError(
                    f"placeholder_token {config.placeholder_token!r} is not a single token for this tokenizer"
                )
            start = self.backbone.text_prompt_start
            for text, row in zip(texts, ids):
                if row[start : start + n] != expected * n:
                    raise ValueError(
                        f"prompt {template.format(text)!r}: the {n} placeholder tokens are not at positions {start}..{start + n - 1}"
                    )
        self._cache_put(self._token_cache, key, ids, 64)
        return ids

    def _pad(self, rows: list[list[int]]) -> torch.Tensor:
        # CLIP: the causal mask keeps padding after EOS from reaching the pooled row, so a chunk is padded only to its
        # longest row; SigLIP pools the last position and is padded to its fixed length (the backbone decides).
        return self.backbone.pad(rows, self.backbone.pad_token_id(self.tokenizer))

    def _text_features(self, ids: torch.Tensor, prompts: torch.Tensor | None, normalize: bool = True) -> torch.Tensor:
        """One text-encoder call: `ids` (N, L) with prompts θ_t (or none) → (N, P) fp32, L2-normalised if asked."""
        with text_prompts_in_context(prompts, self.backbone.text_prompt_start):
            feats = _at_least_fp32(self.backbone.text_features(ids))
        return F.normalize(feats, dim=-1) if normalize else feats

    def _encode_ids_chunked(
        self, rows: list[list[int]], prompts: torch.Tensor | None, normalize: bool = True
    ) -> torch.Tensor:
        # Classes are sorted by length so chunks carry little padding, then put back in order.
        order = sorted(range(len(rows)), key=lambda i: len(rows[i]))
        chunks = [order[i : i + self.class_chunk_size] for i in range(0, len(order), self.class_chunk_size)]
        use_ckpt = len(chunks) > 1 and torch.is_grad_enabled() and prompts is not None and prompts.requires_grad
        feats = []
        for n, chunk in enumerate(chunks):
            ids = self._pad([rows[i] for i in chunk])
            # Only the (chunk, P) features stay alive; activations are recomputed in backward. The prompts enter the
            # call context inside the checkpointed function, so the recomputation sees the same prompts. The LAST
            # chunk keeps its activations: autograd runs its backward first (it was created last) and frees them
            # before any other chunk is recomputed, so the peak stays at one chunk while one recomputation is saved.
            if use_ckpt and n < len(chunks) - 1:
                feats.append(checkpoint(self._text_features, ids, prompts, normalize, use_reentrant=False))
            else:
                feats.append(self._text_features(ids, prompts, normalize))
        out = torch.cat(feats)
        inverse = torch.empty(len(order), dtype=torch.long)
        inverse[torch.tensor(order)] = torch.arange(len(order))
        return out[inverse.to(out.device)]

    def encode_text(
        self,
        class_names: Sequence[str],
        text_prompts: torch.Tensor | None = None,
        *,
        adapter_name: str | None = None,
    ) -> torch.Tensor:
        """Prompted class features t_c (E_Tᴾ, docs/method.md §1.2): (C, P), L2-normalised, fp32.

        Args:
            class_names: C class names; `_` becomes a space.
            text_prompts: override of θ_t, (depth, n_ctx, d_text), e.g. adapted prompts θ' in the meta step.
            adapter_name: the adapter whose θ_t to use (default: the active one).
        """
        check_class_names(class_names)
        adapter = self._adapter(adapter_name)
        own = adapter.text_prompts
        prompts = own if text_prompts is None else text_prompts
        if text_prompts is not None and own is not None and text_prompts.shape != own.shape:
            raise ValueError(f"text_prompts: expected shape {tuple(own.shape)}, got {tuple(text_prompts.shape)}")
        rows = self._tokenize(class_names, check_placeholders=True, adapter=adapter)
        cacheable = text_prompts is None and not torch.is_grad_enabled()
        key = ("prompted", tuple(class_names), adapter.uid, _version_of(prompts))
        if cacheable:
            cached = self._cache_get(self._feature_cache, key)
            if cached is not None:
                return cached
        feats = self._encode_ids_chunked(rows, prompts)
        if cacheable:
            self._cache_put(self._feature_cache, key, feats, 16)
        return feats

    def encode_text_per_context(
        self, class_names: Sequence[str], contexts: torch.Tensor, *, adapter_name: str | None = None
    ) -> torch.Tensor:
        """Class features under K contexts at once, e.g. CoCoOp's θ_t + π(x_b) for each image b: (K, C, P),
        L2-normalised, fp32 (docs/methods/cocoop.md).

        Several contexts share one text-encoder call, each class row carrying its own context, with at most
        `class_chunk_size` rows per call; under grad every call but the last is checkpointed, so memory stays at one
        call's activations. With more classes than `class_chunk_size`, each context is encoded on its own
        (`encode_text`, chunked over classes).

        Args:
            class_names: C class names.
            contexts: (K, depth, n_ctx, d_text), each of the shape of the adapter's θ_t.
        """
        check_class_names(class_names)
        adapter = self._adapter(adapter_name)
        own = adapter.text_prompts
        if own is None or contexts.dim() != 4 or contexts.shape[1:] != own.shape:
            expected = None if own is None else ("K", *own.shape)
            raise ValueError(f"contexts: expected shape {expected}, got {tuple(contexts.shape)}")
        n_classes = len(class_names)
        per_call = self.class_chunk_size // n_classes
        use_ckpt = len(contexts) > 1 and torch.is_grad_enabled() and contexts.requires_grad
        if per_call < 1:
            # one context at a time, each chunked over classes; every context but the last checkpointed as a whole,
            # or the last class chunk of every context would keep its activations
            feats = [
                checkpoint(self.encode_text, class_names, c, adapter_name=adapter_name, use_reentrant=False)
                if use_ckpt and n < len(contexts) - 1
                else self.encode_text(class_names, c, adapter_name=adapter_name)
                for n, c in enumerate(contexts)
            ]
            return torch.stack(feats)
        ids = self._pad(self._tokenize(class_names, check_placeholders=True, adapter=adapter))
        groups = list(torch.split(contexts, per_call))
        use_ckpt = use_ckpt and len(groups) > 1
        feats = []
        for n, group in enumerate(groups):
            # (k, depth, n_ctx, d) → (depth, k·C, n_ctx, d): context-major rows, the C classes of each context together
            prompts = group.repeat_interleave(n_classes, dim=0).transpose(0, 1)
            rows = ids.repeat(len(group), 1)
            if use_ckpt and n < len(groups) - 1:  # as in `_encode_ids_chunked`: the last call runs backward first
                feats.append(checkpoint(self._text_features, rows, prompts, use_reentrant=False))
            else:
                feats.append(self._text_features(rows, prompts))
        return torch.cat(feats).view(len(contexts), n_classes, -1)

    @torch.no_grad()
    def encode_templates(
        self, class_names: Sequence[str], templates: Sequence[str] | None = None, *, adapter_name: str | None = None
    ) -> torch.Tensor:
        """Frozen hand-crafted class features h_c (E_T⁰, docs/method.md §1.4, §8): (C, P), L2-normalised, cached per
        class list and templates. Several templates are averaged after normalisation and renormalised.

        Args:
            templates: templates for this call, each with one `{}`; default: the adapter's `config.templates`.
        """
        check_class_names(class_names)
        if templates is None:
            templates = self._adapter(adapter_name).config.templates
        else:
            templates = check_templates(templates)
        key = ("template", tuple(class_names), tuple(templates), str(self.device), self.dtype)
        cached = self._cache_get(self._feature_cache, key)
        if cached is not None:
            return cached
        total = None
        for template in templates:
            # The reference formats the raw name here (docs/method.md §3.3, quirk 8); `_` is cleaned in both branches
            # so the two branches read the same words.
            rows = self._tokenize(class_names, check_placeholders=False, template=template)
            feats = self._encode_ids_chunked(rows, None)
            total = feats if total is None else total + feats
        feats = F.normalize(total, dim=-1)
        self._cache_put(self._feature_cache, key, feats, 16)
        return feats

    # ------------------------------------------------------------------ image side
    def _image_features(
        self, pixel_values: torch.Tensor, prompts: torch.Tensor | None, frozen_rows: int = 0, normalize: bool = True
    ) -> torch.Tensor:
        with vision_prompts_in_context(prompts, frozen_rows=frozen_rows):
            feats = _at_least_fp32(self.backbone.image_features(pixel_values.to(self.device)))
        return F.normalize(feats, dim=-1) if normalize else feats

    @torch.no_grad()
    def encode_frozen_image(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """x = E_I⁰(image): (B, P), L2-normalised; equals the base model's `get_image_features` normalised."""
        return self._image_features(pixel_values, None)

    def encode_image(
        self,
        pixel_values: torch.Tensor,
        vision_prompts: torch.Tensor | None = None,
        *,
        adapter_name: str | None = None,
    ) -> torch.Tensor:
        """x̃ = E_Iᴾ(image) with θ_v (or the override `vision_prompts`): (B, P), L2-normalised."""
        if vision_prompts is None:
            vision_prompts = adapter_vision_prompts(self, self._adapter(adapter_name))
        if vision_prompts is None:
            return self.encode_frozen_image(pixel_values)
        return self._image_features(pixel_values, vision_prompts)

    def encode_image_pair(
        self, pixel_values: torch.Tensor, *, adapter_name: str | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(x, x̃) for the same images. Without grad (inference) both come from ONE batched encoder call: the frozen
        half masks the prompt tokens out of attention (see `injection.vision_prompts_in_context`)."""
        prompts = adapter_vision_prompts(self, self._adapter(adapter_name))
        if prompts is None:
            x = self.encode_frozen_image(pixel_values)
            return x, x
        if torch.is_grad_enabled() or not self.backbone.supports_masked_frozen_batch():
            return self.encode_frozen_image(pixel_values), self._image_features(pixel_values, prompts)
        b = pixel_values.shape[0]
        both = self._image_features(torch.cat([pixel_values, pixel_values]), prompts, frozen_rows=b)
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
        templates: Sequence[str] | None = None,
        adapter_name: str | None = None,
        output_features: bool = False,
    ) -> MetaPromptOutput:
        """Logits of every path for a batch of images against a class list (docs/method.md §1.1, §2, §5).

        Args:
            pixel_values: (B, 3, H, W) from the base model's image processor.
            class_names: the C classes to classify among (any names; θ_t is class-agnostic).
            labels: (B,) indices into `class_names`; when given, `loss` is L_AC (coupled) or CE (IVLP/CoOp).
            frozen_image_embeds: (B, P) precomputed x, reused instead of a frozen image pass.
            return_zero_shot: also return s<x, h>, the frozen base model's zero-shot logits.
            templates: templates of the frozen text branch for this call (default: the adapter's config).
            adapter_name: the adapter to use for this call (default: the active one); safe to vary across threads.
            output_features: also return the projected features before L2 normalisation (one extra pass per path).
        """
        if pixel_values is None or class_names is None:
            raise ValueError("forward needs pixel_values (B, 3, H, W) and class_names (a list of C names)")
        if pixel_values.ndim != 4:
            raise ValueError(f"pixel_values: expected shape (B, 3, H, W), got {tuple(pixel_values.shape)}")
        adapter = self._adapter(adapter_name)
        name = adapter_name if adapter_name is not None else self._active_adapter
        if adapter.head is not None and adapter.head.forms_output:  # the head's own encoder passes (heads.py)
            kw = dict(frozen_image_embeds=frozen_image_embeds, return_zero_shot=return_zero_shot, templates=templates)
            kw.update(adapter_name=name, output_features=output_features)
            return adapter.head.output(self, pixel_values, class_names, labels, **kw)
        cfg, vision = adapter.config, adapter_vision_prompts(self, adapter)  # θ_v, or the head's (heads.py)
        s = self.logit_scale
        out = MetaPromptOutput(logit_scale=s)
        need_frozen = cfg.coupled_branches or return_zero_shot or vision is None
        if frozen_image_embeds is not None:
            x = _at_least_fp32(frozen_image_embeds)
            x_tilde = self.encode_image(pixel_values, vision, adapter_name=name)
        elif need_frozen and vision is not None:
            x, x_tilde = self.encode_image_pair(pixel_values, adapter_name=name)
        elif need_frozen:
            x = x_tilde = self.encode_frozen_image(pixel_values)
        else:
            x, x_tilde = None, self.encode_image(pixel_values, vision, adapter_name=name)
        t = self.encode_text(class_names, adapter_name=name)
        out.image_embeds, out.frozen_image_embeds, out.text_embeds = x_tilde, x, t
        if cfg.coupled_branches or return_zero_shot:
            out.template_embeds = self.encode_templates(class_names, templates, adapter_name=name)
        if adapter.head is not None and adapter.head.forms_logits:  # the head's own logits (heads.py)
            out.logits = adapter.head.logits(self, x_tilde, class_names, adapter_name=name)
        elif cfg.coupled_branches:
            out.logits, out.logits_image, out.logits_text = coupled_logits(x_tilde, x, t, out.template_embeds, s)
        else:
            out.logits = s * x_tilde @ t.t()
        if return_zero_shot:
            out.logits_zero_shot = s * x @ out.template_embeds.t()
        bias = self.logit_bias
        if bias is not None:  # SigLIP's logits carry its learned bias; softmax and CE are unchanged by it
            for field in ("logits", "logits_image", "logits_text", "logits_zero_shot"):
                if getattr(out, field) is not None:
                    setattr(out, field, getattr(out, field) + bias)
        if output_features:
            out.frozen_image_features = self._image_features(pixel_values, None, normalize=False)
            if vision is not None:
                out.image_features = self._image_features(pixel_values, vision, normalize=False)
            if adapter.text_prompts is not None:
                rows = self._tokenize(class_names, check_placeholders=True, adapter=adapter)
                out.text_features = self._encode_ids_chunked(rows, adapter.text_prompts, normalize=False)
        if labels is not None:
            out.loss = adapter_loss(out, labels, cfg.coupled_branches)
        return out

    # ------------------------------------------------------------------ inference
    def preprocess(self, images: Any) -> torch.Tensor:
        """PIL image(s), numpy arrays, file paths (a list, or any sequence such as a `datasets` column) or
        `pixel_values` → (B, 3, H, W) with the base model's image processor; bad elements are named by index."""
        if isinstance(images, torch.Tensor):
            return check_pixel_values(images, getattr(self.backbone.vision_config, "num_channels", None))
        image_processor = getattr(self.processor, "image_processor", None)
        images = as_image_list(images)
        if image_processor is None:
            raise ValueError("images need a processor: pass processor= or use MetaPromptModel.from_pretrained")
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
        templates: Sequence[str] | None = None,
        adapter_name: str | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Class probabilities for any class names (docs/method.md §5): softmax of z^o, shape (n_images, n_classes).

        Args:
            images: a PIL image, a file path, a list of them, arrays, or `pixel_values` (B, 3, H, W) of normalised
                floats.
            class_names: C distinct names (after `_` → space), new ones included.
            batch_size: images per encoder call, >= 1.
            return_zero_shot: also return the frozen base model's zero-shot probabilities with the template(s),
                computed in the same pass.
            templates: templates of the frozen branch for this call (default: the adapter's config).
            adapter_name: the adapter for this call (default: the active one).
        """
        check_class_names(class_names, unique=True)
        check_batch_size(batch_size)
        if templates is not None:
            templates = check_templates(templates)
        self._adapter(adapter_name)
        pixel_values = self.preprocess(images)
        probs, zs = [], []
        for start in range(0, pixel_values.shape[0], batch_size):
            out = self(
                pixel_values[start : start + batch_size],
                class_names,
                return_zero_shot=return_zero_shot,
                templates=templates,
                adapter_name=adapter_name,
            )
            probs.append(out.logits.softmax(-1).cpu())
            if return_zero_shot:
                zs.append(out.logits_zero_shot.softmax(-1).cpu())
        if return_zero_shot:
            return torch.cat(probs), torch.cat(zs)
        return torch.cat(probs)


def get_metaprompt_model(
    clip_model: nn.Module, config: MetaPromptConfig | None = None, processor: Any | None = None, **kwargs: Any
) -> MetaPromptModel:
    """Wrap a base model in a fresh MetaPrompt adapter (like PEFT's `get_peft_model`); the base model's
    `name_or_path` is recorded in the config when it has none."""
    return MetaPromptModel(clip_model, config, processor, **kwargs)


def _at_least_fp32(t: torch.Tensor) -> torch.Tensor:
    # Logits and losses in fp32 even under a bf16/fp16 base; fp64 stays fp64 (finite-difference tests).
    return t.to(torch.promote_types(t.dtype, torch.float32))


def _version_of(prompts: torch.Tensor | None) -> tuple:
    # `_version` counts in-place updates (optimizer steps), so cached features are never stale.
    return (None,) if prompts is None else (prompts.data_ptr(), prompts._version, str(prompts.device))
