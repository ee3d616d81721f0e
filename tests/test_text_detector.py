"""The network text detector: its spec, tiled prediction, probabilities to boxes, loading, and its training.

What a user checks: the network is made of operations EDDL can run and exports
to ONNX with those only; the detector takes frames of any size without
resizing them and returns boxes inside the frame; a frame cut into tiles gives
the same probabilities as the whole frame (exactly where one tile covers a
pixel, never less where tiles overlap); blobs become the right boxes; only a
2D RGB two-class text model is accepted; and ``deid train`` on a ``task: text``
configuration writes a model the detector loads and runs.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage as ndi
from test_nets_engines import _randomise_batchnorm
from train_configs import write_config as _write_config

from deephealth_deid.engines import file_sha256
from deephealth_deid.errors import ConfigError, ModelCheckError
from deephealth_deid.nets import TEXT_CLASSES, UNetSpec, text_unet_spec
from deephealth_deid.text import NetTextDetector, Region, network_input, regions_from_probabilities
from deephealth_deid.text.detector import load_text_detector
from deephealth_deid.text.network import tile_windows
from deephealth_deid.train import load_config

ROOT = Path(__file__).resolve().parent.parent

#: A text net small enough for a few CPU seconds (stride 4, receptive radius about 20 pixels).
SMALL = text_unet_spec(widths=(4, 8, 16))
#: A text "net" with no spatial context: 1x1 convolutions, one level. Text probability is
#: sigmoid(40 * relu(mean(RGB) - 0.5) - 2): about 0.12 on dark pixels, 1.0 on white ones.
PIXELWISE = UNetSpec(
    ndim=2,
    in_channels=3,
    classes=2,
    widths=(1,),
    convs_per_level=1,
    kernel_size=1,
    norm="none",
    class_names=TEXT_CLASSES,
    name="pixelwise",
)


@pytest.fixture(scope="module")
def torch_engine():
    """The PyTorch engine on the CPU, one thread (skips where torch is not installed)."""
    torch = pytest.importorskip("torch", reason="the PyTorch engine needs torch (pip install torch)")
    from deephealth_deid.engines import get_engine

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield get_engine("torch", device="cpu")
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def pixelwise(torch_engine):
    """The :data:`PIXELWISE` model with its weights set by hand."""
    import torch

    model = torch_engine.build(PIXELWISE, seed=0)
    state = model.state_dict()
    state["enc.0.0.conv.weight"] = torch.full((1, 3, 1, 1), 1.0 / 3.0)
    state["enc.0.0.conv.bias"] = torch.tensor([-0.5])
    state["head.weight"] = torch.tensor([0.0, 40.0]).reshape(2, 1, 1, 1)
    state["head.bias"] = torch.tensor([0.0, -2.0])
    model.load_state_dict(state)
    return model


def _frame(rows: int, cols: int, seed: int = 0) -> np.ndarray:
    """A dark noisy RGB frame with a few white bars ("strings")."""
    rng = np.random.default_rng(seed)
    frame = rng.integers(0, 90, size=(rows, cols, 3)).astype(np.uint8)
    for _ in range(6):
        y, x = int(rng.integers(0, rows - 20)), int(rng.integers(0, cols - 120))
        frame[y : y + int(rng.integers(6, 20)), x : x + int(rng.integers(20, 120))] = 255
    return frame


def _coverage(rows: int, cols: int, tile: int, overlap: int, stride: int) -> np.ndarray:
    """How many tiles cover each pixel (the detector's tiling of the padded frame, cropped back)."""
    from deephealth_deid.nets import padded_shape, padding_for

    (pr, pc), pads = padded_shape((rows, cols), stride), padding_for((rows, cols), stride)
    count = np.zeros((pr, pc), int)
    (tr, ys), (tc, xs) = tile_windows(pr, tile, overlap, stride), tile_windows(pc, tile, overlap, stride)
    for y in ys:
        for x in xs:
            count[y : y + tr, x : x + tc] += 1
    return count[pads[0][0] : pr - pads[0][1], pads[1][0] : pc - pads[1][1]]


# --------------------------------------------------------------------------------------------
# The network


def test_text_spec_is_a_2d_rgb_two_class_unet():
    spec = text_unet_spec()
    assert (spec.ndim, spec.in_channels, spec.classes) == (2, 3, 2)
    assert spec.widths == (16, 32, 48, 64, 64) and spec.convs_per_level == 1
    assert spec.input_stride == 2 and spec.stride == 32
    assert spec.class_names == ("background", "text") and spec.name == "text-unet"
    assert spec.upsample == "nearest"  # the only Resize EDDL's ONNX importer reads
    assert UNetSpec.from_json(spec.to_json()) == spec
    assert text_unet_spec(widths=(4, 8)).stride == 4
    assert text_unet_spec(widths=(4, 8), input_stride=1).stride == 2


def test_text_network_uses_only_eddl_compatible_layers(torch_engine):
    import torch

    model = torch_engine.build(text_unet_spec(), seed=0)
    allowed = (torch.nn.Conv2d, torch.nn.BatchNorm2d, torch.nn.MaxPool2d, torch.nn.Upsample)
    for name, module in model.named_modules():
        if name and not list(module.children()):
            assert isinstance(module, allowed), f"{name}: {type(module).__name__}"
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [m.bias is not None for m in convs].count(True) == 1  # the head only


def test_text_network_exports_to_onnx_with_the_allowed_operators_only(torch_engine, tmp_path):
    onnx = pytest.importorskip("onnx", reason="ONNX export tests need the onnx package (pip install onnx)")
    from deephealth_deid.engines.torch_engine import ONNX_OPS, onnx_problems

    spec = text_unet_spec()
    model = torch_engine.build(spec, seed=0)
    _randomise_batchnorm(model)
    path = tmp_path / "text.onnx"
    torch_engine.export_onnx(model, spec, path)
    proto = onnx.load(str(path))
    ops = {node.op_type for node in proto.graph.node}
    assert ops <= ONNX_OPS and onnx_problems(proto) == []
    resize = [n for n in proto.graph.node if n.op_type == "Resize"]
    assert resize and all(
        a.s == b"nearest" for n in resize for a in n.attribute if a.name == "mode"
    )  # EDDL reads nearest only
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in dims] == ["N", 3, "H", "W"]


# --------------------------------------------------------------------------------------------
# Input, tiles and boxes


def test_network_input_is_the_display_frame_scaled_to_one():
    rgb = np.zeros((5, 7, 3), np.uint8)
    rgb[1, 2] = (255, 0, 51)
    x = network_input(rgb)
    assert x.shape == (3, 5, 7) and x.dtype == np.float32
    assert np.allclose(x[:, 1, 2], (1.0, 0.0, 0.2)) and x.sum() == pytest.approx(1.2)
    grey = np.arange(35, dtype=np.uint8).reshape(5, 7)
    assert np.array_equal(network_input(grey), network_input(np.repeat(grey[..., None], 3, axis=-1)))
    assert rgb[1, 2, 0] == 255  # not modified
    with pytest.raises(ValueError, match="uint8"):
        network_input(np.zeros((5, 7), np.uint16))
    with pytest.raises(ValueError, match="shape"):
        network_input(np.zeros((5, 7, 4), np.uint8))


def test_tile_windows_are_the_fewest_equal_windows_that_cover_the_axis():
    assert tile_windows(304, 512, 64, 8) == (304, [0])
    assert tile_windows(512, 512, 64, 8) == (512, [0])
    # A 2048 frame in 1024 tiles: three windows of 736, not three of 1024 (1.16x the pixels, not 1.5x).
    assert tile_windows(2048, 1024, 64, 8) == (736, [0, 656, 1312])
    for size, tile, overlap, stride in [
        (520, 256, 64, 8),
        (1104, 512, 64, 8),
        (2048, 512, 64, 16),
        (9992, 1024, 72, 8),
    ]:
        length, starts = tile_windows(size, tile, overlap, stride)
        covered = np.zeros(size, int)
        for s in starts:
            covered[s : s + length] += 1
        assert covered.min() >= 1 and length <= tile and starts[0] == 0 and starts[-1] + length == size
        assert all(s % stride == 0 for s in starts) and length % stride == 0
        assert min(a + length - b for a, b in itertools.pairwise(starts)) >= overlap
        # One window fewer could not cover the axis with that overlap.
        assert (len(starts) - 1) * (tile - overlap) + overlap < size
    with pytest.raises(ValueError, match="multiple"):
        tile_windows(1001, 512, 64, 8)
    with pytest.raises(ValueError, match="overlap"):
        tile_windows(1024, 64, 64, 8)


def test_probabilities_become_one_box_per_blob_and_boxes_inside_boxes_are_absorbed():
    p = np.zeros((60, 100), np.float32)
    p[5:12, 10:40] = 0.9  # a string
    p[20:23, 5:8] = 0.8  # a blob of 9 pixels: too small with min_area_px=12
    p[30:34, 60:64] = 0.6  # two squares touching at a corner: one 8-connected blob
    p[34:38, 64:68] = 0.6
    p[40:50, 10:30] = 0.7  # a string with a blob of its own inside its box: absorbed by it
    p[42:48, 13:21] = 0.0
    p[43:47, 15:18] = 1.0
    p[40:44, 80:90] = 0.9  # two boxes side by side, touching but not overlapping: kept apart
    p[40:44, 91:99] = 0.9
    p[55:58, 40:60] = 0.49  # under the threshold
    regions = regions_from_probabilities(p, threshold=0.5, min_area_px=12)
    assert all(isinstance(r, Region) and r.source == "net" and r.frame == 0 for r in regions)
    boxes = {r.box: r.score for r in regions}
    assert set(boxes) == {
        (10, 5, 40, 12),
        (60, 30, 68, 38),
        (10, 40, 30, 50),
        (80, 40, 90, 44),
        (91, 40, 99, 44),
    }
    assert boxes[(10, 5, 40, 12)] == pytest.approx(0.9)
    # The absorbing region's score is the mean probability over the pixels of both blobs.
    ring, dot = 200 - 48, 12
    assert boxes[(10, 40, 30, 50)] == pytest.approx((0.7 * ring + 1.0 * dot) / (ring + dot))
    assert [r.y0 for r in regions] == sorted(r.y0 for r in regions)
    assert regions_from_probabilities(np.zeros((8, 8), np.float32)) == []


def test_crossing_strings_get_boxes_of_their_own_not_one_round_them_all():
    p = np.zeros((200, 200), np.float32)
    p[10:190, 90:102] = 0.9  # a vertical string ...
    p[40:54, 20:180] = 0.9  # ... crossing a horizontal one
    p[120:132, 60:90] = 0.9  # ... and touching another with its end: an L
    p[150:160, 5:60] = 0.9  # a string apart, with a dot inside its box ...
    p[152:156, 20:24] = 0.0
    p[153:155, 21:23] = 0.9  # ... too small to be kept on its own (min_area_px)
    regions = regions_from_probabilities(p, min_area_px=1)
    covered = np.zeros(p.shape, bool)
    for r in regions:
        covered[r.y0 : r.y1, r.x0 : r.x1] = True
    assert covered[p > 0.5].all()
    # The old single box round the crossing blob (x 20..180, y 10..190) would blank 28,800
    # pixels; the strings themselves hold 180 * 12 + 148 * 14 + 30 * 12 = 4,592.
    assert covered[:140].sum() == (p[:140] > 0.5).sum()
    boxes = sorted(r.box for r in regions)
    assert (90, 10, 102, 190) in boxes  # the vertical string whole: it is the longer at the crossing
    assert (20, 40, 90, 54) in boxes and (102, 40, 180, 54) in boxes  # the horizontal one, cut there
    assert (60, 120, 90, 132) in boxes
    assert (5, 150, 60, 160) in boxes and len(boxes) == 5  # the dot absorbed


def test_lines_a_blob_bridges_become_boxes_of_their_own():
    p = np.zeros((80, 120), np.float32)
    p[10:20, 10:110] = 0.9  # two stacked lines ...
    p[22:32, 10:90] = 0.9
    p[20:22, 40:43] = 0.9  # ... touching through a 3-pixel bridge: one blob
    p[40:76, 10:18] = 0.9  # two vertical lines side by side, bridged
    p[40:76, 21:29] = 0.9
    p[60:62, 18:21] = 0.9
    p[45:57, 50:110] = 0.9  # a line with a tall first glyph: never cut into pieces
    p[40:45, 50:58] = 0.9
    regions = regions_from_probabilities(p, min_area_px=1)
    boxes = sorted(r.box for r in regions)
    # Every pixel is in one box; the bridge's rows go to either side of the cut.
    covered = np.zeros(p.shape, bool)
    for x0, y0, x1, y1 in boxes:
        covered[y0:y1, x0:x1] = True
    assert covered[p > 0.5].all()
    assert len(boxes) == 5
    assert (10, 10, 110, 21) in boxes or (10, 10, 110, 20) in boxes  # the upper line, alone
    assert (50, 40, 110, 57) in boxes  # the line and its tall glyph: one box
    # The thickness of each box's lines is measured: the margin follows it.
    thick = {r.box: r.line_px for r in regions}
    assert thick[(50, 40, 110, 57)] in range(12, 18)
    assert all(6 <= t <= 12 for b, t in thick.items() if b != (50, 40, 110, 57))


def test_grow_threshold_boxes_faint_ends_of_a_string_but_no_faint_blob_alone():
    p = np.zeros((40, 100), np.float32)
    p[5:15, 10:40] = 0.9  # a string whose end the network is less sure of
    p[5:15, 40:70] = 0.3
    p[25:35, 10:60] = 0.3  # a faint blob on its own
    assert [r.box for r in regions_from_probabilities(p)] == [(10, 5, 40, 15)]
    assert [r.box for r in regions_from_probabilities(p, grow_threshold=0.25)] == [(10, 5, 70, 15)]
    assert regions_from_probabilities(p, grow_threshold=0.5) == regions_from_probabilities(p)
    with pytest.raises(ValueError, match="grow_threshold"):
        regions_from_probabilities(p, grow_threshold=0.6)


@pytest.mark.parametrize("shape", [(97, 131), (160, 48), (33, 300)])
def test_blobs_found_block_by_block_are_those_of_the_whole_frame(shape):
    """Blobs across block edges, touching only at a block's corner, at the frame's edge: all the same."""
    from deephealth_deid.text.boxes import _BLOCK, _blobs

    rng = np.random.default_rng(sum(shape))
    p = ndi.gaussian_filter(rng.random(shape, dtype=np.float32), 1.5)
    p = np.clip((p - p.mean()) * 12 + 0.1, 0, 1).astype(np.float32)
    b = _BLOCK
    p[b - 2 : b, b - 2 : b] = 0.9  # two blobs meeting only diagonally at a block corner
    p[b : b + 2, b : b + 2] = 0.9
    p[-3:, -5:] = 0.9  # at the frame's last pixels
    p[: 4 * b, 2 * b - 4 : 2 * b] = 0.0  # an L over blocks, and a blob inside its box but blocks apart
    p[: 4 * b, 4 * b - 4 : 7 * b + 4] = 0.0
    p[: 4 * b, 2 * b : 2 * b + 3] = 0.9
    p[4 * b - 3 : 4 * b, 2 * b : 7 * b] = 0.9
    p[4:8, 5 * b + 4 : 5 * b + 8] = 0.9
    for low, high, min_area in [(0.1, 0.2, 1), (0.2, 0.2, 12), (0.05, 0.5, 4)]:
        labels, _ = ndi.label(p >= low, structure=np.ones((3, 3), bool))
        want = []
        for k, sl in enumerate(ndi.find_objects(labels), start=1):
            blob = labels[sl] == k
            if blob.sum() >= min_area and (p[sl][blob] >= high).any():
                want.append((sl[0].start, sl[1].start, blob))
        got = _blobs(p, low, high, min_area)
        assert len(got) == len(want) > 3
        for (y, x, blob, prob), (wy, wx, wblob) in zip(got, want, strict=True):
            assert (y, x) == (wy, wx) and np.array_equal(blob, wblob)
            assert np.array_equal(prob, p[y : y + blob.shape[0], x : x + blob.shape[1]])


def test_pieces_of_one_line_are_bridged_other_boxes_are_not():
    p = np.zeros((120, 200), np.float32)
    p[10:20, 10:60] = 0.9  # a horizontal string whose middle the network lost ...
    p[10:20, 100:150] = 0.9  # ... 40 px = 4 line thicknesses later: bridged
    p[40:50, 10:40] = 0.9  # a line, and one 7 thicknesses further on: too far
    p[40:50, 110:140] = 0.9
    p[60:70, 10:40] = 0.9  # a line, and a box of a different thickness beside it: not one line
    p[60:90, 50:120] = 0.9
    p[30:110, 180:190] = 0.9  # a vertical string in two pieces: bridged along y
    p[30:60, 180:190] = 0.9
    p[100:110, 180:190] = 0.9
    p[60:100, 180:190] = 0.0
    regions = regions_from_probabilities(p, min_area_px=1, bridge_gap=6.0)
    boxes = sorted(r.box for r in regions)
    assert (10, 10, 150, 20) in boxes
    assert (10, 40, 40, 50) in boxes and (110, 40, 140, 50) in boxes
    assert (10, 60, 40, 70) in boxes and (50, 60, 120, 90) in boxes
    assert (180, 30, 190, 110) in boxes
    assert len(boxes) == 6
    # Off by default in the function; nothing is joined then.
    assert len(regions_from_probabilities(p, min_area_px=1)) == 8


class _HorizontalOnly(NetTextDetector):
    """A stand-in network that sees only horizontal strokes: bright runs of 8 or more pixels along a row."""

    def _predict(self, x: np.ndarray) -> np.ndarray:
        bright = x.mean(axis=0) > 0.5
        return ndi.binary_opening(bright, structure=np.ones((1, 8), bool)).astype(np.float32)


def test_vertical_look_extends_a_vertical_string_and_adds_nothing_else():
    frame = np.zeros((480, 200, 3), np.uint8)
    frame[100:400, 60:64] = 255  # a long vertical string, 4 px thick: invisible to the stand-in ...
    frame[100:160, 56:68] = 255  # ... but for its first 60 rows, 12 px wide: found
    frame[120:240, 90:94] = 255  # another thin vertical string beside it, found by neither pass
    off = _HorizontalOnly(None, None, spec=text_unet_spec(), vertical_look=False, bridge_gap=0)
    on = _HorizontalOnly(None, None, spec=text_unet_spec(), bridge_gap=0)
    assert [r.box for r in off.detect(frame)] == [(56, 100, 68, 160)]
    # Turned a quarter, the thin string reads as a horizontal stroke: the region grows along it
    # by its own length and a stride (60 + 32 rows); the string beside it, not joined, stays out.
    assert [r.box for r in on.detect(frame)] == [(56, 100, 68, 252)]
    # A horizontal region gets no second look.
    flat = np.zeros((200, 480, 3), np.uint8)
    flat[60:72, 100:300] = 255
    assert [r.box for r in on.detect(flat)] == [(100, 60, 300, 72)]


def test_a_box_is_absorbed_by_one_box_only_never_joining_two():
    from deephealth_deid.text.boxes import _absorb

    boxes = np.array(
        [
            [0, 0, 40, 20],  # A
            [30, 0, 70, 20],  # B: shares a quarter of A, kept apart
            [32, 4, 38, 16],  # C: inside both A and B; absorbed by one of them only
            [60, 10, 100, 30],  # D: shares 10 x 10 with B, a quarter of its own 40 x 20
            [90, 25, 96, 40],  # E: a third inside D: apart
        ]
    )
    ones = np.ones(len(boxes))
    out, sums, areas, _ = _absorb(boxes, ones, ones * 10, ones)
    assert sorted(map(tuple, out.tolist())) == [
        (0, 0, 40, 20),
        (30, 0, 70, 20),
        (60, 10, 100, 30),
        (90, 25, 96, 40),
    ]
    assert sorted(sums.tolist()) == [1, 1, 1, 2] and areas.sum() == 50


def test_pixelwise_model_finds_the_white_bars_exactly_tiled_or_not(torch_engine, pixelwise):
    frame = np.zeros((700, 1100, 3), np.uint8)
    bars = [(20, 10, 300, 30), (470, 300, 560, 320), (200, 500, 1090, 530), (600, 660, 640, 699)]
    for x0, y0, x1, y1 in bars:
        frame[y0:y1, x0:x1] = 255
    whole = NetTextDetector(torch_engine, pixelwise, tile=2048)
    tiled = NetTextDetector(torch_engine, pixelwise, tile=512, overlap=64)
    p_whole, p_tiled = whole.probabilities(frame), tiled.probabilities(frame)
    assert p_whole.shape == (700, 1100) and np.array_equal(p_whole, p_tiled)
    for det in (whole, tiled):
        regions = det.detect(frame)
        assert sorted(r.box for r in regions) == sorted(bars)  # the bar across tiles is whole
        assert all(r.score > 0.99 for r in regions)
    # A grey frame is the same frame.
    assert np.array_equal(whole.probabilities(frame[..., 0]), p_whole)


@pytest.mark.parametrize(("rows", "cols", "tile"), [(333, 517, 1024), (700, 1100, 512)])
def test_random_net_gives_regions_inside_frames_of_any_size(torch_engine, rows, cols, tile):
    model = torch_engine.build(SMALL, seed=1)
    _randomise_batchnorm(model)
    frame = _frame(rows, cols)
    prob = NetTextDetector(torch_engine, model, tile=tile).probabilities(frame)
    assert prob.shape == (rows, cols) and prob.dtype == np.float32
    assert prob.min() >= 0.0 and prob.max() <= 1.0
    threshold = float(np.quantile(prob, 0.8))  # whatever the random net says, some pixels pass
    # min_score=0: every region, however unsure the random net is of it.
    regions = NetTextDetector(torch_engine, model, tile=tile, threshold=threshold, min_score=0).detect(frame)
    assert regions
    for r in regions:
        assert 0 <= r.x0 < r.x1 <= cols and 0 <= r.y0 < r.y1 <= rows
        assert threshold <= r.score <= 1.0 and r.source == "net"


def test_tiles_match_the_whole_frame_up_to_the_stitching(torch_engine):
    """Exactly where one tile covers a pixel; where tiles overlap, the maximum is never below it."""
    model = torch_engine.build(SMALL, seed=2)
    _randomise_batchnorm(model)
    frame = _frame(700, 1100, seed=3)
    whole = NetTextDetector(torch_engine, model, tile=2048).probabilities(frame)
    tiled = NetTextDetector(torch_engine, model, tile=512, overlap=64).probabilities(frame)
    once = _coverage(700, 1100, 512, 64, SMALL.stride) == 1
    assert 0.3 < once.mean() < 1.0
    np.testing.assert_allclose(tiled[once], whole[once], atol=1e-5)
    assert np.all(tiled[~once] >= whole[~once] - 1e-5)


def test_detector_options_are_checked(torch_engine, pixelwise):
    with pytest.raises(ValueError, match="threshold"):
        NetTextDetector(torch_engine, pixelwise, threshold=1.0)
    with pytest.raises(ValueError, match="overlap"):
        NetTextDetector(torch_engine, pixelwise, tile=100, overlap=64)
    with pytest.raises(ValueError, match="spec"):
        NetTextDetector(torch_engine, object())
    det = NetTextDetector(torch_engine, torch_engine.build(SMALL, seed=0), tile=1001, overlap=63)
    assert (det.tile, det.overlap) == (1008, 64)  # rounded up to the stride (8)


# --------------------------------------------------------------------------------------------
# Loading


def _save(engine, spec: UNetSpec, path: Path, **metadata) -> Path:
    engine.save(engine.build(spec, seed=0), spec, path, metadata=metadata)
    return path


def test_a_model_file_carries_its_thresholds(torch_engine, tmp_path):
    """The thresholds chosen when a model was shipped are the loader's defaults; explicit ones win."""
    spec = text_unet_spec(widths=(4, 8))
    own = _save(torch_engine, spec, tmp_path / "own.st", task="text", threshold=0.3, grow_threshold=0.1)
    plain = _save(torch_engine, spec, tmp_path / "plain.st", task="text")
    det = load_text_detector(own, engine="torch", device="cpu")
    assert (det.threshold, det.grow_threshold) == (0.3, 0.1)
    det = load_text_detector(own, engine="torch", device="cpu", threshold=0.6, grow_threshold=0.2)
    assert (det.threshold, det.grow_threshold) == (0.6, 0.2)
    det = load_text_detector(plain, engine="torch", device="cpu")
    assert (det.threshold, det.grow_threshold) == (0.5, None)
    # A threshold asked for below the file's growing one: no growing rather than an error.
    det = load_text_detector(own, engine="torch", device="cpu", threshold=0.05)
    assert (det.threshold, det.grow_threshold) == (0.05, None)


def test_the_shipped_text_model_carries_its_operating_point():
    """The shipped file's thresholds, chosen on held-out images (models/text_unet.md), are what loads."""
    det = load_text_detector(engine="torch", device="cpu")
    assert (det.threshold, det.grow_threshold) == (0.2, 0.1)


def test_only_a_2d_rgb_two_class_text_model_loads(torch_engine, tmp_path):
    from deephealth_deid.shipped import shipped_model

    wrong = [
        shipped_model("deface").path,  # the 3D defacing model
        _save(torch_engine, text_unet_spec(widths=(4, 8), classes=3, class_names=()), tmp_path / "c3.st"),
        _save(torch_engine, text_unet_spec(widths=(4, 8), in_channels=1), tmp_path / "grey.st"),
        _save(torch_engine, text_unet_spec(widths=(4, 8)), tmp_path / "task.st", task="deface"),
    ]
    for path in wrong:
        with pytest.raises(ModelCheckError, match=str(path.name)):
            load_text_detector(path, engine="torch", device="cpu")
    good = _save(torch_engine, text_unet_spec(widths=(4, 8)), tmp_path / "text.st", task="text")
    det = load_text_detector(good, engine="torch", device="cpu", threshold=0.7, tile=256)
    assert isinstance(det, NetTextDetector) and (det.threshold, det.tile) == (0.7, 256)


def test_the_shipped_text_model_is_checked_against_its_sha256(torch_engine, tmp_path, monkeypatch):
    from deephealth_deid import shipped

    monkeypatch.setattr(shipped, "shipped_models", lambda: {})
    with pytest.raises(ModelCheckError, match="no text-detection model is shipped yet"):
        load_text_detector()
    path = _save(torch_engine, text_unet_spec(widths=(4, 8)), tmp_path / "text.safetensors", task="text")
    entry = shipped.ShippedModel("text", path, "0" * 64, None)
    monkeypatch.setattr(shipped, "shipped_models", lambda: {"text": entry})
    with pytest.raises(ModelCheckError, match="SHA-256 mismatch"):
        load_text_detector(engine="torch", device="cpu")
    entry = shipped.ShippedModel("text", path, file_sha256(path), None)
    monkeypatch.setattr(shipped, "shipped_models", lambda: {"text": entry})
    assert isinstance(load_text_detector(engine="torch", device="cpu"), NetTextDetector)


# --------------------------------------------------------------------------------------------
# Training


TINY = {
    "task": "text",
    "engine": "torch",
    "device": "cpu",
    "seed": 3,
    "threads": 1,
    "widths": [4, 8],
    "data": {
        "validation_size": 1,
        "patch": [64, 64],
        "patches_per_head": 2,
        "text_options": {"size_range": [64, 96], "n_text": [2, 4], "height_range": [6, 16]},
    },
    "optim": {"iterations": 3, "batch_size": 2, "lr": 0.01},
    "validate_every": 3,
    "checkpoint_every": 3,
    "out_dir": "run",
}


def write_config(folder: Path, **changes: object) -> Path:
    return _write_config(folder, TINY, "text.yaml", **changes)


def test_shipped_text_training_config_loads():
    cfg = load_config(ROOT / "training" / "text.yaml")
    assert cfg.task == "text" and cfg.input_channels == 3 and cfg.data.patch == (256, 256)
    assert 4 <= cfg.optim.batch_size <= 8
    # A CPU budget stops the run (the model card states it); the learning rate steps down twice.
    assert cfg.time_budget_min is not None and 0 < cfg.time_budget_min <= 180
    assert [lr for _, lr in cfg.optim.lr_steps] == [0.001, 0.0003]
    # It trains the default text network.
    spec = text_unet_spec()
    assert (tuple(cfg.widths), cfg.convs_per_level, cfg.input_stride) == (
        spec.widths,
        spec.convs_per_level,
        spec.input_stride,
    )
    assert Path(cfg.out_dir).parts[-2:] == ("runs", "text")


def test_text_task_defaults_fill_what_the_yaml_leaves_out(tmp_path):
    path = tmp_path / "t.yaml"
    path.write_text("task: text\n", encoding="utf-8")
    cfg = load_config(path)
    assert cfg.input_channels == 3 and cfg.data.patch == (256, 256) and cfg.optim.class_weights == (1.0, 1.0)
    assert Path(cfg.out_dir) == tmp_path / "runs" / "text"
    assert load_config(ROOT / "training" / "deface.yaml").data.text_options == {}


@pytest.mark.parametrize(
    ("changes", "key"),
    [
        ({"grid": {"spacing_mm": 2.0}}, "grid"),
        ({"data": {"patch": [64, 64, 64]}}, "data.patch"),
        ({"data": {"patch": [64, 66]}}, "data.patch"),  # not a multiple of the stride (2)
        ({"data": {"patch": [128, 128]}}, "data.patch"),  # larger than the smallest image
        ({"data": {"synthetic_options": {"contrasts": {"t1": 1.0}}}}, "data.synthetic_options"),
        ({"data": {"datasets": ["x.yaml"]}}, "data.datasets"),
        ({"data": {"text_options": {"fonts": "all"}}}, "data.text_options.fonts"),
        ({"input_channels": 2}, "input_channels"),
        ({"optim": {"class_weights": [1, 1, 1, 1, 1]}}, "optim.class_weights"),
        ({"task": "ocr"}, "task"),
    ],
)
def test_bad_text_configuration_names_the_key(tmp_path, changes, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(write_config(tmp_path, **changes))


def test_deface_configuration_refuses_text_options(tmp_path):
    path = tmp_path / "d.yaml"
    path.write_text("task: deface\ndata:\n  text_options: {size_range: [64, 96]}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"data\.text_options"):
        load_config(path)


def test_unknown_text_generator_option_is_a_config_error(tmp_path):
    from deephealth_deid.train.text_samples import TextSamples

    cfg = load_config(write_config(tmp_path, data={"text_options": {"colour": "blue"}}))
    with pytest.raises(ConfigError, match="text_options"):
        TextSamples(cfg)


def test_text_samples_are_display_inputs_with_string_targets(tmp_path):
    from deephealth_deid.data.synth_text import SynthTextGenerator, to_image
    from deephealth_deid.text.pipeline import display_frame
    from deephealth_deid.train.text_samples import TextSamples, text_target

    cfg = load_config(write_config(tmp_path))
    samples = TextSamples(cfg)
    x, y = samples.training(0)
    assert x.shape == (3, 64, 64) and x.dtype == np.float32 and 0.0 <= x.min() <= x.max() <= 1.0
    assert y.shape == (64, 64) and y.dtype == np.int64 and set(np.unique(y).tolist()) <= {0, 1}
    x2, y2 = TextSamples(cfg).training(0)
    assert np.array_equal(x, x2) and np.array_equal(y, y2)  # seeded
    # The input is what the detector computes from the frame the redaction pipeline displays.
    sample = SynthTextGenerator(seed=cfg.seed, fonts="train", **cfg.data.text_options).sample(0)
    full_x, full_y = samples.on_display(sample)
    assert np.array_equal(full_x, network_input(display_frame(to_image(sample), 0)))
    assert np.array_equal(full_y, text_target(sample))
    ((vx, vy),) = samples.validation()["synthetic"]
    assert vx.shape[0] == 3 and vx.shape[1:] == vy.shape and all(s % 2 == 0 for s in vy.shape)


def test_text_target_fills_each_string_box_and_stays_inside_it():
    from deephealth_deid.data.synth_text import SynthTextSample, TextBox
    from deephealth_deid.train.text_samples import text_target

    instance = np.zeros((80, 120), np.uint16)
    instance[10:20, 10:16] = 1  # two glyphs 10 px high, 7 px apart: one string
    instance[12:20, 23:29] = 1
    instance[40:70, 100:110] = 2  # a string rotated by 90 degrees: glyphs stacked along the rows
    instance[40:52, 100:110] = 0
    instance[44:50, 100:110] = 2
    boxes = [
        TextBox((10, 10, 29, 20), "AB", "identifying", "name", "f", 10, 0, "plain", 1),
        TextBox((100, 40, 110, 70), "CD", "harmless", "marker", "f", 10, 90, "plain", 2),
    ]
    target = text_target(SynthTextSample(np.zeros((80, 120), np.uint8), "MONOCHROME2", boxes, instance))
    assert target.dtype == np.uint8
    labels, n = ndi.label(target, structure=np.ones((3, 3)))
    assert n == 2
    found = sorted((s[1].start, s[0].start, s[1].stop, s[0].stop) for s in ndi.find_objects(labels))
    assert found == sorted(b.box for b in boxes)  # each blob's box is the string's tight box
    assert target[10:20, 10:29].all() and target[40:70, 100:110].all()


def test_deid_train_text_writes_a_model_the_detector_loads_and_runs(tmp_path):
    pytest.importorskip("torch", reason="training needs torch (pip install torch)")
    from deephealth_deid.cli import main as cli_main
    from deephealth_deid.engines import read_model_file

    path = write_config(tmp_path)
    assert cli_main(["train", str(path)]) == 0
    run = tmp_path / "run"
    assert json.loads((run / "state.json").read_text())["iteration"] == 3
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    (validation,) = [r for r in lines if "validation_dice" in r]
    assert set(validation["validation_dice"]) == {"text"} and validation["iteration"] == 3
    _, spec, metadata, _ = read_model_file(run / "model.safetensors")
    assert spec == text_unet_spec(widths=(4, 8))  # the text network's stem and convolutions by default
    assert metadata["task"] == "text" and metadata["labels"] == {"1": "text"}
    assert metadata["input"]["function"] == "deephealth_deid.text.network.network_input"

    det = load_text_detector(run / "model.safetensors", engine="torch", device="cpu")
    frame = _frame(97, 131)
    regions = det.detect(frame)
    assert all(0 <= r.x0 < r.x1 <= 131 and 0 <= r.y0 < r.y1 <= 97 for r in regions)
    assert det.probabilities(frame).shape == (97, 131)


def test_auto_on_a_cpu_detects_text_without_importing_torch():
    """Where ONNX Runtime is installed, ``deid redact`` on a CPU never pays PyTorch's import."""
    why = "needs onnxruntime and onnx (pip install deephealth_deid[onnx])"
    pytest.importorskip("onnxruntime", reason=why)
    pytest.importorskip("onnx", reason=why)
    code = (
        "import sys, numpy as np\n"
        "from deephealth_deid.text.detector import load_text_detector\n"
        "det = load_text_detector(engine='auto', device='cpu')\n"
        "det.detect(np.zeros((64, 96, 3), np.uint8))\n"
        "print(det.engine.name, 'torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["onnxruntime", "False"]


def test_second_looks_of_neighbouring_vertical_regions_share_one_window():
    from deephealth_deid.text.network import _merged_windows

    a, b, c = Region(0, 10, 0, 20, 60), Region(0, 10, 70, 20, 130), Region(0, 300, 0, 310, 60)
    windows = [(0, 100, 0, 80), (30, 200, 0, 80), (0, 100, 240, 370)]  # a's and b's overlap; c's is apart
    groups = _merged_windows(windows, [a, b, c])
    assert groups == [((0, 200, 0, 80), [a, b]), ((0, 100, 240, 370), [c])]
    # Two windows whose round box would be larger than both together stay apart.
    assert len(_merged_windows([(0, 10, 0, 10), (20, 30, 20, 30)], [a, b])) == 2


def test_unsure_regions_are_kept_only_beside_sure_ones(torch_engine, pixelwise):
    frame = np.zeros((200, 300, 3), np.uint8)
    frame[20:32, 40:200] = 255  # a string the network is sure of (probability 1)
    frame[20:32, 20:37] = 135  # a faint glyph just before it (probability about 0.3): kept
    frame[20:32, 250:290] = 135  # a faint field further on the same line: kept
    frame[120:140, 100:160] = 135  # a faint blob on its own: dropped
    frame[160:172, 40:100] = 135  # a faint string on a line of its own: dropped
    det = NetTextDetector(torch_engine, pixelwise, threshold=0.2, vertical_look=False, bridge_gap=0)
    regions = det.detect(frame)
    assert [r.box for r in regions] == [(20, 20, 37, 32), (40, 20, 200, 32), (250, 20, 290, 32)]
    assert regions[0].score < det.min_score <= regions[1].score
    everything = NetTextDetector(torch_engine, pixelwise, threshold=0.2, vertical_look=False, min_score=0)
    assert (100, 120, 160, 140) in [r.box for r in everything.detect(frame)]
    with pytest.raises(ValueError, match="min_score"):
        NetTextDetector(torch_engine, pixelwise, min_score=1.5)
