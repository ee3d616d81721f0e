"""``deid demo [OUT_DIR]``: run what the library does on its built-in example head."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ._common import make_parser, run

log = logging.getLogger("deephealth_deid.cli")

# Overlay colours of the identifying features (label 1-4).
_COLOURS = {1: (255, 64, 64), 2: (64, 200, 64), 3: (64, 128, 255), 4: (255, 200, 0)}


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser(
        "demo",
        "Write the built-in example head (a labelled phantom) to OUT_DIR as NIfTI, read it back "
        "through the library, check the round trip is bit-exact, and write a preview PNG with the "
        "identifying features (eyes, nose, mouth, ears) outlined.",
    )
    parser.add_argument(
        "out_dir", nargs="?", type=Path, default=Path("deid_demo"), help="default: ./deid_demo"
    )
    parser.add_argument("-f", "--force", action="store_true", help="replace files in OUT_DIR")
    return parser


def preview(image: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Axial, coronal and sagittal slices through the features, side by side, as RGB."""
    centre = [int(np.median(ix)) for ix in np.nonzero(np.isin(labels, list(_COLOURS)))]
    panels = []
    for axis in (2, 1, 0):
        sl = [slice(None)] * 3
        sl[axis] = slice(centre[axis], centre[axis] + 1)
        img = np.squeeze(image[tuple(sl)]).astype(np.float64)
        lab = np.squeeze(labels[tuple(sl)])
        hi = np.percentile(img, 99.5) or 1.0
        grey = np.clip(img / hi * 255.0, 0, 255).astype(np.uint8)
        rgb = np.repeat(grey[..., None], 3, axis=-1)
        for value, colour in _COLOURS.items():
            m = lab == value
            rgb[m] = (0.45 * rgb[m] + 0.55 * np.array(colour)).astype(np.uint8)
        panels.append(np.rot90(rgb))  # display with superior / anterior up
    height = max(p.shape[0] for p in panels)
    padded = [np.pad(p, ((0, height - p.shape[0]), (0, 4), (0, 0))) for p in panels]
    return np.concatenate(padded, axis=1)


def _demo(args: argparse.Namespace) -> int:
    from PIL import Image as PILImage

    from ..data.phantom import make_phantom_head
    from ..io import load_volume, save_volume
    from ..io._files import atomic_file, check_output

    out: Path = args.out_dir
    out.mkdir(parents=True, exist_ok=True)
    head_path, labels_path, png_path = out / "head.nii.gz", out / "head_labels.nii.gz", out / "preview.png"
    for p in (head_path, labels_path, png_path):
        check_output(p, overwrite=args.force)
    image, labels = make_phantom_head()
    save_volume(image, head_path, overwrite=args.force)
    save_volume(labels, labels_path, overwrite=args.force)
    back = load_volume(head_path)
    if not (np.array_equal(back.array, image.array) and np.allclose(back.affine, image.affine)):
        raise AssertionError("round trip through NIfTI changed the data")  # pragma: no cover
    rgb = preview(back.array, load_volume(labels_path).array)
    with atomic_file(png_path) as tmp:
        PILImage.fromarray(rgb).save(tmp, format="PNG")
    counts = {
        name: int((labels.array == v).sum())
        for v, name in ((1, "eyes"), (2, "nose"), (3, "mouth"), (4, "ears"))
    }
    log.info("example head %s, %.1f mm voxels, written to %s", back.shape, back.spacing[0], head_path)
    log.info("its label map (features: %s voxels) in %s", counts, labels_path)
    log.info("preview with the features outlined: %s", png_path)
    print(f"wrote {head_path}, {labels_path} and {png_path}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``deid demo``; returns the exit code."""
    return run(build_parser(), argv, _demo)
