"""The shared ResNet-18 family backbone."""
import pytest
import torch

from mast.models.backbone import BackboneConfig, ResNetBackbone


@pytest.mark.parametrize("stride,height,width", [(4, 64, 64), (4, 480 // 4, 854 // 4), (8, 64, 96)])
def test_output_stride_and_dimension(stride, height, width):
    model = ResNetBackbone(BackboneConfig(output_stride=stride, feature_dim=32)).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, height, width))
    assert out.shape == (1, 32, -(-height // stride), -(-width // stride))


def test_davis_resolution_gives_120x214_features():
    model = ResNetBackbone(BackboneConfig(widths=(8, 8, 8, 8), blocks=(1, 1, 1, 1))).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 480, 854)).shape == (1, 64, 120, 214)


def test_resnet18_layout():
    model = ResNetBackbone()
    assert [len(layer) for layer in model.layers] == [2, 2, 2, 2]
    assert model.stem[0].kernel_size == (7, 7) and model.stem[0].stride == (2, 2)
    assert not any(isinstance(m, torch.nn.MaxPool2d) for m in model.modules())


def test_save_load_roundtrip(tmp_path):
    model = ResNetBackbone(BackboneConfig(feature_dim=16, widths=(8, 8, 16, 16))).eval()
    path = tmp_path / "backbone.pt"
    model.save(path)
    loaded = ResNetBackbone.from_checkpoint(path).eval()
    frames = torch.randn(1, 3, 32, 32)
    torch.testing.assert_close(loaded(frames), model(frames))
    assert [p.name for p in tmp_path.iterdir()] == ["backbone.pt"]  # no temp files left


def test_load_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        ResNetBackbone.from_checkpoint(tmp_path / "missing.pt")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="garbage.pt"):
        ResNetBackbone.from_checkpoint(garbage)
    other = tmp_path / "other.pt"
    torch.save({"backbone_config": {"feature_dim": 16}, "state_dict": {"bogus": torch.zeros(1)}}, other)
    with pytest.raises(ValueError, match=r"other.pt does not hold ResNetBackbone weights: 97 missing \(e.g. stem.0.weight\); "
                                         r"1 unexpected \(e.g. bogus\)$"):
        ResNetBackbone.from_checkpoint(other)


def test_rejects_bad_config_and_input():
    with pytest.raises(ValueError, match="output_stride"):
        BackboneConfig(output_stride=16)
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        ResNetBackbone()(torch.randn(1, 1, 32, 32))


def test_prepare_follows_the_colour_space():
    rgb = torch.rand(1, 3, 8, 8)
    lab_input = ResNetBackbone(BackboneConfig(colour_space="lab")).prepare(rgb)
    rgb_input = ResNetBackbone(BackboneConfig(colour_space="rgb")).prepare(rgb)
    assert lab_input.shape == rgb_input.shape == (1, 3, 8, 8)
    assert lab_input[:, 0].min() >= -1 - 1e-5 and lab_input[:, 0].max() <= 1 + 1e-5  # L in [0, 100] -> [-1, 1]
    torch.testing.assert_close(rgb_input[:, 0], (rgb[:, 0] - 0.485) / 0.229)
    with pytest.raises(ValueError, match="colour_space"):
        BackboneConfig(colour_space="hsv")
