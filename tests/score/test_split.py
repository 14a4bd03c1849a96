"""Contiguous near-equal splits: the learner ranks keep empty parts, engines and reward workers drop them."""

from score.split import split_evenly, split_rows


def test_split_rows_is_contiguous_and_near_equal():
    assert split_rows(11, 2) == [slice(0, 6), slice(6, 11)]
    assert split_rows(1, 3) == [slice(0, 1), slice(1, 1), slice(1, 1)]


def test_split_evenly_gives_contiguous_near_equal_slices_and_drops_empty_ones():
    assert split_evenly(list(range(5)), 2) == [slice(0, 3), slice(3, 5)]
    assert split_evenly(list(range(2)), 3) == [slice(0, 1), slice(1, 2)]
