"""Several MetaPrompt adapters on one frozen base model, in the PEFT manner: `add_adapter`, `load_adapter`,
`set_adapter`, `delete_adapter`, `active_adapter`, and a per-call `adapter_name=` on `forward` / `predict` /
the encoders (which, unlike `set_adapter`, is safe to vary across threads sharing the model).

Each adapter is a `PromptAdapter`: its config and its prompts θ_t (depth, n_ctx, d_text) and θ_v
(depth, n_pro, d_vision) (docs/method.md §1.2, §1.3). `model.config`, `model.text_prompts` and
`model.vision_prompts` are the active adapter's.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ..backbones import DualEncoderBackbone, get_backbone, load_base_model, load_base_processor, resolve_base_model
from ..constants import CONFIG_NAME, DEFAULT_ADAPTER_NAME, MODEL_CARD_NAME, PROMPT_KEYS, WEIGHTS_NAME
from ..modeling.configuration_metaprompt import MetaPromptConfig
from ..modeling.heads import HEAD_PREFIX, build_adapter_head
from ..modeling.mmrl_head import MMRLHead  # noqa: F401 (importing it registers the "mmrl" adapter head)
from ..validation import check_finite_tensors
from .files import AdapterFiles, check_shapes, read_adapter, save_adapter

if TYPE_CHECKING:
    from ..modeling.modeling_metaprompt import MetaPromptModel

_UIDS = itertools.count()


class PromptAdapter(nn.Module):
    """One adapter: its (fitted) config and prompt parameters; `uid` keys feature caches."""

    def __init__(self, config: MetaPromptConfig, backbone: DualEncoderBackbone, init: bool = True) -> None:
        super().__init__()
        self.config = config
        self.uid = next(_UIDS)
        device = backbone.device
        text_shape = (config.text_depth, config.n_ctx, backbone.text_hidden_size)
        vision_shape = (config.vision_depth, config.n_pro, backbone.vision_hidden_size)
        # N(0, 0.02²) i.i.d. (docs/method.md §4); fp32 master copy whatever the base dtype, cast at injection.
        # A loaded adapter skips the random draw: its values come from the file.
        make = (
            (lambda s: torch.randn(s, device=device) * config.init_std)
            if init
            else (lambda s: torch.empty(s, device=device))
        )
        self.text_prompts = nn.Parameter(make(text_shape)) if config.n_ctx else None
        self.vision_prompts = nn.Parameter(make(vision_shape)) if config.n_pro else None
        # The method's own inference parameters, if its name has a registered head (modeling/heads.py).
        self.head = build_adapter_head(config, backbone)

    def prompt_parameters(self) -> list[nn.Parameter]:
        """θ_t, θ_v (those that exist), then the head's parameters: the order of `state()`."""
        prompts = [p for p in (self.text_prompts, self.vision_prompts) if p is not None]
        return prompts + ([] if self.head is None else list(self.head.parameters()))

    def state(self) -> dict[str, torch.Tensor]:
        """The adapter's tensors under their file keys: the prompts, then `head.<name>` for the head's."""
        out = {k: getattr(self, k).detach() for k in PROMPT_KEYS if getattr(self, k) is not None}
        if self.head is not None:
            out.update({HEAD_PREFIX + k: v.detach() for k, v in self.head.named_parameters()})
        return out


class AdapterMixin:
    """Adapter management and adapter I/O of `MetaPromptModel` (see the module docstring)."""

    adapters: nn.ModuleDict
    _active_adapter: str
    backbone: DualEncoderBackbone

    # ------------------------------------------------------------------ the active adapter
    def _adapter(self, adapter_name: str | None) -> PromptAdapter:
        name = self._active_adapter if adapter_name is None else adapter_name
        if name not in self.adapters:
            raise ValueError(f"adapter_name: no adapter {name!r} on this model; loaded: {sorted(self.adapters)}")
        return self.adapters[name]

    @property
    def active_adapter(self) -> str:
        return self._active_adapter

    @property
    def adapter_names(self) -> list[str]:
        return list(self.adapters)

    @property
    def peft_config(self) -> dict[str, MetaPromptConfig]:
        """Every adapter's config by name, as PEFT's `peft_config`."""
        return {name: adapter.config for name, adapter in self.adapters.items()}

    @property
    def config(self) -> MetaPromptConfig:
        """The active adapter's config."""
        return self._adapter(None).config

    @config.setter
    def config(self, value: MetaPromptConfig) -> None:
        self._adapter(None).config = value

    @property
    def text_prompts(self) -> nn.Parameter | None:
        return self._adapter(None).text_prompts

    @property
    def vision_prompts(self) -> nn.Parameter | None:
        return self._adapter(None).vision_prompts

    def prompt_parameters(self, adapter_name: str | None = None) -> list[nn.Parameter]:
        """The trainable tensors of one adapter (default: the active one), θ_t then θ_v (those that exist)."""
        return self._adapter(adapter_name).prompt_parameters()

    # ------------------------------------------------------------------ add, switch, delete
    def add_adapter(self, adapter_name: str, config: MetaPromptConfig, *, _init: bool = True) -> None:
        """Add a freshly initialised adapter (it does not become active; see `set_adapter`)."""
        if not isinstance(adapter_name, str) or not adapter_name or "." in adapter_name:
            raise ValueError(f"adapter_name: expected a non-empty name without '.', got {adapter_name!r}")
        if hasattr(nn.ModuleDict, adapter_name):
            raise ValueError(
                f"adapter_name: {adapter_name!r} is reserved (a torch ModuleDict attribute); pick another"
            )
        if adapter_name in self.adapters:
            raise ValueError(f"adapter_name: an adapter named {adapter_name!r} is already loaded; delete it first")
        if not isinstance(config, MetaPromptConfig):
            raise TypeError(f"config: expected a MetaPromptConfig, got {type(config).__name__}")
        config = fit_config_to_base(config, self.backbone)
        adapter = PromptAdapter(config, self.backbone, init=_init)
        adapter.train(self.training)
        self.adapters[adapter_name] = adapter
        if _init and config.ctx_init is not None:
            self._init_text_prompts_from_words(adapter, config.ctx_init)

    def set_adapter(self, adapter_name: str) -> None:
        """Make `adapter_name` the default of calls that name none (and the one `model.config` etc. show)."""
        self._adapter(adapter_name)
        self._active_adapter = adapter_name

    def delete_adapter(self, adapter_name: str) -> None:
        """Remove an adapter that is not the active one."""
        self._adapter(adapter_name)
        if adapter_name == self._active_adapter:
            raise ValueError(f"adapter_name: {adapter_name!r} is the active adapter; set_adapter another one first")
        del self.adapters[adapter_name]

    def load_adapter(
        self,
        pretrained_model_name_or_path: str | os.PathLike,
        adapter_name: str,
        *,
        is_trainable: bool = False,
        **hub_kwargs: Any,
    ) -> None:
        """Load an adapter folder or Hub repo onto this base model under `adapter_name` (not made active).

        The config, the safetensors header and the base model are checked against each other before the prompts are
        allocated; a mismatch names the file, the tensor or the dimension."""
        files = read_adapter(os.fspath(pretrained_model_name_or_path), **hub_kwargs)
        self._add_loaded(adapter_name, files, is_trainable)

    def _add_loaded(self, adapter_name: str, files: AdapterFiles, is_trainable: bool) -> None:
        config = fit_config_to_base(files.config, self.backbone)
        check_shapes(files.shapes, config, files.weights_path)
        self.add_adapter(adapter_name, config, _init=False)
        try:
            self._fill_loaded(adapter_name, files, is_trainable)
        except BaseException:
            del self.adapters[adapter_name]
            raise

    def _fill_loaded(self, adapter_name: str, files: AdapterFiles, is_trainable: bool) -> None:
        self.load_prompt_state_dict(files.tensors(), source=files.weights_path, adapter_name=adapter_name)
        adapter = self.adapters[adapter_name]
        for p in adapter.prompt_parameters():
            p.requires_grad_(is_trainable)
        adapter.config = dataclasses.replace(adapter.config, inference_mode=not is_trainable)

    # ------------------------------------------------------------------ state
    def prompt_state_dict(self, adapter_name: str | None = None) -> dict[str, torch.Tensor]:
        """One adapter's tensors only, under package-owned keys (never transformers module paths)."""
        return self._adapter(adapter_name).state()

    def load_prompt_state_dict(
        self, state: dict[str, torch.Tensor], source: str = "state dict", adapter_name: str | None = None
    ) -> None:
        """Strictly load an adapter's tensors (prompts and head): a missing, unexpected or mis-shaped key raises
        `ValueError` naming it."""
        adapter = self._adapter(adapter_name)
        own = adapter.state()
        expected = {k: tuple(v.shape) for k, v in own.items()}
        base = adapter.config.base_model_name_or_path or self.backbone.name_or_path or "the base model"
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
                    f"{base} expects {shape}{'' if key.startswith(HEAD_PREFIX) else ' (depth, tokens, width)'}"
                )
        check_finite_tensors(state, source)
        with torch.no_grad():
            for key, tensor in own.items():  # detached views of the parameters: copying writes into them
                tensor.copy_(state[key].to(device=self.backbone.device, dtype=torch.float32))
        self.clear_cache()

    # ------------------------------------------------------------------ Hub (huggingface_hub.ModelHubMixin)
    def save_pretrained(
        self,
        save_directory: str | os.PathLike,
        *,
        overwrite: bool = False,
        adapter_name: str | None = None,
        repo_id: str | None = None,
        push_to_hub: bool = False,
        model_card_kwargs: dict[str, Any] | None = None,
        **push_to_hub_kwargs: Any,
    ) -> Any:
        """Write one adapter (default: the active one) as `metaprompt_config.json` + `metaprompt_model.safetensors`
        (prompts only, never the frozen base model) and a `README.md` model card; `ModelHubMixin`'s signature.

        Nothing is replaced unless `overwrite=True`: existing adapter files raise `FileExistsError`, and an existing
        `README.md` (perhaps hand-written) is kept, as `ModelHubMixin` keeps it, unless `overwrite=True`. The files
        are written as one unit (`utils.write_folder`) and both record the identifier of the save (`adapter_io`).

        Args:
            model_card_kwargs: what the card shows (`generate_model_card`): `results` (a list of result entries or
                the path of a `results.json`), `training`, `datasets`, `model_name`, `repo_id`.
            push_to_hub, repo_id, push_to_hub_kwargs: then upload to `repo_id` (default: the folder's name) with
                `push_to_hub(repo_id, **push_to_hub_kwargs)`, whose commit info is returned.
        """

        if not push_to_hub and (repo_id is not None or push_to_hub_kwargs):
            raise ValueError(
                f"save_pretrained: {sorted(push_to_hub_kwargs) or ['repo_id']} apply only with push_to_hub=True"
            )
        save_directory = os.fspath(save_directory)
        if os.path.exists(save_directory) and not os.path.isdir(save_directory):
            raise NotADirectoryError(f"{save_directory} exists and is not a folder")
        if not overwrite:
            for name in (CONFIG_NAME, WEIGHTS_NAME):
                if os.path.exists(os.path.join(save_directory, name)):
                    raise FileExistsError(f"{os.path.join(save_directory, name)} exists; pass overwrite=True")
        card_path = os.path.join(save_directory, MODEL_CARD_NAME)
        write_card = overwrite or not os.path.exists(card_path)
        if model_card_kwargs and not write_card:
            raise FileExistsError(
                f"{card_path} exists; pass overwrite=True to replace it with the card of model_card_kwargs"
            )
        card = {}
        if write_card:
            text = str(self.generate_model_card(adapter_name=adapter_name, **(model_card_kwargs or {})))
            card[MODEL_CARD_NAME] = (text.rstrip("\n") + "\n").encode("utf-8")
        self._save_pretrained(save_directory, adapter_name=adapter_name, extra_files=card)
        if push_to_hub:
            repo = repo_id or os.path.basename(os.path.abspath(save_directory))
            return self.push_to_hub(
                repo, adapter_name=adapter_name, model_card_kwargs=model_card_kwargs, **push_to_hub_kwargs
            )
        return None

    def _save_pretrained(
        self,
        save_directory: str | os.PathLike,
        adapter_name: str | None = None,
        extra_files: dict[str, bytes] | None = None,
    ) -> None:
        """`ModelHubMixin`'s hook: one adapter's two files (default: the active one) and `extra_files`, replacing
        what is there, as the mixin's contract says (`save_pretrained` checks before calling it)."""
        from ..constants import __version__

        config = dataclasses.replace(
            self._adapter(adapter_name).config, inference_mode=True, metaprompt_version=__version__
        )
        save_adapter(save_directory, config, self.prompt_state_dict(adapter_name), extra_files)

    def generate_model_card(
        self,
        *,
        adapter_name: str | None = None,
        model_name: str = "MetaPrompt adapter",
        results: Sequence[Mapping[str, Any]] | str | os.PathLike | None = None,
        training: Mapping[str, Any] | None = None,
        datasets: Sequence[str] | None = None,
        repo_id: str | None = None,
    ) -> Any:
        """The adapter's `huggingface_hub.ModelCard` (`hub.build_model_card`); `results` may be a `results.json`
        path. These are the keys `model_card_kwargs` takes in `save_pretrained` and `push_to_hub`."""
        from ..hub.card import build_model_card, load_results

        if isinstance(results, (str, os.PathLike)):
            results = load_results(results)
        return build_model_card(
            self._adapter(adapter_name).config,
            model_name=model_name,
            results=results,
            training=training,
            datasets=datasets,
            repo_id=repo_id,
        )

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: str | os.PathLike,
        base_model: str | os.PathLike | nn.Module | None = None,
        revision: str | None = None,
        *,
        force_download: bool = False,
        token: str | bool | None = None,
        cache_dir: str | os.PathLike | None = None,
        local_files_only: bool = False,
        **model_kwargs: Any,
    ) -> MetaPromptModel:
        """Load an adapter from a local folder or a Hub repo, with its base model (docs/method.md §5).

        `ModelHubMixin.from_pretrained`'s signature (plus `base_model` and `revision` positionally); the work is
        in `_from_pretrained`. Unlike the mixin, no `config.json` is probed: an adapter repo holds
        `metaprompt_config.json`.

        Args:
            pretrained_model_name_or_path: folder holding `metaprompt_config.json` and
                `metaprompt_model.safetensors`, or a Hub repo id (resolved from the cache with `HF_HUB_OFFLINE=1`).
            base_model: a loaded base model (`CLIPModel`, `SiglipModel`, ...), or a Hub id / path to load instead of
                the config's `base_model_name_or_path` ("embedded" is the small CLIP shipped in the package).
            revision: revision of the adapter repo.
            force_download, token, cache_dir, local_files_only: Hub download options, for the adapter and the base.
            model_kwargs:
                processor: the base model's processor; loaded from the base model when omitted.
                base_model_revision: revision of the base model (default: the config's `revision`).
                subfolder: folder of the adapter inside the repo.
                dtype: dtype to load the base model in (e.g. torch.bfloat16; `torch_dtype` is the older name); the
                    prompts stay fp32 and are cast at injection, as after `.to(dtype)`.
                device: device for the base model and prompts.
                is_trainable: leave the prompts trainable (default: frozen, inference mode).
                device_map, attn_implementation: passed to the base model's `from_pretrained`; the prompts go to the
                    device of the logit scale.
                class_chunk_size, adapter_name: as in `MetaPromptModel(...)`.
        """
        return cls._from_pretrained(
            model_id=os.fspath(pretrained_model_name_or_path),
            revision=revision,
            cache_dir=cache_dir,
            force_download=force_download,
            local_files_only=local_files_only,
            token=token,
            base_model=base_model,
            **model_kwargs,
        )

    @classmethod
    def _from_pretrained(
        cls,
        *,
        model_id: str,
        revision: str | None,
        cache_dir: str | os.PathLike | None,
        force_download: bool,
        local_files_only: bool,
        token: str | bool | None,
        base_model: str | os.PathLike | nn.Module | None = None,
        processor: Any | None = None,
        base_model_revision: str | None = None,
        subfolder: str | None = None,
        dtype: torch.dtype | str | None = None,
        device: str | torch.device | None = None,
        is_trainable: bool = False,
        class_chunk_size: int = 128,
        adapter_name: str = DEFAULT_ADAPTER_NAME,
        torch_dtype: torch.dtype | str | None = None,
        device_map: Any | None = None,
        attn_implementation: str | None = None,
    ) -> MetaPromptModel:
        """`ModelHubMixin`'s loading hook; the arguments are `from_pretrained`'s."""
        if torch_dtype is not None and dtype is not None and torch_dtype != dtype:
            raise ValueError(f"dtype: got dtype={dtype!r} and torch_dtype={torch_dtype!r}; pass one")
        dtype = dtype if dtype is not None else torch_dtype
        hub_kwargs = dict(
            subfolder=subfolder,
            revision=revision,
            cache_dir=cache_dir,
            token=token,
            local_files_only=local_files_only,
            force_download=force_download,
        )
        source = model_id
        files = read_adapter(source, **hub_kwargs)  # config, header shapes and their agreement: before any load
        config = files.config
        if isinstance(base_model, nn.Module):
            clip_model = base_model
            if dtype is not None:
                clip_model = clip_model.to(dtype=_as_dtype(dtype))
        else:
            base_id = os.fspath(base_model) if base_model is not None else config.base_model_name_or_path
            if not base_id:
                raise ValueError(f"{source}: the config names no base_model_name_or_path; pass base_model=")
            base_id = resolve_base_model(base_id)
            base_rev = base_model_revision or (config.revision if base_model is None else None)
            extra: dict[str, Any] = {"dtype": _as_dtype(dtype)} if dtype is not None else {}
            if device_map is not None:
                extra["device_map"] = device_map
            if attn_implementation is not None:
                extra["attn_implementation"] = attn_implementation
            hub = dict(cache_dir=cache_dir, token=token, local_files_only=local_files_only)
            clip_model = load_base_model(base_id, revision=base_rev, **hub, **extra)
            if processor is None:
                processor = load_base_processor(base_id, revision=base_rev, **hub)
        if processor is None and getattr(clip_model, "name_or_path", None):
            with contextlib.suppress(Exception):
                processor = load_base_processor(clip_model.name_or_path, local_files_only=local_files_only)
        if device is not None:
            clip_model = clip_model.to(device)
        config = fit_config_to_base(config, get_backbone(clip_model))
        check_shapes(files.shapes, config, files.weights_path)  # the base's widths and depths, still before allocation
        model = cls(
            clip_model,
            config,
            processor,
            class_chunk_size=class_chunk_size,
            adapter_name=adapter_name,
            _init_prompts=False,
        )
        model._fill_loaded(adapter_name, files, is_trainable)
        return model.train(is_trainable)

    def push_to_hub(self, repo_id: str, **kwargs: Any) -> Any:
        """Upload one adapter (its two files and a generated `README.md` card) in one commit; `ModelHubMixin`'s
        signature plus `adapter_name` and `api`. See `hub.push_to_hub`."""
        from ..hub.card import push_to_hub

        return push_to_hub(self, repo_id, **kwargs)

    def _init_text_prompts_from_words(self, adapter: PromptAdapter, words: str) -> None:
        ids = self.tokenizer(words, add_special_tokens=False)["input_ids"]
        if len(ids) != adapter.config.n_ctx:
            raise ValueError(f"ctx_init: {words!r} is {len(ids)} tokens, but n_ctx = {adapter.config.n_ctx}")
        with torch.no_grad():
            emb = self.backbone.token_embedding(torch.tensor(ids, device=self.backbone.device))
            adapter.text_prompts[0].copy_(emb.float())


def fit_config_to_base(config: MetaPromptConfig, backbone: DualEncoderBackbone) -> MetaPromptConfig:
    """Resolve depths to the base model's layer counts and check recorded dimensions against the base model."""
    base = backbone.name_or_path or f"the given {type(backbone.model).__name__}"
    actual = {
        "text_hidden_size": backbone.text_hidden_size,
        "vision_hidden_size": backbone.vision_hidden_size,
        "text_num_layers": backbone.text_num_layers,
        "vision_num_layers": backbone.vision_num_layers,
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
    room = backbone.max_text_length - backbone.text_prompt_start - 1  # placeholders + at least the end token
    if config.n_ctx > room:
        raise ValueError(
            f"n_ctx: {config.n_ctx} prompt tokens do not fit the {backbone.max_text_length}-token text window of base "
            f"model {base} (at most {room})"
        )
    return dataclasses.replace(
        config,
        text_depth=config.text_depth or backbone.text_num_layers,
        vision_depth=config.vision_depth or backbone.vision_num_layers,
        base_model_name_or_path=config.base_model_name_or_path or (backbone.name_or_path or None),
        **actual,
    )


def _as_dtype(dtype: torch.dtype | str) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    value = getattr(torch, str(dtype), None)
    if not isinstance(value, torch.dtype):
        raise ValueError(f"dtype: unknown torch dtype {dtype!r}")
    return value
