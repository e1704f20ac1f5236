"""Test environment: no network, a private Hugging Face cache, tiny random CLIPs built in code.

The Hub variables are read when huggingface_hub is imported, so they are set here, before any test module
imports transformers.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

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
from safetensors.torch import load_file  # noqa: E402

from metaprompt_hf import MetaPromptConfig, MetaPromptModel  # noqa: E402
from metaprompt_hf.backbones import load_base_model, load_base_processor  # noqa: E402
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
def fresh_accelerate_state():
    """Accelerate's process-wide state reset around a test that runs training in this process."""
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    yield
    AcceleratorState._reset_state(True)
    GradientState._reset_state()


@pytest.fixture
def model(clip_and_processor) -> MetaPromptModel:
    clip, processor = clip_and_processor
    torch.manual_seed(1)
    return MetaPromptModel(clip, MetaPromptConfig(), processor)


@pytest.fixture
def pixel_values() -> torch.Tensor:
    return torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(7))


COLOURS = {
    "red apple": (200, 30, 30),
    "green_leaf": (30, 180, 40),
    "blue sky": (40, 60, 200),
    "yellow sun": (220, 210, 30),
    "black cat": (20, 20, 20),
    "white snow": (235, 235, 235),
    "orange fox": (230, 120, 20),
    "purple plum": (120, 30, 140),
}
DOMAINS = ("cartoon", "photo", "sketch")


def make_image_folder(root, *, domains=DOMAINS, per_class=6, size=36, seed=0, drop=()):
    """`<domain>/<class>/<i>.png` (or `<class>/<i>.png` with domains=None): colour-coded classes, so prompts can
    learn something; `drop` lists (domain, class) pairs to leave out, as PACS domains lack some classes."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    for d, domain in enumerate(domains or [None]):
        for name, colour in COLOURS.items():
            if (domain, name) in drop:
                continue
            folder = os.path.join(root, domain, name) if domain else os.path.join(root, name)
            os.makedirs(folder, exist_ok=True)
            for i in range(per_class):
                noise = rng.normal(0, 35, (size, size, 3)) + 25 * d
                pixels = np.clip(np.asarray(colour)[None, None, :] + noise, 0, 255).astype("uint8")
                Image.fromarray(pixels).save(os.path.join(folder, f"{i}.png"))
    return str(root)


@pytest.fixture(scope="session")
def tiny_clip_dir(tmp_path_factory) -> str:
    """A tiny random CLIP + processor saved like a Hub model folder."""
    path = tmp_path_factory.mktemp("tiny-clip")
    clip, processor = tiny_clip(seed=0)
    clip.save_pretrained(path)
    processor.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="session")
def domain_folder(tmp_path_factory) -> str:
    """3 domains x 8 classes x 6 images; 'sketch' lacks 'purple plum'."""
    root = tmp_path_factory.mktemp("folder")
    return make_image_folder(root, drop={("sketch", "purple plum")})


@pytest.fixture
def run_args(tiny_clip_dir, domain_folder):
    """`run_args(out, **overrides)`: a short training run on the tiny CLIP and the domain folder (3 steps of 4
    images, 40 evaluation images)."""
    from metaprompt_hf.training import MetaPromptTrainingArguments

    def make(out, **overrides):
        values = dict(
            base_model=tiny_clip_dir,
            dataset_name=domain_folder,
            output_dir=str(out),
            shots=4,
            per_device_train_batch_size=4,
            max_steps=3,
            learning_rate=0.05,
            warmup_epochs=0,
            logging_steps=1,
            max_eval_samples=40,
        )
        return MetaPromptTrainingArguments(**(values | overrides))

    return make


@pytest.fixture(scope="session")
def fake_data(tmp_path_factory) -> str:
    """DATA/ holding a generated fake of every standard benchmark layout (`data.readers.fakes`)."""
    from metaprompt_hf.data.readers.fakes import write_fake_data

    return write_fake_data(tmp_path_factory.mktemp("DATA"))


@pytest.fixture
def siglip_and_processor():
    """A fresh tiny random SigLIP (text: width 32, 3 layers, 64 positions; vision: width 48, 2 layers) and its
    processor (no start token, end token appended, mean/std 0.5)."""
    from metaprompt_hf.testing import tiny_siglip

    return tiny_siglip(seed=0)


@pytest.fixture(scope="session")
def tiny_siglip_dir(tmp_path_factory) -> str:
    """A tiny random SigLIP + processor saved like a Hub model folder."""
    from metaprompt_hf.testing import tiny_siglip

    path = tmp_path_factory.mktemp("tiny-siglip")
    model, processor = tiny_siglip(seed=0)
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="session")
def lean_install(tmp_path_factory):
    """A fresh venv holding the package without extras (tests/_venv.py), checked at once so that later users of the
    venv (the Space build test installs into it) cannot change what the lean-install test sees."""
    from _venv import lean_install as _lean_install

    return _lean_install(tmp_path_factory.mktemp("lean-install"))


class RecordingApi:
    """Stands in for `HfApi`: records what would be uploaded."""

    def __init__(self):
        self.calls = []

    def create_repo(self, repo_id, **kwargs):
        self.calls.append(("create_repo", repo_id, kwargs))

    def upload_folder(self, *, repo_id, folder_path, **kwargs):
        files = {p.name: p.read_bytes() for p in Path(folder_path).iterdir()}
        self.calls.append(("upload_folder", repo_id, files, kwargs))
        return "commit-info"


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch_two_cpu_processes(args: list[str], tmp_path) -> subprocess.CompletedProcess:
    """Two CPU processes under Accelerate (gloo DDP). `accelerate launch --cpu --num_processes 2` starts ONE
    process unless mpirun is configured (huggingface/accelerate#2741), so Accelerate's torchrun launcher is used
    with ACCELERATE_USE_CPU=1, which makes each process a MULTI_CPU rank."""
    accelerate = shutil.which("accelerate") or os.path.join(os.path.dirname(sys.executable), "accelerate")
    env = os.environ | {"ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    cmd = [
        accelerate,
        "launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_port",
        str(free_port()),
        *args,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path)


# ---------------------------------------------------------------- fidelity to official code (tests/methods/)
FIXTURES = Path(__file__).resolve().parent / "fixtures"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt")
PACKAGE_TOKENIZER = Path(__file__).resolve().parents[1] / "src" / "metaprompt_hf" / "assets" / "mini-clip"


@pytest.fixture(scope="module")
def ref(request) -> dict[str, torch.Tensor]:
    """The tensors recorded from the official code, from the test module's `REF` folder."""
    return load_file(str(request.module.REF / "official_reference.safetensors"))


@pytest.fixture(scope="module")
def meta(request) -> dict:
    """The recording's settings and provenance, from the test module's `REF` folder."""
    return json.loads((request.module.REF / "official_reference.json").read_text())


@pytest.fixture(scope="session")
def fidelity_clip_dir(tmp_path_factory) -> str:
    """The fidelity tiny CLIP as a model folder, with the package's mini-clip tokenizer files."""
    folder = tmp_path_factory.mktemp("fidelity_clip")
    for f in (FIXTURES / "fidelity" / "tiny_clip").iterdir():
        shutil.copy(f, folder)
    for name in TOKENIZER_FILES:
        shutil.copy(PACKAGE_TOKENIZER / name, folder)
    return str(folder)


@pytest.fixture(scope="module")
def fidelity_clip_and_processor(fidelity_clip_dir):
    """The fidelity tiny CLIP in fp32 with SDPA attention (as recorded), and its processor."""
    clip = load_base_model(fidelity_clip_dir, dtype=torch.float32, attn_implementation="sdpa").eval()
    return clip, load_base_processor(fidelity_clip_dir)


class WorstDifferences(dict):
    """check → the worst |difference| seen against the official numbers; a fidelity module holds one as `WORST`,
    printed after the module with `pytest -s`."""

    def record(self, name: str, diff: float) -> None:
        self[name] = max(self.get(name, 0.0), float(diff))


@pytest.fixture(scope="module", autouse=True)
def worst_differences(request):
    yield
    worst = getattr(request.module, "WORST", None)
    if worst:
        print(f"\n{request.module.__name__}: worst |diff| per check")
        for name, diff in worst.items():
            print(f"  {name:<56} {diff:.3g}")
