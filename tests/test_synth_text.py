"""Synthetic burned-in text: exact boxes and ink, deterministic, varied; fonts split for good."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage as ndi

from deephealth_deid.data import synth_text
from deephealth_deid.data.synth_text import (
    HARMLESS_KINDS,
    IDENTIFYING_KINDS,
    NoFontsError,
    SynthTextGenerator,
    SynthTextSample,
    find_font_files,
    find_fonts,
    font_split,
    ink_mask,
    text_mask,
    to_image,
)
from deephealth_deid.errors import DeidError
from deephealth_deid.io.image import Image

SMALL = (96, 192)
N = 30


@pytest.fixture(scope="module")
def gen() -> SynthTextGenerator:
    return SynthTextGenerator(seed=7, size_range=SMALL)


@pytest.fixture(scope="module")
def samples(gen: SynthTextGenerator) -> list[SynthTextSample]:
    return [gen.sample(i) for i in range(N)]


def assert_same(a: SynthTextSample, b: SynthTextSample) -> None:
    assert a.image.dtype == b.image.dtype and np.array_equal(a.image, b.image)
    assert np.array_equal(a.instance, b.instance)
    assert a.boxes == b.boxes and a.photometric == b.photometric and a.info == b.info


def test_sample_is_a_pure_function_of_seed_and_index(gen: SynthTextGenerator, samples: list) -> None:
    other = SynthTextGenerator(seed=7, size_range=SMALL)
    for i in (5, 2, 5):  # another instance, another order
        assert_same(other.sample(i), samples[i])
    assert not np.array_equal(
        gen.sample(0).image, SynthTextGenerator(seed=8, size_range=SMALL).sample(0).image
    )
    with pytest.raises(ValueError, match="non-negative"):
        gen.sample(-1)


def test_boxes_are_inside_the_image_tight_and_disjoint(samples: list[SynthTextSample]) -> None:
    n_boxes = 0
    for s in samples:
        h, w = s.image.shape[:2]
        assert s.instance.shape == (h, w) and s.instance.dtype == np.uint16
        assert set(np.unique(s.instance)) - {0} == {b.label for b in s.boxes}
        for k, b in enumerate(s.boxes, start=1):
            assert b.label == k
            x0, y0, x1, y1 = b.box
            assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h
            ink = s.instance == b.label
            inside = ink[y0:y1, x0:x1]
            assert inside.sum() == ink.sum(), "ink outside its box"
            # Tight: every side of the box touches ink.
            assert inside[0].any() and inside[-1].any() and inside[:, 0].any() and inside[:, -1].any()
            for c in s.boxes[: k - 1]:
                assert x1 <= c.box[0] or c.box[2] <= x0 or y1 <= c.box[1] or c.box[3] <= y0, "boxes overlap"
            n_boxes += 1
    assert n_boxes > 5 * N


def test_text_changes_the_pixels_it_covers(samples: list[SynthTextSample]) -> None:
    """The ink is drawn: most strings differ from their surroundings (visible, not only labelled)."""
    visible = 0
    boxes = 0
    for s in samples:
        img = s.image.astype(np.float64)
        if img.ndim == 3:
            img = img.mean(-1)
        top = float(2 ** s.info["bits_stored"] - 1)
        for b in s.boxes:
            x0, y0, x1, y1 = b.box
            ink = s.instance[y0:y1, x0:x1] == b.label
            patch = img[y0:y1, x0:x1]
            if (~ink).any():
                boxes += 1
                visible += abs(patch[ink].mean() - patch[~ink].mean()) / top > 0.1
    assert visible >= 0.8 * boxes


def test_categories_kinds_styles_and_rotations_all_appear(samples: list[SynthTextSample]) -> None:
    boxes = [b for s in samples for b in s.boxes]
    assert {b.category for b in boxes} == {"identifying", "harmless"}
    kinds = Counter((b.category, b.kind) for b in boxes)
    assert len({k for c, k in kinds if c == "identifying"}) >= 8
    assert len({k for c, k in kinds if c == "harmless"}) >= 5
    assert {k for _, k in kinds} <= set(IDENTIFYING_KINDS) | set(HARMLESS_KINDS)
    assert {b.style for b in boxes} == {"plain", "box", "inverse", "outline"}
    assert {b.rotation for b in boxes} == {0, 90, 270}
    for b in boxes:  # a rotated string of several characters stands upright
        if b.rotation and len(b.text) >= 4 and " " not in b.text:
            assert b.box[3] - b.box[1] > b.box[2] - b.box[0], b
    assert {s.info["modality"] for s in samples} == {"xray", "screen", "ultrasound"}
    heights = [b.height_px for b in boxes]
    assert min(heights) >= 6 and max(heights) <= 80
    assert len({b.font for b in boxes}) >= 5
    assert sum(s.info["n_placed"] == 0 for s in samples) < N // 3


def test_pixel_formats_dtypes_and_16_bit_text() -> None:
    grey16 = SynthTextGenerator(seed=1, size_range=SMALL, pixel_formats={"grey16": 1.0}, n_text=(10, 15))
    values_above_8_bit = False
    for i in range(4):
        s = grey16.sample(i)
        assert s.image.dtype == np.uint16 and s.image.ndim == 2 and s.photometric == "MONOCHROME2"
        bits = s.info["bits_stored"]
        assert 10 <= bits <= 16 and s.image.max() < 2**bits
        values_above_8_bit |= bool((s.image[s.instance > 0] > 255).any())
    assert values_above_8_bit, "text in 16-bit images should use 16-bit values"
    rgb = SynthTextGenerator(seed=1, size_range=SMALL, pixel_formats={"rgb": 1.0}).sample(0)
    assert rgb.image.dtype == np.uint8 and rgb.image.shape[2] == 3 and rgb.photometric == "RGB"
    grey8 = SynthTextGenerator(seed=1, size_range=SMALL, pixel_formats={"grey8": 1.0}).sample(0)
    assert grey8.image.dtype == np.uint8 and grey8.image.ndim == 2 and grey8.info["bits_stored"] == 8


def test_size_range_and_sizes() -> None:
    s = SynthTextGenerator(seed=2, size_range=(200, 200)).sample(3)
    assert s.image.shape[:2] == (200, 200)
    gen = SynthTextGenerator(seed=2, size_range=(100, 180))
    for i in range(5):
        assert all(100 <= n <= 180 for n in gen.sample(i).image.shape[:2])


def test_masks(samples: list[SynthTextSample]) -> None:
    s = next(s for s in samples if {b.category for b in s.boxes} == {"identifying", "harmless"})
    every = text_mask(s)
    assert every.dtype == bool and every.shape == s.instance.shape
    assert every[s.instance > 0].all()
    ident = text_mask(s, "identifying")
    assert ident.sum() < every.sum() and not (ident & ~every).any()
    assert ink_mask(s, "identifying").sum() > 0 and not (ink_mask(s, "identifying") & ~ident).any()
    padded = text_mask(s, pad=2)
    assert padded.sum() > every.sum() and not (every & ~padded).any()
    with pytest.raises(ValueError, match="category"):
        text_mask(s, "names")


def test_to_image_feeds_the_image_pipeline(samples: list[SynthTextSample]) -> None:
    for s in samples[:6]:
        img = to_image(s)
        assert isinstance(img, Image)
        assert img.n_frames == 1 and (img.rows, img.columns) == s.image.shape[:2]
        assert img.photometric == s.photometric and img.is_color == (s.image.ndim == 3)
        assert np.array_equal(img.frames[0], s.image)
        assert img.to_rgb().shape == (1, *s.image.shape[:2], 3)


def test_training_and_heldout_fonts_are_disjoint() -> None:
    train = find_fonts("train")
    try:
        heldout = find_fonts("heldout")
    except NoFontsError as e:
        pytest.skip(f"no held-out font family is installed here: {e}")
    every = find_fonts("all")
    assert train and heldout
    assert {f.path for f in train}.isdisjoint({f.path for f in heldout})
    assert {f.path for f in train} | {f.path for f in heldout} == {f.path for f in every}
    assert [f.path for f in every] == sorted((f.path for f in every), key=str)
    assert {f.family for f in train}.isdisjoint(
        {f.family for f in heldout}
    )  # faces of a family stay together
    assert all(font_split(f.path) == f.split for f in every)
    for face, regular in [
        ("/x/DejaVuSans-Bold.ttf", "/y/DejaVuSans.ttf"),
        ("/x/DejaVuSansCondensed-Oblique.ttf", "/y/DejaVuSans.ttf"),
        ("/x/FreeSansBoldOblique.otf", "/y/FreeSans.otf"),
        ("/x/LiberationSerif-BoldItalic.ttf", "/y/LiberationSerif-Regular.ttf"),
    ]:
        assert font_split(face) == font_split(regular), face
    gen = SynthTextGenerator(seed=3, size_range=SMALL, fonts="heldout", n_text=(5, 10))
    used = {b.font for i in range(5) for b in gen.sample(i).boxes}
    assert used and used <= {f.name for f in heldout}


def test_symbol_and_dingbat_fonts_are_not_used() -> None:
    files = {p.name: p for p in find_font_files()}
    symbol = [files[n] for n in ("StandardSymbolsPS.otf", "D050000L.otf", "Symbol.ttf") if n in files]
    if not symbol:
        pytest.skip("no symbol or dingbat font (URW base35, fonts-urw-base35) is installed here")
    usable = {f.path for f in find_fonts("all")}
    assert not usable & set(symbol)


SCRIPT_RANGES = {
    "cyrillic": ("\u0400", "\u04ff"),
    "greek": ("\u0370", "\u03ff"),
    "cjk": ("\u3040", "\u9fff"),
    "arabic": ("\u0600", "\u06ff"),
}


@pytest.mark.parametrize("script", sorted(SCRIPT_RANGES))
def test_names_in_other_scripts_use_fonts_with_their_glyphs(script: str) -> None:
    if not any(script in f.scripts for f in find_fonts("all")):
        pytest.skip(f"no installed font renders {script} names (Debian: fonts-dejavu-core, fonts-noto-cjk)")
    gen = SynthTextGenerator(
        seed=4, size_range=SMALL, fonts="all", scripts={script: 1.0}, identifying_fraction=1.0, n_text=(8, 12)
    )
    names = [b for i in range(6) for b in gen.sample(i).boxes if b.kind == "name"]
    lo, hi = SCRIPT_RANGES[script]
    in_script = [b for b in names if any(lo <= c <= hi for c in b.text)]
    assert len(in_script) >= 0.8 * len(names) > 0
    paths = {f.name: str(f.path) for f in gen.fonts}
    for b in names:  # never a missing glyph (.notdef box) in the image
        assert all(synth_text._has_glyph(paths[b.font], c) for c in b.text), b


def test_a_clear_error_when_no_font_is_found(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with pytest.raises(NoFontsError, match="fonts-dejavu-core") as info:
        find_fonts("all", dirs=[tmp_path])
    assert "pip install matplotlib" in str(info.value) and str(tmp_path) in str(info.value)
    monkeypatch.setattr(synth_text, "find_font_files", lambda dirs=None: [])
    with pytest.raises(DeidError, match="pip install matplotlib"):
        SynthTextGenerator()
    (tmp_path / "broken.ttf").write_bytes(b"not a font")
    with pytest.raises(NoFontsError, match="renders Latin"):
        find_fonts([tmp_path / "broken.ttf"])


def test_bad_options_are_refused() -> None:
    with pytest.raises(ValueError, match="size_range"):
        SynthTextGenerator(size_range=(512, 256))
    with pytest.raises(ValueError, match="fonts"):
        SynthTextGenerator(fonts="test")
    with pytest.raises(ValueError, match="modalities"):
        SynthTextGenerator(modalities={"mri": 1.0})
    with pytest.raises(ValueError, match="identifying_fraction"):
        SynthTextGenerator(identifying_fraction=1.5)


def test_head_panels_are_slices_of_real_anatomy() -> None:
    """Screen-capture head panels are cut from the shipped head templates: seeded, varied, air and tissue."""
    slices = [synth_text._anatomy_slice(np.random.default_rng(k), 64) for k in range(6)]
    again = synth_text._anatomy_slice(np.random.default_rng(0), 64)
    assert np.array_equal(slices[0], again)
    for s in slices:
        assert s.shape == (64, 64) and s.dtype == np.float32 and s.min() >= 0.0 and s.max() <= 1.0
        assert np.ptp(s) > 0.3  # anatomy with contrast, not a flat panel
    assert len({s.tobytes() for s in slices}) == len(slices)
    gen = SynthTextGenerator(seed=3, size_range=(256, 256), modalities={"screen": 1.0})
    assert any(gen.sample(i).info["slice"] == "head" for i in range(6))


def test_colour_doppler_flow_is_background_the_size_of_glyphs() -> None:
    """Colour flow (saturated streaks in a colour box) is drawn, never labelled as text."""
    everywhere = np.ones((200, 300), bool)
    flows = [
        synth_text._colour_flow(np.random.default_rng(k), 200, 300, everywhere, 20, 160, 150)
        for k in range(12)
    ]
    assert all(f.shape == (200, 300) and np.abs(f).max() <= 1.0 for f in flows)
    streaky = [f for f in flows if 0.002 < (f != 0).mean() < 0.5]
    assert streaky, "no colour box of small streaks among 12 draws"
    _, n = ndi.label(streaky[0] != 0)
    assert n >= 5  # many small blobs, not one vessel
    assert any((f > 0).any() and (f < 0).any() for f in flows)  # towards and away from the probe
    gen = SynthTextGenerator(seed=11, size_range=(256, 256), modalities={"ultrasound": 1.0})
    seen = 0
    for i in range(30):
        s = gen.sample(i)
        if not s.info["doppler"]:
            continue
        rgb = s.image.astype(np.float32)
        saturated = (rgb.max(axis=-1) - rgb.min(axis=-1)) > 0.5 * rgb.max()
        seen += int((saturated & (s.instance == 0)).sum() > 50)
    assert seen >= 2
