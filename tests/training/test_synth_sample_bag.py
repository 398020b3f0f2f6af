"""make-sample-bag: a rosbag2 (rosbags) carrying the sequence's frames and ground truth exactly.

Its topics carry the sequence's frames and ground truth exactly.
"""
import json

from hcdp_training.data import read_frame
from hcdp_training.synth.sample_bag import TOPICS, write_bag
import numpy as np
from rosbags.rosbag2 import Reader
from rosbags.typesys import get_typestore, Stores

from .test_data_format import H, W, write_sequence


def test_bag_round_trips_images_ground_truth_camera_info_and_stamps(tmp_path):
    seq = tmp_path / "seq"
    write_sequence(seq, frames=3, strides=1)
    meta = json.loads((seq / "meta.json").read_text())
    meta["fps"] = 10.0
    (seq / "meta.json").write_text(json.dumps(meta))
    assert write_bag(seq, tmp_path / "bag") == 3
    store = get_typestore(Stores.ROS2_HUMBLE)
    seen: dict[str, list] = {t: [] for t in TOPICS}
    with Reader(tmp_path / "bag") as reader:
        assert {c.topic: c.msgtype for c in reader.connections} == TOPICS
        for conn, stamp, raw in reader.messages():
            seen[conn.topic].append((stamp, store.deserialize_cdr(raw, conn.msgtype)))
    stamps = [s for s, _ in seen["/camera/color/image_raw"]]
    assert np.diff(stamps).tolist() == [100_000_000, 100_000_000]
    frame = read_frame(seq, 1)
    _, img = seen["/camera/color/image_raw"][1]
    assert img.encoding == "rgb8" and (img.height, img.width, img.step) == (H, W, 3 * W)
    assert np.array_equal(img.data.reshape(H, W, 3), frame["rgb"])
    for topic, key, channels, encoding in (("/ground_truth/depth", "depth", 1, "32FC1"),
                                           ("/ground_truth/normals", "normal", 3, "32FC3"),
                                           ("/ground_truth/mask", "mask", 1, "32FC1"),
                                           ("/ground_truth/flow_fwd", "flow_fwd", 2, "32FC2")):
        _, msg = seen[topic][1]
        assert msg.encoding == encoding and msg.step == 4 * channels * W
        values = msg.data.view("<f4").reshape(frame[key].shape)
        np.testing.assert_array_equal(values, frame[key])
    _, info = seen["/camera/color/camera_info"][1]
    np.testing.assert_allclose(info.k.reshape(3, 3), frame["K"])
    assert img.header.frame_id == info.header.frame_id == "camera_color_optical_frame"


def test_cli_bad_arguments_are_one_line_errors_and_leave_no_bag(tmp_path, capsys):
    from hcdp_model.cli import main

    assert main(["make-sample-bag", "--sequence", str(tmp_path / "none"), "--out",
                 str(tmp_path / "bag")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "expected a generated sequence folder holding meta.json" in err
    seq = tmp_path / "seq"
    write_sequence(seq, frames=2, strides=1)
    next(seq.rglob("*.png")).write_bytes(b"not a png")
    assert main(["make-sample-bag", "--sequence", str(seq), "--out", str(tmp_path / "bag")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("hcdp make-sample-bag: cannot write") and "Traceback" not in err
    assert not (tmp_path / "bag").exists()
    (tmp_path / "bag").mkdir()
    assert main(["make-sample-bag", "--sequence", str(seq), "--out", str(tmp_path / "bag")]) == 2
    assert "exists" in capsys.readouterr().err
