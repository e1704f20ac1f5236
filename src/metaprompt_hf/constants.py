"""Names shared across the package: file names, prefixes and default words, in one place (no module needs to import
another one just for a constant)."""

from __future__ import annotations

from pathlib import Path

# The package version (read by the build backend from this line; `metaprompt_hf.__version__` re-exports it).
__version__ = "0.1.0"

LIBRARY_NAME = "metaprompt_hf"
TASK = "zero-shot-image-classification"
PAPER_URL = "https://arxiv.org/abs/2212.04196"
CODE_URL = "https://github.com/Vill-Lab/2024-TIP-MetaPrompt"
METHOD_NAME = "METAPROMPT"

# An adapter folder (or Hub repo) holds exactly these two files. The namespaced names keep transformers and PEFT
# from mistaking the folder for theirs.
CONFIG_NAME = "metaprompt_config.json"
WEIGHTS_NAME = "metaprompt_model.safetensors"
# The model card written beside them by `save_pretrained` and uploaded by `push_to_hub`.
MODEL_CARD_NAME = "README.md"
# safetensors metadata key holding the sha256 of the config file written with the weights, so a loader can tell
# that the two files belong together.
CONFIG_DIGEST_KEY = "metaprompt_config_sha256"
# The identifier of one save (the sha256 of the prompts it wrote), written into both files of the adapter (a config
# key and a safetensors metadata entry), so a loader can tell a torn pair (two saves) from a hand-edited config; it
# replaces the digest above.
SAVE_ID_KEY = "save_id"

# Package-owned tensor keys of the adapter (never transformers module paths).
PROMPT_KEYS = ("text_prompts", "vision_prompts")

# The word repeated n_ctx times before the class name; its rows are replaced by the text prompts.
PLACEHOLDER_TOKEN = "X"
DEFAULT_ADAPTER_NAME = "default"

# `base_model="embedded"` means the small CLIP shipped inside the package, next to an adapter trained on it.
EMBEDDED_NAME = "embedded"
ASSETS = Path(__file__).resolve().parent / "assets"
EMBEDDED_CLIP = ASSETS / "mini-clip"
EMBEDDED_ADAPTER = ASSETS / "metaprompt-mini"

CHECKPOINT_PREFIX = "checkpoint-"
# Temporary sibling folders written by an interrupted save carry this infix; loaders never read them and the next
# save removes those whose writer process is gone.
TMP_FOLDER_INFIX = ".metaprompt-tmp-"
