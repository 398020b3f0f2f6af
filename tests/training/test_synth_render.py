"""The renderer's ground truth on analytic scenes (no anny).

Planar depth, normals, exact flow, soft mask.
"""
from hcdp_training.synth.appearance import material, texture_layers
from hcdp_training.synth.camera import intrinsics
from hcdp_training.synth.render import FrameGeometry, Lighting, Renderer
import numpy as np
import pytest

W, H = 64, 48


@pytest.fixture(scope="module")
def renderer():
    r = Renderer(W, H, strides=2, textures=texture_layers())
    yield r
    r.release()


def _render(renderer, cur, nxt=None, prv=None, normal=None, facing=True):
    """Render a quad; its winding is chosen so that its outward side faces the camera (or not)."""
    faces = np.array([[0, 1, 2], [0, 2, 3]], np.int32)
    outward = np.cross(cur[1] - cur[0], cur[2] - cur[0])
    if (outward @ cur[0] < 0) != facing:
        faces = faces[:, ::-1].copy()
    n = len(cur)
    renderer.set_scene(faces, np.zeros((n, 3), np.float32), np.zeros(n, np.int32),
                       material(np.full(3, 0.5))[None],
                       np.full(3, -1.0), np.full(3, 1.0), np.full((8, 8, 3), 40, np.uint8))
    if normal is None:
        normal = np.tile(np.cross(cur[1] - cur[0], cur[2] - cur[0]), (n, 1))
        normal /= np.linalg.norm(normal, axis=1, keepdims=True)
    geometry = FrameGeometry(cur=cur, normals=normal, nxt=[nxt, None], prv=[prv, None])
    light = Lighting(np.array([0, 0, -1.0]), np.ones(3), np.array([0, 0, -1.0]), np.zeros(3),
                     np.full(3, 0.2))
    return renderer.render(geometry, K, light, (0.0, 0.0, 1.0, 1.0))


K = intrinsics(W, H, 60.0)


def _pixel_rays() -> np.ndarray:
    v, u = np.mgrid[0:H, 0:W].astype(np.float64)
    return np.stack([u, v, np.ones_like(u)], -1) @ np.linalg.inv(K).T  # [H,W,3], z = 1


def test_depth_of_a_tilted_plane_is_the_analytic_planar_depth(renderer):
    # Plane through (0,0,3) with normal facing the camera, tilted about x: n . X = n . X0.
    n = np.array([0.0, 0.4, -1.0]) / np.linalg.norm([0.0, 0.4, -1.0])
    x0 = np.array([0.0, 0.0, 3.0])
    a, b = np.array([1.0, 0, 0]), np.cross(n, [1.0, 0, 0])
    cur = np.stack([x0 + 5 * (sa * a + sb * b) for sa, sb in ((-1, -1), (1, -1), (1, 1), (-1, 1))])
    out = _render(renderer, cur)
    rays = _pixel_rays()
    expected = (n @ x0) / (rays @ n)  # planar depth z along each pixel's ray
    assert np.isfinite(out.depth).all()
    np.testing.assert_allclose(out.depth, expected, rtol=1e-4)


def test_plane_normals_are_unit_and_face_the_camera(renderer):
    cur = np.array([[-6, -6, 2.0], [6, -6, 14.0], [6, 6, 14.0], [-6, 6, 2.0]])
    # the geometric normal of this winding points away
    facing = np.array([-1.0, 0.0, 1.0]) / np.sqrt(2)
    out = _render(renderer, cur, normal=np.tile(facing, (4, 1)))
    covered = np.isfinite(out.depth)
    assert covered.mean() > 0.5
    np.testing.assert_allclose(out.normal[covered], np.broadcast_to(-facing, (covered.sum(), 3)),
                               atol=1e-5)


def test_flow_of_a_translated_plane_is_the_exact_reprojection(renderer):
    cur = np.array([[-4, -4, 3.0], [4, -4, 4.0], [4, 4, 4.0], [-4, 4, 3.0]])
    shift = np.array([0.1, -0.05, 0.3])
    out = _render(renderer, cur, nxt=cur + shift, prv=cur - shift)
    rays = _pixel_rays()
    # Surface point seen at each pixel, moved rigidly, projected.
    normal = np.cross(cur[1] - cur[0], cur[2] - cur[0])
    points = rays * ((normal @ cur[0]) / (rays @ normal))[..., None]
    v, u = np.mgrid[0:H, 0:W].astype(np.float64)
    for sign, flow in ((1, out.flow_fwd[0]), (-1, out.flow_bwd[0])):
        moved = (points + sign * shift) @ K.T
        expected = np.stack([moved[..., 0] / moved[..., 2] - u, moved[..., 1] / moved[..., 2] - v],
                            -1)
        covered = np.isfinite(out.depth)
        assert covered.all()
        np.testing.assert_allclose(flow, expected, atol=2e-3)
    # stride 2 has no neighbour: zeros
    assert not out.flow_fwd[1].any() and not out.flow_bwd[1].any()


def test_a_renderer_with_one_flow_stride_renders_its_flow():
    single = Renderer(W, H, strides=1, textures=texture_layers())
    try:
        cur = np.array([[-4, -4, 3.0], [4, -4, 3.0], [4, 4, 3.0], [-4, 4, 3.0]])
        faces = np.array([[0, 2, 1], [0, 3, 2]], np.int32)
        single.set_scene(faces, np.zeros((4, 3), np.float32), np.zeros(4, np.int32),
                         material(np.full(3, 0.5))[None], np.full(3, -1.0), np.full(3, 1.0),
                         np.full((8, 8, 3), 40, np.uint8))
        light = Lighting(np.array([0, 0, -1.0]), np.ones(3), np.array([0, 0, -1.0]), np.zeros(3),
                         np.full(3, 0.2))
        geometry = FrameGeometry(cur=cur, normals=np.tile([0, 0, -1.0], (4, 1)),
                                 nxt=[cur + [0.3, 0, 0]], prv=[None])
        out = single.render(geometry, K, light, (0.0, 0.0, 1.0, 1.0))
    finally:
        single.release()
    assert len(out.flow_fwd) == 1 and len(out.flow_bwd) == 1
    # fx * dx / z
    np.testing.assert_allclose(out.flow_fwd[0][..., 0], 0.3 / 3.0 * K[0, 0], atol=2e-3)
    assert not out.flow_bwd[0].any()  # no previous frame: zeros


def test_mask_is_soft_at_the_border_and_depth_is_nan_off_the_surface(renderer):
    cur = np.array([[-0.31, -0.23, 2.0], [0.27, -0.23, 2.0], [0.27, 0.29, 2.0],
                    [-0.31, 0.29, 2.0]])
    out = _render(renderer, cur)
    inside, outside = out.mask > 0.999, out.mask < 0.001
    assert inside.any() and outside.any()
    assert ((out.mask > 0.1) & (out.mask < 0.9)).any()  # partial coverage along the edges
    assert np.isnan(out.depth[outside]).all() and np.isfinite(out.depth[inside]).all()
    assert (out.rgb[outside] == 40).all()  # background shows through where there is no surface


def test_back_faces_are_culled_so_closed_bodies_show_their_outside(renderer):
    cur = np.array([[-4, -4, 3.0], [4, -4, 3.0], [4, 4, 3.0], [-4, 4, 3.0]])
    assert np.isfinite(_render(renderer, cur).depth).all()
    assert np.isnan(_render(renderer, cur, facing=False).depth).all()
