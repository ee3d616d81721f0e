"""PNG, JPEG and TIFF images: read to an :class:`~deephealth_deid.io.image.Image`, write back.

What is read, and how:

* **PNG** (Pillow): 8 and 16-bit grey, 8-bit RGB, palette (``'PALETTE COLOR'``
  with its palette, indices kept). 1, 2 and 4-bit grey are read as 8-bit
  (1-bit as 0/255). An alpha channel (RGBA, grey+alpha, palette transparency)
  is dropped: silently when fully opaque, with a logged warning otherwise; the
  colour values under transparent pixels are kept as they are, never
  composited. 16-bit-per-channel colour PNG is refused, because Pillow reads
  it only as 8 bits. Animated PNG frames become frames.
* **JPEG** (Pillow): 8-bit grey or RGB (CMYK is converted to RGB, with a
  warning). Only the first image of a multi-picture file is read.
* **TIFF** (tifffile): every page of the first series becomes a frame; 8, 16
  and 32-bit integer grey (MINISBLACK → MONOCHROME2, MINISWHITE →
  MONOCHROME1), RGB, and palette images (16-bit TIFF colour map). Alpha is
  dropped as for PNG. Floating-point TIFF is refused.

Writing chooses the format from the suffix (``.png``, ``.jpg``/``.jpeg``,
``.tif``/``.tiff``; anything else is an :class:`~deephealth_deid.errors.OutputError`)
and is atomic. PNG and TIFF are lossless and round-trip bit-exactly. JPEG is
written only for an image read from a JPEG: unchanged, as the source's own
compressed data without its metadata segments (bit-identical pixels);
changed by solid fills of whole blocks (:func:`edit_grid`), as the source's
data with those blocks replaced (:mod:`._jpeg_blocks`: every other pixel
exact); changed otherwise, re-encoded with the source's quantisation tables
and chroma subsampling, which keeps the generation loss small. JPEG would otherwise
change pixels that were never redacted. PNG holds
one 8/16-bit grey, 8-bit RGB or palette frame; a multi-frame image, 16-bit
colour, or values beyond 16 bits need ``.tif``. PNG has no MONOCHROME1, so such
an image is written inverted (as MONOCHROME2); TIFF writes it as MINISWHITE.

Only the ICC profile and the resolution travel from a source raster file to
its output; other metadata (EXIF, PNG text chunks, TIFF descriptions, which
may name the patient) is not written.
"""

from __future__ import annotations

import hashlib
import logging
import struct
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import (
    CorruptInputError,
    DecoderUnavailableError,
    OutputError,
    TooLargeError,
    UnsupportedInputError,
)
from ._files import atomic_file, check_fits_in_memory
from .image import Image

__all__ = ["RasterSource", "edit_grid", "read_raster", "write_raster", "RASTER_SUFFIXES"]

log = logging.getLogger(__name__)

#: Output suffixes and the format each writes.
RASTER_SUFFIXES: dict[str, str] = {
    ".png": "png",
    ".jpg": "jpeg",
    ".jpeg": "jpeg",
    ".tif": "tiff",
    ".tiff": "tiff",
}

_PNG_COLOUR_TYPES = {0: "grey", 2: "RGB", 3: "palette", 4: "grey+alpha", 6: "RGBA"}


@dataclass(frozen=True, eq=False)
class RasterSource:
    """What the raster writer keeps from the file an image was read from.

    Attributes:
        format: ``'png'``, ``'jpeg'`` or ``'tiff'``.
        mode: The pixel layout as read (Pillow mode, or the TIFF photometric
            name and sample format), for information.
        icc_profile: The embedded ICC colour profile, if any.
        dpi: Horizontal and vertical resolution in dots per inch, if known.
        quantization: For JPEG, the quantisation tables (Pillow's ``qtables``).
        subsampling: For JPEG, Pillow's chroma subsampling code (-1 unknown).
        compressed: For TIFF, whether the source was compressed (the output
            is then deflate-compressed, losslessly).
        path: For JPEG, the file read.
        digest: For JPEG, a digest of the frames as decoded: frames that still
            match it are written as the source's own compressed data.
        mcu: For a grey or YCbCr JPEG, its minimum coded unit in pixels
            (rows, columns): 8 x 8, 8 x 16 (4:2:2) or 16 x 16 (4:2:0).
    """

    format: str
    mode: str = ""
    icc_profile: bytes | None = field(default=None, repr=False)
    dpi: tuple[float, float] | None = None
    quantization: Any = field(default=None, repr=False)
    subsampling: int = -1
    compressed: bool = False
    path: Path | None = None
    digest: bytes = field(default=b"", repr=False)
    mcu: tuple[int, int] | None = None


def read_raster(path: Path, kind: str) -> Image:
    """Read a PNG, JPEG or TIFF file.

    Args:
        path: The file (checked to exist and be non-empty by the caller).
        kind: ``'png'``, ``'jpeg'`` or ``'tiff'``, as sniffed from the content.

    Returns:
        The image, frame axis first; its ``source`` is a :class:`RasterSource`.

    Raises:
        CorruptInputError: The file is truncated or damaged.
        UnsupportedInputError: A pixel layout not read (16-bit colour PNG,
            floating-point or CMYK TIFF, ...).
        DecoderUnavailableError: A TIFF compression that needs ``imagecodecs``.
        TooLargeError: The decoded pixels would not fit in memory.
    """
    path = Path(path)
    if kind in ("png", "jpeg"):
        return _read_pillow(path, kind)
    if kind == "tiff":
        return _read_tiff(path)
    raise ValueError(f"kind must be 'png', 'jpeg' or 'tiff', got {kind!r}")


def write_raster(image: Image, path: Path) -> None:
    """Write ``image`` as PNG, JPEG or TIFF, chosen by the suffix of ``path``, atomically.

    Args:
        image: The image to write.
        path: The output file; the caller has checked it may be written.

    Raises:
        OutputError: Unknown suffix; JPEG asked for an image not read from a
            JPEG; or a layout the format cannot hold losslessly (the message
            says which suffix to use instead).
    """
    path = Path(path)
    fmt = check_raster_path(image, path)
    src = image.source if isinstance(image.source, RasterSource) else None
    own = _own_jpeg_data(image, src, path) if fmt == "jpeg" and src is not None else None
    if own is not None:
        # The source's own compressed data, without its metadata: unchanged, or with the filled
        # blocks replaced, so no other pixel moves (encoding again would change them all a little).
        with atomic_file(path) as tmp:
            tmp.write_bytes(own)
        log.debug("%s: the source's JPEG data written (metadata removed, filled blocks replaced)", path)
        return
    if fmt == "jpeg":
        log.info(
            "%s: encoded again (its pixels may move by a level or two): the change is not whole blocks "
            "of the source JPEG%s",
            path,
            "" if edit_grid(image) else ", or the block editor (jpeglib) is not installed",
        )
    with atomic_file(path) as tmp:
        if fmt == "tiff":
            _write_tiff(image, tmp, src, path)
        else:
            _write_pillow(image, tmp, fmt, src, path)
    log.debug("%s: wrote %d frame(s), %s, as %s", path, image.n_frames, image.photometric, fmt)


def _own_jpeg_data(image: Image, src: RasterSource, dst: Path) -> bytes | None:
    """The source file's JPEG data without metadata for ``image``, or None where it would need encoding.

    Unchanged frames: the data as it is (bit-identical pixels). Frames changed
    by solid fills of whole MCUs: the data with those MCUs replaced (see
    :mod:`._jpeg_blocks`). None for any other change, where ``jpeglib`` is
    missing, or when the source file changed since it was read.
    """
    from . import _jpeg_blocks

    unchanged = bool(src.digest) and _digest(image.frames, image.photometric) == src.digest
    if not unchanged and (src.mcu is None or image.n_frames != 1 or not _jpeg_blocks.available()):
        return None
    source = _source_jpeg(src)
    if source is None:
        return None
    data, before = source
    if unchanged:
        return data
    return _jpeg_blocks.replace_blocks(data, before, image.frames[0], src.mcu, dst.parent)


def _source_jpeg(src: RasterSource) -> tuple[bytes, np.ndarray] | None:
    """The source file's JPEG data without metadata and its first frame, if it still decodes as when read.

    The stripped data is decoded again and compared, so a source file changed
    since it was read is never written in the image's place.
    """
    if src.path is None or not src.digest:
        return None
    import io

    from PIL import Image as PILImage

    try:
        data = jpeg_without_metadata(src.path.read_bytes())
        with PILImage.open(io.BytesIO(data)) as im:
            frame, photometric, _ = _pillow_frame(im, src.path)
    except (OSError, ValueError, SyntaxError, struct.error, EOFError):
        return None
    return (data, frame) if _digest(frame[None], photometric) == src.digest else None


def edit_grid(image: Image) -> tuple[int, int] | None:
    """The pixel grid ``(rows, columns)`` a fill must be aligned to for the file to stay exact elsewhere.

    For an image read from a grey or YCbCr JPEG (one frame), its MCU: a
    solid fill of whole MCUs is written as new flat blocks inside the source's
    own compressed data, so every other pixel stays as it was (see
    :mod:`._jpeg_blocks`). None for every other image (any change is written
    exactly) and where ``jpeglib`` is not installed (a changed JPEG is then
    encoded again).
    """
    from . import _jpeg_blocks

    src = image.source
    if not isinstance(src, RasterSource) or src.format != "jpeg" or src.mcu is None or image.n_frames != 1:
        return None
    return src.mcu if _jpeg_blocks.available() else None


#: JPEG segments kept when metadata is removed: APP0 (JFIF, without a thumbnail), APP2 (ICC
#: profile) and APP14 (Adobe: how the colours are coded). EXIF, XMP, IPTC, comments and every
#: other application segment can name the patient, and go.
_KEPT_APP = {0xE0, 0xE2, 0xEE}


def jpeg_without_metadata(data: bytes) -> bytes:
    """A JPEG file's bytes without its metadata segments (see :data:`_KEPT_APP`; one JFIF header at most).

    The image data is unchanged.

    Example:
        >>> soi, com = b"\\xff\\xd8", b"\\xff\\xfe\\x00\\x06Jane"
        >>> jpeg_without_metadata(soi + com + b"\\xff\\xda\\x00\\x02scan\\xff\\xd9")
        b'\\xff\\xd8\\xff\\xda\\x00\\x02scan\\xff\\xd9'
    """
    if data[:2] != b"\xff\xd8":
        raise ValueError("not a JPEG stream")
    out = bytearray(data[:2])
    i, seen_jfif = 2, False
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            raise ValueError(f"JPEG marker expected at byte {i}")
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker == 0xDA:  # start of scan: the rest is image data, copied as it is
            out += data[i:]
            return bytes(out)
        length = int.from_bytes(data[i + 2 : i + 4], "big")
        segment = data[i : i + 2 + length]
        keep = not (0xE0 <= marker <= 0xEF or marker == 0xFE) or marker in _KEPT_APP
        jfif = marker == 0xE0 and segment[4:9] == b"JFIF\x00"
        if jfif and ((length >= 16 and (segment[16] or segment[17])) or seen_jfif):
            keep = False  # a JFIF header holding a thumbnail, or a second one (libjpeg adds its own)
        seen_jfif = seen_jfif or (jfif and keep)
        if keep:
            out += segment
        i += 2 + length
    raise ValueError("JPEG stream without image data")


def check_raster_path(image: Image, path: Path) -> str:
    """The format (``png``, ``jpeg``, ``tiff``) ``image`` is written in at ``path`` (:func:`write_raster`)."""
    fmt = RASTER_SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise OutputError(
            f"{path}: unknown output suffix {path.suffix!r}; use one of {', '.join(RASTER_SUFFIXES)}"
        )
    src = image.source if isinstance(image.source, RasterSource) else None
    if fmt == "jpeg" and (src is None or src.format != "jpeg"):
        raise OutputError(
            f"{path}: JPEG is lossy and would change pixels that were not redacted; it is written only "
            "for images read from a JPEG. Use .png or .tif instead"
        )
    if fmt in ("png", "jpeg") and image.n_frames > 1:
        raise OutputError(
            f"{path}: {fmt.upper()} holds one frame and this image has {image.n_frames}; use .tif"
        )
    return fmt


# ----------------------------------------------------------------------------------------------------
# PNG and JPEG (Pillow)


def _read_pillow(path: Path, kind: str) -> Image:
    from PIL import Image as PILImage
    from PIL import UnidentifiedImageError

    if kind == "png":
        _check_png_header(path)
    try:
        with warnings.catch_warnings():
            # the memory check below replaces Pillow's fixed pixel-count limit
            warnings.simplefilter("ignore", PILImage.DecompressionBombWarning)
            im = PILImage.open(path)
    except PILImage.DecompressionBombError as e:
        raise TooLargeError(f"{path}: {e}") from e
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, struct.error) as e:
        raise CorruptInputError(f"{path}: not a readable {kind.upper()} file ({e})") from e
    with im:
        n = 1 if kind == "jpeg" else int(getattr(im, "n_frames", 1) or 1)
        if kind == "jpeg" and int(getattr(im, "n_frames", 1) or 1) > 1:
            log.info("%s: a multi-picture JPEG; only its first image is read", path)
        bands = max(len(im.getbands()), 1)
        depth = 2 if im.mode.startswith("I") else 1
        check_fits_in_memory(path, n * im.width * im.height * bands * depth * 2, what="the decoded image")
        source = _pillow_source(im, kind)
        decoded = []
        try:
            for i in range(n):
                im.seek(i)
                decoded.append(_pillow_frame(im, path))
        except (OSError, SyntaxError, ValueError, struct.error, EOFError) as e:
            raise CorruptInputError(
                f"{path}: the {kind.upper()} image data is truncated or damaged ({e})"
            ) from e
        if len({(p, None if pal is None else pal.tobytes()) for _, p, pal in decoded}) > 1:
            log.info("%s: frames differ in colour type; all are read as RGB", path)
            decoded = []
            for i in range(n):
                im.seek(i)
                decoded.append((np.asarray(im.convert("RGB")), "RGB", None))
    frames = np.stack([a for a, _, _ in decoded])
    _, photometric, palette = decoded[0]
    if kind == "jpeg":
        source = replace(source, path=path, digest=_digest(frames, photometric))
    return Image(frames, photometric, palette=palette, source=source, path=path)


def _digest(frames: np.ndarray, photometric: str) -> bytes:
    data = np.ascontiguousarray(frames)
    h = hashlib.blake2b(data.view(np.uint8), digest_size=16)
    h.update(f"{photometric}{data.shape}{data.dtype}".encode())
    return h.digest()


def _check_png_header(path: Path) -> None:
    with open(path, "rb") as f:
        head = f.read(33)
    if len(head) < 33 or head[12:16] != b"IHDR":
        raise CorruptInputError(f"{path}: a PNG signature without a valid IHDR chunk; the file is damaged")
    bit_depth, colour = head[24], head[25]
    if bit_depth == 16 and colour in (2, 4, 6):
        raise UnsupportedInputError(
            f"{path}: a 16-bit {_PNG_COLOUR_TYPES[colour]} PNG; Pillow reads 16-bit colour PNG only as "
            "8 bits, which would lose data. Convert it to a 16-bit TIFF (e.g. with ImageMagick: "
            "convert in.png out.tif) and read that"
        )


def _pillow_source(im: Any, kind: str) -> RasterSource:
    info = im.info
    dpi = info.get("dpi")
    quant: Any = None
    sub = -1
    mcu = None
    if kind == "jpeg":
        from PIL import JpegImagePlugin

        quant = getattr(im, "quantization", None) or None
        try:
            sub = int(JpegImagePlugin.get_sampling(im))
        except (AttributeError, KeyError, TypeError, ValueError):
            sub = -1
        layers = getattr(im, "layer", None) or []  # (component id, h, v, table) per component
        if (im.mode, len(layers)) in (("L", 1), ("RGB", 3)):
            mcu = (8 * max(v for _, _, v, _ in layers), 8 * max(h for _, h, _, _ in layers))
    return RasterSource(
        format=kind,
        mode=im.mode,
        icc_profile=info.get("icc_profile") or None,
        dpi=(float(dpi[0]), float(dpi[1])) if dpi else None,
        quantization=quant,
        subsampling=sub,
        mcu=mcu,
    )


def _pillow_frame(im: Any, path: Path) -> tuple[np.ndarray, str, np.ndarray | None]:
    """One frame as (array, photometric, palette)."""
    mode = im.mode
    if mode == "1":
        return np.asarray(im.convert("L")), "MONOCHROME2", None
    if mode == "L":
        return np.asarray(im), "MONOCHROME2", None
    if mode in ("I;16", "I;16L", "I;16B", "I;16N"):
        a = np.asarray(im)
        return a.astype(a.dtype.newbyteorder("=")), "MONOCHROME2", None
    if mode == "I":
        a = np.asarray(im)
        if a.size and (a.min() < 0 or a.max() > 65535):
            return a.astype(np.int32), "MONOCHROME2", None
        return a.astype(np.uint16), "MONOCHROME2", None
    if mode == "RGB":
        return np.asarray(im), "RGB", None
    if mode in ("LA", "La", "RGBA", "RGBa", "PA"):
        a = np.asarray(im)
        _warn_alpha(a[..., -1], path)
        a = a[..., :-1]
        if mode == "PA":
            return np.ascontiguousarray(a[..., 0]), "PALETTE COLOR", _pillow_palette(im)
        if a.shape[-1] == 1:
            return np.ascontiguousarray(a[..., 0]), "MONOCHROME2", None
        return np.ascontiguousarray(a), "RGB", None
    if mode == "P":
        if "transparency" in im.info:
            log.warning("%s: the palette's transparency is dropped; colours are kept as they are", path)
        return np.asarray(im), "PALETTE COLOR", _pillow_palette(im)
    if mode in ("CMYK", "YCbCr", "LAB", "HSV"):
        log.warning("%s: %s pixels are converted to RGB", path, mode)
        return np.asarray(im.convert("RGB")), "RGB", None
    raise UnsupportedInputError(f"{path}: pixels of Pillow mode {mode!r} are not supported")


def _pillow_palette(im: Any) -> np.ndarray:
    pal = im.getpalette("RGB") or []
    return np.asarray(pal, dtype=np.uint8).reshape(-1, 3)


def _warn_alpha(alpha: np.ndarray, path: Path) -> None:
    top = np.iinfo(alpha.dtype).max if alpha.dtype.kind in "iu" else 1
    if alpha.size and alpha.min() < top:
        log.warning(
            "%s: the alpha channel is dropped; pixels that were transparent show their stored colour", path
        )


def _write_pillow(image: Image, tmp: Path, fmt: str, src: RasterSource | None, dst: Path) -> None:
    from PIL import Image as PILImage

    frame = image.frames[0]
    photometric = image.photometric
    palette = None
    if photometric == "PALETTE COLOR":
        if fmt != "png":
            raise OutputError(f"{dst}: a palette image cannot be written as JPEG; use .png or .tif")
        frame, palette = _png_palette(image, dst)
        mode = "P"
    elif photometric == "RGB":
        frame = _fit(frame, np.uint8, dst, "8-bit colour (use .tif for 16-bit colour)")
        mode = "RGB"
    else:
        wide = frame.dtype.itemsize > 1 and fmt == "png"
        frame = _fit(frame, np.uint16 if wide else np.uint8, dst, "8 or 16-bit grey (use .tif)")
        if photometric == "MONOCHROME1":
            log.warning("%s: %s has no MONOCHROME1; the image is written inverted", dst, fmt.upper())
            frame = np.iinfo(frame.dtype).max - frame
        mode = "I;16" if frame.dtype == np.uint16 else "L"
    im = _i16(frame) if mode == "I;16" else PILImage.fromarray(np.ascontiguousarray(frame))
    if palette is not None:
        im.putpalette(palette.reshape(-1).tolist(), "RGB")  # makes it a "P" image
    params: dict[str, Any] = {}
    if src is not None:
        if src.icc_profile:
            params["icc_profile"] = src.icc_profile
        if src.dpi:
            params["dpi"] = src.dpi
    if fmt == "jpeg":
        assert src is not None
        if src.quantization:
            params["qtables"] = src.quantization
            if src.subsampling >= 0 and mode == "RGB":
                params["subsampling"] = src.subsampling
        else:
            params["quality"] = 95
    try:
        im.save(tmp, format="PNG" if fmt == "png" else "JPEG", **params)
    except (OSError, ValueError) as e:
        raise OutputError(f"{dst}: cannot be written as {fmt.upper()} ({e})") from e


def _i16(frame: np.ndarray) -> Any:
    from PIL import Image as PILImage

    data = np.ascontiguousarray(frame, dtype="<u2").tobytes()
    return PILImage.frombuffer("I;16", (frame.shape[1], frame.shape[0]), data, "raw", "I;16", 0, 1)


def _png_palette(image: Image, dst: Path) -> tuple[np.ndarray, np.ndarray]:
    """8-bit indices and a palette of at most 256 8-bit entries, as PNG needs."""
    assert image.palette is not None
    frame = image.frames[0]
    if frame.size and (frame.min() < 0 or frame.max() > 255):
        raise OutputError(f"{dst}: palette indices beyond 0..255 do not fit PNG; use .tif")
    pal = np.asarray(image.palette)
    if pal.dtype != np.uint8:
        if pal.size and (pal.min() < 0 or np.any(pal % 257) or pal.max() > 65535):
            raise OutputError(f"{dst}: 16-bit palette entries do not fit PNG's 8-bit palette; use .tif")
        pal = (pal // 257).astype(np.uint8)
    if image.palette_first != 0 or len(pal) > 256:
        # PNG maps index i to entry i: lay the palette out as DICOM would map each index
        values = np.arange(256) - image.palette_first
        pal = pal[np.clip(values, 0, len(pal) - 1)]
    return frame.astype(np.uint8), pal


def _fit(frame: np.ndarray, dtype: Any, dst: Path, what: str) -> np.ndarray:
    dtype = np.dtype(dtype)
    if frame.dtype == dtype:
        return frame
    if frame.dtype.kind == "b":
        return frame.astype(dtype)
    info = np.iinfo(dtype)
    ok = frame.dtype.kind in "iu" or (frame.dtype.kind == "f" and np.array_equal(frame, np.round(frame)))
    if ok and frame.size:
        ok = bool(frame.min() >= info.min and frame.max() <= info.max)
    if not ok:
        raise OutputError(f"{dst}: values of type {frame.dtype} do not fit {what}")
    return frame.astype(dtype)


# ----------------------------------------------------------------------------------------------------
# TIFF (tifffile)

_TIFF_PHOTOMETRIC = {
    "MINISBLACK": "MONOCHROME2",
    "MINISWHITE": "MONOCHROME1",
    "RGB": "RGB",
    "PALETTE": "PALETTE COLOR",
}


def _read_tiff(path: Path) -> Image:
    import tifffile

    try:
        tf = tifffile.TiffFile(path)
    except (tifffile.TiffFileError, ValueError, OSError, struct.error, EOFError, IndexError) as e:
        raise CorruptInputError(f"{path}: not a readable TIFF file ({e})") from e
    with tf:
        if not tf.series:
            raise CorruptInputError(f"{path}: the TIFF file holds no image")
        if len(tf.series) > 1:
            log.info("%s: %d image series; only the first is read", path, len(tf.series))
        series = tf.series[0]
        page = series.keyframe
        name = getattr(page.photometric, "name", str(page.photometric))
        if name not in _TIFF_PHOTOMETRIC:
            raise UnsupportedInputError(
                f"{path}: TIFF photometric {name} is not supported (only grey, RGB and palette)"
            )
        dtype = np.dtype(series.dtype)
        if dtype.kind not in "iub":
            raise UnsupportedInputError(
                f"{path}: {dtype} TIFF pixels are not supported; convert to 8 or 16-bit integers"
            )
        check_fits_in_memory(path, int(np.prod(series.shape)) * dtype.itemsize, what="the decoded image")
        try:
            arr = series.asarray()
        except ValueError as e:
            if "imagecodecs" in str(e):
                raise DecoderUnavailableError(
                    f"{path}: the TIFF is compressed with {page.compression.name}, which needs the "
                    "imagecodecs package; pip install imagecodecs"
                ) from e
            raise CorruptInputError(f"{path}: the TIFF image data cannot be decoded ({e})") from e
        except (OSError, struct.error, EOFError, IndexError, KeyError, RuntimeError) as e:
            raise CorruptInputError(f"{path}: the TIFF image data is truncated or damaged ({e})") from e
        axes = series.axes
        colormap = page.colormap
        source = RasterSource(
            format="tiff",
            mode=f"{name} {dtype}",
            icc_profile=page.iccprofile or None,
            dpi=_tiff_dpi(page),
            compressed=getattr(page.compression, "name", "NONE") != "NONE",
        )
    frames = _tiff_frames(arr, axes, path)
    photometric = _TIFF_PHOTOMETRIC[name]
    if frames.dtype.kind == "b":
        frames = frames.astype(np.uint8)
    palette = None
    if frames.ndim == 4:
        if frames.shape[-1] in (2, 4):
            _warn_alpha(frames[..., -1], path)
            frames = frames[..., :-1]
        if frames.shape[-1] == 1:
            frames = frames[..., 0]
        elif frames.shape[-1] != 3:
            raise UnsupportedInputError(f"{path}: {frames.shape[-1]} samples per pixel are not supported")
    if frames.ndim == 4:
        photometric = "RGB"
    elif photometric == "RGB":
        photometric = "MONOCHROME2"
    if photometric == "PALETTE COLOR":
        if colormap is None:
            raise CorruptInputError(f"{path}: a palette TIFF without a colour map")
        palette = np.ascontiguousarray(np.asarray(colormap).T)
    return Image(np.ascontiguousarray(frames), photometric, palette=palette, source=source, path=path)


def _tiff_frames(arr: np.ndarray, axes: str, path: Path) -> np.ndarray:
    """Reorder tifffile's axes to (frames, rows, columns[, samples])."""
    if "Y" not in axes or "X" not in axes:
        raise UnsupportedInputError(f"{path}: TIFF axes {axes!r} hold no 2D image")
    order = [i for i, a in enumerate(axes) if a not in "YXS"] + [axes.index("Y"), axes.index("X")]
    if "S" in axes:
        order.append(axes.index("S"))
    arr = np.transpose(arr, order)
    n_other = len(axes) - (3 if "S" in axes else 2)
    return arr.reshape((-1, *arr.shape[n_other:]))


def _tiff_dpi(page: Any) -> tuple[float, float] | None:
    try:
        xres = page.tags["XResolution"].value
        yres = page.tags["YResolution"].value
        unit = page.tags["ResolutionUnit"].value if "ResolutionUnit" in page.tags else 2
    except KeyError:
        return None
    try:
        x, y = xres[0] / xres[1], yres[0] / yres[1]
    except (TypeError, ZeroDivisionError, IndexError):
        return None
    unit = int(unit)
    if unit == 3:  # centimetre
        return (x * 2.54, y * 2.54)
    if unit == 2:
        return (x, y)
    return None


def _write_tiff(image: Image, tmp: Path, src: RasterSource | None, dst: Path) -> None:
    import tifffile

    frames = image.frames
    if frames.dtype.kind == "b":
        frames = frames.astype(np.uint8)
    if frames.dtype.kind not in "iu":
        raise OutputError(f"{dst}: frames of type {frames.dtype} are written as integers only")
    kwargs: dict[str, Any] = {}
    photometric = {
        "MONOCHROME2": "minisblack",
        "MONOCHROME1": "miniswhite",
        "RGB": "rgb",
        "PALETTE COLOR": "palette",
    }[image.photometric]
    if image.photometric == "PALETTE COLOR":
        frames, kwargs["colormap"] = _tiff_colormap(image, dst)
    data = frames[0] if image.n_frames == 1 else frames
    if src is not None and src.dpi:
        kwargs["resolution"] = src.dpi
        kwargs["resolutionunit"] = "INCH"
    if src is not None and src.icc_profile:
        kwargs["iccprofile"] = src.icc_profile
    compress = src is not None and src.format == "tiff" and src.compressed
    try:
        tifffile.imwrite(
            tmp,
            np.ascontiguousarray(data),
            photometric=photometric,
            compression="zlib" if compress else None,
            metadata=None,
            **kwargs,
        )
    except (ValueError, TypeError, OSError) as e:
        raise OutputError(f"{dst}: cannot be written as TIFF ({e})") from e


def _tiff_colormap(image: Image, dst: Path) -> tuple[np.ndarray, np.ndarray]:
    """Indices as 8 or 16-bit unsigned and the (3, 2**bits) 16-bit colour map TIFF needs."""
    assert image.palette is not None
    frames = image.frames
    if frames.size and (frames.min() < 0 or frames.max() > 65535):
        raise OutputError(f"{dst}: palette indices beyond 0..65535 do not fit a TIFF colour map")
    frames = frames.astype(np.uint8 if frames.dtype.itemsize == 1 else np.uint16)
    size = 256 if frames.dtype == np.uint8 else 65536
    pal = np.asarray(image.palette).astype(np.int64)
    if np.asarray(image.palette).dtype == np.uint8:
        pal = pal * 257
    if image.palette_first != 0 or len(pal) != size:
        pal = pal[np.clip(np.arange(size) - image.palette_first, 0, len(pal) - 1)]
    return frames, np.ascontiguousarray(pal.T.astype(np.uint16))
