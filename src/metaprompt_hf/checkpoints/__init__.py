"""Official checkpoints on the training side: reading `torch.save` files without running their pickle
(`safe_unpickle`) and the table of where each official trainer keeps its learned prompts (`official_layouts`).
Used by `python -m metaprompt_hf.convert`; no core module imports this package."""

from .official_layouts import (
    OFFICIAL_LAYOUTS,
    CheckpointLayout,
    Extraction,
    PromptKeys,
    extract_prompts,
    find_state_dict,
)
from .safe_unpickle import CheckpointError, RestrictedUnpickler, Stub, TensorRef, read_torch_checkpoint

__all__ = [
    "OFFICIAL_LAYOUTS",
    "CheckpointError",
    "CheckpointLayout",
    "Extraction",
    "PromptKeys",
    "RestrictedUnpickler",
    "Stub",
    "TensorRef",
    "extract_prompts",
    "find_state_dict",
    "read_torch_checkpoint",
]
