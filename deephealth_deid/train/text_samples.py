"""Training samples for the text-region detector: synthetic text images, as the detector sees them.

Every image comes from :class:`~deephealth_deid.data.synth_text.SynthTextGenerator`
(training fonts and ``config.seed`` for training; held-out fonts and
``data.validation_seed`` for validation) and goes through the same two steps
as at inference: :func:`~deephealth_deid.text.pipeline.display_frame` (the frame
as displayed, uint8 RGB) and :func:`~deephealth_deid.text.network.network_input`
(scaled to 0-1, channels first).

The target (:func:`text_target`) is each string's ink grown along its reading
direction by :data:`ALONG` times its text height and across it by
:data:`ACROSS` times, then cut to the string's tight box. Why this and not the
bare ink or the bare box:

* the bare ink leaves the gaps between glyphs and words as background, so the
  predicted blobs break a string into letters and the boxes come out in
  pieces; grown isotropically by a quarter of the height, 30% of the strings
  still fall apart (measured on 40 training images, 443 strings);
* grown by 0.75 height along the line (bridging gaps of up to 1.5 heights,
  monospaced word spaces included) and 0.25 across (filling between caps,
  lowercase and descenders), 99.5% of the strings are one 8-connected blob
  covering 99% of their box (5th percentile 94%);
* cut to the tight box, the blob's bounding box *is* the string's box (the ink
  touches all four sides), so the boxes the detector derives from its blobs
  are the truth's boxes, not boxes grown by the dilation; and neighbouring
  lines of a stacked corner block stay apart;
* unlike the bare box, no pixel farther than 0.75 height from ink is asked to
  be text, so the network never has to invent text where there is none.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from ..errors import ConfigError
from ..nets import pad_to_multiple
from .config import TrainConfig

__all__ = ["ALONG", "ACROSS", "TextSamples", "text_target"]

log = logging.getLogger(__name__)

#: Growth of a string's ink along its reading direction, in text heights.
ALONG = 0.75
#: Growth of a string's ink across its reading direction, in text heights.
ACROSS = 0.25


def text_target(sample: Any) -> np.ndarray:
    """The training target of a synthetic text sample: uint8 ``(rows, columns)``, 1 on text, 0 elsewhere.

    Args:
        sample: A :class:`~deephealth_deid.data.synth_text.SynthTextSample`.

    Returns:
        For each string, its ink grown by ``ALONG * height`` along its reading
        direction and ``ACROSS * height`` across (a rectangular maximum filter,
        at least one pixel), cut to its tight box.
    """
    out = np.zeros(sample.instance.shape, np.uint8)
    for b in sample.boxes:
        x0, y0, x1, y1 = b.box
        ink = sample.instance[y0:y1, x0:x1] == b.label
        along = max(1, math.ceil(ALONG * b.height_px))
        across = max(1, math.ceil(ACROSS * b.height_px))
        # Rotated strings (90 or 270 degrees) read along the rows' axis.
        size = (2 * across + 1, 2 * along + 1) if b.rotation == 0 else (2 * along + 1, 2 * across + 1)
        grown = ndi.maximum_filter(ink, size=size, mode="constant", cval=False)
        out[y0:y1, x0:x1] |= grown.astype(np.uint8)
    return out


class TextSamples:
    """Draws (input, target) pairs for ``task: text``: the interface of :class:`~.samples.DefaceSamples`.

    Args:
        config: A ``task: text`` configuration.

    Raises:
        ConfigError: ``data.text_options`` the generator does not take.
        NoFontsError: No font to draw text with (the message says what to install).
    """

    def __init__(self, config: TrainConfig) -> None:
        from ..data.synth_text import SynthTextGenerator

        self.config = config
        self.patch = tuple(int(p) for p in (config.data.patch or (256, 256)))
        self.stride = config.stride
        self.options = dict(config.data.text_options)
        try:
            self._generator = SynthTextGenerator(seed=config.seed, fonts="train", **self.options)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"data.text_options: {e}") from e
        self._cached: tuple[int, np.ndarray, np.ndarray, list[tuple[int, int, int, int]]] | None = None

    @staticmethod
    def on_display(sample: Any) -> tuple[np.ndarray, np.ndarray]:
        """The network's input ``[3, rows, columns]`` float32 and the target ``(rows, columns)`` uint8.

        The input is made exactly as :class:`~deephealth_deid.text.network.NetTextDetector`
        makes it from the frame :func:`~deephealth_deid.text.pipeline.redact_text` shows it.
        """
        from ..data.synth_text import to_image
        from ..text.network import network_input
        from ..text.pipeline import display_frame

        frame = display_frame(to_image(sample), 0)
        return network_input(frame), text_target(sample)

    def training(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Sample ``index``: input ``[3, *patch]`` float32 and target ``[*patch]`` int64.

        Each generated image serves ``data.patches_per_head`` consecutive
        samples (different patches); a share ``data.feature_patch_fraction``
        of the patches is centred on a point of a random string's box, the
        others anywhere.
        """
        per_image = self.config.data.patches_per_head
        image = index // per_image
        if self._cached is None or self._cached[0] != image:
            sample = self._generator.sample(image)
            self._cached = (image, *self.on_display(sample), [b.box for b in sample.boxes])
        _, x, y, boxes = self._cached
        rng = np.random.default_rng([self.config.seed, image, index])
        x, y = _crop(x, y, self.patch, rng, self.config.data.feature_patch_fraction, boxes)
        return x.astype(np.float32), y.astype(np.int64)

    def validation(self) -> dict[str, list[tuple[np.ndarray, np.ndarray]]]:
        """``synthetic``: held-out images (held-out fonts, ``validation_seed``), full size, stride-padded."""
        n = self.config.data.validation_size
        if not n:
            return {}
        from ..data.synth_text import NoFontsError, SynthTextGenerator

        seed = self.config.data.validation_seed
        try:
            gen = SynthTextGenerator(seed=seed, fonts="heldout", **self.options)
        except NoFontsError:
            log.warning("no held-out font is installed: validating on the training fonts (optimistic)")
            gen = SynthTextGenerator(seed=seed, fonts="train", **self.options)
        out = []
        for i in range(n):
            x, y = self.on_display(gen.sample(i))
            x, _ = pad_to_multiple(x, self.stride, axes=2)
            y, _ = pad_to_multiple(y, self.stride, axes=2)
            out.append((x.astype(np.float32), y.astype(np.int64)))
        return {"synthetic": out}


def _crop(
    x: np.ndarray,
    y: np.ndarray,
    patch: tuple[int, ...],
    rng: np.random.Generator,
    near: float,
    boxes: list[tuple[int, int, int, int]],
) -> tuple[np.ndarray, np.ndarray]:
    """A ``patch`` centred on a point of a random string's box (share ``near``) or anywhere."""
    ph, pw = patch
    if y.shape[0] < ph or y.shape[1] < pw:  # an image smaller than the patch: pad with black
        grow = ((0, max(0, ph - y.shape[0])), (0, max(0, pw - y.shape[1])))
        x, y = np.pad(x, ((0, 0), *grow)), np.pad(y, grow)
    rows, cols = y.shape
    if boxes and rng.random() < near:
        x0, y0, x1, y1 = boxes[int(rng.integers(len(boxes)))]
        cy, cx = int(rng.integers(y0, y1)), int(rng.integers(x0, x1))
    else:
        cy, cx = int(rng.integers(rows)), int(rng.integers(cols))
    top = int(np.clip(cy - ph // 2, 0, rows - ph))
    left = int(np.clip(cx - pw // 2, 0, cols - pw))
    return x[:, top : top + ph, left : left + pw], y[top : top + ph, left : left + pw]
