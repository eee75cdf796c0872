"""Bad arguments fail with a ValueError that names them, on every backend."""
import pytest
import torch

from mast.ops import local_correlation, roi_correlation, window_sample

Q = torch.randn(1, 2, 4, 5)


@pytest.mark.parametrize(
    "args,match",
    [
        ((torch.randn(2, 4, 5), Q, 3), "query must have shape"),
        ((Q, torch.randn(1, 2, 4), 3), "key must have shape"),
        ((Q, torch.randn(2, 2, 4, 5), 3), "same shape"),
        ((Q, torch.randn(1, 3, 4, 5), 3), "same shape"),
        ((Q, torch.randn(1, 2, 4, 6), 3), "same shape"),
        ((Q.half(), Q.half(), 3), "unsupported dtype"),
        ((Q.long(), Q.long(), 3), "unsupported dtype"),
        ((Q, Q, 4), "window must be an odd"),
        ((Q, Q, 0), "window must be an odd"),
        ((Q, Q, 3.0), "window must be an odd"),
        ((Q, Q, 3, 0), "dilation must be"),
        ((Q, Q, 3, -2), "dilation must be"),
        (("query", Q, 3), "query must be a torch.Tensor"),
    ],
)
def test_local_correlation_rejects(args, match):
    with pytest.raises(ValueError, match=match):
        local_correlation(*args)


CENTERS = torch.zeros(1, 2, 3, 3)


@pytest.mark.parametrize(
    "args,match",
    [
        ((torch.randn(2, 4, 5), CENTERS, 3), "source must have shape"),
        ((Q, torch.zeros(1, 3, 3, 3), 3), r"centers must have shape \(B, 2, H, W\)"),
        ((Q, torch.zeros(2, 2, 3, 3), 3), "batch"),
        ((Q, torch.zeros(2, 3, 3), 3), "centers must have shape"),
        ((Q, CENTERS, 2), "window must be an odd"),
        ((Q, CENTERS, -1), "window must be an odd"),
        ((Q, CENTERS, 3, 0.0), "spacing must be"),
        ((Q, CENTERS, 3, -1.0), "spacing must be"),
        ((Q, CENTERS, 3, float("nan")), "spacing must be"),
        ((Q.int(), CENTERS, 3), "unsupported dtype"),
    ],
)
def test_window_sample_rejects(args, match):
    with pytest.raises(ValueError, match=match):
        window_sample(*args)


@pytest.mark.parametrize(
    "args,match",
    [
        ((torch.randn(2, 4, 5), Q, CENTERS, 3), "query must have shape"),
        ((torch.randn(1, 2, 3, 3), torch.randn(1, 3, 4, 5), CENTERS, 3), r"key must have shape \(B, C, Hs, Ws\)"),
        ((torch.randn(1, 2, 3, 3), Q, torch.zeros(1, 2, 3, 4), 3), r"centers must have shape \(B, 2, H, W\)"),
        ((torch.randn(1, 2, 3, 3), Q, CENTERS, 2), "window must be an odd"),
        ((torch.randn(1, 2, 3, 3), Q, CENTERS, 3, 0.0), "spacing must be"),
        ((torch.randn(1, 2, 3, 3).long(), Q, CENTERS, 3), "unsupported dtype"),
    ],
)
def test_roi_correlation_rejects(args, match):
    with pytest.raises(ValueError, match=match):
        roi_correlation(*args)
