"""Published checkpoints (MAST, CorrFlow, CRW, torchvision ResNet) read as mast backbones.

Each layout is written here as its authors' code saves it (key names, prefixes), with
random weights and random BatchNorm statistics; the features mast computes from it must
equal a hand-written reference of the authors' network (plain torch.nn.functional calls
on the source keys), every key must be used or deliberately dropped, and wrong files get
one clear line. The check against the authors' own code is in docs/models.md.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mast.cli.main import main
from mast.common.checkpoints import load_checkpoint
from mast.data.synthetic import translating_video
from mast.models.backbone import RGB_MEAN, RGB_STD, BackboneConfig, ResNetBackbone
from mast.models.builder import load_backbone, load_tracker
from mast.models.published import CRW_PROTOCOL, FORMATS, MAST_PROTOCOL, load_any

#: (torchvision-style block prefix, in, out, stride) of a ResNet-18 with the given widths and layer strides.
RESNET18 = (2, 2, 2, 2)


def _blocks(widths, strides):
    """``(layer, block, in, out, stride)`` of each basic block of a ResNet-18."""
    in_channels = 64
    for layer, (width, stride) in enumerate(zip(widths, strides), start=1):
        for block in range(2):
            yield layer, block, in_channels, width, stride if block == 0 else 1
            in_channels = width


def _conv(generator, out_channels, in_channels, size):
    return torch.randn(out_channels, in_channels, size, size, generator=generator) * (2 / (in_channels * size ** 2)) ** 0.5


def _bn(generator, prefix, channels):
    """A BatchNorm's entries with random scale, shift and statistics (as after training)."""
    return {f"{prefix}.weight": torch.rand(channels, generator=generator) + 0.5,
            f"{prefix}.bias": torch.randn(channels, generator=generator) * 0.1,
            f"{prefix}.running_mean": torch.randn(channels, generator=generator) * 0.3,
            f"{prefix}.running_var": torch.rand(channels, generator=generator) * 1.5 + 0.5,
            f"{prefix}.num_batches_tracked": torch.tensor(1000)}


def colorization_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """MAST's / CorrFlow's network as ``state_dict()`` names it: ``feature_extraction`` (conv1 =
    Sequential(conv, bn, relu), blocks ``left`` = Sequential(conv, bn, relu, conv, bn) and
    ``shortcut``) and ``post_convolution``."""
    g = torch.Generator().manual_seed(seed)
    state = {"feature_extraction.conv1.0.weight": _conv(g, 64, 3, 7), **_bn(g, "feature_extraction.conv1.1", 64)}
    for layer, block, cin, cout, stride in _blocks((64, 128, 256, 256), (1, 2, 1, 1)):
        p = f"feature_extraction.layer{layer}.{block}"
        state |= {f"{p}.left.0.weight": _conv(g, cout, cin, 3), **_bn(g, f"{p}.left.1", cout),
                  f"{p}.left.3.weight": _conv(g, cout, cout, 3), **_bn(g, f"{p}.left.4", cout)}
        if stride != 1 or cin != cout:
            state |= {f"{p}.shortcut.0.weight": _conv(g, cout, cin, 1), **_bn(g, f"{p}.shortcut.1", cout)}
    return state | {"post_convolution.weight": _conv(g, 64, 256, 3), "post_convolution.bias": torch.randn(64, generator=g)}


def torchvision_state(seed: int = 0, prefix: str = "") -> dict[str, torch.Tensor]:
    """A torchvision ResNet-18 ``state_dict()``: conv1, bn1, layer1-4 (``downsample``), fc."""
    g = torch.Generator().manual_seed(seed)
    state = {f"{prefix}conv1.weight": _conv(g, 64, 3, 7), **_bn(g, f"{prefix}bn1", 64)}
    for layer, block, cin, cout, stride in _blocks((64, 128, 256, 512), (1, 2, 2, 2)):
        p = f"{prefix}layer{layer}.{block}"
        state |= {f"{p}.conv1.weight": _conv(g, cout, cin, 3), **_bn(g, f"{p}.bn1", cout),
                  f"{p}.conv2.weight": _conv(g, cout, cout, 3), **_bn(g, f"{p}.bn2", cout)}
        if stride != 1 or cin != cout:
            state |= {f"{p}.downsample.0.weight": _conv(g, cout, cin, 1), **_bn(g, f"{p}.downsample.1", cout)}
    return state | {f"{prefix}fc.weight": torch.randn(1000, 512, generator=g), f"{prefix}fc.bias": torch.zeros(1000)}


# -- the authors' networks, spelled out --------------------------------------------------------------------------


def _batch_norm(x, state, prefix):
    return F.batch_norm(x, state[f"{prefix}.running_mean"], state[f"{prefix}.running_var"],
                        state[f"{prefix}.weight"], state[f"{prefix}.bias"], training=False, eps=1e-5)


def _conv2d(x, weight, stride, padding, reflect=False, bias=None):
    if reflect and padding:
        x, padding = F.pad(x, (padding,) * 4, mode="reflect"), 0
    return F.conv2d(x, weight, bias, stride, padding)


def colorization_reference(state, x):
    """MAST's ResNet18 (models/submodule.py) and post_convolution: 7x7/2 conv, no max-pool, layer2
    stride 2, layers 3-4 stride 1, zero padding, then a 3x3 conv with bias."""
    x = F.relu(_batch_norm(_conv2d(x, state["feature_extraction.conv1.0.weight"], 2, 3), state,
                           "feature_extraction.conv1.1"))
    for layer, block, cin, cout, stride in _blocks((64, 128, 256, 256), (1, 2, 1, 1)):
        p = f"feature_extraction.layer{layer}.{block}"
        out = F.relu(_batch_norm(_conv2d(x, state[f"{p}.left.0.weight"], stride, 1), state, f"{p}.left.1"))
        out = _batch_norm(_conv2d(out, state[f"{p}.left.3.weight"], 1, 1), state, f"{p}.left.4")
        short = x if f"{p}.shortcut.0.weight" not in state else \
            _batch_norm(_conv2d(x, state[f"{p}.shortcut.0.weight"], stride, 0), state, f"{p}.shortcut.1")
        x = F.relu(out + short)
    return F.conv2d(x, state["post_convolution.weight"], state["post_convolution.bias"], 1, 1)


def torchvision_reference(state, x, layers, reflect):
    """A torchvision ResNet-18 with layer3/layer4 strides 1 (CRW's ``modify``): conv1, bn1, relu,
    3x3/2 max-pool, then ``layers`` of layer1..layer4; ``reflect`` pads every padded conv so."""
    x = F.relu(_batch_norm(_conv2d(x, state["conv1.weight"], 2, 3, reflect), state, "bn1"))
    x = F.max_pool2d(x, 3, 2, 1)
    for layer, block, cin, cout, stride in _blocks((64, 128, 256, 512), (1, 2, 1, 1)):
        if layer > layers:
            break
        p = f"layer{layer}.{block}"
        out = F.relu(_batch_norm(_conv2d(x, state[f"{p}.conv1.weight"], stride, 1, reflect), state, f"{p}.bn1"))
        out = _batch_norm(_conv2d(out, state[f"{p}.conv2.weight"], 1, 1, reflect), state, f"{p}.bn2")
        short = x if f"{p}.downsample.0.weight" not in state else \
            _batch_norm(_conv2d(x, state[f"{p}.downsample.0.weight"], stride, 0), state, f"{p}.downsample.1")
        x = F.relu(out + short)
    return x


# -- the four layouts --------------------------------------------------------------------------------------------


def _frame(height=40, width=56, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def _rgb(frame: np.ndarray) -> torch.Tensor:
    return torch.tensor(frame).permute(2, 0, 1).float().unsqueeze(0) / 255


def _imagenet(frame: np.ndarray) -> torch.Tensor:
    return (_rgb(frame) - torch.tensor(RGB_MEAN).view(1, 3, 1, 1)) / torch.tensor(RGB_STD).view(1, 3, 1, 1)


def _mast_input(frame: np.ndarray) -> torch.Tensor:
    """MAST's preprocessing (DavisLoaderLab): OpenCV's float LAB of the BGR image in [0, 1],
    normalised by mean (50, 0, 0) and std (50, 127, 127)."""
    cv2 = pytest.importorskip("cv2")
    lab = cv2.cvtColor(np.float32(frame[:, :, ::-1]) / 255, cv2.COLOR_BGR2Lab)
    x = torch.tensor(lab).permute(2, 0, 1).unsqueeze(0)
    return (x - torch.tensor([50.0, 0, 0]).view(1, 3, 1, 1)) / torch.tensor([50.0, 127, 127]).view(1, 3, 1, 1)


def _layouts():
    """name -> (payload as its authors save it, reference features of a frame, keys deliberately dropped)."""
    colour = colorization_state(1)
    tv = torchvision_state(2)
    crw = {"encoder.model." + k: v for k, v in tv.items() if not k.startswith("fc.")}
    crw |= {"selfsim_fc.0.weight": torch.randn(128, 512), "selfsim_fc.0.bias": torch.zeros(128)}
    return {
        "mast": ({"epoch": 3, "state_dict": colour, "optimizer": {}},
                 lambda f: colorization_reference(colour, _mast_input(f)), set()),
        "corrflow": ({"epoch": 3, "state_dict": {"module." + k: v for k, v in colour.items()}, "optimizer": {}},
                     lambda f: colorization_reference(colour, _rgb(f)), set()),
        "crw": ({"model": {"module." + k: v for k, v in crw.items()}, "optimizer": {}},
                lambda f: torchvision_reference(tv, _imagenet(f), layers=3, reflect=True),
                {k.removeprefix("module.") for k in crw if ".layer4." in k or k.startswith("selfsim_fc")}),
        "torchvision": (tv, lambda f: torchvision_reference(tv, _imagenet(f), layers=4, reflect=False),
                        {"fc.weight", "fc.bias"}),
    }


LAYOUTS = _layouts()


@pytest.mark.parametrize("name", list(LAYOUTS))
def test_each_layout_loads_every_key_and_computes_the_authors_features(name, tmp_path):
    payload, reference, dropped = LAYOUTS[name]
    torch.save(payload, tmp_path / "published.pt")
    converted = load_any(tmp_path / "published.pt")
    assert converted.format == name
    own = ResNetBackbone(converted.config).state_dict()
    assert set(converted.state_dict) == set(own)  # none missing, none left over
    assert set(converted.dropped) == dropped  # only what the authors' evaluation drops
    sources = payload.get("state_dict", payload.get("model", payload))
    assert len(converted.state_dict) + len(dropped) == len(sources)  # every other key used once

    backbone = load_backbone(tmp_path / "published.pt")
    frame = _frame()
    ours, theirs = backbone.extract(frame), reference(frame)[0]
    assert ours.shape == theirs.shape == (backbone.channels, -(-40 // backbone.stride), -(-56 // backbone.stride))
    cosine = F.cosine_similarity(ours, theirs, dim=0)
    assert float(cosine.min()) > 0.999, float(cosine.min())


def test_the_architectures_are_the_papers():
    shapes = {name: (load_any_config(name).output_stride, load_any_config(name).feature_dim) for name in LAYOUTS}
    assert shapes == {"mast": (4, 64), "corrflow": (4, 64), "crw": (8, 256), "torchvision": (8, 512)}
    assert load_any_config("crw").padding_mode == "reflect" and load_any_config("torchvision").padding_mode == "zeros"
    assert [load_any_config(n).colour_space for n in LAYOUTS] == ["lab", "rgb01", "rgb", "rgb"]


def load_any_config(name: str) -> BackboneConfig:
    from mast.models.published import convert

    return convert(LAYOUTS[name][0], f"{name}.pt").config


def test_mast_colour_conversion_is_opencvs_float_lab():
    """The frames MAST's network sees: mast's LAB against OpenCV's on the same pixels. OpenCV's
    float conversion interpolates its gamma and cube-root curves from tables, so the two differ
    by a few thousandths of the normalised range (tenths of a LAB unit), no more."""
    frame = _frame(24, 24, seed=5)
    backbone = ResNetBackbone(BackboneConfig(colour_space="lab"))
    difference = (backbone.prepare(_rgb(frame)) - _mast_input(frame)).abs()
    assert float(difference.max()) < 1e-2 and float(difference.mean()) < 2e-3


def _write(tmp_path: Path, payload, name: str = "file.pt") -> Path:
    torch.save(payload, tmp_path / name)
    return tmp_path / name


@pytest.mark.parametrize("payload, message", [
    ({"state": {}, "param_groups": []}, "an optimizer's state only"),
    ({"weight": torch.zeros(3, 2), "bias": torch.zeros(3)}, "keys weight, bias"),
    ({"state_dict": {"encoder.fc.weight": torch.zeros(1)}}, "state_dict with keys encoder.fc.weight"),
    ([torch.zeros(1)], "a list, not a dict of weights"),
])
def test_a_file_of_no_known_layout_gets_one_line_naming_its_keys_and_the_formats(tmp_path, payload, message):
    path = _write(tmp_path, payload)
    with pytest.raises(ValueError) as error:
        load_any(path)
    text = str(error.value)
    assert "\n" not in text and str(path) in text and message in text
    assert all(what in text for what, _, _ in FORMATS.values())


def test_a_truncated_file_and_a_resnet50_get_one_line(tmp_path):
    whole = _write(tmp_path, LAYOUTS["mast"][0])
    (tmp_path / "cut.pt").write_bytes(whole.read_bytes()[:50_000])
    with pytest.raises(ValueError, match=r"cannot read backbone checkpoint .*cut\.pt") as error:
        load_any(tmp_path / "cut.pt")
    assert "\n" not in str(error.value)
    resnet50 = dict(torchvision_state(0)) | {"layer1.0.conv3.weight": torch.zeros(1)}
    with pytest.raises(ValueError, match="bottleneck blocks"):
        load_any(_write(tmp_path, resnet50, "r50.pt"))


def test_weights_of_the_wrong_shape_in_a_known_layout_are_one_line(tmp_path):
    state = colorization_state() | {"post_convolution.weight": torch.zeros(32, 256, 3, 3)}
    with pytest.raises(ValueError, match="does not match the ResNetBackbone architecture") as error:
        load_backbone(_write(tmp_path, {"state_dict": state}))
    assert "\n" not in str(error.value)


def test_convert_writes_a_backbone_with_the_papers_protocol_and_never_overwrites(tmp_path, capsys):
    source = _write(tmp_path, LAYOUTS["crw"][0], "pretrained.pth")
    out = tmp_path / "crw.pt"
    assert main(["convert", str(source), "--out", str(out)]) == 0
    saved = load_checkpoint(out)
    assert saved["propagation"] == CRW_PROTOCOL.as_overrides()
    assert torch.equal(load_backbone(out).extract(_frame()), load_backbone(source).extract(_frame()))
    before = out.read_bytes()
    assert main(["convert", str(_write(tmp_path, LAYOUTS["mast"][0], "mast.pt")), "--out", str(out)]) == 2
    assert "--out" in capsys.readouterr().err and out.read_bytes() == before  # refused: nothing written
    assert main(["convert", str(tmp_path / "mast.pt"), "--out", str(out), "--overwrite"]) == 0
    assert load_checkpoint(out)["propagation"] == MAST_PROTOCOL.as_overrides()
    assert main(["convert", str(source), "--out", str(source), "--overwrite"]) == 2  # never over its input
    assert main(["convert", str(tmp_path / "mast.pt"), "--format", "crw", "--out", str(tmp_path / "x.pt")]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2 and all(line.startswith("mast convert: error: ") for line in lines)
    assert "SRC" in lines[0] and "not in the crw layout" in lines[1] and not (tmp_path / "x.pt").exists()


def test_convert_knows_the_formats_the_library_knows():
    from mast.cli.convert import FORMAT_NAMES

    assert FORMAT_NAMES == tuple(FORMATS)


@pytest.mark.parametrize("name", ["mast", "corrflow"])
def test_a_published_file_propagates_under_its_papers_protocol_and_flags_override(name, tmp_path):
    path = _write(tmp_path, LAYOUTS[name][0])
    frames, masks = translating_video(num_frames=4, height=32, width=32, seed=1)
    tracker = load_tracker("mast", checkpoint=path, device="cpu")
    expected = MAST_PROTOCOL if name == "mast" else None
    config = tracker.config
    if expected is not None:
        assert config.engine.window == 25 and config.policy.long_term == (0, 5) and not config.engine.normalize
    else:  # CorrFlow: the previous frame only, 13x13
        assert config.engine.window == 13 and config.policy.long_term == () and config.policy.short_term == (1,)
    assert load_tracker("mast", checkpoint=path, device="cpu", window=5).config.engine.window == 5
    rgb = (frames.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
    from mast.api import track

    out = list(track(tracker, rgb, first_mask=masks[0].numpy().astype(np.uint8)))
    assert len(out) == 4 and all(mask.shape == (32, 32) for mask in out)


def test_finetune_from_an_official_mast_file_trains_and_its_backbone_propagates(tmp_path, capsys):
    import cv2

    videos = tmp_path / "videos"
    for seed in range(2):
        frames, _ = translating_video(num_frames=10, height=48, width=48, seed=seed)
        (videos / f"v{seed}").mkdir(parents=True)
        for t, frame in enumerate(frames):
            cv2.imwrite(str(videos / f"v{seed}" / f"{t:05d}.jpg"),
                        (frame.permute(1, 2, 0).numpy()[:, :, ::-1] * 255).round().astype(np.uint8))
    init = _write(tmp_path, LAYOUTS["mast"][0], "official.pt")
    sets = ["data.size=32", "train.batch_size=1", "data.workers=0",
            "phases=[{name: finetune, mode: pairs, steps: 2, lr: 0.0001}]"]
    torch.set_num_threads(2)
    assert main(["finetune", "--init", str(init), "--data", str(videos), "--out", str(tmp_path / "fine"),
                 *[item for s in sets for item in ("--set", s)]]) == 0, capsys.readouterr().err
    tuned = load_backbone(tmp_path / "fine" / "backbone.pt")
    start = load_backbone(init)
    assert tuned.config == start.config  # the architecture of the checkpoint
    assert not torch.equal(tuned.extract(_frame()), start.extract(_frame()))  # and it trained
    frames, masks = translating_video(num_frames=3, height=32, width=32, seed=4)
    from mast.api import track

    rgb = (frames.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
    tracker = load_tracker("mast", checkpoint=tmp_path / "fine" / "backbone.pt", preset="quick", device="cpu")
    assert len(list(track(tracker, rgb, first_mask=masks[0].numpy().astype(np.uint8)))) == 3


def test_no_library_string_in_this_feature_names_a_flag():
    source = Path(__file__).resolve().parents[1] / "mast" / "models" / "published.py"
    assert not re.search(r"--[a-z]", source.read_text())
