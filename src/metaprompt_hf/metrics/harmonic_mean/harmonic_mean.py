"""Harmonic mean of base and new accuracy, HM = 2·B·N / (B + N) (METHOD.md §6.1), as an `evaluate` metric
shipped with metaprompt_hf and loaded by path."""

import datasets
import evaluate

_DESCRIPTION = "Harmonic mean of base-class and new-class accuracy: 2*B*N/(B+N) (0 when both are 0)."
_KWARGS_DESCRIPTION = """
Args:
    base (list of float): base accuracies (one per run).
    new (list of float): new accuracies, same length.
Returns:
    harmonic_mean (float): HM of the mean base and mean new accuracy; per_run (list of float) each run's HM.
Example:
    >>> metric.compute(base=[80.0], new=[60.0])
    {'harmonic_mean': 68.57142857142857, 'per_run': [68.57142857142857]}
"""
_CITATION = """@article{zhao2024metaprompt, title={Learning Domain Invariant Prompt for Vision-Language Models},
journal={IEEE Transactions on Image Processing}, year={2024}}"""


def _hm(b, n):
    return 0.0 if b + n == 0 else 2.0 * b * n / (b + n)


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class HarmonicMean(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"base": datasets.Value("float64"), "new": datasets.Value("float64")}),
        )

    def _compute(self, base, new):
        mean_b, mean_n = sum(base) / len(base), sum(new) / len(new)
        return {"harmonic_mean": _hm(mean_b, mean_n), "per_run": [_hm(b, n) for b, n in zip(base, new)]}
