"""Nearest-neighbour matching to a labelled frame (mast.models.matching), shared by RANet and SiamMask."""
from __future__ import annotations

import pytest
import torch

from mast.models.matching import cell_coverage, feature_mask, nearest_correlation

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("chunk", [2, 64])
def test_nearest_correlation_equals_brute_force(chunk):
    template = torch.nn.functional.normalize(torch.randn(2, 7, 4), dim=2)
    current = torch.nn.functional.normalize(torch.randn(2, 4, 3, 5), dim=1)
    foreground = torch.tensor([[True, False, True, False, False, True, False], [False] * 7])
    nearest = nearest_correlation(template, foreground, current, chunk=chunk)
    assert nearest.shape == (2, 2, 3, 5)
    maps = torch.einsum("bnc,bchw->bnhw", template, current)  # every template pixel against every current one
    torch.testing.assert_close(nearest[0, 0], maps[0, foreground[0]].amax(dim=0))
    torch.testing.assert_close(nearest[0, 1], maps[0, ~foreground[0]].amax(dim=0))
    # No foreground pixel at all: that side is the lowest cosine, -1.
    assert bool((nearest[1, 0] == -1).all())
    torch.testing.assert_close(nearest[1, 1], maps[1].amax(dim=0))


def test_feature_cells_are_foreground_when_half_covered():
    mask = torch.zeros(1, 8, 8)
    mask[0, :4, :2] = 1  # the top-left 4x4 cell half covered, the one right of it not at all
    mask[0, 4:, 4:] = 1  # the bottom-right cell whole
    coverage = cell_coverage(mask, (2, 2))
    torch.testing.assert_close(coverage, torch.tensor([[[0.5, 0.0], [0.0, 1.0]]]))
    assert feature_mask(mask, (2, 2)).tolist() == [[[True, False], [False, True]]]
