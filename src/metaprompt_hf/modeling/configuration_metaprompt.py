"""`MetaPromptConfig`: the adapter's configuration, PEFT style.

A dataclass whose every field carries help text, validated in `__post_init__`, saved as
`metaprompt_config.json` next to the prompt tensors (`metaprompt_model.safetensors`).

The defaults are the paper's base-to-new setting (docs/method.md §4): 2 text + 2 vision prompt tokens at every layer
of the base CLIP, initialised i.i.d. N(0, 0.02²), with the hand-crafted template "a photo of a {}" in the frozen
text branch.
"""

from __future__ import annotations

import dataclasses
import json
import os
import string
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from ..constants import CONFIG_NAME, METHOD_NAME, PLACEHOLDER_TOKEN, SAVE_ID_KEY
from ..utils import atomic_write_text, resolve_file
from ..validation import check_number

__all__ = ["CONFIG_NAME", "INIT_STD_MAX", "MetaPromptConfig", "check_templates"]

#: The largest prompt initialisation std accepted (docs/method.md §4 uses 0.02).
INIT_STD_MAX = 10.0


def check_templates(templates: Any, field_name: str = "templates") -> list[str]:
    """A non-empty list of strings, each with exactly one `{}` replacement field (no named, numbered or formatted
    fields, which would fail only when the template is used); a single string is taken as a list of one.

    Raises `ValueError` naming the field and the offending entry."""
    if isinstance(templates, str):
        templates = [templates]
    if not isinstance(templates, Sequence) or isinstance(templates, (bytes, bytearray)) or not templates:
        raise ValueError(f"{field_name}: expected a non-empty list of strings, got {templates!r}")
    out = []
    for i, template in enumerate(templates):
        if not isinstance(template, str):
            raise ValueError(f"{field_name}[{i}]: expected a string with exactly one '{{}}', got {template!r}")
        try:
            fields = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
            specs = [(spec, conv) for _, f, spec, conv in string.Formatter().parse(template) if f is not None]
        except ValueError as err:
            raise ValueError(f"{field_name}[{i}]: {template!r} is not a valid template ({err})") from None
        if fields != [""] or specs != [("", None)]:
            raise ValueError(
                f"{field_name}[{i}]: expected exactly one '{{}}' field for the class name (and no other braces; "
                f"write '{{{{' for a literal brace), got {template!r}"
            )
        out.append(template)
    return out


def _package_version() -> str:
    from ..constants import __version__

    return __version__


@dataclass
class MetaPromptConfig:
    """Configuration of a MetaPrompt adapter (Zhao et al., TIP 2024; docs/method.md §1 and §4).

    The baselines are configurations of the same model: CoOp is `n_pro=0, text_depth=1, coupled_branches=False`;
    IVLP is `coupled_branches=False` (deep text and vision prompts, logits between prompted image and prompted
    text); MetaPrompt is the default.

    Example:
        ```python
        >>> from metaprompt_hf import MetaPromptConfig
        >>> MetaPromptConfig(n_ctx=4, n_pro=4)  # the paper's domain-generalisation setting
        ```
    """

    method: str = field(
        default=METHOD_NAME,
        metadata={"help": "Discriminator of the adapter type, like PEFT's `peft_type`. Always 'METAPROMPT'."},
    )
    base_model_name_or_path: str | None = field(
        default=None,
        metadata={"help": "Hub id or local path of the frozen CLIPModel the prompts were trained on."},
    )
    revision: str | None = field(
        default=None, metadata={"help": "Revision (branch, tag or commit) of the base model on the Hub."}
    )
    n_ctx: int = field(
        default=2,
        metadata={
            "help": "Number of text context tokens (docs/method.md §1.2). They replace placeholder tokens right after "
            "the start-of-text token. 2 for base-to-new, 4 for domain generalisation. 0 disables text prompts."
        },
    )
    n_pro: int = field(
        default=2,
        metadata={
            "help": "Number of vision prompt tokens appended after the patch tokens without positional embedding "
            "(docs/method.md §1.3). 2 for base-to-new, 4 for domain generalisation. 0 disables vision prompts."
        },
    )
    text_depth: int | None = field(
        default=None,
        metadata={
            "help": "Number of text encoder layers that receive their own prompts (layer 0 = the token "
            "embeddings). None means every layer of the base model; 1 is CoOp's layer-0-only context."
        },
    )
    vision_depth: int | None = field(
        default=None,
        metadata={"help": "Number of vision encoder layers that receive their own prompts. None means every layer."},
    )
    init_std: float = field(
        default=0.02,
        metadata={"help": "Standard deviation of the N(0, std²) prompt initialisation (docs/method.md §4)."},
    )
    ctx_init: str | None = field(
        default=None,
        metadata={
            "help": "Optional words (e.g. 'a photo of a') whose token embeddings initialise the layer-0 text prompts "
            "instead of random values, as CoOp/IVLP do. Must tokenize to exactly n_ctx tokens."
        },
    )
    placeholder_token: str = field(
        default=PLACEHOLDER_TOKEN,
        metadata={"help": "Word repeated n_ctx times before the class name; its rows are replaced by the prompts."},
    )
    templates: list[str] = field(
        default_factory=lambda: ["a photo of a {}"],
        metadata={
            "help": "Hand-crafted template(s) of the frozen text branch h_c, each with one '{}' for the class name. "
            "Several templates are ensembled (mean of normalised embeddings, renormalised; docs/method.md §1.4)."
        },
    )
    coupled_branches: bool = field(
        default=True,
        metadata={
            "help": "MetaPrompt's coupled encoder pairs (prompted image x frozen template text, frozen image x "
            "prompted text; docs/method.md §1.1). False gives the IVLP/CoOp logits s·<prompted image, prompted text>."
        },
    )
    method_config: dict[str, Any] | None = field(
        default=None,
        metadata={
            "help": "The training method that produced the adapter and its own knobs: {'name': <--method>, "
            "'version': <int>, <field>: <value>, ...} (docs/architecture.md §4.2). None for adapters saved before "
            "methods were recorded."
        },
    )
    inference_mode: bool = field(
        default=False, metadata={"help": "Whether the adapter was loaded for inference only (prompts frozen)."}
    )
    text_hidden_size: int | None = field(
        default=None, metadata={"help": "Width of the base text encoder, recorded to detect a mismatched base model."}
    )
    vision_hidden_size: int | None = field(
        default=None, metadata={"help": "Width of the base vision encoder, recorded to detect a mismatched base."}
    )
    text_num_layers: int | None = field(
        default=None, metadata={"help": "Depth of the base text encoder, recorded to detect a mismatched base."}
    )
    vision_num_layers: int | None = field(
        default=None, metadata={"help": "Depth of the base vision encoder, recorded to detect a mismatched base."}
    )
    metaprompt_version: str = field(
        default_factory=_package_version, metadata={"help": "Version of metaprompt_hf that wrote the config."}
    )

    def __post_init__(self) -> None:
        if self.method != METHOD_NAME:
            raise ValueError(f"method: expected {METHOD_NAME!r}, got {self.method!r}")
        for name in ("n_ctx", "n_pro"):
            check_number(getattr(self, name), name, low=0, integer=True)
        for name in ("text_depth", "vision_depth", *_DIM_FIELDS):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"{name}: expected None or an integer >= 1, got {value!r}")
        for depth, layers in (("text_depth", "text_num_layers"), ("vision_depth", "vision_num_layers")):
            d, n = getattr(self, depth), getattr(self, layers)
            if d is not None and n is not None and d > n:
                raise ValueError(f"{depth}: {d} exceeds the base model's {layers} = {n}")
        # Prompts sit beside token embeddings of norm ~1; a std past 10 swamps them (and 1e30 overflows float32).
        check_number(self.init_std, "init_std", low=0, high=INIT_STD_MAX, low_open=True)
        for name in ("coupled_branches", "inference_mode"):
            value = getattr(self, name)
            if not isinstance(value, bool):  # "false" is a non-empty string, hence true: refuse it
                raise ValueError(f"{name}: expected true or false (a JSON boolean), got {value!r}")
        self.templates = check_templates(self.templates)
        if not isinstance(self.placeholder_token, str) or not self.placeholder_token.strip():
            raise ValueError(f"placeholder_token: expected a non-empty word, got {self.placeholder_token!r}")
        if self.placeholder_token != self.placeholder_token.strip() or any(
            c.isspace() for c in self.placeholder_token
        ):
            raise ValueError(f"placeholder_token: expected a single word, got {self.placeholder_token!r}")
        if self.ctx_init is not None and (not isinstance(self.ctx_init, str) or not self.ctx_init.strip()):
            raise ValueError(f"ctx_init: expected None or non-empty words, got {self.ctx_init!r}")
        if self.ctx_init is not None and self.n_ctx == 0:
            raise ValueError("ctx_init: given, but n_ctx = 0 leaves no text prompt to initialise")
        for name in ("base_model_name_or_path", "revision"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise ValueError(f"{name}: expected a string or None, got {value!r}")
        self.method_config = _check_method_config(self.method_config)
        if not isinstance(self.metaprompt_version, str):
            raise ValueError(f"metaprompt_version: expected a string, got {self.metaprompt_version!r}")

    # ------------------------------------------------------------------ serialisation
    def to_dict(self) -> dict[str, Any]:
        """The config as a JSON-serialisable dict."""
        return asdict(self)

    def to_json_string(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> MetaPromptConfig:
        """Build a config from a dict; unknown keys are an error that names them (PEFT behaviour)."""
        if not isinstance(data, dict):
            raise ValueError(f"{source}: expected a JSON object, got {type(data).__name__}")
        # The save identifier belongs to the saved pair, not to the configuration (adapter_io reads it).
        data = {k: v for k, v in data.items() if k != SAVE_ID_KEY}
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"{source}: unknown key(s) {unknown}; known keys are {sorted(known)}")
        try:
            return cls(**data)
        except ValueError as err:
            raise ValueError(f"{source}: {err}") from None

    def save_pretrained(self, save_directory: str | os.PathLike, overwrite: bool = False) -> str:
        """Write `metaprompt_config.json` (indent 2, sorted keys) atomically; returns its path."""
        os.makedirs(save_directory, exist_ok=True)
        path = os.path.join(save_directory, CONFIG_NAME)
        if not overwrite and os.path.exists(path):
            raise FileExistsError(f"{path} exists; pass overwrite=True to replace it")
        atomic_write_text(path, self.to_json_string())
        return path

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: str | os.PathLike,
        *,
        subfolder: str | None = None,
        revision: str | None = None,
        cache_dir: str | os.PathLike | None = None,
        token: str | bool | None = None,
        local_files_only: bool = False,
        force_download: bool = False,
    ) -> MetaPromptConfig:
        """Load `metaprompt_config.json` from a local folder, a file, or a Hub repo (offline from the cache)."""
        path = str(pretrained_model_name_or_path)
        if os.path.isfile(path):
            config_file = path
        else:
            config_file = resolve_file(
                path,
                CONFIG_NAME,
                subfolder=subfolder,
                revision=revision,
                cache_dir=cache_dir,
                token=token,
                local_files_only=local_files_only,
                force_download=force_download,
            )
        with open(config_file, "rb") as f:
            return cls.from_json_bytes(f.read(), source=config_file)

    @classmethod
    def from_json_bytes(cls, data: bytes, source: str = "config") -> MetaPromptConfig:
        """Parse the bytes of a `metaprompt_config.json`; errors name `source`."""
        try:
            parsed = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ValueError(f"{source}: not valid JSON ({err})") from err
        return cls.from_dict(parsed, source=source)


def _check_method_config(value: Any) -> dict[str, Any] | None:
    """None, or a JSON object with a method `name` (str) and `version` (int >= 1); the method's own fields are
    checked by the method's `MethodConfig` when a training run reads them."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ValueError(f"method_config: expected a JSON object or null, got {value!r}")
    name, version = value.get("name"), value.get("version")
    if not isinstance(name, str) or not name:
        raise ValueError(f"method_config: expected a 'name' string, got {name!r}")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ValueError(f"method_config: expected a 'version' integer >= 1, got {version!r}")
    try:
        json.dumps(value)
    except (TypeError, ValueError) as err:
        raise ValueError(f"method_config: not JSON-serialisable ({err})") from None
    return dict(value)


_DIM_FIELDS = ("text_hidden_size", "vision_hidden_size", "text_num_layers", "vision_num_layers")
