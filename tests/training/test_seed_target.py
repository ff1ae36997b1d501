"""The seed study's target: normalised expert mean where experts scored, crowd share else."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from training.seed_study.target import aggregate_target, normalised_expert_mean


def test_expert_mean_maps_one_to_zero_and_four_to_one() -> None:
    scores = np.array([[1, 1, 1], [4, 4, 4], [1, 2, 4], [2, 3, 3]], dtype=float)
    np.testing.assert_allclose(normalised_expert_mean(scores), [0.0, 1.0, 4 / 9, 5 / 9])


def test_missing_expert_scores_are_ignored_and_none_gives_nan() -> None:
    scores = np.array([[2, np.nan, 4], [np.nan, np.nan, np.nan]])
    result = normalised_expert_mean(scores)
    assert result[0] == pytest.approx(2 / 3)
    assert np.isnan(result[1])


def test_scores_outside_the_scale_are_an_error() -> None:
    with pytest.raises(ValueError, match=r"1\.\.4"):
        normalised_expert_mean(np.array([[0, 1, 2]], dtype=float))


def _tables() -> tuple[pd.DataFrame, pd.DataFrame]:
    expert = pd.DataFrame({"image": ["a.jpg", "b.jpg"], "query_id": ["q#0", "q#0"],
                           "expert_1": [4, 1], "expert_2": [4, 1], "expert_3": [3, 2]})
    crowd = pd.DataFrame({"image": ["a.jpg", "c.jpg", "d.jpg"], "query_id": ["q#0"] * 3,
                          "share_of_yes": [0.0, 1 / 3, 1.0], "n_yes": [0, 1, 3],
                          "n_no": [3, 2, 0]})
    return expert, crowd


def test_expert_value_wins_and_crowd_fills_the_rest() -> None:
    expert, crowd = _tables()
    target = aggregate_target(expert, crowd).set_index("image")
    # a: experts (4, 4, 3) → mean 11/3 → (11/3 − 1)/3 = 8/9, even though the crowd said 0.
    assert target.loc["a.jpg", "target"] == pytest.approx(8 / 9)
    assert target.loc["a.jpg", "source"] == "expert"
    assert target.loc["b.jpg", "target"] == pytest.approx(1 / 9)
    assert target.loc["c.jpg", "target"] == pytest.approx(1 / 3)
    assert target.loc["d.jpg", "source"] == "crowd" and target.loc["d.jpg", "target"] == 1.0
    assert len(target) == 4


def test_without_crowd_only_expert_pairs_remain() -> None:
    expert, crowd = _tables()
    target = aggregate_target(expert, crowd, use_crowd=False)
    assert sorted(target["image"]) == ["a.jpg", "b.jpg"]
    assert set(target["source"]) == {"expert"}
