"""The processes of an `accelerate launch` (one without it): every process runs the whole comparison, the
decisions are read from the same files, and only the main process writes markers and reports and prints."""

from __future__ import annotations

from typing import Any


def process_state() -> Any:
    """Accelerate's `PartialState`, with CPU DDP read from the environment as `Accelerator` reads it: a state made
    before the first `Accelerator` without it would make every CPU rank a single process."""
    from accelerate import PartialState
    from accelerate.utils import parse_flag_from_env

    return PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU"))


def is_main_process() -> bool:
    return bool(process_state().is_main_process)


def wait_for_everyone() -> None:
    process_state().wait_for_everyone()
