"""Inference-only users get a lean install: `pip install .` without extras pulls torch, transformers,
huggingface_hub, safetensors and pillow (and what they need), and `from_pretrained` + `predict` work with it."""

from __future__ import annotations

import pytest
import tomllib
import torch
from _venv import LEAN_CLASSES, LEAN_IMAGE, ROOT, requirement_names
from PIL import Image

pytestmark = pytest.mark.slow

TRAIN_ONLY = ("accelerate", "datasets", "evaluate", "gradio", "matplotlib", "scikit-learn", "mlxtend", "tensorboard")


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def test_base_dependencies_are_the_inference_five():
    deps = requirement_names(_pyproject()["project"]["dependencies"])
    assert set(deps) == {"torch", "transformers", "huggingface-hub", "safetensors", "pillow"}
    train = requirement_names(_pyproject()["project"]["optional-dependencies"]["train"])
    assert {"accelerate", "datasets", "evaluate", "pyyaml", "numpy", "jinja2"} <= set(train)


def test_py_typed_is_shipped(lean_install):
    assert (ROOT / "src" / "metaprompt_hf" / "py.typed").is_file()
    import zipfile

    with zipfile.ZipFile(lean_install["wheel"]) as zf:
        assert "metaprompt_hf/py.typed" in zf.namelist()


def test_no_training_package_is_installed(lean_install):
    installed = lean_install["installed"]
    assert "metaprompt-hf" in installed and "torch" in installed and "transformers" in installed
    assert [name for name in TRAIN_ONLY if name in installed] == []


def test_from_pretrained_and_predict_match_the_dev_install(lean_install):
    check = lean_install["check"]
    assert "site-packages" in check["file"]  # the installed copy, not this checkout's src/
    assert check["imported_extras"] == []
    from metaprompt_hf.embedded import load_default_model

    expected = load_default_model().predict(Image.open(LEAN_IMAGE).convert("RGB"), list(LEAN_CLASSES))[0]
    torch.testing.assert_close(torch.tensor(check["probs"]), expected, rtol=1e-4, atol=1e-5)
    assert LEAN_CLASSES[int(expected.argmax())] == "car"
    venv = lean_install["venv"]
    print(
        f"lean install: {len(lean_install['installed'])} distributions, site-packages "
        f"{lean_install['site_packages_bytes'] / 2**20:.0f} MiB; "
        + ", ".join(f"{k} {v:.0f} s" for k, v in venv.timings.items())
    )
