"""`hcdp bag` end to end: bags written here with rosbags, run through `main`, read back."""
import json
import math
from pathlib import Path

import cv2
from hcdp_model.cli import main
from hcdp_ros.bag import decode_float_image, synchronised
from hcdp_ros.conversions import SizeMismatch
import numpy as np
import pytest
from rosbags.rosbag2 import Reader, StoragePlugin, Writer
from rosbags.typesys import get_typestore, Stores
import torch

STORE = get_typestore(Stores.ROS2_HUMBLE)
T = STORE.types
H, W = 24, 32
IMAGE_TOPIC, INFO_TOPIC = "/camera/image_raw", "/camera/camera_info"
START_NS = 1_700_000_000 * 10**9
PERIOD_NS = 100_000_000   # 10 Hz
RECORD_DELAY_NS = 5_000_000  # bag time = header stamp + 5 ms, so the two are checked separately
NODE_TOPICS = ("relative_depth", "normals", "mask", "mask/binary", "relative_depth/viz",
               "normals/viz",
               "mask/viz", "points", "camera_info")
ENCODINGS = {"relative_depth": "32FC1", "normals": "32FC3", "mask": "32FC1",
             "mask/binary": "mono8",
             "relative_depth/viz": "rgb8", "normals/viz": "rgb8", "mask/viz": "rgb8"}


@pytest.fixture(scope="module")
def checkpoint(micro_checkpoint):
    return str(micro_checkpoint)


# --- a synthetic sequence: a bright box moving 1 px/frame to the right over a gradient -----------


def _frame(k: int) -> dict[str, np.ndarray]:
    y, x = np.mgrid[0:H, 0:W]
    inside = (y >= 6) & (y < 18) & (x >= 8 + k) & (x < 16 + k)
    rgb = np.stack([x * 6, y * 8, np.full_like(x, 60)], axis=-1).astype(np.uint8)
    rgb[inside] = (230, 200, 40)
    depth = np.where(inside, 2.0 + 0.05 * y, np.nan).astype(np.float32)
    normals = np.zeros((H, W, 3), np.float32)
    normals[..., 2] = -1.0
    flow = np.zeros((H, W, 2), np.float32)
    flow[inside, 0] = 1.0
    return {"rgb": rgb, "depth": depth, "normals": normals, "mask": inside.astype(np.float32),
            "flow_fwd": flow}


def _header(stamp: int, frame_id: str = "camera_optical"):
    return T["std_msgs/msg/Header"](stamp=T["builtin_interfaces/msg/Time"](sec=stamp // 10**9,
                                                                           nanosec=stamp % 10**9),
                                    frame_id=frame_id)


def _image(header, array: np.ndarray, encoding: str, truncate: bool = False):
    data = np.ascontiguousarray(array).reshape(-1).view(np.uint8)
    step = data.size // array.shape[0]
    return T["sensor_msgs/msg/Image"](header=header, height=array.shape[0], width=array.shape[1],
                                      encoding=encoding,
                                      is_bigendian=0, step=step,
                                      data=data[: data.size // 2] if truncate else data)


def _camera_info(header):
    k = np.array([[30.0, 0, W / 2], [0, 30.0, H / 2], [0, 0, 1]])
    roi = T["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0,
                                                do_rectify=False)
    return T["sensor_msgs/msg/CameraInfo"](
        header=header, height=H, width=W, distortion_model="plumb_bob", d=np.zeros(5),
        k=k.reshape(-1),
        r=np.eye(3).reshape(-1), p=np.hstack([k, np.zeros((3, 1))]).reshape(-1), binning_x=0,
        binning_y=0, roi=roi)


def write_bag(path, frames: int = 5, storage: str = "sqlite3", compressed: bool = False,
              corrupt=None,
              frame_ids=None) -> list[tuple[int, int]]:
    """Write the sequence as a rosbag2 and return (bag time, header stamp) of every image.

    Per frame: image (first), camera_info and ground truth at the same bag time. ``corrupt``:
    {frame: "truncated" | "garbage"}.
    """
    corrupt = corrupt or {}
    plugin = {"sqlite3": StoragePlugin.SQLITE3, "mcap": StoragePlugin.MCAP}[storage]
    image_type = "sensor_msgs/msg/CompressedImage" if compressed else "sensor_msgs/msg/Image"
    times = []
    with Writer(path, version=9, storage_plugin=plugin) as writer:
        conns = {IMAGE_TOPIC: writer.add_connection(IMAGE_TOPIC, image_type, typestore=STORE),
                 INFO_TOPIC: writer.add_connection(INFO_TOPIC, "sensor_msgs/msg/CameraInfo",
                                                   typestore=STORE)}
        for kind in ("depth", "normals", "mask", "flow_fwd"):
            conns[kind] = writer.add_connection(f"/ground_truth/{kind}", "sensor_msgs/msg/Image",
                                                typestore=STORE)
        for k in range(frames):
            f = _frame(k)
            stamp = START_NS + k * PERIOD_NS
            bag_time = stamp + RECORD_DELAY_NS
            header = _header(stamp, frame_ids[k] if frame_ids else "camera_optical")
            if corrupt.get(k) == "garbage":
                raw = b"\x00\x01\x00\x00\xff\xff\xff\x7fnot a message"
            elif compressed:
                png = cv2.imencode(".png",
                                   cv2.cvtColor(f["rgb"], cv2.COLOR_RGB2BGR))[1].reshape(-1)
                msg = T["sensor_msgs/msg/CompressedImage"](header=header, format="png", data=png)
                raw = STORE.serialize_cdr(msg, image_type)
            else:
                msg = _image(header, f["rgb"], "rgb8", truncate=corrupt.get(k) == "truncated")
                raw = STORE.serialize_cdr(msg, image_type)
            writer.write(conns[IMAGE_TOPIC], bag_time, raw)
            writer.write(conns[INFO_TOPIC], bag_time,
                         STORE.serialize_cdr(_camera_info(header), "sensor_msgs/msg/CameraInfo"))
            for kind in ("depth", "normals", "mask", "flow_fwd"):
                encoding = f"32FC{1 if f[kind].ndim == 2 else f[kind].shape[2]}"
                writer.write(conns[kind], bag_time,
                             STORE.serialize_cdr(_image(header, f[kind], encoding),
                                                 "sensor_msgs/msg/Image"))
            times.append((bag_time, stamp))
    return times


def read_bag(path) -> dict[str, list[tuple[int, object]]]:
    out: dict[str, list[tuple[int, object]]] = {}
    with Reader(path) as reader:
        for conn, bag_time, raw in reader.messages():
            out.setdefault(conn.topic,
                           []).append((bag_time, STORE.deserialize_cdr(raw, conn.msgtype)))
    return out


def run_bag(inp, out, checkpoint, *extra: str) -> int:
    return main(["bag", str(inp), str(out), "--image-topic", IMAGE_TOPIC, "--checkpoint",
                 checkpoint, *extra])


def _stamp(msg) -> int:
    return msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec


def _float_image(msg) -> np.ndarray:
    return decode_float_image(msg, int(msg.encoding[-1]), "test")


# --- end to end ----------------------------------------------------------------------------------


@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
def test_output_bag_has_the_node_topics_encodings_and_input_stamps(tmp_path, checkpoint, storage):
    times = write_bag(tmp_path / "in", frames=5, storage=storage)
    rc = run_bag(tmp_path / "in", tmp_path / "out", checkpoint, "--camera-info-topic", INFO_TOPIC,
                 "--storage", storage, "--metrics", str(tmp_path / "m.json"))
    assert rc == 0
    assert list((tmp_path / "out").glob("*.mcap" if storage == "mcap" else "*.db3"))
    topics = read_bag(tmp_path / "out")
    assert set(topics) == {f"/hcdp/{t}" for t in NODE_TOPICS}
    for topic, messages in topics.items():
        # camera_info is stored after the image at the same bag time and still reaches frame 0
        assert [(bag_time, _stamp(msg)) for bag_time, msg in messages] == times, topic
        assert all(msg.header.frame_id == "camera_optical" for _, msg in messages)
    for name, encoding in ENCODINGS.items():
        assert {msg.encoding for _, msg in topics[f"/hcdp/{name}"]} == {encoding}
        assert {(msg.height, msg.width) for _, msg in topics[f"/hcdp/{name}"]} == {(H, W)}
    depth = _float_image(topics["/hcdp/relative_depth"][0][1])
    mask = _float_image(topics["/hcdp/mask"][0][1])
    person = mask > 0.5  # depth is NaN off the person by default (OutputOptions.mask_outputs)
    assert np.isfinite(depth[person]).all() and np.isnan(depth[~person]).all()
    assert (depth[person] >= 0).all() and ((mask >= 0) & (mask <= 1)).all()
    cloud = topics["/hcdp/points"][0][1]
    assert [f.name for f in cloud.fields] == ["x", "y", "z", "rgb"] and cloud.height == 1
    assert topics["/hcdp/camera_info"][0][1].k[0] == 30.0

    report = json.loads((tmp_path / "m.json").read_text())
    counts = report["counts"]
    assert (counts["frames_read"], counts["frames_written"], counts["frames_skipped"],
            counts["resets"]) == (5, 5, 0, 1)
    assert counts["messages_written"] == {f"/hcdp/{t}": 5 for t in NODE_TOPICS}
    metrics = report["metrics"]
    assert (metrics["frames_evaluated"], metrics["pairs_evaluated"]) == (5, 4)
    sections = {"dis": metrics["temporal"]["opencv_dis_flow"],
                "gt": metrics["temporal"]["ground_truth_flow"],
                "accuracy": metrics["accuracy"]}
    assert set(sections["dis"]["mean"]) == set(sections["gt"]["mean"]) == {"OPW", "TC-RMSE",
                                                                           "TC-Mean", "TC-Abs"}
    assert {"AbsRel", "RMSE", "AngleMean", "IoU", "SAD", "MSE",
            "dtSSD"} <= set(sections["accuracy"]["mean"])
    for name, section in sections.items():
        assert all(v is not None and math.isfinite(v) for v in section["mean"].values()), name
    assert sections["accuracy"]["count"]["AbsRel"] == 5 and sections["dis"]["count"]["OPW"] == 4
    assert report["model"]["checkpoint_sha256"] and report["timing"]["inference_ms_mean"] > 0


def test_metrics_score_the_same_weights_at_window_1_per_frame_and_ema_beside_the_model(
        tmp_path, checkpoint):
    write_bag(tmp_path / "in", frames=5)
    assert run_bag(tmp_path / "in", tmp_path / "out", checkpoint, "--window", "4",
                   "--metrics", str(tmp_path / "m.json")) == 0
    report = json.loads((tmp_path / "m.json").read_text())
    model, baselines = report["metrics"], report["metrics_baselines"]
    assert list(baselines) == ["window_1", "per_frame", "per_frame_ema"]
    for name, section in baselines.items():
        assert (section["frames_evaluated"], section["pairs_evaluated"]) == (5, 4), name
        assert set(section["temporal"]["ground_truth_flow"]["mean"]) == {"OPW", "TC-RMSE",
                                                                         "TC-Mean", "TC-Abs"}
    assert baselines["per_frame_ema"]["smoothing_alpha"] == 0.5
    opw = {name: s["temporal"]["opencv_dis_flow"]["mean"]["OPW"] for name, s in baselines.items()}
    # the micro model's temporal blocks are active: the past changes its output, smoothing changes
    # more
    assert model["temporal"]["opencv_dis_flow"]["mean"]["OPW"] != opw["window_1"]
    assert opw["per_frame"] != opw["per_frame_ema"]
    assert run_bag(tmp_path / "in", tmp_path / "out2", checkpoint, "--no-baselines",
                   "--metrics", str(tmp_path / "m2.json")) == 0
    assert "metrics_baselines" not in json.loads((tmp_path / "m2.json").read_text())


def test_raw_maps_writes_depth_and_normals_outside_the_person_too(tmp_path, checkpoint):
    write_bag(tmp_path / "in", frames=2)
    assert run_bag(tmp_path / "in", tmp_path / "masked", checkpoint, "--no-viz") == 0
    assert run_bag(tmp_path / "in", tmp_path / "raw", checkpoint, "--no-viz", "--raw-maps") == 0
    masked = _float_image(read_bag(tmp_path / "masked")["/hcdp/relative_depth"][0][1])
    raw = _float_image(read_bag(tmp_path / "raw")["/hcdp/relative_depth"][0][1])
    assert np.isnan(masked).any() and np.isfinite(raw).all()
    person = np.isfinite(masked)
    np.testing.assert_array_equal(raw[person], masked[person])


def test_compressed_input_gives_the_raw_input_predictions_and_no_viz_drops_viz_topics(tmp_path,
                                                                                      checkpoint):
    write_bag(tmp_path / "raw", frames=3)
    write_bag(tmp_path / "png", frames=3, compressed=True)
    assert run_bag(tmp_path / "raw", tmp_path / "out_raw", checkpoint, "--no-viz") == 0
    assert run_bag(tmp_path / "png", tmp_path / "out_png", checkpoint, "--no-viz", "--namespace",
                   "robot/hcdp") == 0
    raw, png = read_bag(tmp_path / "out_raw"), read_bag(tmp_path / "out_png")
    assert set(png) == {f"/robot/hcdp/{t}"
                        for t in ("relative_depth", "normals", "mask", "mask/binary")}
    assert set(raw) == {f"/hcdp/{t}" for t in ("relative_depth", "normals", "mask", "mask/binary")}
    for (_, a), (_, b) in zip(raw["/hcdp/relative_depth"], png["/robot/hcdp/relative_depth"],
                              strict=True):
        np.testing.assert_allclose(_float_image(a), _float_image(b), atol=1e-5)  # PNG is lossless


def test_zstd_output_holds_the_same_messages_in_a_smaller_bag(tmp_path, checkpoint):
    write_bag(tmp_path / "in", frames=3)
    assert run_bag(tmp_path / "in", tmp_path / "plain", checkpoint) == 0
    assert run_bag(tmp_path / "in", tmp_path / "zstd", checkpoint, "--compression", "zstd") == 0
    plain, packed = read_bag(tmp_path / "plain"), read_bag(tmp_path / "zstd")
    assert set(plain) == set(packed)
    for topic in plain:
        for (ta, a), (tb, b) in zip(plain[topic], packed[topic], strict=True):
            assert ta == tb and _stamp(a) == _stamp(b) and bytes(a.data) == bytes(b.data)
    size = {name: sum(f.stat().st_size for f in (tmp_path / name).iterdir())
            for name in ("plain", "zstd")}
    assert size["zstd"] < size["plain"]


def test_the_closing_line_prints_the_bag_size_and_the_size_before_compression(
        tmp_path, checkpoint, capsys):
    write_bag(tmp_path / "in", frames=3)
    assert run_bag(tmp_path / "in", tmp_path / "plain", checkpoint, "--metrics",
                   str(tmp_path / "m.json")) == 0
    plain = json.loads((tmp_path / "m.json").read_text())["output"]
    assert run_bag(tmp_path / "in", tmp_path / "zstd", checkpoint, "--compression", "zstd",
                   "--metrics", str(tmp_path / "m.json"), "--overwrite") == 0
    packed = json.loads((tmp_path / "m.json").read_text())["output"]
    on_disk = sum(f.stat().st_size for f in (tmp_path / "zstd").iterdir())
    assert packed["bag_bytes"] == on_disk < plain["bag_bytes"]
    assert packed["message_bytes"] == plain["message_bytes"]  # the same messages, compressed
    line = capsys.readouterr().out.strip().splitlines()[-1]
    before = packed["message_bytes"] / 1e6
    assert f"({on_disk / 1e6:.1f} MB for {before:.1f} MB of messages before compression;" in line


def test_corrupt_frames_are_skipped_counted_and_break_the_metric_pairs(tmp_path, checkpoint,
                                                                       capsys):
    times = write_bag(tmp_path / "in", frames=6, corrupt={2: "truncated", 4: "garbage"})
    assert run_bag(tmp_path / "in", tmp_path / "out", checkpoint, "--metrics",
                   str(tmp_path / "m.json")) == 0
    topics = read_bag(tmp_path / "out")
    good = [times[k] for k in (0, 1, 3, 5)]
    assert [(t, _stamp(m)) for t, m in topics["/hcdp/relative_depth"]] == good
    report = json.loads((tmp_path / "m.json").read_text())
    counts = report["counts"]
    assert (counts["frames_read"], counts["frames_written"], counts["frames_skipped"]) == (6, 4, 2)
    assert counts["skipped_by_cause"] == {"size_mismatch": 1, "malformed_message": 1}
    # only (0, 1) is a pair of consecutive input frames; 3 and 5 are scored alone
    assert (report["metrics"]["pairs_evaluated"], report["metrics"]["frames_evaluated"]) == (1, 4)
    err = capsys.readouterr().err
    assert "truncated" in err and "cannot deserialize" in err and IMAGE_TOPIC in err


def test_frame_id_change_resets_the_cache_and_starts_a_new_metric_segment(tmp_path, checkpoint):
    write_bag(tmp_path / "in", frames=4, frame_ids=["a", "a", "b", "b"])
    assert run_bag(tmp_path / "in", tmp_path / "out", checkpoint, "--metrics",
                   str(tmp_path / "m.json")) == 0
    report = json.loads((tmp_path / "m.json").read_text())
    assert report["counts"]["resets"] == 2
    assert [r["frame"] for r in report["counts"]["reset_log"]] == [0, 2]
    assert "frame_id changed" in report["counts"]["reset_log"][1]["reason"]
    assert (report["metrics"]["pairs_evaluated"], report["metrics"]["frames_evaluated"]) == (2, 4)


def test_video_has_one_side_by_side_frame_per_input_and_sheet_has_frames_plus_slice(tmp_path,
                                                                                    checkpoint):
    write_bag(tmp_path / "in", frames=5)
    video, sheet = tmp_path / "pics" / "v.mp4", tmp_path / "pics" / "s.png"
    assert run_bag(tmp_path / "in", tmp_path / "out", checkpoint, "--video", str(video), "--sheet",
                   str(sheet)) == 0
    capture = cv2.VideoCapture(str(video))
    assert capture.get(cv2.CAP_PROP_FRAME_COUNT) == 5
    assert (capture.get(cv2.CAP_PROP_FRAME_WIDTH),
            capture.get(cv2.CAP_PROP_FRAME_HEIGHT)) == (4 * W, H)
    capture.release()
    image = cv2.imread(str(sheet))
    label_strip = max(18, H // 12)  # visualize.contact_sheet's header
    assert image.shape == (label_strip + 5 * H, 4 * W, 3)  # 4 frames + the x-t slice, 4 columns
    # the x-t slice's input column: the box's middle row moves right by 1 px per frame, time
    # running down
    slice_rgb = cv2.cvtColor(image[label_strip + 4 * H:, :W], cv2.COLOR_BGR2RGB)
    box = np.all(np.abs(slice_rgb.astype(int) - (230, 200, 40)) < 30, axis=-1)
    starts = [int(np.argmax(row)) for row in box[H // 2:] if row.any()]
    assert starts and starts[-1] > starts[0]


def test_onnxruntime_backend_runs_end_to_end(tmp_path, checkpoint, monkeypatch):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from hcdp_model.backends.base import BACKENDS
    if "onnxruntime" not in BACKENDS:
        pytest.skip("hcdp_model.backends has no onnxruntime backend")
    # the exported graph is cached here
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    write_bag(tmp_path / "in", frames=3)
    assert run_bag(tmp_path / "in", tmp_path / "ort", checkpoint, "--backend", "onnxruntime",
                   "--no-viz") == 0
    assert run_bag(tmp_path / "in", tmp_path / "torch", checkpoint, "--no-viz") == 0
    ort, eager = read_bag(tmp_path / "ort"), read_bag(tmp_path / "torch")
    for (_, a), (_, b) in zip(ort["/hcdp/relative_depth"], eager["/hcdp/relative_depth"],
                              strict=True):
        np.testing.assert_allclose(_float_image(a), _float_image(b), atol=1e-3)


# --- clear errors --------------------------------------------------------------------------------


def test_missing_topic_error_lists_the_topics_of_the_bag(tmp_path, checkpoint, capsys):
    write_bag(tmp_path / "in", frames=1)
    rc = main(["bag", str(tmp_path / "in"), str(tmp_path / "out"), "--image-topic", "/camera/nope",
               "--checkpoint", checkpoint])
    err = capsys.readouterr().err
    assert rc == 2 and not (tmp_path / "out").exists()
    assert "/camera/nope is not in" in err
    assert f"{IMAGE_TOPIC} (sensor_msgs/msg/Image, 1 messages)" in err
    assert f"{INFO_TOPIC} (sensor_msgs/msg/CameraInfo, 1 messages)" in err


def test_camera_info_topic_of_the_wrong_type_is_refused(tmp_path, checkpoint, capsys):
    write_bag(tmp_path / "in", frames=1)
    rc = run_bag(tmp_path / "in", tmp_path / "out", checkpoint, "--camera-info-topic",
                 "/ground_truth/depth")
    err = capsys.readouterr().err
    assert rc == 2 and ("expected sensor_msgs/msg/CameraInfo on /ground_truth/depth, got "
                        "sensor_msgs/msg/Image") in err


def test_existing_output_path_is_refused_and_left_alone(tmp_path, checkpoint, capsys):
    write_bag(tmp_path / "in", frames=1)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    assert run_bag(tmp_path / "in", tmp_path / "out", checkpoint) == 2
    assert "exists; refusing to overwrite" in capsys.readouterr().err
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["keep.txt"]


@pytest.mark.parametrize("via", ["folder", "db3_file"])
def test_an_output_inside_the_input_bag_is_refused_even_with_overwrite(tmp_path, checkpoint,
                                                                       capsys, via):
    write_bag(tmp_path / "in", frames=1)
    before = {p.name: p.read_bytes() for p in (tmp_path / "in").iterdir()}
    source = tmp_path / "in" if via == "folder" else next((tmp_path / "in").glob("*.db3"))
    for extra in ([], ["--overwrite"]):
        rc = run_bag(source, tmp_path / "out", checkpoint, "--metrics",
                     str(tmp_path / "in" / "metadata.yaml"), *extra)
        assert rc == 2 and "inside the input bag" in capsys.readouterr().err
    assert run_bag(source, tmp_path / "in" / "nested", checkpoint, "--overwrite") == 2
    assert "overlap the input bag" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in (tmp_path / "in").iterdir()} == before
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("flag, name", [("--metrics", "m.json"), ("--sheet", "s.png"),
                                        ("--video", "v.mp4")])
def test_an_existing_output_file_is_refused_before_any_work_unless_overwrite(
        tmp_path, checkpoint, capsys, flag, name):
    write_bag(tmp_path / "in", frames=2)
    target = tmp_path / name
    target.write_text("mine")
    assert run_bag(tmp_path / "in", tmp_path / "out", checkpoint, flag, str(target)) == 2
    assert f"{flag} {target} exists; refusing to overwrite" in capsys.readouterr().err
    assert target.read_text() == "mine" and not (tmp_path / "out").exists()
    assert run_bag(tmp_path / "in", tmp_path / "out", checkpoint, flag, str(target),
                   "--overwrite") == 0
    assert target.read_bytes() != b"mine"


def test_overwrite_replaces_an_existing_output_bag_but_never_a_folder_that_is_not_one(
        tmp_path, checkpoint, capsys):
    write_bag(tmp_path / "in", frames=2)
    assert run_bag(tmp_path / "in", tmp_path / "out", checkpoint) == 0
    assert run_bag(tmp_path / "in", tmp_path / "out", checkpoint, "--overwrite") == 0
    assert len(read_bag(tmp_path / "out")["/hcdp/relative_depth"]) == 2
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "keep.txt").write_text("mine")
    assert run_bag(tmp_path / "in", tmp_path / "mine", checkpoint, "--overwrite") == 2
    assert "not a rosbag2 folder" in capsys.readouterr().err
    assert [p.name for p in (tmp_path / "mine").iterdir()] == ["keep.txt"]


@pytest.mark.parametrize("flag, name, expected", [
    ("--sheet", "sheet.txt", "expected an image file OpenCV writes"),
    ("--sheet", "sheet", "expected an image file OpenCV writes"),
    ("--video", "video.avi", "expected .mp4, got .avi"),
    ("--metrics", "a_file/m.json", "is a file"),
])
def test_a_bad_output_path_is_refused_before_any_work(tmp_path, checkpoint, capsys, flag, name,
                                                      expected):
    write_bag(tmp_path / "in", frames=2)
    (tmp_path / "a_file").write_text("not a folder")
    assert run_bag(tmp_path / "in", tmp_path / "out", checkpoint, flag, str(tmp_path / name)) == 2
    err = capsys.readouterr().err
    assert expected in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()  # refused before the bag was read or the model loaded


def test_threads_sets_the_torch_thread_count(tmp_path, checkpoint, capsys):
    write_bag(tmp_path / "in", frames=1)
    previous = torch.get_num_threads()
    try:
        assert run_bag(tmp_path / "in", tmp_path / "out", checkpoint, "--threads", "1") == 0
        assert torch.get_num_threads() == 1 and "on 1 thread(s)" in capsys.readouterr().out
    finally:
        torch.set_num_threads(previous)
    with pytest.raises(SystemExit):
        run_bag(tmp_path / "in", tmp_path / "out2", checkpoint, "--threads", "0")


@pytest.mark.parametrize("make", ["missing", "text_file", "empty_folder"])
def test_unreadable_input_bag_is_reported(tmp_path, checkpoint, capsys, make):
    path = tmp_path / "input"
    if make == "text_file":
        path = tmp_path / "input.txt"
        path.write_text("not a bag")
    elif make == "empty_folder":
        path.mkdir()
    assert run_bag(path, tmp_path / "out", checkpoint) == 2
    err = capsys.readouterr().err
    assert ("does not exist" if make == "missing" else "cannot read") in err and str(path) in err
    assert not (tmp_path / "out").exists()


def test_unsupported_storage_is_refused_by_the_parser(tmp_path, checkpoint, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_bag(tmp_path / "in", tmp_path / "out", checkpoint, "--storage", "rosbag1")
    assert exit_info.value.code == 2 and "invalid choice: 'rosbag1'" in capsys.readouterr().err


def test_bad_checkpoint_is_reported_not_raised(tmp_path, capsys):
    write_bag(tmp_path / "in", frames=1)
    assert run_bag(tmp_path / "in", tmp_path / "out", str(tmp_path / "no_model")) == 2
    assert "cannot load model" in capsys.readouterr().err and not (tmp_path / "out").exists()


# --- pieces --------------------------------------------------------------------------------------


class _Conn:

    def __init__(self, topic):
        self.topic = topic


def test_synchronised_moves_each_image_after_the_messages_of_its_bag_time():
    img, info, gt = _Conn("/img"), _Conn("/info"), _Conn("/gt")
    stream = [(img, 1, "i1"), (info, 1, "c1"), (gt, 1, "g1"), (img, 2, "i2"), (img, 2, "i2b"),
              (info, 3, "c3"),
              (img, 4, "i4")]
    assert [raw for _, _, raw in synchronised(stream, "/img")] == ["c1", "g1", "i1", "i2", "i2b",
                                                                   "c3", "i4"]


def test_synchronised_holds_at_most_one_image_when_every_message_shares_one_timestamp():
    img, info = _Conn("/img"), _Conn("/info")
    pulled = []

    def stream():
        for k in range(100_000):  # one bag time for all: the old code held every image
            pulled.append(k)
            yield (img, 7, f"i{k}") if k % 2 == 0 else (info, 7, f"c{k}")

    out = synchronised(stream(), "/img")
    assert [next(out)[2] for _ in range(4)] == ["c1", "i0", "c3", "i2"]
    assert len(pulled) <= 5


def test_the_bundled_sample_bag_has_a_rosbag2_name_and_opens_with_the_highlevel_reader():
    root = Path(__file__).resolve().parents[2]
    bags = sorted(p.parent for p in (root / "data").rglob("metadata.yaml"))
    assert bags and not [b for b in bags if b.suffix == ".bag"]  # *.bag means ROS 1
    from rosbags.highlevel import AnyReader

    with AnyReader([root / "data" / "sample" / "sample_bag"]) as reader:
        assert reader.is2
        images = [c for c in reader.connections if c.topic == "/camera/color/image_raw"]
        assert sum(c.msgcount for c in images) == 48
    demo = (root / "scripts" / "demo.sh").read_text()
    assert "data/sample/sample_bag " in demo and ".bag" not in demo


def test_decode_float_image_honours_row_padding_and_byte_order():
    values = np.arange(2 * 3 * 2, dtype=np.float32).reshape(2, 3, 2)
    big = values.astype(">f4").reshape(2, -1).view(np.uint8)
    padded = np.zeros((2, big.shape[1] + 4), np.uint8)
    padded[:, : big.shape[1]] = big
    msg = T["sensor_msgs/msg/Image"](header=_header(0), height=2, width=3, encoding="32FC2",
                                     is_bigendian=1,
                                     step=padded.shape[1], data=padded.reshape(-1))
    np.testing.assert_array_equal(decode_float_image(msg, 2, "/gt"), values)
    msg.data = msg.data[:-5]
    with pytest.raises(SizeMismatch, match="on /gt"):
        decode_float_image(msg, 2, "/gt")


def test_the_sheet_s_x_t_slice_draws_normals_inside_the_mask_only_as_published():
    from hcdp_ros.bag_pictures import ContactSheet, FrameView

    h, w = 16, 12
    mask = np.zeros((h, w), np.float32)
    mask[:, : w // 2] = 1.0  # the person: the left half
    normals = np.broadcast_to(np.array([0.0, 0.0, -1.0], np.float32), (h, w, 3)).copy()
    rgb = np.full((h, w, 3), 90, np.uint8)
    sheet = ContactSheet(total_frames=2)
    for index in range(2):
        sheet.add(FrameView(index, float(index), rgb, np.tile(np.arange(w, dtype=np.float32),
                                                              (h, 1)),
                            normals, mask, (rgb, rgb, rgb, rgb)))
    image = sheet.image()
    slice_normals = image[-h:, 2 * w:3 * w]  # last row of tiles, the normals column
    assert (slice_normals[:, w // 2 + 1:] == 0).all()  # outside the mask: black
    assert (slice_normals[:, : w // 2 - 1] == (128, 128, 0)).all()  # (0, 0, -1) inside
