"""Top-1 accuracy as a fraction in [0, 1], following `evaluate`'s `accuracy` convention, shipped with
metaprompt_hf and loaded by path (`evaluate.load(path)`), since Hub metrics cannot be fetched offline.
The metric card is README.md beside this file."""

import math

import datasets
import evaluate

_DESCRIPTION = """Top-1 accuracy: the fraction of predictions equal to their reference, in [0, 1] (as `evaluate`'s
`accuracy`). The paper's tables report it in percent: multiply by 100."""
_KWARGS_DESCRIPTION = """
Args:
    predictions (list of int): predicted class ids.
    references (list of int): true class ids, same length.
Returns:
    accuracy (float): correct / total, in [0, 1]; nan for no samples (an empty evaluation set).
Example:
    >>> metric.compute(predictions=[0, 1, 1, 2], references=[0, 1, 0, 2])
    {'accuracy': 0.75}
"""
_CITATION = """\
@article{zhao2024metaprompt,
  title   = {Learning Domain Invariant Prompt for Vision-Language Models},
  author  = {Zhao, Cairong and Wang, Yubin and Jiang, Xinyang and Shen, Yifei and Song, Kaitao and Li, Dongsheng and Miao, Duoqian},
  journal = {IEEE Transactions on Image Processing},
  year    = {2024}
}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Accuracy(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}
            ),
            reference_urls=["https://arxiv.org/abs/2212.04196"],
        )

    def _compute(self, predictions, references):
        if len(predictions) != len(references):
            raise ValueError(f"accuracy: {len(predictions)} predictions but {len(references)} references")
        if len(predictions) == 0:
            return {"accuracy": math.nan}
        correct = sum(int(p == r) for p, r in zip(predictions, references))
        return {"accuracy": correct / len(predictions)}
