"""Scoring a saved adapter on a run's dataset and protocol, outside training (`examples/evaluate_runs.py`)."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

from ..embedded import resolve_base_model
from ..modeling.modeling_metaprompt import MetaPromptModel
from ..protocols import evaluate_protocol, load_protocol_data
from ..protocols.run import run_templates
from .arguments import MetaPromptTrainingArguments
from .loop import build_model


def evaluate_adapter(args: MetaPromptTrainingArguments, adapter_dir: str | os.PathLike) -> dict[str, Any]:
    """Evaluate a saved adapter on `args`' dataset and protocol (base / new / HM, or DG target accuracy).

    The seed (which fixes the few-shot rows excluded from evaluation when the dataset has no test split), the
    method and the shots are read from the run's `training_args.json` when the adapter folder holds one."""
    adapter_dir = Path(adapter_dir)
    saved = adapter_dir / "training_args.json"
    if saved.is_file():
        run = json.loads(saved.read_text())
        args = dataclasses.replace(
            args,
            seed=run.get("seed", args.seed),
            method=run.get("method", args.method),
            shots=run.get("shots", args.shots),
        )
    data, proto = load_protocol_data(dataclasses.replace(args, allow_fewer_shots=True))
    if not args.build_method().trains:  # nothing was saved: rebuild the frozen model
        model = build_model(args, run_templates(args.template, args.dataset_name))
    else:
        model = MetaPromptModel.from_pretrained(
            adapter_dir, base_model=resolve_base_model(args.base_model), class_chunk_size=args.class_chunk_size
        )
    return evaluate_protocol(args, model, proto, data, model.processor)
