"""LAB conversion, normalisation and channel dropout."""
import torch

from mast.common.colour import (
    denormalize_lab,
    drop_ab_channel,
    drop_channels_corrflow,
    lab_to_rgb,
    normalize_lab,
    rgb_to_lab,
)


def test_lab_roundtrip_and_known_colours():
    rgb = torch.rand(2, 3, 8, 8)
    torch.testing.assert_close(lab_to_rgb(rgb_to_lab(rgb)), rgb, atol=1e-4, rtol=0)
    white = rgb_to_lab(torch.ones(1, 3, 1, 1)).flatten()
    torch.testing.assert_close(white, torch.tensor([100.0, 0.0, 0.0]), atol=1e-2, rtol=0)


def test_normalisation_is_mast_and_invertible():
    lab = torch.tensor([50.0, 127.0, -127.0]).view(1, 3, 1, 1)
    torch.testing.assert_close(normalize_lab(lab).flatten(), torch.tensor([0.0, 1.0, -1.0]))
    torch.testing.assert_close(denormalize_lab(normalize_lab(lab)), lab)


def test_mast_dropout_zeroes_exactly_one_of_a_b():
    lab = torch.randn(64, 3, 4, 4) + 3
    dropped, channel = drop_ab_channel(lab, torch.Generator().manual_seed(0))
    assert set(channel.tolist()) == {1, 2}
    for i, c in enumerate(channel.tolist()):
        assert (dropped[i, c] == 0).all()
        kept = [k for k in range(3) if k != c]
        torch.testing.assert_close(dropped[i, kept], lab[i, kept] * 1.5)


def test_corrflow_dropout_keeps_or_drops_one_or_two():
    image = torch.ones(400, 3, 2, 2)
    out = drop_channels_corrflow(image, 0.3, torch.Generator().manual_seed(0))
    zeroed = (out[:, :, 0, 0] == 0).sum(1)
    assert set(zeroed.tolist()) == {0, 1, 2}
    assert 0.2 < (zeroed == 0).float().mean() < 0.4
    torch.testing.assert_close(out.sum(1), torch.full((400, 2, 2), 3.0))
