"""Harmonic mean of base and new accuracy, HM = 2·B·N / (B + N) (docs/method.md §6.1), as an `evaluate` metric
shipped with metaprompt_hf and loaded by path. The metric card is README.md beside this file."""

import math

import datasets
import evaluate

# The one definition of HM in the package; `evaluate.load` imports this script as a module of its own, and an
# absolute import of the installed package works from there.
from metaprompt_hf.hub.results import harmonic_mean as _hm

_DESCRIPTION = """Harmonic mean of base-class and new-class accuracy, 2*B*N/(B+N) (0 when both are 0), the summary
number of the base-to-new protocol. Scale-free: fractions in give a fraction, percents give a percent."""
_KWARGS_DESCRIPTION = """
Args:
    base (list of float): base accuracies (one per run).
    new (list of float): new accuracies, same length.
Returns:
    harmonic_mean (float): HM of the mean base and mean new accuracy (nan for no runs);
    per_run (list of float): each run's HM.
Example:
    >>> metric.compute(base=[0.8], new=[0.6])
    {'harmonic_mean': 0.6857142857142857, 'per_run': [0.6857142857142857]}
"""
_CITATION = """\
@article{zhao2024metaprompt,
  title   = {Learning Domain Invariant Prompt for Vision-Language Models},
  author  = {Zhao, Cairong and Wang, Yubin and Jiang, Xinyang and Shen, Yifei and Song, Kaitao and Li, Dongsheng and Miao, Duoqian},
  journal = {IEEE Transactions on Image Processing},
  year    = {2024}
}
@inproceedings{zhou2022cocoop,
  title     = {Conditional Prompt Learning for Vision-Language Models},
  author    = {Zhou, Kaiyang and Yang, Jingkang and Loy, Chen Change and Liu, Ziwei},
  booktitle = {IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR)},
  year      = {2022}
}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class HarmonicMean(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"base": datasets.Value("float64"), "new": datasets.Value("float64")}),
            reference_urls=["https://arxiv.org/abs/2212.04196", "https://arxiv.org/abs/2203.05557"],
        )

    def _compute(self, base, new):
        if len(base) != len(new):
            raise ValueError(f"harmonic_mean: {len(base)} base accuracies but {len(new)} new ones")
        if len(base) == 0:
            return {"harmonic_mean": math.nan, "per_run": []}
        mean_b, mean_n = sum(base) / len(base), sum(new) / len(new)
        return {"harmonic_mean": _hm(mean_b, mean_n), "per_run": [_hm(b, n) for b, n in zip(base, new)]}
