"""The package's one implementation of paired-seed statistics (`metaprompt_hf.stats`)."""

from __future__ import annotations

import pytest

from metaprompt_hf.stats import interval_includes_zero, paired_stats, t_quantile_975


def test_t_quantiles_and_paired_stats():
    # Student's t 97.5 % quantiles (df 1, 9, 30, 60, 120): 12.706, 2.262, 2.042, 2.000, 1.980
    for df, value in ((1, 12.706), (9, 2.262), (30, 2.042), (60, 2.000), (120, 1.980)):
        assert t_quantile_975(df) == pytest.approx(value, abs=2e-3)
    with pytest.raises(ValueError, match="df"):
        t_quantile_975(0)
    stats = paired_stats([1.0, 2.0, 3.0, 4.0])
    se = 1.2909944487358056 / 2  # sd of 1..4 over sqrt(4)
    assert stats["n"] == 4 and stats["mean"] == 2.5 and stats["se"] == pytest.approx(se)
    assert stats["ci95"] == pytest.approx([2.5 - 3.182 * se, 2.5 + 3.182 * se])
    assert paired_stats([]) == {"mean": None, "se": None, "ci95": [None, None], "n": 0}
    assert paired_stats([3.0]) == {"mean": 3.0, "se": None, "ci95": [None, None], "n": 1}


def test_interval_includes_zero():
    assert not interval_includes_zero(paired_stats([1.0, 1.5, 2.0]))
    assert interval_includes_zero(paired_stats([-1.0, 1.5, 0.2]))
    assert interval_includes_zero(paired_stats([0.0, 0.0]))  # identical methods: a point interval at 0
    assert interval_includes_zero(paired_stats([2.0]))  # no interval with one seed
