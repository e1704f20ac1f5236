"""Assemble the Space's repository: this folder's files plus the `metaprompt_hf` package unpacked from its wheel.

metaprompt-hf is not on PyPI, and a Space cannot install it from a file of its own: the Space builder installs
`requirements.txt` alone, mounted into the image before the repository is copied, so a relative path to a wheel in
it finds nothing. The package therefore travels as source: `python app.py` puts the app's folder first on
`sys.path`, so `import metaprompt_hf` finds the unpacked copy, and `requirements.txt` names only the package's own
dependencies (the same list as `pyproject.toml`'s; gradio comes from `sdk_version` in README.md).

    python spaces/build_space.py build/space          # builds the wheel from this checkout (pip wheel)
    python spaces/build_space.py build/space --wheel dist/metaprompt_hf-0.1.0-py3-none-any.whl
    hf upload --repo-type space <user>/<space> build/space .

The output folder must not exist yet, or be empty (nothing is overwritten); it is written in a temporary folder
beside it and moved into place whole.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

SPACE_DIR = Path(__file__).resolve().parent
REPO_ROOT = SPACE_DIR.parent
PACKAGE = "metaprompt_hf"
# The Space's own files: everything in this folder but the tools that only the repository needs.
SPACE_FILES = ("app.py", "space_inputs.py", "README.md", "requirements.txt", "examples")


def build_wheel(dest: Path) -> Path:
    """`pip wheel` of this checkout (no dependencies) into `dest`; returns the wheel's path."""
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", str(dest), str(REPO_ROOT)],
        check=True,
    )
    wheels = sorted(dest.glob(f"{PACKAGE}-*.whl"))
    if len(wheels) != 1:
        raise RuntimeError(f"expected one {PACKAGE} wheel in {dest}, found {[w.name for w in wheels]}")
    return wheels[0]


def unpack_package(wheel: Path, dest: Path) -> int:
    """Extract the wheel's `metaprompt_hf/` tree into `dest`; returns the number of files."""
    count = 0
    with zipfile.ZipFile(wheel) as zf:
        for info in zf.infolist():
            parts = Path(info.filename).parts
            if info.is_dir() or not parts or parts[0] != PACKAGE or ".." in parts:
                continue
            zf.extract(info, dest)
            count += 1
    if not (dest / PACKAGE / "__init__.py").is_file():
        raise RuntimeError(f"{wheel} holds no {PACKAGE}/__init__.py")
    return count


def build_space(out: str | os.PathLike, wheel: str | os.PathLike | None = None) -> Path:
    """Write the Space's repository to `out` (a new or empty folder) and return its path."""
    out = Path(out).resolve()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"{out} already exists and is not an empty folder; choose a new one")
    if wheel is not None and not Path(wheel).is_file():
        raise FileNotFoundError(f"--wheel: no such file {wheel}")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        for name in SPACE_FILES:
            src = SPACE_DIR / name
            if src.is_dir():
                shutil.copytree(src, tmp / name, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy2(src, tmp / name)
        with tempfile.TemporaryDirectory() as wheel_dir:
            unpack_package(Path(wheel) if wheel else build_wheel(Path(wheel_dir)), tmp)
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", help="folder to create (must not exist, or be empty)")
    parser.add_argument("--wheel", default=None, help="a built metaprompt_hf wheel (default: build one with pip)")
    args = parser.parse_args(argv)
    try:
        out = build_space(args.out, args.wheel)
    except (FileExistsError, FileNotFoundError, RuntimeError, subprocess.CalledProcessError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"Space repository written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
