"""The Space builds from `spaces/` alone: `spaces/build_space.py` assembles its repository (this
folder's files and the package unpacked from its wheel) in a folder outside the checkout; its `requirements.txt`
and gradio at the front matter's `sdk_version` are installed into a fresh venv under the CI's constraints, with no
metaprompt-hf distribution installed; the app starts from that folder and answers on 127.0.0.1.

The Space builder mounts `requirements.txt` alone (`RUN --mount=target=/tmp/requirements.txt,...`) before it copies
the repository, which is why the package cannot be a wheel referenced from `requirements.txt`."""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import time
import urllib.request

import pytest
import tomllib
import yaml
from _venv import ROOT, requirement_names
from PIL import Image

pytestmark = pytest.mark.slow

SPACES = ROOT / "spaces"
EXAMPLE = SPACES / "examples" / "sketch_fish.png"
CLASSES = ["house", "tree", "car", "fish", "flower"]


def _build_space_module():
    spec = importlib.util.spec_from_file_location("build_space", SPACES / "build_space.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _front_matter() -> dict:
    text = (SPACES / "README.md").read_text(encoding="utf-8")
    return yaml.safe_load(text.split("---\n", 2)[1])


def _requirement_lines() -> list[str]:
    return (SPACES / "requirements.txt").read_text(encoding="utf-8").splitlines()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_requirements_are_the_package_dependencies():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["dependencies"]
    assert requirement_names(_requirement_lines()) == requirement_names(deps)
    assert "metaprompt-hf" not in requirement_names(_requirement_lines())


def test_front_matter_names_only_what_the_app_uses():
    meta = _front_matter()
    assert meta["sdk"] == "gradio" and meta["app_file"] == "app.py"
    # The default model is the embedded one: no Hub model to link or preload, no placeholder id.
    assert "preload_from_hub" not in meta and "models" not in meta
    assert "org/" not in (SPACES / "README.md").read_text(encoding="utf-8").split("---\n", 2)[1]


def test_build_refuses_a_non_empty_folder(tmp_path):
    (tmp_path / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not an empty folder"):
        _build_space_module().build_space(tmp_path)
    assert (tmp_path / "keep.txt").read_text() == "mine"


@pytest.fixture(scope="module")
def space(lean_install, tmp_path_factory):
    """The Space's repository built outside the checkout, its requirements installed in a fresh venv (the lean
    install's, with metaprompt-hf uninstalled), the app serving on a free port of 127.0.0.1."""
    venv = lean_install["venv"]
    proc = venv.run("-m", "pip", "uninstall", "--yes", "--quiet", "metaprompt-hf")
    assert proc.returncode == 0, proc.stderr
    repo = _build_space_module().build_space(tmp_path_factory.mktemp("space") / "repo", wheel=lean_install["wheel"])
    assert not repo.is_relative_to(ROOT)
    # No network here: the PyTorch CPU index line is left out (torch comes from the constraints' pin instead).
    requirements = repo.parent / "requirements-offline.txt"
    requirements.write_text(
        "\n".join(line for line in _requirement_lines() if not line.startswith("--extra-index-url")) + "\n"
    )
    # As the Space builder does: its requirements and gradio at `sdk_version`, in one pip command.
    venv.pip_install("-r", str(requirements), f"gradio=={_front_matter()['sdk_version']}", label="space install")
    assert "metaprompt-hf" not in venv.installed()
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "METAPROMPT_MODEL")} | {
        "GRADIO_SERVER_NAME": "127.0.0.1",
        "GRADIO_SERVER_PORT": str(port),
        "GRADIO_ANALYTICS_ENABLED": "False",
    }
    log = (repo.parent / "app.log").open("w")
    start = time.perf_counter()
    app = subprocess.Popen([venv.python, "app.py"], cwd=repo, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 240
        while True:
            if app.poll() is not None:
                pytest.fail(f"the app exited with {app.returncode}:\n{(repo.parent / 'app.log').read_text()[-4000:]}")
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"the app did not answer within 240 s:\n{(repo.parent / 'app.log').read_text()[-4000:]}")
            time.sleep(1)
        venv.timings["app start"] = time.perf_counter() - start
        yield {"repo": repo, "url": url, "venv": venv, "log": repo.parent / "app.log"}
    finally:
        app.terminate()
        try:
            app.wait(timeout=30)
        except subprocess.TimeoutExpired:
            app.kill()
        log.close()


def test_the_space_repository_holds_only_the_space(space):
    names = sorted(p.name for p in space["repo"].iterdir())
    assert names == ["README.md", "app.py", "examples", "metaprompt_hf", "requirements.txt", "space_inputs.py"]
    assert (space["repo"] / "metaprompt_hf" / "assets" / "metaprompt-mini" / "metaprompt_model.safetensors").is_file()


def test_the_app_answers_with_the_embedded_model(space):
    from gradio_client import Client, handle_file

    from metaprompt_hf.embedded import load_default_model

    with urllib.request.urlopen(space["url"], timeout=30) as response:
        assert response.status == 200 and b"gradio" in response.read().lower()
    client = Client(space["url"], verbose=False)
    metaprompt, zero_shot = client.predict(handle_file(str(EXAMPLE)), ", ".join(CLASSES), api_name="/classify")
    expected = load_default_model().predict(Image.open(EXAMPLE).convert("RGB"), CLASSES)[0]
    assert metaprompt["label"] == CLASSES[int(expected.argmax())]
    got = {c["label"]: c["confidence"] for c in metaprompt["confidences"]}
    for name, p in zip(CLASSES, expected.tolist()):
        if name in got:
            assert got[name] == pytest.approx(p, abs=1e-4)
    assert "serving model 'embedded'" in space["log"].read_text()
    print("space from spaces/ alone: " + ", ".join(f"{k} {v:.0f} s" for k, v in space["venv"].timings.items()))
