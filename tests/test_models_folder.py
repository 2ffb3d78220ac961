"""A models folder with broken pairs: each is rejected with its reason while the valid pair loads."""
import json
import shutil

import pytest
import torch

from app.checkpoints import model_choices, scan_folder
from thermalizer_core.models.catalog import SHIPPED_CHECKPOINTS, scan_models


def copy_shipped_pair(folder, name: str, system: str = "ks") -> None:
    for kind in ("emulator", "thermalizer"):
        shutil.copytree(SHIPPED_CHECKPOINTS / f"{system}-{kind}", folder / f"{name}-{kind}")


def edit_config(path, change) -> None:
    config = json.loads(path.read_text())
    change(config)
    path.write_text(json.dumps(config))


@pytest.fixture
def mixed_folder(tmp_path):
    """The shipped KS pair as "good", and four pairs broken in different ways."""
    copy_shipped_pair(tmp_path, "good")

    copy_shipped_pair(tmp_path, "pickled")
    weights = tmp_path / "pickled-emulator" / "model.safetensors"
    torch.save({"weight": torch.zeros(3)}, weights)

    copy_shipped_pair(tmp_path, "no-architecture")
    edit_config(tmp_path / "no-architecture-thermalizer" / "config.json",
                lambda config: config.pop("architecture"))

    copy_shipped_pair(tmp_path, "wrong-shape")
    edit_config(tmp_path / "wrong-shape-emulator" / "config.json",
                lambda config: config.update(field_shape=[2, 64, 64]))

    copy_shipped_pair(tmp_path, "mixed-systems")
    shutil.rmtree(tmp_path / "mixed-systems-thermalizer")
    shutil.copytree(SHIPPED_CHECKPOINTS / "qg-thermalizer", tmp_path / "mixed-systems-thermalizer")
    return tmp_path


def test_only_valid_pair_loads(mixed_folder):
    pairs, rejected = scan_models(mixed_folder, "cpu")

    assert [pair.name for pair in pairs] == ["good"]
    assert sorted(entry.name for entry in rejected) == ["mixed-systems", "no-architecture", "pickled", "wrong-shape"]


def test_rejections_name_their_reason(mixed_folder):
    _, rejected = scan_models(mixed_folder, "cpu")
    reasons = {entry.name: entry.reason.lower() for entry in rejected}

    assert "safetensors" in reasons["pickled"]
    assert "architecture" in reasons["no-architecture"]
    assert "shape" in reasons["wrong-shape"]
    assert "qg" in reasons["mixed-systems"]


def test_menu_offers_valid_pair_only(mixed_folder):
    labels = [choice.label for choice in model_choices("ks", str(mixed_folder))]
    rejected_names = [name for name, _ in scan_folder(str(mixed_folder)).rejected]

    assert labels == ["shipped checkpoints", "good (models folder)"]
    assert "pickled" in rejected_names
