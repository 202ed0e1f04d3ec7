"""--register-coco: a user's COCO file checked, repaired in a copy, registered, class count checked."""
import json
import logging
import shutil

import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog

from lip_det import get_lip_cfg
from lip_lab.data import DatasetError, ensure_shapes_split
from lip_lab.data.user_coco import check_num_classes, prepare_user_coco, register_user_coco
from tests.helpers import CONFIGS, load_tool


@pytest.fixture
def user_coco(tmp_path, monkeypatch):
    """A copy of the LIP-Shapes mini val split as a user's dataset: (json path, image dir, data)."""
    monkeypatch.setenv("LIP_DET_DATA", str(tmp_path / "cache"))
    json_file, image_root = ensure_shapes_split("lip_shapes_mini_val")
    images = tmp_path / "images"
    shutil.copytree(image_root, images)
    data = json.loads(open(json_file).read())
    return tmp_path / "user.json", images, data


def _write(path, data):
    path.write_text(json.dumps(data))
    return path


def test_clean_file_is_registered_as_is(user_coco):
    path, images, data = user_coco
    _write(path, data)
    registered, classes = prepare_user_coco("user_clean", path, images)
    assert registered == str(path) and classes == [c["name"] for c in data["categories"]]
    register_user_coco("user_clean", registered, str(images), classes)
    register_user_coco("user_clean", registered, str(images), classes)  # idempotent
    dicts = DatasetCatalog.get("user_clean")
    assert len(dicts) == len(data["images"]) and sum(len(d["annotations"]) for d in dicts) == len(data["annotations"])
    with pytest.raises(DatasetError, match="already registered"):
        register_user_coco("user_clean", str(path) + ".other", str(images), classes)


@pytest.mark.parametrize(
    "breakage, message",
    [
        ("missing_json", "annotation file not found"),
        ("malformed_json", "is not valid JSON"),
        ("not_coco", "is not a COCO instances file"),
        ("missing_image", "is listed in"),
        ("missing_folder", "image folder not found"),
    ],
)
def test_unusable_files_are_one_line_errors(user_coco, breakage, message):
    path, images, data = user_coco
    if breakage == "malformed_json":
        path.write_text(json.dumps(data)[:-20])
    elif breakage == "not_coco":
        _write(path, {"images": data["images"]})
    elif breakage != "missing_json":
        _write(path, data)
    if breakage == "missing_image":
        (images / data["images"][3]["file_name"]).unlink()
    if breakage == "missing_folder":
        images = images.parent / "no_such_folder"
    with pytest.raises(DatasetError, match=message) as info:
        prepare_user_coco("user_bad", path, images)
    assert "\n" not in str(info.value) and "user_bad" in str(info.value)
    if breakage == "missing_image":
        assert repr(data["images"][3]["file_name"]) in str(info.value)


def test_bad_boxes_dropped_ids_renumbered_in_a_copy(user_coco, caplog):
    path, images, data = user_coco
    anns = data["annotations"]
    for i, ann in enumerate(anns):
        ann["id"] = i  # 0-based, as labelme exports
    width = data["images"][0]["width"]
    anns[1]["bbox"] = [10, 10, 0, 5]  # zero area
    anns[2]["bbox"] = [width - 4, 5, 20, 20]  # 16 px past the right border
    anns[3]["bbox"][0] = -0.5  # rounding: kept
    data["categories"].append({"id": 99, "name": "unicorn"})
    original = _write(path, data).read_text()
    with caplog.at_level(logging.WARNING, logger="lip_lab.data.user_coco"):
        registered, classes = prepare_user_coco("user_fixed", path, images)
    assert path.read_text() == original  # the user's file is untouched
    assert registered != str(path) and classes[-1] == "unicorn"
    fixed = json.loads(open(registered).read())
    assert len(fixed["annotations"]) == len(anns) - 2
    assert min(a["id"] for a in fixed["annotations"]) == 1
    text = caplog.text
    assert "dropped 2 of" in text and "shifted by +1" in text and "without any annotation: unicorn" in text


def test_class_count_must_match_the_model(user_coco):
    path, images, data = user_coco
    registered, classes = prepare_user_coco("user_count", _write(path, data), images)
    register_user_coco("user_count", registered, str(images), classes)
    cfg = get_lip_cfg(CONFIGS / "quick" / "faster_rcnn_r18_shapes.yaml", ["MODEL.ROI_HEADS.NUM_CLASSES", "7"])
    with pytest.raises(DatasetError, match="add MODEL.ROI_HEADS.NUM_CLASSES 4"):
        check_num_classes(cfg, ["user_count"])
    cfg = get_lip_cfg(CONFIGS / "retinanet_r50.yaml", ["MODEL.RETINANET.NUM_CLASSES", "4"])
    check_num_classes(cfg, ["user_count"])
    assert MetadataCatalog.get("user_count").thing_classes == classes


QUICK = str(CONFIGS / "quick" / "faster_rcnn_r18_shapes.yaml")


@pytest.mark.parametrize("breakage, message", [
    ("malformed_json", "is not valid JSON"),
    ("missing_image", "is listed in"),
    ("num_classes", "add MODEL.ROI_HEADS.NUM_CLASSES 4"),
])
def test_tools_report_bad_user_files_in_one_line(user_coco, breakage, message, capsys):
    path, images, data = user_coco
    path.write_text(json.dumps(data)[:-5] if breakage == "malformed_json" else json.dumps(data))
    if breakage == "missing_image":
        (images / data["images"][0]["file_name"]).unlink()
    name = f"user_cli_{breakage}"
    register = ["--register-coco", name, str(path), str(images)]
    dataset = f"('{name}',)"
    classes = ["MODEL.ROI_HEADS.NUM_CLASSES", "3" if breakage == "num_classes" else "4"]
    commands = {
        "train_net": [*register, "--config-file", QUICK, "DATASETS.TRAIN", dataset, "DATASETS.TEST", dataset, *classes],
        "ap_by_size": [*register, "--dataset", name, "--results", str(path)],
    }
    for tool, argv in commands.items():
        if breakage == "num_classes" and tool == "ap_by_size":
            continue  # no model there
        status = load_tool(tool).run(argv) if tool == "train_net" else load_tool(tool).main(argv)
        err = capsys.readouterr().err.strip()
        assert status == 2 and len(err.splitlines()) == 1 and message in err, (tool, err)
