"""Seeded subsets: stratified proportions, fallback without labels, edge sizes."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset, Subset, TensorDataset

from multi_agent_pruning.data.sampling import dataset_targets, random_indices, stratified_indices


class _Unlabelled(Dataset):
    def __len__(self) -> int:
        return 30

    def __getitem__(self, index: int) -> int:
        return index


def _imbalanced() -> TensorDataset:
    labels = torch.tensor([0] * 80 + [1] * 20)
    return TensorDataset(torch.zeros(100, 1), labels)


def test_stratified_keeps_proportions():
    dataset = _imbalanced()
    for seed in range(5):
        chosen = stratified_indices(dataset, 10, seed)
        assert len(set(chosen)) == 10 and chosen == sorted(chosen)
        assert np.bincount(dataset.tensors[1][chosen].numpy()).tolist() == [8, 2]
    assert stratified_indices(dataset, 10, 0) == stratified_indices(dataset, 10, 0)
    assert stratified_indices(dataset, 10, 0) != stratified_indices(dataset, 10, 1)


def test_targets_through_subsets_and_attributes():
    dataset = _imbalanced()
    subset = Subset(dataset, [0, 85, 90])
    assert dataset_targets(subset).tolist() == [0, 1, 1]
    assert dataset_targets(_Unlabelled()) is None


def test_fallback_and_edge_sizes():
    unlabelled = _Unlabelled()
    chosen = stratified_indices(unlabelled, 7, seed=2)
    assert chosen == random_indices(30, 7, seed=2) and len(set(chosen)) == 7
    assert stratified_indices(unlabelled, 30, seed=0) == list(range(30))
    assert random_indices(5, 9, seed=0) == [0, 1, 2, 3, 4]
