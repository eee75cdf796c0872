"""scripts/learning_curves.py: several runs' validation curves and TensorBoard scalars on one chart."""
import json

import cv2
import pytest
from torch.utils.tensorboard import SummaryWriter

from conftest import load_script


def write_run(folder, scores, zero_motion=0.2, scalar=None):
    """A run folder as ``mast train-baseline --validate`` leaves it: ``validation.json`` (scores at
    steps 0, 10, ...) and, with ``scalar``, TensorBoard events of ``train/area`` at those steps."""
    folder.mkdir(parents=True)
    history = [{"step": 10 * i, "best": "model", "model": {"J&F": score, "J": score, "F": score}}
               for i, score in enumerate(scores)]
    (folder / "validation.json").write_text(json.dumps({"history": history, "zero_motion": zero_motion}))
    writer = SummaryWriter(str(folder / "tensorboard"))
    for i, value in enumerate(scalar or []):
        writer.add_scalar("train/area", value, 10 * i)
    writer.close()
    return folder


def test_curves_are_summarised_and_drawn(tmp_path, capsys):
    script = load_script("learning_curves")
    rising = write_run(tmp_path / "rising", [0.4, 0.5, 0.45], scalar=[0.1, 0.2, 0.3])
    falling = write_run(tmp_path / "falling", [0.4, 0.3], scalar=[0.1, 0.05])
    out = tmp_path / "charts" / "curves.png"
    assert script.main(["--run", f"rising={rising}", "--run", f"falling={falling}",
                        "--scalar", "train/area", "--out", str(out)]) == 0
    record = json.loads(out.with_suffix(".json").read_text())
    assert (record["runs"]["rising"]["best"], record["runs"]["rising"]["best_step"]) == (0.5, 10)
    assert (record["runs"]["falling"]["best"], record["runs"]["falling"]["best_step"]) == (0.4, 0)
    assert record["runs"]["falling"]["last"] == 0.3
    assert record["scalars"]["train/area"]["falling"]["values"] == pytest.approx([0.1, 0.05])
    assert cv2.imread(str(out)).shape[0] == 2 * 420  # the validation chart and one scalar chart
    assert "rising" in capsys.readouterr().out


def test_a_run_without_validation_or_the_scalar_is_named(tmp_path, capsys):
    script = load_script("learning_curves")
    run = write_run(tmp_path / "run", [0.4], scalar=[0.1])
    (tmp_path / "empty").mkdir()
    assert script.main(["--run", f"a={tmp_path / 'empty'}", "--out", str(tmp_path / "c.png")]) == 2
    assert "empty/validation.json does not exist" in capsys.readouterr().err
    assert script.main(["--run", f"a={run}", "--scalar", "train/nothing", "--out", str(tmp_path / "c.png")]) == 2
    assert "no scalar 'train/nothing'; it has train/area" in capsys.readouterr().err
    assert not (tmp_path / "c.png").exists()


def test_nothing_is_written_inside_a_run_folder(tmp_path):
    script = load_script("learning_curves")
    run = write_run(tmp_path / "run", [0.4])
    with pytest.raises(SystemExit):
        script.main(["--run", f"a={run}", "--out", str(run / "curves.png")])
    assert not (run / "curves.png").exists()
