"""Run by tests/test_readonly_hf_home.py in a fresh process whose HF_HOME is a read-only shared cache holding the
base model: trains on an image folder and evaluates (`results.json`), then predicts with the saved adapter, through
the pipeline and through the Space's `classify`. Prints one JSON line with what each step returned."""

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from metaprompt_hf import MetaPromptModel, pipeline
from metaprompt_hf.training import main as train_main

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    folder, out, base = sys.argv[1:4]
    argv = ["--base_model", base, "--dataset_name", folder, "--output_dir", out, "--max_steps", "1", "--shots", "2"]
    argv += ["--per_device_train_batch_size", "4", "--per_device_eval_batch_size", "16", "--max_eval_samples", "8"]
    code = train_main(argv)
    results = json.loads((Path(out) / "results.json").read_text())
    image = Image.fromarray(np.full((36, 36, 3), 200, dtype="uint8"))
    model = MetaPromptModel.from_pretrained(out)
    classes = ["red apple", "white snow"]
    probs = model.predict([image], classes)
    piped = pipeline(model=out)(image, candidate_labels=classes)
    spec = importlib.util.spec_from_file_location("metaprompt_space_app", ROOT / "spaces" / "app.py")
    app = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(app)
    space, _ = app.classify(image, "red apple, white snow", model=app.load_model(out))
    print(json.dumps({"train": code, "results": results, "predict": probs.tolist(), "pipeline": piped,
                      "space": space}))  # fmt: skip


if __name__ == "__main__":
    main()
