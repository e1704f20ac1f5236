"""MetaPrompt (Zhao et al., IEEE TIP 2024) and its meta-step variants (docs/method.md §1-§3).

Every variant trains the same adapter with L_AC; they differ only in the meta step, i.e. the `MetaSettings` fields
they fix on top of the run's `--meta_*` arguments.
"""

from __future__ import annotations

from .base import Method


class MetaPromptNoMeta(Method):
    """MetaPrompt's prompts and L_AC, without the meta step (the ablation's reference)."""

    summary = "MetaPrompt's prompts and L_AC, no meta step"


class MetaPrompt(Method):
    """L_AC plus the meta step as set by `--meta_*` (clean mode by default; docs/method.md §3.2)."""

    summary = "L_AC + the meta step as set by --meta_* (clean by default)"
    meta = {}


class MetaPromptSecondOrder(Method):
    summary = "L_AC + the clean meta step with the exact second-order meta-gradient"
    meta = {"mode": "clean", "second_order": True}


class MetaPromptMLDG(Method):
    summary = "L_AC + MLDG's objective on the same episodes, applied by the main optimizer"
    meta = {"mode": "mldg", "zero_grad_drift": False}


class MetaPromptMLDGSecondOrder(Method):
    summary = "L_AC + MLDG's objective with the exact second-order gradient, applied by the main optimizer"
    meta = {"mode": "mldg", "second_order": True, "zero_grad_drift": False}


class MetaPromptFaithful(Method):
    summary = "L_AC + the reference's meta step as it ran (quirks 1-3 incl. torch 1.10's drift, docs/method.md §3.3)"
    meta = {"mode": "faithful", "second_order": False, "zero_grad_drift": True}
