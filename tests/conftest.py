"""Test environment: no network, a private Hugging Face cache, tiny random CLIPs built in code.

The Hub variables are read when huggingface_hub is imported, so they are set here, before any test module
imports transformers (OFFLINE.md §8).
"""

from __future__ import annotations

import os
import tempfile

_HF_HOME = tempfile.mkdtemp(prefix="metaprompt-test-hf-")
os.environ["HF_HOME"] = _HF_HOME
os.environ["HF_HUB_CACHE"] = os.path.join(_HF_HOME, "hub")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ["TOKENIZERS_PARALLELISM"] = "false"

import pytest  # noqa: E402
import torch  # noqa: E402

from metaprompt_hf import MetaPromptConfig, MetaPromptModel  # noqa: E402
from metaprompt_hf.testing import tiny_clip  # noqa: E402

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def hf_home() -> str:
    return _HF_HOME


@pytest.fixture
def clip_and_processor():
    """A fresh tiny random CLIP (text: width 32, 3 layers; vision: width 48, 2 layers) and its processor."""
    return tiny_clip(seed=0)


@pytest.fixture
def model(clip_and_processor) -> MetaPromptModel:
    clip, processor = clip_and_processor
    torch.manual_seed(1)
    return MetaPromptModel(clip, MetaPromptConfig(), processor)


@pytest.fixture
def pixel_values() -> torch.Tensor:
    return torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(7))
