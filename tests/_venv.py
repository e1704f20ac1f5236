"""Fresh virtual environments for the install tests (lean install, Space build): made with the standard `venv`,
filled with pip under the CI's constraints (constraints-cpu.txt pins the CPU torch), and measured."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONSTRAINTS = ROOT / "constraints-cpu.txt"


@dataclass
class Venv:
    path: Path
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def python(self) -> str:
        return str(self.path / ("Scripts/python.exe" if os.name == "nt" else "bin/python"))

    def run(self, *args: str, timeout: float = 600, **kwargs) -> subprocess.CompletedProcess:
        """Run the venv's python with `args`, outside the repository (so `src/` is never imported by accident)."""
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
        env.update(kwargs.pop("env", {}))
        kwargs.setdefault("cwd", self.path)
        return subprocess.run([self.python, *args], env=env, capture_output=True, text=True, timeout=timeout, **kwargs)

    def pip_install(self, *args: str, label: str) -> None:
        """`pip install` with the CI's constraints; `--no-compile` skips byte-compiling torch's thousands of files,
        the slowest part of an install, which the tests do not need."""
        start = time.perf_counter()
        proc = self.run("-m", "pip", "install", "--quiet", "--no-compile", "-c", str(CONSTRAINTS), *args)
        self.timings[label] = time.perf_counter() - start
        if proc.returncode != 0:
            raise RuntimeError(f"pip install {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")

    def installed(self) -> dict[str, str]:
        """Installed distributions, normalised name -> version."""
        proc = self.run("-m", "pip", "list", "--format=freeze", "--disable-pip-version-check")
        out = {}
        for line in proc.stdout.splitlines():
            name, _, version = line.partition("==")
            out[name.lower().replace("_", "-")] = version
        return out

    def site_packages_bytes(self) -> int:
        proc = self.run("-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])")
        root = Path(proc.stdout.strip())
        return sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and not p.is_symlink())


def make_venv(path: Path) -> Venv:
    """A new venv at `path` (with pip, nothing else)."""
    if path.exists():
        shutil.rmtree(path)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True, capture_output=True, timeout=300)
    venv = Venv(path)
    venv.timings["venv"] = time.perf_counter() - start
    return venv


def requirement_names(lines: list[str]) -> dict[str, str]:
    """Requirement lines (no comments, no pip options) as normalised name -> the line's specifier."""
    from packaging.requirements import Requirement

    out = {}
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        req = Requirement(line)
        out[req.name.lower().replace("_", "-")] = str(req.specifier)
    return out


# Run inside the lean venv: the embedded adapter through `from_pretrained`, then `predict`; reports which optional
# packages got imported on the way (none may be).
LEAN_CHECK = """
import json, sys
from PIL import Image
import metaprompt_hf
from metaprompt_hf import MetaPromptModel
from metaprompt_hf.embedded import EMBEDDED_ADAPTER

model = MetaPromptModel.from_pretrained(str(EMBEDDED_ADAPTER))
probs = model.predict(Image.open(sys.argv[1]).convert("RGB"), sys.argv[2].split(","))
extras = {"datasets", "evaluate", "accelerate", "gradio", "matplotlib", "sklearn", "mlxtend", "pandas", "pyarrow",
          "tensorboard"}
print(json.dumps({
    "file": metaprompt_hf.__file__,
    "probs": probs[0].tolist(),
    "imported_extras": sorted({m.split(".")[0] for m in sys.modules} & extras),
}))
"""
LEAN_IMAGE = ROOT / "spaces" / "examples" / "painting_car.png"
LEAN_CLASSES = ("house", "tree", "car", "fish", "boat")


def build_wheel(dest: Path) -> Path:
    """The package's wheel, built once per session by the Space build script's own function."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("build_space", ROOT / "spaces" / "build_space.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.build_wheel(dest)


def lean_install(tmp: Path) -> dict:
    """`pip install <wheel of .>` (no extras) into a fresh venv, then the inference check; returns what was seen."""
    import json

    start = time.perf_counter()
    wheel = build_wheel(tmp / "wheel")
    venv = make_venv(tmp / "venv")
    venv.timings["wheel"] = time.perf_counter() - start - venv.timings["venv"]
    venv.pip_install(str(wheel), label="lean install")
    installed = venv.installed()
    size = venv.site_packages_bytes()
    proc = venv.run("-c", LEAN_CHECK, str(LEAN_IMAGE), ",".join(LEAN_CLASSES), env={"HF_HUB_OFFLINE": "1"})
    if proc.returncode != 0:
        raise RuntimeError(f"the inference check failed in the lean venv:\n{proc.stderr[-4000:]}")
    return {
        "venv": venv,
        "wheel": wheel,
        "installed": installed,
        "site_packages_bytes": size,
        "check": json.loads(proc.stdout.strip().splitlines()[-1]),
    }
