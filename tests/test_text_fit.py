"""Fitting detected boxes to their ink: tighter blanking on plain backgrounds, never less coverage.

What a user checks: on a plain background the blanked box hugs the glyphs (a one-pixel margin), a
faint string beside a bright one is still covered, text on anatomy or noise keeps its full
margin, and on held-out synthetic images every string the full margin covered whole is still
covered whole, while less of what is not text is blanked.
"""

from __future__ import annotations

import numpy as np
import pytest

import deephealth_deid as dd
from deephealth_deid.data.synth_text import SynthTextGenerator, ink_mask, to_image
from deephealth_deid.io import Image
from deephealth_deid.text import Region
from deephealth_deid.text.blank import blank_mask, padded_box
from deephealth_deid.text.fit import FIT_MARGIN_PX, fit_region, fit_regions


def covered(shape, regions, pad_px=None):
    return blank_mask((1, *shape), regions, pad_px=pad_px)[0]


def test_plain_background_box_is_cut_to_the_ink_with_a_thin_margin():
    frame = np.zeros((60, 120), np.uint16)
    frame[20:30, 20:90] = 4000
    frame[24, 91] = 1  # an antialiased edge pixel, one level above black: ink too
    region = Region(0, 14, 16, 96, 36, line_px=10)
    fitted = fit_region(region, frame)
    m = FIT_MARGIN_PX
    assert fitted.fitted
    assert fitted.box == (20 - m, 20 - m, 92 + m, 30 + m)
    assert padded_box(fitted, *frame.shape) == fitted.box  # blanked as it is
    ink = frame > 0
    assert covered(frame.shape, [fitted])[ink].all()
    assert covered(frame.shape, [fitted]).sum() < covered(frame.shape, [region]).sum()


def test_a_faint_string_beside_a_bright_one_stays_covered():
    frame = np.full((60, 160), 100, np.uint16)
    frame[20:30, 20:70] = 4000
    frame[22:28, 100:140] = 101  # one stored level off the plate: invisible until windowed
    region = Region(0, 14, 16, 146, 34, line_px=10)
    fitted = fit_region(region, frame)
    assert fitted.fitted
    assert covered(frame.shape, [fitted])[frame != 100].all()


def _faint_beside_bright(dtype=np.uint16, channels=0):
    shape = (60, 160, channels) if channels else (60, 160)
    frame = np.zeros(shape, dtype)
    frame[20:30, 20:70] = 250
    return frame


def _case_ring_outliers():  # a dotted line over a tenth of the ring, a faint string inside
    frame = _faint_beside_bright()
    frame[22:28, 100:140] = 30
    frame[14:16, 12:148:3] = 40
    return frame, Region(0, 14, 16, 146, 34, line_px=10), (slice(22, 28), slice(100, 140))


def _case_sparse_noise():  # JPEG-like sparse noise, a solid faint string at its top level
    frame = np.random.default_rng(3).choice(np.array([0] * 8 + [1, 2], np.uint8), size=(60, 160))
    frame[20:30, 20:70] = 250
    frame[22:28, 100:140] = 2
    return frame, Region(0, 14, 16, 146, 34, line_px=10), (slice(22, 28), slice(100, 140))


def _case_frame_edge():  # faint text at the frame's top edge: the ring lies on the glyphs
    frame = np.zeros((60, 200), np.uint16)
    frame[3:13, 10:60] = 4000
    frame[0:10, 80:120] = 35
    return frame, Region(0, 8, 0, 124, 14, line_px=10), (slice(0, 10), slice(80, 120))


def _case_one_sided_texture():  # a dithered 16-bit background, a string darker than all of it
    rng = np.random.default_rng(0)
    frame = (1000 + 300 * (rng.random((60, 160)) < 0.2)).astype(np.uint16)
    frame[0, 0], frame[20:30, 20:70] = 65535, 60000
    frame[22:28, 100:140] = 700
    return frame, Region(0, 14, 16, 146, 34, line_px=10), (slice(22, 28), slice(100, 140))


def _case_glyph_on_plate_edge():  # a glyph the box missed, in the margin, touching the plate's edge
    frame = np.random.default_rng(1).integers(150, 200, (80, 160)).astype(np.uint8)
    frame[16:43, 15:104] = 0
    frame[22:38, 20:96] = 255
    frame[22:38, 102:104] = 255
    return frame, Region(0, 18, 20, 102, 40, line_px=16), (slice(22, 38), slice(102, 104))


def _case_palette_neighbour():  # palette indices: index 1 may show white beside index 0
    frame = np.zeros((60, 160), np.uint8)
    frame[20:30, 20:70] = 200
    frame[22:28, 100:140] = 1
    frame[34:36, 12:148:3] = 2
    return frame, Region(0, 14, 16, 146, 34, line_px=10), (slice(22, 28), slice(100, 140))


def _case_rgb_one_channel():  # faint blue text, the ring's outliers in red
    frame = _faint_beside_bright(np.uint8, 3)
    frame[22:28, 100:140, 2] = 2
    frame[14:16, 12:148:3, 0] = 2
    return frame, Region(0, 14, 16, 146, 34, line_px=10), (slice(22, 28), slice(100, 140))


def _case_underestimated_line():  # a missed glyph in the margin, the line given as 2 px
    frame = np.random.default_rng(1).integers(150, 200, (80, 160)).astype(np.uint8)
    frame[16:43, 15:112] = 0
    frame[22:38, 20:104] = 255
    frame[22:38, 113:130] = 255  # beside the plate, crossing the window's edge
    return frame, Region(0, 18, 20, 112, 40, line_px=2), (slice(22, 38), slice(113, 130))


@pytest.mark.parametrize(
    "case",
    [
        _case_ring_outliers,
        _case_sparse_noise,
        _case_frame_edge,
        _case_one_sided_texture,
        _case_glyph_on_plate_edge,
        _case_palette_neighbour,
        _case_rgb_one_channel,
        _case_underestimated_line,
    ],
)
def test_no_glyph_the_full_margin_covered_is_uncovered(case):
    frame, region, glyph_at = case()
    glyph = np.zeros(frame.shape[:2], bool)
    glyph[glyph_at] = True
    full, tight = covered(frame.shape[:2], [region]), covered(frame.shape[:2], [fit_region(region, frame)])
    assert not (glyph & full & ~tight).any()


def test_text_on_noise_or_anatomy_keeps_its_full_margin():
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 200, (60, 120)).astype(np.uint8)
    frame[20:30, 20:90] = 255
    region = Region(0, 14, 16, 96, 36, line_px=10)
    assert fit_region(region, frame) is region


def test_a_plate_smaller_than_the_margin_loses_the_image_around_it():
    rng = np.random.default_rng(1)
    frame = rng.integers(0, 200, (80, 160)).astype(np.uint8)  # the image around a label plate
    frame[16:43, 15:125] = 0  # the plate
    frame[22:38, 20:120] = 255  # the glyphs
    region = Region(0, 18, 20, 122, 40, line_px=16)  # the margin reaches past the plate
    x0, _, _, y1 = padded_box(region, *frame.shape)
    assert y1 > 43 and x0 < 15  # the window holds some of the image outside the plate
    fitted = fit_region(region, frame)
    assert fitted.fitted
    assert covered(frame.shape, [fitted])[22:38, 20:120].all()
    m = FIT_MARGIN_PX
    assert fitted.box == (20 - m, 22 - m, 120 + m, 38 + m)


def test_ink_reaching_from_the_edge_into_the_box_is_never_cut():
    frame = np.zeros((60, 120), np.uint8)
    frame[10:40, 30:80] = 0
    frame[20:30, 20:90] = 255
    frame[25:27, 0:20] = 255  # a stroke from beyond the window into the string (a long glyph)
    frame[0:4, :] = 255  # and something at the window's top edge, so the ring is not plain
    frame[0:10, 0:4] = 255
    region = Region(0, 14, 16, 96, 36, line_px=10)
    out = fit_region(region, frame)
    assert covered(frame.shape, [out])[16:36, 14:96][frame[16:36, 14:96] > 0].all()


def test_a_glyph_crossing_the_window_edge_beside_a_plate_is_never_cut_away():
    rng = np.random.default_rng(1)
    frame = rng.integers(0, 200, (80, 160)).astype(np.uint8)
    frame[16:43, 15:125] = 0  # the plate, smaller than the window
    frame[22:38, 20:110] = 255  # the glyphs the detector boxed
    frame[22:38, 113:130] = 255  # a last glyph the box missed, crossing the plate's and the window's edge
    region = Region(0, 18, 20, 112, 40, line_px=16)
    x1 = padded_box(region, *frame.shape)[2]
    assert 113 < x1 < 130  # the window cuts the last glyph
    out = fit_region(region, frame)
    assert covered(frame.shape, [out])[22:38, 113:x1].all()  # its part in the window stays blanked


def test_rules_boxes_and_empty_windows_are_left_alone():
    frame = np.zeros((40, 80), np.uint8)
    rule = Region(0, 5, 5, 60, 30, source="rules")
    blank = Region(0, 5, 5, 60, 30)
    frame[10:20, 10:20] = 255
    assert fit_region(rule, frame) is rule
    assert fit_region(blank, np.zeros((40, 80), np.uint8)) is blank


def test_colour_frames_compare_all_channels():
    frame = np.zeros((60, 120, 3), np.uint8)
    frame[20:30, 20:90, 2] = 200  # blue glyphs on black
    fitted = fit_region(Region(0, 14, 16, 96, 36, line_px=10), frame)
    assert fitted.fitted
    assert covered(frame.shape[:2], [fitted])[20:30, 20:90].all()


@pytest.mark.parametrize("size", [256, 512])
def test_on_held_out_synthetic_images_no_string_loses_coverage_and_less_is_blanked(size):
    gen = SynthTextGenerator(seed=3_000_123, size_range=(size, size), fonts="heldout")
    fitted_any = 0
    before_area = after_area = 0
    for i in range(8):
        sample = gen.sample(i)
        values = to_image(sample).frames[0]
        shape = values.shape[:2]
        regions = [Region(0, *b.box) for b in sample.boxes]  # a perfect detector's boxes
        fitted = fit_regions(regions, values)
        fitted_any += sum(r.fitted for r in fitted)
        full, tight = covered(shape, regions), covered(shape, fitted)
        for k in range(1, len(sample.boxes) + 1):
            ink = sample.instance == k
            if ink.any() and full[ink].all():
                assert tight[ink].all(), f"string {k} of image {i} lost coverage"
        text = ink_mask(sample)
        before_area += (full & ~text).sum()
        after_area += (tight & ~text).sum()
        assert (tight <= full).all()  # a fitted box never grows
    assert fitted_any > 0
    assert after_area < before_area


def test_redact_text_fits_by_default_and_not_with_a_pad_or_fit_false():
    frames = np.zeros((1, 60, 120), np.uint8)
    frames[0, 20:30, 20:90] = 255

    class Fixed:
        def detect(self, frame):
            return [Region(0, 16, 18, 94, 32)]

    img = Image(frames, "MONOCHROME2")
    tight = dd.redact_text(img, detector=Fixed(), ocr="none")
    assert tight.regions[0].fitted
    full = dd.redact_text(img, detector=Fixed(), ocr="none", fit=False)
    padded = dd.redact_text(img, detector=Fixed(), ocr="none", pad_px=3)
    assert not full.regions[0].fitted and not padded.regions[0].fitted
    assert tight.mask.sum() < full.mask.sum()
    for res in (tight, full, padded):
        assert (res.image.frames[0, 20:30, 20:90] == 0).all()
        assert np.array_equal(res.image.frames[~res.mask], frames[~res.mask])


def test_ocr_reads_the_detected_box_with_its_background_and_the_fitted_box_is_kept():
    """OCR reads best with background around the glyphs: it reads before the box is fitted."""
    from test_redact import QueueOcr

    frames = np.zeros((1, 60, 120), np.uint8)
    frames[0, 20:30, 20:30] = 255  # one glyph, read as the harmless marker R

    class Fixed:
        def detect(self, frame):
            return [Region(0, 10, 12, 60, 38)]

    class Recording(QueueOcr):
        def read(self, crop):
            self.shape = crop.shape[:2]
            return super().read(crop)

    ocr = Recording(("R", 0.99))
    res = dd.redact_text(Image(frames, "MONOCHROME2"), detector=Fixed(), ocr=ocr)
    assert ocr.shape == (38 - 12 + 4, 60 - 10 + 4)  # the detected box and 2 px, not the fitted one
    (region,) = res.regions
    assert region.fitted and region.decision == "keep" and region.text == "R"
    assert res.image.frames is frames or np.array_equal(res.image.frames, frames)


def test_the_background_value_is_the_rings_most_common_colour():
    from deephealth_deid.text.fit import _mode

    rng = np.random.default_rng(0)
    for channels in (1, 3, 4):
        for _ in range(100):
            ring = rng.integers(0, rng.choice([3, 256, 65536]), (rng.integers(5, 200), channels)).astype(
                float
            )
            if rng.random() < 0.3:
                ring = rng.random((len(ring), channels)) * 10  # not whole values
            colours, counts = np.unique(ring, axis=0, return_counts=True)
            assert np.array_equal(_mode(ring), colours[int(np.argmax(counts))])  # ties: the first colour


# ----------------------------------------------------------------------------------------------------
# following a string along its line (text.follow)


def _string_across_a_step(glyph: int = 255) -> np.ndarray:
    """A 12 px string of value ``glyph`` from a dark background onto a bright panel (250 from column 120)."""
    frame = np.full((60, 240), 20, np.uint8)
    frame[:, 120:] = 250
    for x in range(20, 220, 9):
        frame[24:36, x : x + 2] = glyph  # strokes
        frame[24:26, x : x + 6] = glyph
    return frame


def test_a_string_crossing_onto_a_background_it_barely_differs_from_is_blanked_whole():
    from deephealth_deid.text import redact_text
    from deephealth_deid.text.follow import follow_region

    frame = _string_across_a_step()
    seen = Region(0, 18, 24, 118, 36)  # what a network sees: the part on the dark side
    followed = follow_region(seen, frame)
    assert followed.box == (18, 24, 224, 36) and followed.source == "net"  # the last glyph ends at 224
    img = Image(frame[None], "MONOCHROME2")

    class Seen:
        def detect(self, f):
            return [seen]

    glyphs = frame == 255
    out = redact_text(img, detector=Seen(), ocr="none").image.frames[0]
    assert not (out[glyphs] == 255).any()  # every glyph blanked, on both sides of the step
    before = redact_text(img, detector=Seen(), ocr="none", follow=False).image.frames[0]
    assert (before[glyphs] == 255).sum() > 100  # without following, the bright side's glyphs stay


def test_following_never_shortens_adds_or_crosses_into_plateaus_and_rules():
    from deephealth_deid.text.follow import follow_region, follow_regions

    frame = _string_across_a_step()
    # The string's value as common beside the line as on it: nothing stands out, nothing moves.
    noisy = frame.copy()
    noisy[10:20, :] = 255
    noisy[40:50, :] = 255
    r = Region(0, 18, 24, 118, 36)
    assert follow_region(r, noisy) is r
    # A rule (one long piece of the value) along the line is not a glyph.
    ruled = np.full((60, 240), 20, np.uint8)
    ruled[24:36, 20:26] = 255
    ruled[30:32, 26:240] = 255
    assert follow_region(Region(0, 18, 24, 30, 36), ruled).box == (18, 24, 30, 36)
    # Device rules and fitted regions are left as they are; random regions only ever grow.
    assert follow_region(r.with_(source="rules"), frame) == r.with_(source="rules")
    rng = np.random.default_rng(0)
    values = (rng.random((80, 90, 3)) * 4).astype(np.uint8) * 60
    regions = [Region(0, x, y, x + int(w), y + int(h)) for x, y, w, h in rng.integers(1, 40, (50, 4))]
    for a, b in zip(regions, follow_regions(regions, values), strict=True):
        assert b.x0 <= a.x0 and b.y0 <= a.y0 and b.x1 >= a.x1 and b.y1 >= a.y1
        assert (b.x1 - b.x0 == a.x1 - a.x0) or (b.y1 - b.y0 == a.y1 - a.y0)  # along one axis only


def test_boxes_on_noise_are_not_followed():
    """Noise holds no string value: boxes on it stay as found (what a batch of noise images showed)."""
    from deephealth_deid.text.follow import follow_regions

    rng = np.random.default_rng(0)
    changed = 0
    for levels in (200, 20, 4):
        for _ in range(10):
            frame = rng.integers(0, levels, (120, 160), dtype=np.uint8)
            xywh = rng.integers((0, 0, 10, 6), (100, 100, 50, 16), size=(30, 4))
            regions = [Region(0, int(x), int(y), int(x + w), int(y + h)) for x, y, w, h in xywh]
            changed += sum(a != b for a, b in zip(regions, follow_regions(regions, frame), strict=True))
    assert changed <= 2  # of 900 boxes
