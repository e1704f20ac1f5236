"""Adapter folders on disk: written as one unit, read as one consistent pair, checked before anything is allocated.

A folder (or Hub repo) holds `metaprompt_config.json` and `metaprompt_model.safetensors`. Every save writes the
identifier of what it saved (`SAVE_ID_KEY`: the sha256 of the prompt tensors) into both files — a key of the config
JSON and an entry of the weights' safetensors metadata — so a reader can tell that the two files come from the same
save, while the config stays free to edit by hand (a new `base_model_name_or_path`, revision, templates or
indentation, as people do with PEFT's `adapter_config.json`). Derived from the prompts rather than drawn at random,
the identifier makes saving reproducible: the same prompts give the same bytes, locally and on the Hub. A folder being re-saved while it is read is read again, never paired wrongly.
Adapters written before the identifier existed record the sha256 of the config bytes (`CONFIG_DIGEST_KEY`) instead;
they keep loading (a digest that no longer matches is taken as a hand edit and logged).
Tensor shapes are taken from the safetensors header and checked against the config before any tensor is built.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import time
from typing import Any

import torch

from ..constants import CONFIG_DIGEST_KEY, CONFIG_NAME, PROMPT_KEYS, SAVE_ID_KEY, WEIGHTS_NAME
from ..modeling.configuration_metaprompt import MetaPromptConfig
from ..modeling.heads import HEAD_PREFIX, head_class
from ..utils import read_folder_files, resolve_file, write_folder
from ..validation import check_finite_tensors

logger = logging.getLogger(__name__)

_READ_ATTEMPTS = 50
_LEGACY_ATTEMPTS = 4  # an old-format folder whose digest differs is re-read a few times, then taken as edited
_MAX_HEADER = 1 << 24


@dataclasses.dataclass
class AdapterFiles:
    """One adapter as read from disk: its config, the tensor shapes of its header, and the raw weights."""

    config: MetaPromptConfig
    shapes: dict[str, tuple[int, ...]]
    weights: bytes
    weights_path: str

    def tensors(self) -> dict[str, torch.Tensor]:
        from safetensors.torch import load

        return load(self.weights)


def adapter_bytes(config: MetaPromptConfig, tensors: dict[str, torch.Tensor]) -> dict[str, bytes]:
    """The two files of an adapter folder, weights first; the weights' metadata records the config's digest."""
    from safetensors.torch import save

    from ..constants import __version__

    check_finite_tensors(tensors, "save_pretrained")
    # Contiguous clones: shared or strided storage must not leak into the file.
    tensors = {k: v.detach().to("cpu", torch.float32).contiguous().clone() for k, v in tensors.items()}
    save_id = prompts_digest(tensors)
    config_data = config_json_with_save_id(config, save_id)
    metadata = {"format": "pt", "metaprompt_version": __version__, SAVE_ID_KEY: save_id}
    return {WEIGHTS_NAME: save(tensors, metadata), CONFIG_NAME: config_data}


def save_adapter(
    folder: str | os.PathLike,
    config: MetaPromptConfig,
    tensors: dict[str, torch.Tensor],
    extra_files: dict[str, bytes] | None = None,
) -> None:
    """Write an adapter folder (its two files, then `extra_files` such as the model card) as one unit
    (see `utils.write_folder`)."""
    write_folder(folder, adapter_bytes(config, tensors) | (extra_files or {}))


def read_adapter(source: str, **hub_kwargs: Any) -> AdapterFiles:
    """Read and cross-check an adapter from a local folder or a Hub repo (offline from the cache).

    Raises `ValueError` naming the file for unreadable JSON/safetensors, for a config and weights that do not belong
    together, and for header shapes that do not fit the config (before any tensor is allocated).
    """
    folder = os.path.join(source, hub_kwargs["subfolder"]) if hub_kwargs.get("subfolder") else source
    local = os.path.isdir(folder)
    for attempt in range(_READ_ATTEMPTS):
        if local:
            try:
                data = read_folder_files(folder, (CONFIG_NAME, WEIGHTS_NAME))
            except FileNotFoundError:
                # A missing file is final unless a concurrent save is swapping the folder right now.
                if attempt + 1 < _READ_ATTEMPTS and (_being_replaced(folder) or _complete(folder)):
                    time.sleep(0.002)
                    continue
                resolve_file(folder, CONFIG_NAME)
                resolve_file(folder, WEIGHTS_NAME)
                raise
            config_path, weights_path = os.path.join(folder, CONFIG_NAME), os.path.join(folder, WEIGHTS_NAME)
        else:
            config_path = resolve_file(source, CONFIG_NAME, **hub_kwargs)
            weights_path = resolve_file(source, WEIGHTS_NAME, **hub_kwargs)
            data = {CONFIG_NAME: _read(config_path), WEIGHTS_NAME: _read(weights_path)}
        header = parse_header(data[WEIGHTS_NAME], weights_path)
        problem = pairing_problem(header.get("__metadata__") or {}, data[CONFIG_NAME])
        if (
            problem is not None
            and local
            and attempt + 1 < (_LEGACY_ATTEMPTS if problem == _EDITED_LEGACY else _READ_ATTEMPTS)
        ):
            time.sleep(0.002)  # a save in progress replaces the files one by one; read again
            continue
        if problem == _EDITED_LEGACY:
            logger.info(
                "%s was edited after the save that wrote %s (an adapter without a save id)", config_path, weights_path
            )
        elif problem is not None:
            MetaPromptConfig.from_json_bytes(data[CONFIG_NAME], source=config_path)  # a broken config says so first
            raise ValueError(
                f"{weights_path}: these weights were saved with a different {CONFIG_NAME} than {config_path} "
                f"({problem}): the folder holds files of two saves; load the weights with the config written by the "
                f"same save, or re-save the adapter with `save_pretrained`"
            )
        config = MetaPromptConfig.from_json_bytes(data[CONFIG_NAME], source=config_path)
        shapes = {k: tuple(v["shape"]) for k, v in header.items() if k != "__metadata__"}
        check_shapes(shapes, config, weights_path)
        return AdapterFiles(config, shapes, data[WEIGHTS_NAME], weights_path)
    raise AssertionError("unreachable")


_EDITED_LEGACY = "legacy config edited"


def prompts_digest(tensors: dict[str, torch.Tensor]) -> str:
    """The save identifier: sha256 over the keys, shapes and float32 bytes of the prompt tensors."""
    digest = hashlib.sha256()
    for key in sorted(tensors):
        tensor = tensors[key].detach().to("cpu", torch.float32).contiguous()
        digest.update(f"{key}:{tuple(tensor.shape)};".encode())
        digest.update(tensor.numpy().tobytes())
    return digest.hexdigest()


def config_json_with_save_id(config: MetaPromptConfig, save_id: str) -> bytes:
    """The bytes of `metaprompt_config.json` for one save: the config plus its save identifier."""
    data = config.to_dict() | {SAVE_ID_KEY: save_id}
    return (json.dumps(data, indent=2, sort_keys=True) + "\n").encode("utf-8")


def pairing_problem(metadata: dict[str, str], config_data: bytes) -> str | None:
    """Why a config and weights do not come from one save (None when they do).

    Both files carry the save's identifier since it exists; adapters written before record the sha256 of the config
    bytes instead: a digest that does not match is `_EDITED_LEGACY` (a hand edit cannot be told from another save
    there, so it loads), while a config with an identifier beside such weights is refused. Weights that record
    neither (written by other tools) have nothing to check.
    """
    try:
        parsed = json.loads(config_data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None  # the config's own parse error is clearer
    config_id = parsed.get(SAVE_ID_KEY) if isinstance(parsed, dict) else None
    weights_id, digest = metadata.get(SAVE_ID_KEY), metadata.get(CONFIG_DIGEST_KEY)
    if weights_id is not None:
        if weights_id == config_id:
            return None
        return f"save id {weights_id} in the weights, {config_id or 'missing'} in the config"
    if digest is None:
        return None  # weights written by other tools record nothing to check against
    if config_id is not None:
        return f"weights of an older save without a save id, config of save {config_id}"
    return _EDITED_LEGACY if digest != hashlib.sha256(config_data).hexdigest() else None


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _complete(folder: str) -> bool:
    # Both files are there now: the miss was an older version of the folder removed while it was being read.
    return all(os.path.isfile(os.path.join(folder, n)) for n in (CONFIG_NAME, WEIGHTS_NAME))


def _being_replaced(folder: str) -> bool:
    from ..constants import TMP_FOLDER_INFIX

    parent, base = os.path.split(os.path.abspath(folder))
    return any(n.startswith(f".{base}{TMP_FOLDER_INFIX}") for n in os.listdir(parent))


def parse_header(data: bytes, source: str) -> dict[str, Any]:
    """The JSON header of a safetensors file (tensor dtypes, shapes, offsets, `__metadata__`), read without
    touching the tensor data."""
    try:
        if len(data) < 8:
            raise ValueError("shorter than the 8-byte header length")
        n = int.from_bytes(data[:8], "little")
        if n > min(_MAX_HEADER, len(data) - 8):
            raise ValueError(f"header length {n} exceeds the file")
        header = json.loads(data[8 : 8 + n])
        if not isinstance(header, dict):
            raise ValueError("header is not a JSON object")
        for key, value in header.items():
            if key == "__metadata__":
                continue
            shape = value.get("shape") if isinstance(value, dict) else None
            if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
                raise ValueError(f"tensor {key!r} has no valid shape")
            begin, end = value.get("data_offsets", (None, None))
            if not isinstance(begin, int) or not isinstance(end, int) or end > len(data) - 8 - n:
                raise ValueError(f"tensor {key!r} lies outside the file")
    except (ValueError, UnicodeDecodeError, AttributeError) as err:
        raise ValueError(f"{source}: not a readable safetensors file ({err})") from err
    return header


def expected_shapes(config: MetaPromptConfig) -> dict[str, tuple[int | None, ...]]:
    """Shapes the config implies, (depth, tokens, width) per prompt key and the head's `head.<name>` keys (its
    method's registered `AdapterHead`, modeling/heads.py); None where the config does not say."""
    out: dict[str, tuple[int | None, ...]] = {}
    if config.n_ctx:
        out["text_prompts"] = (config.text_depth or config.text_num_layers, config.n_ctx, config.text_hidden_size)
    if config.n_pro:
        out["vision_prompts"] = (
            config.vision_depth or config.vision_num_layers,
            config.n_pro,
            config.vision_hidden_size,
        )
    head = head_class(config)
    if head is not None:
        out.update({HEAD_PREFIX + k: v for k, v in head.expected_shapes(config).items()})
    return out


def check_shapes(shapes: dict[str, tuple[int, ...]], config: MetaPromptConfig, source: str) -> None:
    """Keys and shapes of the weights (from the header) against the config; a clear error naming the tensor."""
    expected = expected_shapes(config)
    missing = sorted(set(expected) - set(shapes))
    unexpected = sorted(set(shapes) - set(expected))
    if missing or unexpected:
        method = (config.method_config or {}).get("name")
        hint = (
            f"; no adapter head is registered for method {method!r}: import the plugin that registers it"
            if any(k.startswith(HEAD_PREFIX) for k in unexpected) and head_class(config) is None
            else ""
        )
        raise ValueError(
            f"{source}: keys do not match the adapter's config: missing {missing}, unexpected {unexpected} "
            f"(expected {sorted(expected)} of {list(PROMPT_KEYS)}){hint}"
        )
    for key, want in expected.items():
        got = shapes[key]
        if len(got) != len(want) or any(w is not None and w != g for w, g in zip(want, got)):
            shown = tuple("?" if w is None else w for w in want)
            raise ValueError(
                f"{source}: tensor {key!r} has shape {got}, but the adapter's config expects {shown}"
                + ("" if key.startswith(HEAD_PREFIX) else " (depth, tokens, width)")
            )
