"""Grouped, stratified, seeded splits: no track_id ever lands in two parts.

The public dataset lists one track once per genre it belongs to; a plain
random split would put copies of a test track into training.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

FRACTIONS = (0.70, 0.15, 0.15)


@dataclass(frozen=True)
class Split:
    """Row indices of the training, validation and test parts."""

    train: np.ndarray
    validation: np.ndarray
    test: np.ndarray


def _group_labels(groups: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct groups, each row's group number, and each group's label (1 if any row is 1)."""
    values = np.unique(np.asarray(y))
    if not np.isin(values, (0, 1)).all():
        # Rows of any other label would silently belong to no part or fold.
        raise ValueError(f"labels to stratify by must be 0 or 1, got {values[:5].tolist()}...")
    unique, inverse = np.unique(groups, return_inverse=True)
    label = np.zeros(unique.size, np.int64)
    np.maximum.at(label, inverse, np.asarray(y, np.int64))
    return unique, inverse, label


def grouped_split(
    groups: np.ndarray, y: np.ndarray, seed: int, fractions: tuple[float, ...] = FRACTIONS
) -> Split:
    """Split rows 70/15/15 by group, keeping the positive share alike in each part.

    Groups are shuffled with ``seed`` separately among positive and negative
    groups (a group is positive if any of its rows is), then cut by the
    fractions, so the rare positives are spread over all three parts.
    """
    unique, inverse, label = _group_labels(np.asarray(groups), y)
    rng = np.random.default_rng(seed)
    part_of_group = np.empty(unique.size, np.int64)
    bounds = np.cumsum(fractions)[:-1] / np.sum(fractions)
    for value in (0, 1):
        members = np.flatnonzero(label == value)
        members = members[rng.permutation(members.size)]
        cuts = np.round(bounds * members.size).astype(int)
        for part, chunk in enumerate(np.split(members, cuts)):
            part_of_group[chunk] = part
    part_of_row = part_of_group[inverse]
    train, validation, test = (np.flatnonzero(part_of_row == p) for p in range(3))
    return Split(train=train, validation=validation, test=test)


def grouped_folds(
    groups: np.ndarray, y: np.ndarray, k: int, seed: int
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """K (fit, held-out) index pairs; groups never straddle a fold, positives spread evenly."""
    unique, inverse, label = _group_labels(np.asarray(groups), y)
    rng = np.random.default_rng(seed)
    fold_of_group = np.empty(unique.size, np.int64)
    for value in (0, 1):
        members = np.flatnonzero(label == value)
        members = members[rng.permutation(members.size)]
        fold_of_group[members] = np.arange(members.size) % k
    fold_of_row = fold_of_group[inverse]
    for fold in range(k):
        yield np.flatnonzero(fold_of_row != fold), np.flatnonzero(fold_of_row == fold)
