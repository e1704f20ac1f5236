"""Top-1 accuracy in percent, as an `evaluate` metric shipped with metaprompt_hf and loaded by path
(`evaluate.load(path)`): Hub metrics cannot be fetched offline (CONVENTIONS.md §6)."""

import datasets
import evaluate

_DESCRIPTION = "Top-1 accuracy, in percent: 100 * mean(predictions == references)."
_KWARGS_DESCRIPTION = """
Args:
    predictions (list of int): predicted class ids.
    references (list of int): true class ids.
Returns:
    accuracy (float): percent of correct predictions; nan for no samples.
Example:
    >>> metric.compute(predictions=[0, 1, 1], references=[0, 1, 0])
    {'accuracy': 66.66666666666667}
"""
_CITATION = ""


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
        )

    def _compute(self, predictions, references):
        if len(predictions) == 0:
            return {"accuracy": float("nan")}
        correct = sum(int(p == r) for p, r in zip(predictions, references))
        return {"accuracy": 100.0 * correct / len(predictions)}
