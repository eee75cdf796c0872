"""square_crop: resampled square crops through window_sample, padded with a fill value."""
import pytest
import torch

from mast.ops import square_crop


def test_a_crop_of_its_own_size_copies_pixels():
    images = torch.rand(2, 3, 20, 30, dtype=torch.float64)
    crops = square_crop(images, torch.tensor([[10.0, 5.0], [20.0, 12.0]], dtype=torch.float64),
                        torch.tensor([5.0, 7.0], dtype=torch.float64), 5)
    torch.testing.assert_close(crops[0], images[0, :, 3:8, 8:13])
    # side 7 read at spacing 7/5: the centre pixel is exact, the corners are 2.8 px out
    torch.testing.assert_close(crops[1, :, 2, 2], images[1, :, 12, 20])


def test_outside_the_image_is_the_fill_value():
    images = torch.zeros(1, 3, 10, 10)
    fill = torch.tensor([[0.1, 0.2, 0.3]])
    crops = square_crop(images + 1, torch.tensor([[0.0, 0.0]]), torch.tensor([9.0]), 9, fill)
    torch.testing.assert_close(crops[0, :, 0, 0], fill[0])  # (-4, -4): outside
    torch.testing.assert_close(crops[0, :, 8, 8], torch.ones(3))  # (4, 4): inside


def test_downscaling_averages_between_pixels():
    ramp = torch.arange(40, dtype=torch.float64).repeat(40, 1).view(1, 1, 40, 40)
    crops = square_crop(ramp, torch.tensor([[19.5, 19.5]], dtype=torch.float64),
                        torch.tensor([40.0], dtype=torch.float64), 5)
    # a linear ramp is sampled exactly: x = 19.5 + (j - 2) * 8
    torch.testing.assert_close(crops[0, 0, 0], torch.tensor([3.5, 11.5, 19.5, 27.5, 35.5], dtype=torch.float64))


@pytest.mark.parametrize("kwargs, message", [
    (dict(centers=torch.zeros(2, 3)), "centers must have shape"),
    (dict(sides=torch.tensor([0.0, 1.0])), "sides must be"),
    (dict(size=4), "window must be an odd"),
    (dict(fill=torch.zeros(2, 2)), "fill must have shape"),
])
def test_bad_arguments_are_named(kwargs, message):
    args = dict(images=torch.zeros(2, 3, 8, 8), centers=torch.zeros(2, 2), sides=torch.ones(2), size=5)
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        square_crop(**args)
