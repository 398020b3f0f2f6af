"""The names the node creates: inputs and outputs never share a name.

This holds even after the launch file's remappings (issue 14 item 1: the output camera_info went
out on the camera's topic).
"""
import ast
from pathlib import Path

from hcdp_ros.messages import output_topic, TOPICS
from hcdp_ros.topics import expand, INPUTS, launch_remappings, node_names, remap, RESET_SERVICE
import pytest

ROOT = Path(__file__).resolve().parents[2]
CAMERA = ("/camera/color/image_raw", "/camera/color/camera_info", "/camera/depth/image_raw")


@pytest.mark.parametrize("compressed", [False, True])
@pytest.mark.parametrize("metric", [False, True])
def test_after_the_launch_remappings_no_output_lands_on_an_input(compressed, metric):
    names = node_names(compressed, metric)
    rules = launch_remappings(*CAMERA)
    subs = {remap(n, "hcdp", "hcdp", rules) for n in names.subscriptions}
    pubs = {remap(n, "hcdp", "hcdp", rules) for n in names.publishers}
    assert subs.isdisjoint(pubs)
    assert pubs == {output_topic(k) for k in TOPICS if k != "depth" or metric}
    expected_image = CAMERA[0] + "/compressed" if compressed else CAMERA[0]
    assert subs == {expected_image, CAMERA[1]} | ({CAMERA[2]} if metric else set())
    assert "/hcdp/camera_info" in pubs and CAMERA[1] not in pubs


def test_the_old_shared_name_would_have_been_remapped_for_both():
    # guards the test above: a publisher named like the remapped input is caught by the rule
    assert remap("camera_info", "hcdp", "hcdp", [("camera_info", CAMERA[1])]) == CAMERA[1]


def test_name_expansion_follows_rcl():
    assert expand("mask/binary", "hcdp", "hcdp") == "/hcdp/mask/binary"
    assert expand("/abs", "hcdp", "hcdp") == "/abs"
    assert expand("~/reset", "/robot/hcdp", "hcdp") == "/robot/hcdp/hcdp/reset"
    assert expand("points", "", "hcdp") == "/points"
    assert remap("input/image", "ns", "n", [("/ns/input/image", "/cam")]) == "/cam"


def test_the_node_offers_the_reset_service():
    assert node_names(False, False).services == {RESET_SERVICE: "std_srvs/srv/Trigger"}
    assert expand(RESET_SERVICE, "hcdp", "hcdp") == "/hcdp/hcdp/reset"


def _string_constants(path: Path) -> set[str]:
    return {n.value for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.Constant)
            and isinstance(n.value, str)}


def test_node_and_launch_file_take_their_names_from_this_module():
    # a literal input name in node.py or the launch file would bypass the checks above
    for path in (ROOT / "hcdp_ros" / "node.py", ROOT / "launch" / "hcdp.launch.py"):
        assert not _string_constants(path) & set(INPUTS.values()), path
