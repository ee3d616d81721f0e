"""Synthetic images with burned-in text and exact boxes, for training and judging the text detector.

Every sample is a procedural background with up to ``n_text`` strings drawn
onto it, and the exact truth about each string: its tight box, its ink pixels
(an instance map), what it says, whether it identifies the patient, which font
and size drew it.

Backgrounds (``modalities``):

* ``xray``: a radiograph: soft-tissue silhouette, darker lungs, bright bones
  with a cortex (long bones, ribs, vertebrae), sometimes metal, collimation
  edges (bright or black outside), gamma and noise;
* ``screen``: a CT or MR screen capture: dark background, one panel or a grid
  of panels, each with a slice (CT- or MR-like): of a body (drawn ovals) or a
  head (mostly a slice through one of the real head templates of
  :mod:`~deephealth_deid.data.head_templates` in a random orientation, zoom
  and contrast, so gyri, vessels and bone edges at every scale teach what is
  not text; else drawn ovals), panel borders, sometimes a toolbar;
* ``ultrasound``: black background, a sector (phased or curvilinear) or a
  linear-probe rectangle of speckle with cysts, fascia and depth attenuation,
  sometimes a grey-scale bar, depth ticks, a focus marker and, on RGB images,
  colour Doppler: a few vessels, or a colour box of small saturated streaks
  the size of glyphs (real colour flow was taken for coloured text).

Pixel formats (``pixel_formats``): 8-bit grey (``uint8``), 10- to 16-bit grey
(``uint16``, bits stored drawn per sample) and 8-bit RGB. Sizes are drawn
log-uniformly in ``size_range`` for each side (aspect at most about 1.6).

Text is drawn with Pillow in every usable TrueType/OpenType font found in the
system font folders and matplotlib's bundled fonts (see :func:`find_fonts`).
Fonts are split for good into training and held-out fonts by a hash of the
font family in the file name (bold, italic and condensed faces of a family
fall on the same side), about 20% of families held out, so evaluation can use
designs never seen in training. Strings: identifying (names in Latin,
Cyrillic, Greek, CJK, Hangul and Arabic scripts where a font has the glyphs,
in DICOM and everyday orders; birth and study dates in many formats; times;
patient IDs, MRNs, accession numbers; ages and sex; institutions; referring
physicians) and harmless (L/R markers, views, scale numbers, units,
ultrasound parameters, exposure values, window settings, series and slice
information). All values are drawn at random; the name pools are common given
names and surnames combined at random and made-up names from syllables.

Each string is 6 to 80 px high (the height of a digit or capital, or of an
ideograph for CJK), white, black, grey or (on RGB images) coloured, straight
on the image, on a solid or inverse box, or outlined, horizontal or rotated
by 90 or 270 degrees, in a corner (stacked lines), along an edge, or over the
anatomy; boxes (with their backgrounds) never overlap. Text is rendered into
an 8-bit alpha layer and composited into the image in its own dtype (16-bit
images get 16-bit text values); the instance map holds the pixels whose alpha
is above 50%, and each box is tight around those (the anti-aliased fringe can
reach one pixel beyond it).

Speed (measured with :func:`benchmark` on the shared 2-core development
machine under ``nice -n 19`` while a training job ran; default options,
training fonts): about 0.05 s per 512x512 sample, 0.19 s per 2048x2048 and
0.3 s per 3000x3000. Probing the fonts (which scripts each one renders) costs
1-2 s once per process for the 60 fonts found there.

Example:
    >>> from deephealth_deid.data.synth_text import SynthTextGenerator, text_mask
    >>> gen = SynthTextGenerator(seed=1, size_range=(256, 320))
    >>> s = gen.sample(0)
    >>> s.image.shape[:2] == s.instance.shape
    True
    >>> all(s.instance[b.box[1] : b.box[3], b.box[0] : b.box[2]].max() == b.label for b in s.boxes)
    True
    >>> bool(text_mask(s)[s.instance > 0].all())  # the boxes cover every ink pixel
    True
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import logging
import math
import os
import re
import string
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image as PILImage
from PIL import ImageDraw, ImageFont, features
from scipy import ndimage as ndi

from ..errors import DeidError
from ..io.image import Image
from ._choices import probabilities

__all__ = [
    "SynthTextGenerator",
    "SynthTextSample",
    "TextBox",
    "FontInfo",
    "NoFontsError",
    "CATEGORIES",
    "IDENTIFYING_KINDS",
    "HARMLESS_KINDS",
    "MODALITIES",
    "PIXEL_FORMATS",
    "STYLES",
    "PLACEMENTS",
    "SCRIPTS",
    "FONT_INSTALL_HINT",
    "find_font_files",
    "find_fonts",
    "font_split",
    "text_mask",
    "ink_mask",
    "to_image",
    "benchmark",
]

log = logging.getLogger(__name__)

#: The two categories of string.
CATEGORIES = ("identifying", "harmless")
#: Kinds of identifying strings and their default relative frequencies.
IDENTIFYING_KINDS: dict[str, float] = {
    "name": 3.0,
    "birth_date": 1.5,
    "date": 1.5,
    "time": 1.0,
    "datetime": 0.6,
    "patient_id": 1.5,
    "mrn": 1.0,
    "accession": 1.0,
    "age": 1.0,
    "sex_age": 1.0,
    "institution": 1.5,
    "physician": 1.0,
}
#: Kinds of harmless strings.
HARMLESS_KINDS = ("marker", "view", "scale", "unit", "us_param", "exposure", "window", "series")
#: Backgrounds and their default probabilities.
MODALITIES: dict[str, float] = {"xray": 0.4, "screen": 0.3, "ultrasound": 0.3}
#: Pixel formats and their default probabilities.
PIXEL_FORMATS: dict[str, float] = {"grey8": 0.35, "grey16": 0.3, "rgb": 0.35}
#: How a string is drawn, with default probabilities.
STYLES: dict[str, float] = {"plain": 0.55, "box": 0.18, "inverse": 0.12, "outline": 0.15}
#: Where a string goes, with default probabilities.
PLACEMENTS: dict[str, float] = {"corner": 0.45, "edge": 0.2, "anywhere": 0.35}
#: Scripts of the person names, with default probabilities (a script no font renders is left out).
SCRIPTS: dict[str, float] = {
    "latin": 0.72,
    "cyrillic": 0.08,
    "greek": 0.06,
    "cjk": 0.08,
    "hangul": 0.03,
    "arabic": 0.03,
}
#: What to install when no font is found.
FONT_INSTALL_HINT = (
    "install matplotlib (pip install matplotlib, which bundles the DejaVu fonts) or system fonts "
    "(Debian/Ubuntu: apt-get install fonts-dejavu-core fonts-liberation2 fonts-freefont-ttf fonts-noto-core)"
)

# Harmless kinds by background (relative frequencies).
_HARMLESS_BY_MODALITY: dict[str, dict[str, float]] = {
    "xray": {
        "marker": 3.0, "view": 3.0, "exposure": 2.0, "scale": 1.0, "unit": 0.4, "window": 0.6,
        "series": 0.5, "us_param": 0.1,
    },
    "screen": {
        "marker": 1.0, "view": 0.5, "exposure": 1.0, "scale": 1.0, "unit": 0.8, "window": 2.0,
        "series": 3.0, "us_param": 0.1,
    },
    "ultrasound": {
        "marker": 0.6, "view": 1.2, "exposure": 0.05, "scale": 2.0, "unit": 1.0, "window": 0.1,
        "series": 0.3, "us_param": 4.0,
    },
}  # fmt: skip

_FONT_SUFFIXES = (".ttf", ".otf", ".ttc", ".otc")
_HELDOUT_PERCENT = 20

# ---------------------------------------------------------------------------- content pools

_GIVEN = (
    "John", "Mary", "Anna", "Peter", "Maria", "José", "Luis", "Carmen", "Hans", "Klaus", "Jürgen",
    "Sophie", "Pierre", "Marie", "François", "Giulia", "Marco", "Lars", "Ingrid", "Ahmed", "Fatima",
    "Wei", "Yuki", "Olga", "Ivan", "Piotr", "Zofia", "Søren", "Björn", "Núria", "João", "Chloé",
    "Agnieszka", "Oksana", "Kwame", "Amara", "Priya", "Rahul", "Aiko", "Mehmet", "Elif", "Sean",
    "Siobhan", "Kofi", "Lucía", "Matteo", "Emma", "Noah", "Liam", "Olivia", "Jan", "Eva", "Tomás",
    "Helga", "Ines", "Karin", "Paolo", "Dolores", "Yusuf", "Aylin", "Grace", "Samuel", "Leila",
)  # fmt: skip
_SURNAMES = (
    "Doe", "Smith", "Müller", "Schmidt", "Garcia", "Martínez", "Rossi", "Bianchi", "Dubois",
    "Lefèvre", "Novak", "Kowalski", "Nowak", "Jansen", "de Vries", "Andersson", "Nielsen", "O'Brien",
    "McDonald", "Nguyen", "Kim", "Tanaka", "Sato", "Singh", "Patel", "Okafor", "Mensah",
    "García-López", "van der Berg", "Ødegaard", "Özdemir", "Ferreira", "Gonçalves", "Weber",
    "Fischer", "Moreau", "Costa", "Silva", "Horváth", "Papadopoulos", "Ivanova", "Kaur", "Hassan",
    "Cohen", "Levi", "Schneider", "Brown", "Wilson", "Johansson", "Virtanen", "Byrne", "Dvořák",
)  # fmt: skip
_SYLLABLES = (
    "ka", "ren", "mo", "li", "ta", "vel", "sor", "an", "bri", "dus", "el", "fin", "gar", "hol", "ist",
    "jor", "kel", "lun", "mar", "nor", "ost", "pel", "quin", "ras", "sten", "tor", "ul", "ven", "wes",
    "yar", "zel", "be", "ci", "do", "ma", "ne", "ri", "sa", "to", "vi",
)  # fmt: skip
_NAMES_BY_SCRIPT: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "cyrillic": (
        ("Иван", "Пётр", "Анна", "Мария", "Ольга", "Сергей", "Дмитрий", "Елена", "Наталья", "Алексей",
         "Юлия", "Андрей", "Татьяна", "Николай"),
        ("Иванов", "Смирнова", "Кузнецов", "Попова", "Соколов", "Лебедева", "Козлов", "Новикова",
         "Морозов", "Волкова", "Шевченко", "Коваленко", "Федоров", "Егорова"),
    ),
    "greek": (
        ("Γιώργος", "Μαρία", "Ελένη", "Νίκος", "Κώστας", "Δημήτρης", "Σοφία", "Αικατερίνη", "Ιωάννης",
         "Άννα", "Παναγιώτης", "Χρυσούλα"),
        ("Παπαδόπουλος", "Νικολάου", "Γεωργίου", "Οικονόμου", "Δημητρίου", "Ιωάννου", "Παππάς",
         "Βασιλείου", "Κωνσταντίνου", "Αθανασίου"),
    ),
    "cjk": (
        ("伟", "芳", "娜", "敏", "静", "磊", "洋", "艳", "勇", "军", "杰", "娟", "涛", "明", "秀英", "丽",
         "强", "太郎", "花子", "健", "美咲", "翔", "陽菜", "大輔", "裕子", "ハナコ", "タロウ"),
        ("王", "李", "张", "刘", "陈", "杨", "黄", "赵", "吴", "周", "佐藤", "鈴木", "高橋", "田中", "渡辺",
         "伊藤", "山本", "中村", "サトウ", "スズキ"),
    ),
    "hangul": (
        ("민준", "서연", "지우", "하은", "도윤", "수빈", "예준", "지민"),
        ("김", "이", "박", "최", "정", "강", "조", "윤"),
    ),
    "arabic": (
        ("محمد", "أحمد", "فاطمة", "علي", "حسن", "مريم", "يوسف", "زينب", "خالد", "نور"),
        ("الحسيني", "العلي", "منصور", "حداد", "خليل", "سعيد", "الخطيب", "عثمان"),
    ),
}  # fmt: skip
# Characters a font must render for each script (the name pools use nothing else but spaces).
_SCRIPT_ALPHABETS: dict[str, str] = {
    "latin": string.ascii_letters + string.digits,
    **{
        s: "".join(sorted({c for pool in pools for word in pool for c in word}))
        for s, pools in _NAMES_BY_SCRIPT.items()
    },
}
_TOWN_A = (
    "Ash", "Bel", "Brook", "Cas", "Dun", "Elm", "Fair", "Glen", "Har", "Kings", "Lind", "Mar", "North",
    "Oak", "Ros", "Stan", "West", "Wil", "Hol", "Stein", "Mont", "Val", "Rock", "Green", "Silver", "Eich",
)  # fmt: skip
_TOWN_B = (
    "ford", "field", "ton", "bury", "wood", "dale", "mouth", "ville", "berg", "heim", "stadt",
    "borough", "haven", "brook", "ridge", "mere", "by", "au", "feld", "bach",
)  # fmt: skip
_SAINTS = (
    "Mary", "Luke", "John", "Anne", "Joseph", "Elisabeth", "Vincent", "Francis", "Catherine",
    "Michael", "Jude", "Thomas", "Agnes", "Raphael",
)  # fmt: skip
_INSTITUTIONS = (
    "St. {saint}'s Hospital", "Saint {saint} Medical Center", "{town} General Hospital",
    "{town} University Hospital", "Universitätsklinikum {town}", "Klinikum {town}", "Hôpital {saint}",
    "CHU de {town}", "Ospedale di {town}", "Hospital Universitario {town}", "{town} Medical Center",
    "{town} Imaging Centre", "Radiology - {town} Clinic", "{town} Children's Hospital",
    "Kreiskrankenhaus {town}", "Dept. of Radiology, {town}", "{town} Regional Medical Ctr",
    "Szpital Wojewódzki w {town}", "{TOWN} MEDICAL GROUP", "{TOWN} RADIOLOGY", "{town} Clinic",
    "Praxis Dr. {surname}", "{town} Hospital NHS Trust", "Centre Hospitalier de {town}",
)  # fmt: skip
_INSTITUTIONS_OTHER: dict[str, tuple[str, ...]] = {
    "cyrillic": ("Городская больница № {n}", "Клиническая больница {n}", "Областная больница"),
    "greek": ("Νοσοκομείο {n}", "Γενικό Νοσοκομείο"),
    "cjk": ("第{cn}人民医院", "市立病院", "人民医院"),
    "hangul": ("대학교병원", "병원"),
    "arabic": ("مستشفى {n}", "مستشفى"),
}
_MONTHS = {
    "en": ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"),
    "de": ("Jan", "Feb", "Mär", "Apr", "Mai", "Jun", "Jul", "Aug", "Sep", "Okt", "Nov", "Dez"),
    "fr": ("janv.", "févr.", "mars", "avr.", "mai", "juin", "juil.", "août", "sept.", "oct.", "nov.", "déc."),
}  # fmt: skip
_CN_DIGITS = "一二三四五六七八九"
_VIEWS = (
    "AP", "PA", "LAT", "LATERAL", "OBL", "PORTABLE", "SUPINE", "UPRIGHT", "ERECT", "AP SUPINE", "PA ERECT",
    "PORTABLE AP", "DECUBITUS", "STANDING", "WEIGHT BEARING", "INSP", "EXP", "FLEX", "EXT", "AXIAL", "TRANS",
    "SAG", "LONG", "TRV", "COR", "LIVER", "RT KIDNEY", "LT KIDNEY", "GB", "THYROID", "BLADDER", "PELVIS",
    "CHEST", "KNEE", "L-SPINE", "HAND", "WRIST", "SKULL", "ABDOMEN", "Sitting", "Semi-erect", "AP Portable",
)  # fmt: skip
_MARKERS = ("L", "R", "LT", "RT", "LEFT", "RIGHT", "A", "P", "H", "F", "S", "I", "L*", "R*", "Lt", "Rt")
_UNITS = (
    "cm",
    "mm",
    "Hz",
    "kHz",
    "MHz",
    "dB",
    "%",
    "cm/s",
    "m/s",
    "mSv",
    "mGy",
    "HU",
    "ms",
    "s",
    "bpm",
    "fps",
)
_PROBES = ("C5-1", "L12-5", "S5-1", "C1-6", "L3-12", "P4-2", "C9-2", "L18-4", "EV10C4", "6C2", "11L4")
_US_MODES = ("2D", "PW", "CF", "PD", "M", "THI", "B", "CPA", "HR", "Gen", "Res", "Pen")
_SEQUENCES = (
    "Ax",
    "COR",
    "SAG",
    "T1",
    "T2",
    "T2 FLAIR",
    "DWI",
    "ADC",
    "STIR",
    "T1 FS",
    "PD FS",
    "SWI",
    "T1+C",
)


# ---------------------------------------------------------------------------- public data types


class NoFontsError(DeidError, RuntimeError):
    """No usable TrueType/OpenType font was found to draw synthetic text with."""


@dataclass(frozen=True)
class FontInfo:
    """A font file the generator can draw with.

    Attributes:
        path: The font file.
        name: The file name without its suffix (``'DejaVuSans-Bold'``).
        family: What the training/held-out split hashes: the lower-cased file
            name up to its first ``-`` or ``_``, without style words such as
            ``Bold`` or ``Condensed`` (``'dejavusans'``).
        split: ``'train'`` or ``'heldout'``.
        scripts: Scripts (keys of :data:`SCRIPTS`) whose name alphabets the font
            renders.
    """

    path: Path
    name: str
    family: str
    split: str
    scripts: frozenset[str]


@dataclass(frozen=True)
class TextBox:
    """One burned-in string and the exact truth about it.

    Attributes:
        box: ``(x0, y0, x1, y1)`` in pixels, the tight box around the string's
            ink (its pixels in the instance map); ``x1`` and ``y1`` are
            exclusive, so the ink is ``image[y0:y1, x0:x1]``.
        text: The string as drawn (read left to right before any rotation).
        category: ``'identifying'`` or ``'harmless'``.
        kind: What it is (:data:`IDENTIFYING_KINDS`, :data:`HARMLESS_KINDS`).
        font: Name of the font file (``'DejaVuSans-Bold'``).
        height_px: Height of a digit or capital letter (an ideograph for CJK
            fonts) in pixels, before rotation.
        rotation: 0, 90 (reads bottom to top) or 270 (reads top to bottom).
        style: ``'plain'``, ``'box'`` (solid box, light text), ``'inverse'``
            (light box, dark text) or ``'outline'`` (text with a contrasting
            outline; the outline counts as ink).
        label: This string's value in the instance map.
    """

    box: tuple[int, int, int, int]
    text: str
    category: str
    kind: str
    font: str
    height_px: int
    rotation: int
    style: str
    label: int


@dataclass(frozen=True, eq=False)
class SynthTextSample:
    """One generated image with its text.

    Attributes:
        image: Pixels, ``(rows, columns)`` ``uint8`` or ``uint16`` for grey,
            ``(rows, columns, 3)`` ``uint8`` for RGB.
        photometric: ``'MONOCHROME2'`` or ``'RGB'``.
        boxes: The strings, in drawing order; ``boxes[k - 1].label == k``.
        instance: ``uint16`` map, 0 where there is no text, ``k`` on the ink
            pixels (alpha above 50%) of ``boxes[k - 1]``.
        info: What was drawn: ``index``, ``seed``, ``modality``,
            ``pixel_format``, ``bits_stored``, ``shape``, ``n_requested``,
            ``n_placed``, and details of the background.
    """

    image: np.ndarray
    photometric: str
    boxes: list[TextBox]
    instance: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------- fonts


def _font_dirs() -> list[Path]:
    """Folders searched for fonts, system folders first, then matplotlib's bundled fonts."""
    home = Path(os.path.expanduser("~"))
    dirs = [
        Path("/usr/share/fonts"),
        Path("/usr/local/share/fonts"),
        home / ".local" / "share" / "fonts",
        home / ".fonts",
        Path("/Library/Fonts"),
        Path("/System/Library/Fonts"),
        home / "Library" / "Fonts",
    ]
    windir = os.environ.get("WINDIR")
    if windir:
        dirs.append(Path(windir) / "Fonts")
    # matplotlib.get_data_path() is <package>/mpl-data; found without importing matplotlib.
    try:
        spec = importlib.util.find_spec("matplotlib")
    except (ImportError, ValueError):
        spec = None
    if spec is not None and spec.submodule_search_locations:
        for loc in spec.submodule_search_locations:
            dirs.append(Path(loc) / "mpl-data" / "fonts" / "ttf")
    return dirs


def find_font_files(dirs: Sequence[str | os.PathLike[str]] | None = None) -> list[Path]:
    """TrueType/OpenType font files in ``dirs`` (recursively), sorted by path.

    A file name found in several folders is kept once, from the first folder
    (system fonts before matplotlib's copies of the same fonts).

    Args:
        dirs: Folders to search; default: the system font folders
            (``/usr/share/fonts``, ``/usr/local/share/fonts``, ``~/.fonts``,
            ``~/.local/share/fonts``, the macOS and Windows font folders) and
            matplotlib's bundled fonts if matplotlib is installed.

    Returns:
        The font files (``.ttf``, ``.otf``, ``.ttc``, ``.otc``), maybe none.
    """
    folders = [Path(d) for d in dirs] if dirs is not None else _font_dirs()
    seen: set[str] = set()
    found: list[Path] = []
    for folder in folders:
        if not folder.is_dir():
            continue
        files: list[Path] = []
        for root, _subdirs, names in os.walk(folder):
            files.extend(Path(root) / n for n in names if n.lower().endswith(_FONT_SUFFIXES))
        for p in sorted(files):
            if p.name.lower() not in seen and p.is_file():
                seen.add(p.name.lower())
                found.append(p)
    return sorted(found, key=str)


_STYLE_SUFFIX = re.compile(
    r"(bold|italic|oblique|regular|light|medium|black|thin|heavy|semibold|extrabold|extralight|condensed)+$"
)


def _family(path: Path) -> str:
    """The family part of a font file name: before the first ``-`` or ``_``, without style words.

    ``DejaVuSans-Bold.ttf`` and ``DejaVuSansCondensed.ttf`` give ``dejavusans``,
    ``FreeSansBoldOblique.otf`` gives ``freesans``.
    """
    stem = re.split(r"[-_]", path.name.rsplit(".", 1)[0], maxsplit=1)[0].lower()
    base = _STYLE_SUFFIX.sub("", stem)
    return base if len(base) >= 3 else stem


def font_split(path: str | os.PathLike[str]) -> str:
    """``'heldout'`` for about 20% of font families, ``'train'`` for the others; fixed for good.

    The split hashes (SHA-256) the family part of the file name (see
    :class:`FontInfo`), so it is the same on every machine and all faces of a
    family fall on one side.
    """
    digest = hashlib.sha256(_family(Path(path)).encode("utf-8")).digest()
    return "heldout" if int.from_bytes(digest[:8], "big") % 100 < _HELDOUT_PERCENT else "train"


def _mask_key(font: ImageFont.FreeTypeFont, text: str) -> tuple[tuple[int, int], bytes]:
    m = font.getmask(text)
    return tuple(m.size), bytes(m)  # type: ignore[return-value]


def _mask_array(font: ImageFont.FreeTypeFont, text: str) -> np.ndarray:
    m = font.getmask(text)
    w, h = m.size
    return np.frombuffer(bytes(m), np.uint8).reshape(h, w) if w * h else np.zeros((0, 0), np.uint8)


@functools.lru_cache(maxsize=64)
def _probe_font(path: str) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(path, 24)


@functools.cache
def _notdef(path: str) -> tuple[tuple[int, int], bytes]:
    # U+10FFFD (plane 16 private use) is in no font we know: FreeType draws glyph 0 (.notdef).
    return _mask_key(_probe_font(path), "\U0010fffd")


@functools.cache
def _has_glyph(path: str, char: str) -> bool:
    """Whether the font draws ``char`` with its own glyph (some ink, not the .notdef glyph)."""
    if char.isspace():
        return True
    key = _mask_key(_probe_font(path), char)
    return key != _notdef(path) and any(key[1])


def _topology(font: ImageFont.FreeTypeFont, char: str) -> tuple[int, int]:
    """(connected ink pieces, holes) of a character drawn large."""
    a = np.pad(_mask_array(font, char) > 127, 1)
    if not a.any():
        return 0, 0
    pieces = ndi.label(a, structure=np.ones((3, 3), bool))[1]
    holes = ndi.label(~a)[1] - 1
    return int(pieces), int(holes)


# Characters with a closed counter in Latin fonts, and characters without one.
_HOLED = "0689ABDOQabdeopq"
_OPEN = "12357EFHLTfrsxzlkuvwyhmnct"


def _distinct_glyphs(path: str, alphabet: str) -> bool:
    """Whether the characters look different (fallback fonts such as LastResort draw one box per block)."""
    font = _probe_font(path)
    chars = set(alphabet)
    return len({_mask_key(font, c) for c in chars}) >= 0.9 * len(chars)


def _renders_latin(path: str) -> bool:
    """Whether the font draws Latin letters and digits as such, not as symbols or dingbats.

    Symbol and dingbat fonts map the ASCII code points to Greek letters or
    pictures, so a glyph check alone passes them. The shapes give them away:
    Latin ``i`` and ``j`` have a dot (two pieces), and the counters (holes) of
    letters and digits are the expected ones for most of them.
    """
    if not all(_has_glyph(path, c) for c in _SCRIPT_ALPHABETS["latin"]):
        return False
    if not _distinct_glyphs(path, _SCRIPT_ALPHABETS["latin"]):
        return False
    font = ImageFont.truetype(path, 40)
    if any(_topology(font, c)[0] < 2 for c in "ij"):
        return False
    good = sum(_topology(font, c)[1] >= 1 for c in _HOLED) + sum(_topology(font, c)[1] == 0 for c in _OPEN)
    return good >= 0.8 * (len(_HOLED) + len(_OPEN))


def _complex_layout() -> bool:
    """Whether Pillow shapes text (Raqm with FriBiDi): needed to draw Arabic right."""
    try:
        return bool(features.check("raqm")) and bool(features.check_feature("fribidi"))
    except (ValueError, OSError):  # pragma: no cover - depends on the Pillow build
        return False


@functools.cache
def _font_scripts(path: str) -> frozenset[str]:
    """Scripts whose alphabets the font renders (empty if the file cannot be used)."""
    scripts = set()
    try:
        if _renders_latin(path):
            scripts.add("latin")
        for script, alphabet in _SCRIPT_ALPHABETS.items():
            if script == "latin" or (script == "arabic" and not _complex_layout()):
                continue
            if all(_has_glyph(path, c) for c in alphabet) and _distinct_glyphs(path, alphabet):
                scripts.add(script)
    except (OSError, ValueError) as e:  # not a font, a bitmap-only or colour-emoji font, ...
        log.debug("skipping font %s: %s", path, e)
        return frozenset()
    return frozenset(scripts)


def find_fonts(
    which: str | Sequence[str | os.PathLike[str]] = "all",
    *,
    dirs: Sequence[str | os.PathLike[str]] | None = None,
) -> tuple[FontInfo, ...]:
    """The usable fonts of one split, sorted by path.

    A font is usable when it renders Latin letters and digits (symbol and
    dingbat fonts are not), or when it renders the whole name alphabet of a
    non-Latin script (CJK fallback fonts without Latin glyphs are used for
    those names only).

    Args:
        which: ``'train'``, ``'heldout'``, ``'all'``, or font files to use.
        dirs: Folders to search (default: see :func:`find_font_files`).

    Returns:
        The fonts, never empty.

    Raises:
        NoFontsError: If no usable font is found, or none in the split asked for;
            the message says what to install.
        ValueError: If ``which`` is not a split name or a list of files.
    """
    if isinstance(which, str):
        if which not in ("train", "heldout", "all"):
            raise ValueError(
                f"fonts must be 'train', 'heldout', 'all' or a list of font files, got {which!r}"
            )
        files = find_font_files(dirs)
        where = (
            ", ".join(str(d) for d in dirs) if dirs is not None else "the system font folders or matplotlib"
        )
        if not files:
            raise NoFontsError(
                f"no TrueType/OpenType font found in {where} to draw synthetic text; {FONT_INSTALL_HINT}"
            )
    else:
        files = sorted((Path(p) for p in which), key=str)
        missing = [str(p) for p in files if not p.is_file()]
        if missing:
            raise NoFontsError(f"font file(s) not found: {missing}")
        where = "the font files given"
    if isinstance(which, str) and which != "all":
        files = [p for p in files if font_split(p) == which]
    infos = []
    for p in files:
        scripts = _font_scripts(str(p))
        if not scripts:
            log.debug("font %s renders none of the scripts used; skipped", p)
            continue
        infos.append(FontInfo(p, p.name.rsplit(".", 1)[0], _family(p), font_split(p), scripts))
    if not any("latin" in f.scripts for f in infos):
        split = ""
        if isinstance(which, str) and which != "all":
            split = f" of the {which!r} split (about {_HELDOUT_PERCENT}% of font families are held out)"
        raise NoFontsError(
            f"none of the {len(files)} font file(s){split} in {where} renders Latin letters and digits; "
            f"install more fonts: {FONT_INSTALL_HINT}"
        )
    return tuple(infos)


@functools.lru_cache(maxsize=256)
def _truetype(path: str, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(path, size)


@functools.cache
def _height_ratio(path: str) -> float:
    """Height of a digit (or capital, or ideograph) per pixel of font size."""
    font = _truetype(path, 100)
    for ref in ("0", "H", "国", "口", "И"):
        if _has_glyph(path, ref):
            _x0, y0, _x1, y1 = font.getbbox(ref)
            if y1 > y0:
                return (y1 - y0) / 100.0
    return 0.72


# ---------------------------------------------------------------------------- helpers


def _choice(r: np.random.Generator, seq: Sequence[Any]) -> Any:
    return seq[int(r.integers(len(seq)))]


def _weighted(r: np.random.Generator, weights: dict[str, float]) -> str:
    keys = list(weights)
    p = np.asarray([weights[k] for k in keys], dtype=np.float64)
    return keys[int(r.choice(len(keys), p=p / p.sum()))]


def _resize(a: np.ndarray, h: int, w: int, resample: int = PILImage.Resampling.BICUBIC) -> np.ndarray:
    """Resize a 2D float array (any size) to ``(h, w)``."""
    if a.shape == (h, w):
        return a.astype(np.float32, copy=False)
    im = PILImage.fromarray(np.ascontiguousarray(a, dtype=np.float32))
    return np.array(im.resize((w, h), resample), dtype=np.float32)


def _smooth(r: np.random.Generator, h: int, w: int, cells: int) -> np.ndarray:
    """Smooth random field, about N(0, 1), varying over ``1/cells`` of the image."""
    ch = max(2, round(cells * h / max(h, w)))
    cw = max(2, round(cells * w / max(h, w)))
    return _resize(r.standard_normal((ch, cw)).astype(np.float32), h, w)


def _ellipse(
    cx: float, cy: float, a: float, b: float, angle: float = 0.0, n: int = 48
) -> list[tuple[float, float]]:
    t = np.linspace(0.0, 2 * np.pi, n, endpoint=False)
    ca, sa = math.cos(angle), math.sin(angle)
    x, y = a * np.cos(t), b * np.sin(t)
    return [(float(cx + ca * u - sa * v), float(cy + sa * u + ca * v)) for u, v in zip(x, y, strict=True)]


def _canvas(h: int, w: int, value: float = 0.0) -> tuple[PILImage.Image, ImageDraw.ImageDraw]:
    im = PILImage.new("F", (w, h), value)
    return im, ImageDraw.Draw(im)


def _work(h: int, w: int, cap: int) -> tuple[int, int]:
    s = min(1.0, cap / max(h, w))
    return max(16, round(h * s)), max(16, round(w * s))


def _to_rgb(grey: np.ndarray, r: np.random.Generator, tint: float) -> np.ndarray:
    t = 1.0 - r.uniform(0.0, tint, 3).astype(np.float32)
    return grey[..., None] * t[None, None, :]


# ---------------------------------------------------------------------------- backgrounds


def _radiograph(r: np.random.Generator, h: int, w: int, rgb: bool, info: dict[str, Any]) -> np.ndarray:
    wh, ww = _work(h, w, 640)
    s = min(wh, ww)
    air = r.uniform(0.0, 0.12)
    tissue = r.uniform(0.3, 0.6)
    # Soft tissue: one to three overlapping ellipses, edges blurred.
    body_im, d = _canvas(wh, ww)
    for _ in range(int(r.integers(1, 4))):
        bx, by = ww * r.uniform(0.2, 0.8), wh * r.uniform(0.2, 0.8)
        limb = _ellipse(bx, by, ww * r.uniform(0.15, 0.55), wh * r.uniform(0.15, 0.55), r.uniform(0, np.pi))
        d.polygon(limb, fill=1.0)
    body = ndi.gaussian_filter(np.asarray(body_im), s * r.uniform(0.01, 0.05))
    texture = 0.15 * _smooth(r, wh, ww, 6) + 0.04 * _smooth(r, wh, ww, 40)
    img = air + (tissue - air) * body * (1.0 + texture)
    if r.random() < 0.4:  # lungs or bowel gas: darker regions inside the body
        lungs_im, d = _canvas(wh, ww)
        for _ in range(int(r.integers(1, 3))):
            lx, ly = ww * r.uniform(0.25, 0.75), wh * r.uniform(0.3, 0.6)
            lung = _ellipse(
                lx, ly, ww * r.uniform(0.08, 0.2), wh * r.uniform(0.15, 0.3), r.uniform(-0.3, 0.3)
            )
            d.polygon(lung, fill=1.0)
        img -= r.uniform(0.1, 0.3) * body * ndi.gaussian_filter(np.asarray(lungs_im), s * 0.02)
    # Bones: long bones with a cortex and a canal, ribs as arcs, vertebrae as stacked blocks.
    bone_im, d = _canvas(wh, ww)
    for _ in range(int(r.integers(0, 5))):
        x0, y0 = ww * r.uniform(0.1, 0.9), wh * r.uniform(0.1, 0.9)
        ang = r.uniform(0, np.pi)
        length = s * r.uniform(0.2, 0.8)
        x1, y1 = x0 + length * math.cos(ang), y0 + length * math.sin(ang)
        width = max(3.0, s * r.uniform(0.025, 0.07))
        d.line([(x0, y0), (x1, y1)], fill=1.0, width=round(width))
        for x, y in ((x0, y0), (x1, y1)):  # epiphyses
            e = width * r.uniform(0.55, 0.75)
            d.ellipse([x - e, y - e, x + e, y + e], fill=0.9)
        d.line([(x0, y0), (x1, y1)], fill=0.6, width=max(1, round(width * r.uniform(0.3, 0.6))))
    if r.random() < 0.35:
        cx, cy = ww * r.uniform(0.3, 0.7), wh * r.uniform(0.2, 0.5)
        for k in range(int(r.integers(3, 9))):
            rad = s * (0.12 + 0.05 * k)
            box = [
                cx - rad * 1.4,
                cy - rad * 0.6 + k * s * 0.06,
                cx + rad * 1.4,
                cy + rad * 0.9 + k * s * 0.06,
            ]
            d.arc(box, 200, 340, fill=0.8, width=max(1, round(s * 0.012)))
    if r.random() < 0.3:
        cx = ww * r.uniform(0.35, 0.65)
        bw, bh = s * r.uniform(0.05, 0.1), s * r.uniform(0.04, 0.07)
        for y in np.arange(wh * r.uniform(0, 0.2), wh, bh * 1.35):
            d.rectangle([cx - bw, y, cx + bw, y + bh], fill=0.85)
    bone = ndi.gaussian_filter(np.asarray(bone_im), r.uniform(0.5, 1.5))
    img += r.uniform(0.15, 0.4) * bone
    if r.random() < 0.2:  # metal: wires, screws, clips
        metal_im, d = _canvas(wh, ww)
        for _ in range(int(r.integers(1, 6))):
            x0, y0 = ww * r.uniform(0.1, 0.9), wh * r.uniform(0.1, 0.9)
            x1, y1 = x0 + s * r.uniform(-0.2, 0.2), y0 + s * r.uniform(-0.2, 0.2)
            d.line([(x0, y0), (x1, y1)], fill=1.0, width=max(1, round(s * r.uniform(0.002, 0.01))))
        img = np.maximum(img, np.asarray(metal_im) * r.uniform(0.85, 1.0))
    img = np.clip(img, 0.0, 1.0) ** r.uniform(0.6, 1.6)
    collimated = bool(r.random() < 0.6)
    if collimated:  # a slightly rotated rectangle; outside bright (unexposed) or electronically black
        coll_im, d = _canvas(wh, ww)
        cx, cy = ww * r.uniform(0.4, 0.6), wh * r.uniform(0.4, 0.6)
        hw, hh = ww * r.uniform(0.3, 0.5), wh * r.uniform(0.3, 0.5)
        a = r.uniform(-0.08, 0.08)
        ca, sa = math.cos(a), math.sin(a)
        corners = [(-hw, -hh), (hw, -hh), (hw, hh), (-hw, hh)]
        d.polygon([(cx + ca * u - sa * v, cy + sa * u + ca * v) for u, v in corners], fill=1.0)
        inside = ndi.gaussian_filter(np.asarray(coll_im), r.uniform(0.3, 1.5))
        outside = r.uniform(0.75, 1.0) if r.random() < 0.6 else r.uniform(0.0, 0.05)
        img = img * inside + outside * (1.0 - inside)
    info["collimated"] = collimated
    out = _resize(img, h, w)
    out += r.uniform(0.003, 0.03) * r.standard_normal((h, w), dtype=np.float32)
    out = np.clip(out, 0.0, 1.0)
    return _to_rgb(out, r, 0.05) if rgb else out


def _slice(r: np.random.Generator, n: int, kind: str) -> np.ndarray:
    """One round or oval CT/MR slice drawn at ``n x n``, values 0..1."""
    im, d = _canvas(n, n)
    cx, cy = n * r.uniform(0.45, 0.55), n * r.uniform(0.45, 0.55)
    if kind == "head":
        a, b = n * r.uniform(0.3, 0.42), n * r.uniform(0.36, 0.46)
        ct = r.random() < 0.5
        scalp, skull, brain, csf = (0.35, 0.95, 0.45, 0.2) if ct else (0.6, 0.08, 0.5, r.choice([0.1, 0.9]))
        d.polygon(_ellipse(cx, cy, a, b), fill=scalp)
        d.polygon(_ellipse(cx, cy, a * 0.94, b * 0.95), fill=skull)
        d.polygon(_ellipse(cx, cy, a * 0.86, b * 0.88), fill=brain)
        for sx in (-1, 1):  # ventricles
            d.polygon(
                _ellipse(cx + sx * a * 0.15, cy - b * 0.05, a * 0.08, b * 0.25, sx * 0.3), fill=float(csf)
            )
    else:
        a, b = n * r.uniform(0.38, 0.47), n * r.uniform(0.25, 0.38)
        d.polygon(_ellipse(cx, cy, a, b), fill=r.uniform(0.25, 0.6))
        d.polygon(_ellipse(cx, cy, a * 0.9, b * 0.86), fill=r.uniform(0.4, 0.55))
        for _ in range(int(r.integers(2, 6))):  # organs
            ox, oy = a * r.uniform(-0.5, 0.5), b * r.uniform(-0.5, 0.3)
            organ = _ellipse(
                cx + ox, cy + oy, a * r.uniform(0.1, 0.35), b * r.uniform(0.1, 0.4), r.uniform(0, 3.1)
            )
            d.polygon(organ, fill=r.uniform(0.3, 0.7))
        for _ in range(int(r.integers(0, 4))):  # gas
            ox, oy = a * r.uniform(-0.5, 0.5), b * r.uniform(-0.4, 0.2)
            d.polygon(
                _ellipse(cx + ox, cy + oy, a * r.uniform(0.03, 0.1), b * r.uniform(0.03, 0.1)), fill=0.02
            )
        sr = b * r.uniform(0.12, 0.2)  # vertebra and aorta
        d.ellipse([cx - sr, cy + b * 0.55 - sr, cx + sr, cy + b * 0.55 + sr], fill=0.95)
        d.ellipse(
            [cx - sr * 0.6 + sr, cy + b * 0.2 - sr * 0.6, cx + sr * 0.6 + sr, cy + b * 0.2 + sr * 0.6],
            fill=0.7,
        )
        if r.random() < 0.6:  # the table
            d.arc(
                [cx - a * 1.5, cy + b * 1.05, cx + a * 1.5, cy + b * 1.6],
                200,
                340,
                fill=0.7,
                width=max(1, n // 60),
            )
    img = np.asarray(im) + 0.06 * _smooth(r, n, n, 12) * (np.asarray(im) > 0)
    img = ndi.gaussian_filter(img, r.uniform(0.4, 1.2))
    img += r.uniform(0.0, 0.05) * r.standard_normal((n, n), dtype=np.float32)
    return np.clip(img, 0.0, 1.0)


#: Fraction of head panels of a screen capture drawn from a real head template rather than an oval.
_TEMPLATE_PANELS = 0.9


@functools.cache
def _template_tissues() -> tuple[np.ndarray, ...]:
    """The tissue maps of the shipped head templates (real anatomy: gyri, orbits, sinuses)."""
    from .head_templates import load_templates

    return tuple(np.ascontiguousarray(t.tissue) for t in load_templates())


def _anatomy_slice(r: np.random.Generator, n: int) -> np.ndarray:
    """A slice through a real head template at ``n x n``, values 0..1, in a random MR or CT contrast.

    The ovals of :func:`_slice` teach nothing about real anatomy; at small
    sizes (a 64-pixel thumbnail, a zoomed view of an orbit) gyri, vessels and
    the skull's edges make short strokes that look like glyphs, and the
    detector must learn they are not text.
    """
    tissues = _template_tissues()
    t = tissues[int(r.integers(len(tissues)))]
    axis = int(r.choice(3, p=[0.3, 0.3, 0.4]))
    head = np.nonzero((t != 0).any(axis=tuple(a for a in range(3) if a != axis)))[0]
    k = round(head[0] + (head[-1] - head[0]) * r.uniform(0.15, 0.85))
    sl = np.take(t, k, axis=axis)
    rows, cols = np.nonzero(sl)
    if rows.size == 0:
        return _slice(r, n, "head")
    y0, y1, x0, x1 = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
    if r.random() < 0.35:  # a zoomed view of part of the head
        f = r.uniform(0.35, 0.8)
        hh, ww = max(8, round((y1 - y0) * f)), max(8, round((x1 - x0) * f))
        y0 = int(r.integers(y0, max(y0 + 1, y1 - hh + 1)))
        x0 = int(r.integers(x0, max(x0 + 1, x1 - ww + 1)))
        y1, x1 = y0 + hh, x0 + ww
    side = max(y1 - y0, x1 - x0)
    pad = round(side * r.uniform(0.0, 0.12))
    canvas = np.zeros((side + 2 * pad,) * 2, sl.dtype)
    oy, ox = pad + (side - (y1 - y0)) // 2, pad + (side - (x1 - x0)) // 2
    canvas[oy : oy + y1 - y0, ox : ox + x1 - x0] = sl[y0:y1, x0:x1]
    canvas = np.rot90(canvas, int(r.integers(4)))
    if r.random() < 0.5:
        canvas = canvas[:, ::-1]
    lut = r.uniform(0.05, 1.0, 32).astype(np.float32)  # an MR contrast, or anything
    if r.random() < 0.35:  # CT: bone bright, soft tissue grey, fat darker, air black
        lut[:] = r.uniform(0.3, 0.45)
        lut[[4, 5]] = r.uniform(0.8, 1.0)
        lut[[2, 12]] = r.uniform(0.15, 0.25)
        lut[[6, 10]] = r.uniform(0.28, 0.35)
    lut[[0, 11]] = r.uniform(0.0, 0.05)
    img = lut[canvas] * (1.0 + 0.08 * _smooth(r, *canvas.shape, 8))
    img = _resize(img, n, n)
    img = ndi.gaussian_filter(img, r.uniform(0.0, 1.0))
    img += r.uniform(0.0, 0.04) * r.standard_normal((n, n), dtype=np.float32)
    return np.clip(img, 0.0, 1.0)


def _screen(r: np.random.Generator, h: int, w: int, rgb: bool, info: dict[str, Any]) -> np.ndarray:
    layouts = ((1, 1), (1, 1), (1, 2), (2, 1), (2, 2), (2, 2), (1, 3), (2, 3), (3, 3), (3, 4), (4, 4), (4, 5))
    rows, cols = _choice(r, layouts)
    bg = r.uniform(0.0, 0.06)
    chans = 3 if rgb else 1
    out = np.full((h, w, chans), bg, np.float32)
    if rgb and r.random() < 0.4:  # dark blue-grey UI
        out[..., 2] += r.uniform(0.0, 0.08)
    top = 0
    if r.random() < 0.3:  # a toolbar with buttons
        tb = max(8, round(h * r.uniform(0.03, 0.08)))
        out[:tb] = r.uniform(0.12, 0.3)
        x = int(r.integers(2, 12))
        while x < w - tb:
            bw = int(r.integers(tb // 2, 2 * tb))
            out[2 : tb - 2, x : x + bw] = r.uniform(0.2, 0.5)
            x += bw + int(r.integers(2, 10))
        top = tb
    gap = int(r.integers(1, max(2, round(min(h, w) * 0.015)) + 1))
    ph = (h - top - gap * (rows + 1)) // rows
    pw = (w - gap * (cols + 1)) // cols
    if ph < 16 or pw < 16:
        rows, cols = 1, 1
        ph, pw = h - top - 2 * gap, w - 2 * gap
    kind = "head" if r.random() < 0.6 else "body"
    border = r.uniform(0.15, 0.5)
    active = int(r.integers(rows * cols)) if rgb and r.random() < 0.5 else -1
    for k in range(rows * cols):
        i, j = divmod(k, cols)
        y0, x0 = top + gap + i * (ph + gap), gap + j * (pw + gap)
        n = min(256, max(16, min(ph, pw)))
        if kind == "head" and r.random() < _TEMPLATE_PANELS:
            sl = _anatomy_slice(r, n) * r.uniform(0.7, 1.0)
        else:
            sl = _slice(r, n, kind) * r.uniform(0.7, 1.0)
        side = min(ph, pw)
        sl = _resize(sl, side, side)
        oy, ox = y0 + (ph - side) // 2, x0 + (pw - side) // 2
        out[oy : oy + side, ox : ox + side] = np.maximum(out[oy : oy + side, ox : ox + side], sl[..., None])
        if gap >= 1 and rows * cols > 1:
            colour = np.array([1.0, 0.85, 0.1]) if k == active else np.full(3, border)
            col = colour[:chans]
            out[y0 - 1 if y0 else 0, x0 : x0 + pw] = col
            out[min(h - 1, y0 + ph), x0 : x0 + pw] = col
            out[y0 : y0 + ph, x0 - 1 if x0 else 0] = col
            out[y0 : y0 + ph, min(w - 1, x0 + pw)] = col
    info["panels"] = (int(rows), int(cols))
    info["slice"] = kind
    return np.clip(out if rgb else out[..., 0], 0.0, 1.0)


def _ultrasound(r: np.random.Generator, h: int, w: int, rgb: bool, info: dict[str, Any]) -> np.ndarray:
    wh, ww = _work(h, w, 768)
    yy, xx = np.mgrid[0:wh, 0:ww].astype(np.float32)
    probe = _weighted(r, {"phased": 0.35, "curved": 0.45, "linear": 0.2})
    top = wh * r.uniform(0.04, 0.15)
    cx = ww * r.uniform(0.4, 0.6)
    depth = wh * r.uniform(0.6, 0.92) - top
    if probe == "linear":
        half = min(ww * r.uniform(0.25, 0.4), depth * 0.8)
        inside = (np.abs(xx - cx) <= half) & (yy >= top) & (yy <= top + depth)
        rr = yy - top
        th = (xx - cx) / max(half, 1.0)
        r0, r1 = 0.0, depth
    else:
        r0 = 0.0 if probe == "phased" else depth * r.uniform(0.1, 0.35)
        r1 = r0 + depth
        apex_y = top - r0
        half_angle = r.uniform(0.4, 0.8)
        half_angle = min(half_angle, math.asin(min(0.99, (ww * 0.48) / r1)))
        dx, dy = xx - cx, yy - apex_y
        rr = np.hypot(dx, dy)
        th = np.arctan2(dx, dy)
        inside = (rr >= r0) & (rr <= r1) & (np.abs(th) <= half_angle) & (dy > 0)
        th = th / half_angle
    depth01 = np.clip((rr - r0) / max(r1 - r0, 1.0), 0.0, 1.0)
    echo = np.exp(0.5 * _smooth(r, wh, ww, 5)) * r.uniform(0.4, 0.7)
    tis_im, d = _canvas(wh, ww, 1.0)
    for _ in range(int(r.integers(0, 4))):  # cysts and vessels: dark
        ex, ey = cx + ww * r.uniform(-0.2, 0.2), top + depth * r.uniform(0.2, 0.8)
        cyst = _ellipse(ex, ey, ww * r.uniform(0.02, 0.1), wh * r.uniform(0.02, 0.07), r.uniform(0, np.pi))
        d.polygon(cyst, fill=r.uniform(0.0, 0.2))
    echo = echo * ndi.gaussian_filter(np.asarray(tis_im), 2.0)
    for _ in range(int(r.integers(0, 4))):  # fascia: bright bands at a depth
        at = r.uniform(0.1, 0.9)
        echo += r.uniform(0.3, 0.9) * np.exp(-(((depth01 - at - 0.03 * th**2) / 0.012) ** 2))
    speckle = r.rayleigh(1.0, (wh, ww)).astype(np.float32)
    speckle = ndi.gaussian_filter(speckle, (r.uniform(0.5, 1.0), r.uniform(0.8, 2.0)))
    gain = np.exp(-r.uniform(0.0, 1.5) * depth01) * (1.0 + r.uniform(-0.2, 0.2) * depth01)
    img = inside * echo * speckle * gain
    img = img / max(float(np.percentile(img[inside], 99.5)) if inside.any() else 1.0, 1e-6)
    img = np.clip(img * r.uniform(0.7, 1.0), 0.0, 1.0)
    ui_im, d = _canvas(wh, ww)
    if r.random() < 0.6:  # grey-scale bar
        bx = ww * (r.uniform(0.02, 0.06) if r.random() < 0.5 else r.uniform(0.9, 0.95))
        by, bh, bw = wh * r.uniform(0.1, 0.3), wh * r.uniform(0.15, 0.35), max(3, ww * 0.015)
        for k in range(64):
            d.rectangle([bx, by + bh * k / 64, bx + bw, by + bh * (k + 1) / 64], fill=1.0 - k / 63)
    if r.random() < 0.7:  # depth ticks along the right edge of the image
        tx = min(ww - 4, cx + (ww * 0.45 if probe != "linear" else half + ww * 0.03))
        n_ticks = int(r.integers(4, 16))
        for k in range(n_ticks + 1):
            y = top + depth * k / n_ticks
            d.rectangle([tx, y, tx + (4 if k % 5 else 8) * ww / 512, y + max(1, ww / 512)], fill=0.9)
    if r.random() < 0.5:  # focus marker
        fy = top + depth * r.uniform(0.2, 0.7)
        fx = min(ww - 10, cx + ww * 0.42)
        d.polygon([(fx, fy), (fx + ww * 0.015, fy - ww * 0.01), (fx + ww * 0.015, fy + ww * 0.01)], fill=0.9)
    img = np.maximum(img, np.asarray(ui_im))
    doppler = rgb and r.random() < 0.5
    info["probe"], info["doppler"] = probe, bool(doppler)
    grey = np.clip(_resize(img, h, w), 0.0, 1.0)
    if not rgb:
        return grey
    out = _to_rgb(grey, r, 0.15)
    if doppler:
        flow = _resize(_colour_flow(r, wh, ww, inside, top, depth, cx), h, w)
        speed = np.abs(flow)
        # Red through orange to yellow towards the probe, blue through cyan away from it.
        red = np.stack([np.ones_like(speed), speed * 0.9, np.zeros_like(speed)], -1)
        blue = np.stack([np.zeros_like(speed), speed * 0.7, np.ones_like(speed)], -1)
        colour = np.where((flow > 0)[..., None], red, blue)
        a = np.clip(speed * 3.0, 0.0, 1.0)[..., None]
        out = out * (1.0 - a) + colour * a
    return np.clip(out, 0.0, 1.0)


def _colour_flow(
    r: np.random.Generator, wh: int, ww: int, inside: np.ndarray, top: float, depth: float, cx: float
) -> np.ndarray:
    """Signed colour-Doppler flow in -1..1 on the ``wh`` x ``ww`` work grid, inside the sector.

    Either a few smooth vessels, or (as scanners show flow in tissue) a
    colour box full of small saturated streaks and speckles: blobs of
    thresholded anisotropic noise, the size of glyphs, which a text detector
    must learn to leave alone.
    """
    if r.random() < 0.4:
        col_im, d = _canvas(wh, ww)
        for _ in range(int(r.integers(1, 4))):
            ex, ey = cx + ww * r.uniform(-0.15, 0.15), top + depth * r.uniform(0.2, 0.7)
            vessel = _ellipse(
                ex, ey, ww * r.uniform(0.02, 0.08), wh * r.uniform(0.01, 0.04), r.uniform(0, np.pi)
            )
            d.polygon(vessel, fill=float(r.choice([-1.0, 1.0])))
        return ndi.gaussian_filter(np.asarray(col_im), 2.0) * inside
    bw, bh = ww * r.uniform(0.2, 0.6), depth * r.uniform(0.2, 0.5)
    x0, y0 = cx - bw * r.uniform(0.3, 0.7), top + depth * r.uniform(0.05, 0.45)
    yy, xx = np.mgrid[0:wh, 0:ww]
    box = (xx >= x0) & (xx < x0 + bw) & (yy >= y0) & (yy < y0 + bh) & inside
    sigma = (r.uniform(0.8, 3.0), r.uniform(1.5, 7.0))  # streaks along the tissue
    noise = ndi.gaussian_filter(r.standard_normal((wh, ww)).astype(np.float32), sigma)
    noise /= max(float(noise.std()), 1e-6)
    cut = r.uniform(0.8, 1.8)  # how much of the box flows
    speed = np.clip((np.abs(noise) - cut) / 0.8, 0.0, 1.0) * (0.5 + 0.5 * (_smooth(r, wh, ww, 3) > 0))
    return np.where(_smooth(r, wh, ww, 4) > -0.3, speed, -speed) * box


_BACKGROUNDS: dict[str, Callable[[np.random.Generator, int, int, bool, dict[str, Any]], np.ndarray]] = {
    "xray": _radiograph,
    "screen": _screen,
    "ultrasound": _ultrasound,
}


# ---------------------------------------------------------------------------- content


def _syllable_name(r: np.random.Generator) -> str:
    return "".join(_choice(r, _SYLLABLES) for _ in range(int(r.integers(2, 4)))).capitalize()


def _latin_name(r: np.random.Generator) -> tuple[str, str, str]:
    given = _choice(r, _GIVEN) if r.random() < 0.6 else _syllable_name(r)
    surname = _choice(r, _SURNAMES) if r.random() < 0.6 else _syllable_name(r)
    middle = _choice(r, string.ascii_uppercase)
    return given, surname, middle


def _format_name(r: np.random.Generator, script: str) -> str:
    if script == "latin":
        g, s, m = _latin_name(r)
        gu, su = g.upper(), s.upper()
        forms = (
            f"{su}^{gu}", f"{su}^{gu}^{m}", f"{s}^{g}", f"{s}, {g}", f"{su}, {gu}", f"{s}, {g} {m}.",
            f"{g} {s}", f"{g} {m}. {s}", f"{g[0]}. {su}", f"{g[0]}. {s}", f"{su} {gu}", f"{s} {g[0]}.",
            f"{su}^{g[0]}",
        )  # fmt: skip
        prefix = _choice(r, ("", "", "", "Name: ", "Patient: ", "Pt: ", "Patient Name: ", "Nom: ", "NAME: "))
        return prefix + _choice(r, forms)
    given_pool, surname_pool = _NAMES_BY_SCRIPT[script]
    g, s = _choice(r, given_pool), _choice(r, surname_pool)
    if script == "cyrillic":
        pat = _choice(r, ("Петрович", "Ивановна", "Сергеевич", "Алексеевна", "Николаевич"))
        forms = (f"{s.upper()}^{g.upper()}", f"{s} {g} {pat}", f"{s} {g[0]}.{pat[0]}.", f"{g} {s}")
    elif script == "greek":
        forms = (f"{s.upper()}^{g.upper()}", f"{g} {s}", f"{s} {g}", f"{s.upper()} {g.upper()}")
    elif script == "arabic":
        forms = (f"{g} {s}", f"{g} {_choice(r, given_pool)} {s}")
    else:  # CJK and Hangul: surname first
        forms = (f"{s}{g}", f"{s} {g}", f"{s}^{g}")
    return _choice(r, forms)


_BIRTH_PREFIXES = (
    "", "DOB: ", "DOB ", "D.O.B.: ", "Born: ", "Birth: ", "Geb.: ", "geb. ", "*", "BD: ", "Né(e) le ",
    "F.Nac.: ", "Birthdate: ",
)  # fmt: skip
_DATE_PREFIXES = ("", "", "Date: ", "Study Date: ", "Exam: ", "Datum: ", "Acq: ", "Study: ", "Ser. Date ")


def _date(r: np.random.Generator, birth: bool) -> str:
    y = int(r.integers(1920, 2024)) if birth else int(r.integers(1995, 2026))
    m, d = int(r.integers(1, 13)), int(r.integers(1, 29))
    mon = _MONTHS[_weighted(r, {"en": 0.7, "de": 0.15, "fr": 0.15})][m - 1]
    mu, yy = mon.upper(), y % 100
    forms = (
        f"{y:04d}-{m:02d}-{d:02d}", f"{d:02d}/{m:02d}/{y:04d}", f"{m:02d}/{d:02d}/{yy:02d}", f"{d}-{mon}-{y}",
        f"{d:02d}.{m:02d}.{y}", f"{y}{m:02d}{d:02d}", f"{mu} {d:02d} {y}", f"{d:02d} {mon} {y}",
        f"{y}/{m:02d}/{d:02d}", f"{d:02d}-{m:02d}-{y}", f"{m}/{d}/{y}", f"{d:02d}.{m:02d}.{yy:02d}",
        f"{y}.{m:02d}.{d:02d}", f"{mon} {d}, {y}", f"{d:02d}{mu}{y}", f"{d:02d}-{mu}-{yy:02d}",
    )  # fmt: skip
    return _choice(r, _BIRTH_PREFIXES if birth else _DATE_PREFIXES) + _choice(r, forms)


def _time(r: np.random.Generator, prefix: bool = True) -> str:
    hh, mm, ss = int(r.integers(0, 24)), int(r.integers(0, 60)), int(r.integers(0, 60))
    h12, pm = hh % 12 or 12, hh >= 12
    forms = (
        f"{hh:02d}:{mm:02d}:{ss:02d}", f"{h12}:{mm:02d} {'PM' if pm else 'AM'}", f"{hh:02d}:{mm:02d}",
        f"{hh:02d}.{mm:02d}.{ss:02d}", f"{hh:02d}{mm:02d}{ss:02d}", f"{hh}h{mm:02d}",
        f"{h12}:{mm:02d}:{ss:02d}{'pm' if pm else 'am'}",
    )  # fmt: skip
    pre = _choice(r, ("", "", "Time: ", "T: ", "Acq Tm: ", "Zeit: ")) if prefix else ""
    return pre + _choice(r, forms)


def _digits(r: np.random.Generator, n: int) -> str:
    return "".join(str(int(v)) for v in r.integers(0, 10, n))


def _letters(r: np.random.Generator, n: int) -> str:
    return "".join(_choice(r, string.ascii_uppercase) for _ in range(n))


def _identifier(r: np.random.Generator) -> str:
    n = int(r.integers(5, 11))
    forms = (
        _digits(r, n), _digits(r, n).zfill(10), _letters(r, 2) + _digits(r, n),
        _letters(r, 1) + _digits(r, n), f"{_digits(r, 3)}-{_digits(r, 3)}-{_digits(r, 3)}",
        f"{_digits(r, 2)}-{_digits(r, 6)}",
    )  # fmt: skip
    return _choice(r, forms)


_ID_PREFIXES = {
    "patient_id": ("ID: ", "ID ", "PID: ", "Patient ID: ", "Pat-ID: ", "ID#", "No. ", "", "PatID "),
    "mrn": ("MRN: ", "MRN ", "MR#: ", "MR# ", "Med Rec: ", "MRN#", "MRN:"),
    "accession": ("Acc#: ", "Acc: ", "ACC ", "Accession: ", "Acc. No. ", "A#", "Acc#"),
}
_PHYSICIAN_PREFIXES = (
    "Dr. ", "Dr ", "Ref: ", "Ref. Phys: ", "Referring: ", "Physician: ", "Dr. med. ", "Prof. Dr. ",
    "Ordering: ", "Zuweiser: ", "Ref Dr: ", "Operator: ",
)  # fmt: skip


def _identifying(r: np.random.Generator, kind: str, script: str) -> str:
    if kind == "name":
        return _format_name(r, script)
    if kind in ("birth_date", "date"):
        return _date(r, kind == "birth_date")
    if kind == "time":
        return _time(r)
    if kind == "datetime":
        return f"{_date(r, False)}{_choice(r, (' ', '  ', ' - ', 'T'))}{_time(r, prefix=False)}"
    if kind in ("patient_id", "mrn"):
        return _choice(r, _ID_PREFIXES[kind]) + _identifier(r)
    if kind == "accession":
        forms = (
            f"{int(r.integers(2000, 2026))}{_digits(r, 6)}", f"RX{_digits(r, 2)}-{_digits(r, 6)}",
            f"CT{_digits(r, 7)}", f"{_choice(r, ('US', 'MR', 'CR', 'DX'))}{_digits(r, 8)}",
        )  # fmt: skip
        return _choice(r, _ID_PREFIXES[kind]) + _choice(r, forms)
    if kind == "age":
        a, mo, dd = int(r.integers(0, 100)), int(r.integers(1, 12)), int(r.integers(1, 30))
        forms = (
            f"{a}Y", f"{a:03d}Y", f"Age: {a}", f"{a} yrs", f"{a}y", f"{a} Jahre", f"{a} ans", f"Age {a}Y",
            f"{mo}M", f"{dd:03d}D", f"{a} y/o",
        )  # fmt: skip
        return _choice(r, forms)
    if kind == "sex_age":
        a, sx = int(r.integers(0, 100)), _choice(r, "MF")
        de = "W" if sx == "F" else "M"
        forms = (
            f"{sx} {a}Y", f"{sx}/{a:03d}Y", f"{a}Y {sx}", f"Sex: {sx} Age: {a}", f"{a} {sx}", f"{sx}/{a}",
            f"{de} {a}J", f"{a:03d}Y{sx}", f"{sx}, {a} yrs",
        )  # fmt: skip
        return _choice(r, forms)
    if kind == "institution":
        if script != "latin":
            cn = _CN_DIGITS[int(r.integers(len(_CN_DIGITS)))]
            return _choice(r, _INSTITUTIONS_OTHER[script]).format(n=int(r.integers(1, 60)), cn=cn)
        town = _choice(r, _TOWN_A) + _choice(r, _TOWN_B)
        form = _choice(r, _INSTITUTIONS)
        return form.format(town=town, TOWN=town.upper(), saint=_choice(r, _SAINTS), surname=_latin_name(r)[1])
    if kind == "physician":
        g, s, _m = _latin_name(r)
        forms = (
            f"{g[0]}. {s}",
            f"{g} {s}",
            f"{s.upper()}^{g.upper()}",
            f"{s}, {g}",
            f"{s.upper()}^{g.upper()}^^DR",
        )
        return _choice(r, _PHYSICIAN_PREFIXES) + _choice(r, forms)
    raise ValueError(f"unknown identifying kind {kind!r}")


def _harmless(r: np.random.Generator, kind: str) -> str:
    def f1(lo: float, hi: float) -> str:
        return f"{r.uniform(lo, hi):.1f}"

    def ri(lo: int, hi: int) -> int:
        return int(r.integers(lo, hi))

    if kind == "marker":
        return _choice(r, _MARKERS)
    if kind == "view":
        return _choice(r, _VIEWS)
    if kind == "scale":
        n = int(_choice(r, (0, 1, 2, 3, 4, 5, 6, 8, 10, 12, 15, 16, 20, 24, 25, 30)))
        forms = (
            str(n), str(n), f"{n} cm", f"{n}cm", f"{n} mm", f"-{n}", f"x{f1(1, 3)}", "1:1", f"{ri(25, 400)}%",
            f"{n}.0", f"{n}",
        )  # fmt: skip
        return _choice(r, forms)
    if kind == "unit":
        return _choice(r, _UNITS)
    if kind == "us_param":
        forms = (
            f"MI {f1(0.1, 1.9)}", f"TIS {f1(0.0, 1.5)}", f"TIB {f1(0.0, 2.0)}", f"TIC {f1(0.0, 1.5)}",
            f"Gn {ri(20, 90)}", f"G {ri(20, 90)}%", f"DR {ri(40, 90)}", f"FR {ri(8, 80)}Hz",
            f"FR {ri(8, 80)}", f"{f1(1.5, 15)}MHz", _choice(r, _PROBES), _choice(r, _US_MODES),
            f"D {ri(2, 25)}cm",
            f"PRF {f1(0.5, 10)}kHz", f"WF {ri(40, 400)}Hz", f"P {ri(50, 100)}%", f"Map {_choice(r, 'ABCD')}",
            f"{ri(8, 80)} fps", f"CD Gain {ri(20, 80)}", f"Depth {ri(2, 25)} cm", f"AO {ri(50, 100)}%",
            f"Frq {f1(1.5, 15)}", f"Persist {_choice(r, ('Low', 'Med', 'High'))}",
        )  # fmt: skip
        return _choice(r, forms)
    if kind == "exposure":
        kv, mas, ma = ri(40, 150), r.uniform(0.5, 40), ri(10, 500)
        forms = (
            f"{kv} kVp", f"kVp {kv}", f"{kv}kV", f"{mas:.1f} mAs", f"mAs {mas:.1f}", f"{ma} mA",
            f"{kv}kV {mas:.1f}mAs", f"EI {ri(100, 2000)}", f"DAP {f1(0.1, 20)}", f"S {ri(50, 800)}",
            f"Exp {ri(2, 500)} ms", f"CTDIvol {f1(1, 60)} mGy", f"DLP {ri(50, 2000)}", f"{kv} kV  {ma} mA",
        )  # fmt: skip
        return _choice(r, forms)
    if kind == "window":
        ww, wl = ri(1, 400) * 10, ri(-100, 100) * 10
        forms = (
            f"W: {ww} L: {wl}", f"WW {ww} WL {wl}", f"W:{ww} C:{wl}", f"C {wl} W {ww}", f"W{ww}/L{wl}",
            f"WL: {wl} WW: {ww}",
        )  # fmt: skip
        return _choice(r, forms)
    if kind == "series":
        n, i, mat = ri(1, 400), ri(1, 400), (256, 320, 384, 512)
        forms = (
            f"Se: {ri(1, 20)}", f"Im: {i}/{n}", f"Thk: {f1(0.5, 10)} mm", f"Zoom: {f1(0.5, 4)}", f"Slice {i}",
            f"SL {f1(0.5, 10)}", f"TR {ri(5, 9000)} TE {ri(2, 150)}", f"FOV {ri(10, 50)} cm",
            f"Z: {r.uniform(-500, 500):.1f}", _choice(r, _SEQUENCES), f"{_choice(r, mat)}x{_choice(r, mat)}",
            f"{i}/{n}", f"Sp: {r.uniform(-300, 300):.1f}", f"ST: {f1(0.5, 10)} mm",
            _choice(r, ("1.5T", "3T", "0.55T")), f"Img {i}", f"Ser {ri(1, 20)}",
        )  # fmt: skip
        return _choice(r, forms)
    raise ValueError(f"unknown harmless kind {kind!r}")


# ---------------------------------------------------------------------------- text drawing


def _render(font: ImageFont.FreeTypeFont, text: str, stroke: int) -> tuple[np.ndarray, np.ndarray]:
    """(fill alpha, ink alpha) of ``text``, cropped to the ink; ink includes the outline if any."""
    left, top, right, bottom = font.getbbox(text, stroke_width=stroke)
    pad = 2 + stroke
    size = (max(1, right - left + 2 * pad), max(1, bottom - top + 2 * pad))
    origin = (pad - left, pad - top)
    im = PILImage.new("L", size, 0)
    ImageDraw.Draw(im).text(origin, text, font=font, fill=255)
    fill = np.asarray(im)
    if stroke:
        im2 = PILImage.new("L", size, 0)
        ImageDraw.Draw(im2).text(origin, text, font=font, fill=255, stroke_width=stroke, stroke_fill=255)
        ink = np.maximum(np.asarray(im2), fill)
    else:
        ink = fill
    ys, xs = np.nonzero(ink)
    if ys.size == 0:
        return fill[:0, :0], ink[:0, :0]
    sl = (slice(int(ys.min()), int(ys.max()) + 1), slice(int(xs.min()), int(xs.max()) + 1))
    return fill[sl], ink[sl]


_COLOURS = (
    (1.0, 1.0, 0.0), (0.0, 1.0, 1.0), (0.0, 1.0, 0.0), (1.0, 0.6, 0.0), (1.0, 0.25, 0.25), (1.0, 0.0, 1.0),
    (0.45, 0.75, 1.0), (1.0, 1.0, 0.6), (0.6, 1.0, 0.6),
)  # fmt: skip


def _light(r: np.random.Generator, rgb: bool) -> np.ndarray:
    if rgb and r.random() < 0.35:
        return np.asarray(_choice(r, _COLOURS)) * r.uniform(0.85, 1.0)
    return np.full(3, r.uniform(0.85, 1.0) if r.random() < 0.8 else r.uniform(0.6, 0.85))


def _dark(r: np.random.Generator, rgb: bool) -> np.ndarray:
    if rgb and r.random() < 0.25:
        return np.asarray(_choice(r, ((0.0, 0.0, 0.4), (0.3, 0.0, 0.0), (0.0, 0.25, 0.0), (0.2, 0.2, 0.3))))
    return np.full(3, r.uniform(0.0, 0.12) if r.random() < 0.8 else r.uniform(0.12, 0.3))


def _colours(
    r: np.random.Generator, style: str, rgb: bool, bg: float, min_contrast: float
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """(text, box or None, outline or None) colours, 0-1, three channels for RGB, one for grey."""
    box = stroke = None
    if style == "box":
        box, text = _dark(r, rgb), _light(r, rgb)
    elif style == "inverse":
        box, text = _light(r, rgb), _dark(r, rgb)
        if rgb and r.random() < 0.5:
            box = np.full(3, r.uniform(0.8, 1.0))
    elif style == "outline":
        text, stroke = _light(r, rgb), _dark(r, rgb)
        if r.random() < 0.15:
            text, stroke = stroke, text
    else:
        u = r.random()
        text = _light(r, rgb) if u < 0.6 else _dark(r, rgb) if u < 0.8 else np.full(3, r.uniform(0.3, 0.8))
        if abs(float(text.mean()) - bg) < min_contrast:  # too faint to read: white or black instead
            text = np.full(3, r.uniform(0.9, 1.0) if bg < 0.5 else r.uniform(0.0, 0.08))
    if rgb:
        return text, box, stroke
    return tuple(None if c is None else c.mean(keepdims=True) for c in (text, box, stroke))  # type: ignore[return-value]


def _blend(work: np.ndarray, alpha: np.ndarray, value: np.ndarray, oy: int, ox: int) -> None:
    """``work = work * (1 - a) + value * a`` in place, over ``alpha``'s extent at ``(oy, ox)``."""
    a = alpha.astype(np.float32) / np.float32(255.0)
    sub = work[oy : oy + alpha.shape[0], ox : ox + alpha.shape[1]]
    if sub.ndim == 3:
        a = a[..., None]
        v = value.astype(np.float32)
    else:
        v = np.float32(value[0])
    sub *= 1.0 - a
    sub += a * v


# ---------------------------------------------------------------------------- the generator


class SynthTextGenerator:
    """Seeded generator of images with burned-in text and exact boxes.

    ``sample(i)`` is a pure function of ``(seed, i)``, the constructor options
    and the fonts installed: the same call gives the same image, boxes and
    instance map, in any order and in any process. The background, the pixel
    format and the text have their own random streams.

    Args:
        seed: Seed of the whole sequence.
        size_range: Smallest and largest side in pixels (each side is drawn
            log-uniformly; equal values give square images of that size).
        fonts: ``'train'`` (default), ``'heldout'`` (fonts never used in
            training), ``'all'``, or a list of font files.
        font_dirs: Folders to search for fonts (default: the system folders and
            matplotlib's fonts, see :func:`find_font_files`).
        modalities: Probabilities of the backgrounds (:data:`MODALITIES`).
        pixel_formats: Probabilities of the pixel formats (:data:`PIXEL_FORMATS`).
        n_text: Fewest and most strings per image (drawn uniformly; a string
            that finds no free place is left out, see ``info['n_placed']``).
        height_range: Smallest and largest text height in pixels (digit or
            capital height); the largest is also limited by the image size.
        identifying_fraction: Share of identifying strings.
        rotated_fraction: Share of strings rotated by 90 or 270 degrees.
        styles: Probabilities of the drawing styles (:data:`STYLES`).
        placements: Probabilities of the placements (:data:`PLACEMENTS`).
        scripts: Probabilities of the name scripts (:data:`SCRIPTS`).
        min_contrast: Least difference of grey level (0-1) between plain text
            and the mean of the image under it.

    Raises:
        NoFontsError: If no usable font is found (the message says what to install).
        ValueError: If an option is out of range.

    Example:
        >>> gen = SynthTextGenerator(seed=3, size_range=(256, 256), pixel_formats={"grey16": 1.0})
        >>> s = gen.sample(5)
        >>> s.image.dtype, s.photometric, bool(s.image.max() < 2 ** s.info["bits_stored"])
        (dtype('uint16'), 'MONOCHROME2', True)
    """

    def __init__(
        self,
        *,
        seed: int = 0,
        size_range: tuple[int, int] = (256, 1536),
        fonts: str | Sequence[str | os.PathLike[str]] = "train",
        font_dirs: Sequence[str | os.PathLike[str]] | None = None,
        modalities: dict[str, float] | None = None,
        pixel_formats: dict[str, float] | None = None,
        n_text: tuple[int, int] = (0, 25),
        height_range: tuple[int, int] = (6, 80),
        identifying_fraction: float = 0.5,
        rotated_fraction: float = 0.15,
        styles: dict[str, float] | None = None,
        placements: dict[str, float] | None = None,
        scripts: dict[str, float] | None = None,
        min_contrast: float = 0.2,
    ) -> None:
        lo, hi = int(size_range[0]), int(size_range[1])
        if not 64 <= lo <= hi <= 8192:
            raise ValueError(
                f"size_range must be two sizes with 64 <= smallest <= largest <= 8192, got {size_range!r}"
            )
        if not 0 <= int(n_text[0]) <= int(n_text[1]) <= 200:
            raise ValueError(f"n_text must be two counts with 0 <= fewest <= most <= 200, got {n_text!r}")
        if not 4 <= int(height_range[0]) <= int(height_range[1]):
            raise ValueError(
                f"height_range must be two heights with 4 <= smallest <= largest, got {height_range!r}"
            )
        fractions = {
            "identifying_fraction": identifying_fraction,
            "rotated_fraction": rotated_fraction,
            "min_contrast": min_contrast,
        }
        for name, v in fractions.items():
            if not 0.0 <= float(v) <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, got {v!r}")
        self.seed = int(seed)
        self.size_range = (lo, hi)
        self.n_text = (int(n_text[0]), int(n_text[1]))
        self.height_range = (int(height_range[0]), int(height_range[1]))
        self.identifying_fraction = float(identifying_fraction)
        self.rotated_fraction = float(rotated_fraction)
        self.min_contrast = float(min_contrast)
        self.modalities = probabilities(modalities or MODALITIES, list(MODALITIES), "modalities")
        self.pixel_formats = probabilities(
            pixel_formats or PIXEL_FORMATS, list(PIXEL_FORMATS), "pixel_formats"
        )
        self.styles = probabilities(styles or STYLES, list(STYLES), "styles")
        self.placements = probabilities(placements or PLACEMENTS, list(PLACEMENTS), "placements")
        wanted_scripts = probabilities(scripts or SCRIPTS, list(SCRIPTS), "scripts")
        self.fonts: tuple[FontInfo, ...] = find_fonts(fonts, dirs=font_dirs)
        self.font_selection = fonts if isinstance(fonts, str) else "files"
        # Families per script, each a tuple of its fonts (families are drawn uniformly, then faces).
        by_script: dict[str, dict[str, list[FontInfo]]] = {}
        for f in self.fonts:
            for s in f.scripts:
                by_script.setdefault(s, {}).setdefault(f.family, []).append(f)
        self._families: dict[str, tuple[tuple[FontInfo, ...], ...]] = {
            s: tuple(tuple(fam[k]) for k in sorted(fam)) for s, fam in by_script.items()
        }
        self.scripts = {s: p for s, p in wanted_scripts.items() if s in self._families} or {"latin": 1.0}
        missing = sorted(set(wanted_scripts) - set(self.scripts))
        if missing:
            log.info("no %s font renders %s names; those scripts are left out", self.font_selection, missing)

    def __repr__(self) -> str:
        return (
            f"SynthTextGenerator(seed={self.seed}, size_range={self.size_range}, "
            f"fonts={self.font_selection!r} ({len(self.fonts)} fonts))"
        )

    # ------------------------------------------------------------------ public

    def sample(self, i: int) -> SynthTextSample:
        """The ``i``-th image with its text (see :class:`SynthTextSample`).

        Args:
            i: Index of the sample (any non-negative integer).
        """
        if i < 0:
            raise ValueError(f"sample index must be non-negative, got {i}")

        def rng(k: int) -> np.random.Generator:
            return np.random.default_rng([self.seed, int(i), k])

        r_fmt, r_bg, r_text = rng(1), rng(2), rng(3)
        lo, hi = self.size_range
        h = round(math.exp(r_fmt.uniform(math.log(lo), math.log(hi))))
        w = int(np.clip(round(h * math.exp(r_fmt.uniform(-0.45, 0.45))), lo, hi))
        modality = _weighted(r_fmt, self.modalities)
        pixel_format = _weighted(r_fmt, self.pixel_formats)
        rgb = pixel_format == "rgb"
        bits = int(r_fmt.integers(10, 17)) if pixel_format == "grey16" else 8
        vmax = float(2**bits - 1)
        info: dict[str, Any] = {
            "index": int(i),
            "seed": self.seed,
            "modality": modality,
            "pixel_format": pixel_format,
            "bits_stored": bits,
            "shape": (h, w),
            "fonts": self.font_selection,
        }
        background = _BACKGROUNDS[modality](r_bg, h, w, rgb, info)
        scale = vmax * (r_fmt.uniform(0.6, 1.0) if pixel_format == "grey16" else 1.0)
        dtype = np.uint16 if pixel_format == "grey16" else np.uint8
        image = np.rint(np.clip(background, 0.0, 1.0) * scale).astype(dtype)
        instance = np.zeros((h, w), np.uint16)
        boxes = self._draw_texts(r_text, image, instance, vmax, modality, info)
        return SynthTextSample(image, "RGB" if rgb else "MONOCHROME2", boxes, instance, info)

    def __getitem__(self, i: int) -> SynthTextSample:
        return self.sample(i)

    # ------------------------------------------------------------------ text

    def _content(self, r: np.random.Generator, modality: str) -> tuple[str, str, str, FontInfo]:
        """(category, kind, text, font) of one string; the font renders every character."""
        identifying = r.random() < self.identifying_fraction
        category = "identifying" if identifying else "harmless"
        weights = IDENTIFYING_KINDS if identifying else _HARMLESS_BY_MODALITY[modality]
        kind = _weighted(r, weights)
        for attempt in range(6):
            script = "latin"
            if identifying and kind in ("name", "institution") and attempt < 4:
                script = _weighted(r, self.scripts)
            text = _identifying(r, kind, script) if identifying else _harmless(r, kind)
            families = self._families.get(script, ())
            needed = {c for c in text if not c.isspace()}
            order = r.permutation(len(families))
            for k in order:
                faces = [f for f in families[int(k)] if all(_has_glyph(str(f.path), c) for c in needed)]
                if faces:
                    return category, kind, text, _choice(r, faces)
        # Nothing renders the drawn strings (fonts lacking punctuation): plain digits always work.
        return (
            category,
            kind,
            _digits(r, 6) if identifying else "R",
            _choice(r, _choice(r, self._families["latin"])),
        )

    def _draw_texts(
        self,
        r: np.random.Generator,
        image: np.ndarray,
        instance: np.ndarray,
        vmax: float,
        modality: str,
        info: dict[str, Any],
    ) -> list[TextBox]:
        h, w = image.shape[:2]
        rgb = image.ndim == 3
        n = int(r.integers(self.n_text[0], self.n_text[1] + 1))
        occupied: list[tuple[int, int, int, int]] = []
        boxes: list[TextBox] = []
        margin = int(r.integers(0, max(1, round(0.03 * min(h, w))) + 1))
        for _ in range(n):
            category, kind, text, font_info = self._content(r, modality)
            big = kind in ("marker", "view")
            h_lo, h_hi = self.height_range
            h_hi = min(h_hi, max(h_lo, round(min(h, w) * (0.12 if big else 0.06))))
            height = round(math.exp(r.uniform(math.log(h_lo), math.log(h_hi + 0.999))))
            height = min(max(height, h_lo), h_hi)
            rotation = int(_choice(r, (90, 270))) if r.random() < self.rotated_fraction else 0
            style = _weighted(r, self.styles)
            placement = _weighted(r, self.placements)
            path = str(font_info.path)
            size = max(4, round(height / _height_ratio(path)))
            stroke = max(1, round(size * r.uniform(0.04, 0.1))) if style == "outline" else 0
            fill_a, ink_a = _render(_truetype(path, size), text, stroke)
            if rotation:
                k = 1 if rotation == 90 else 3
                fill_a, ink_a = np.rot90(fill_a, k), np.rot90(ink_a, k)
            if ink_a.size == 0 or not (ink_a > 127).any():
                continue
            ih, iw = ink_a.shape
            pad = (0, 0, 0, 0)
            if style in ("box", "inverse"):
                p = max(1, round(height * r.uniform(0.15, 0.5)))
                pad = tuple(p + int(r.integers(0, max(1, p // 2) + 1)) for _ in range(4))  # type: ignore[assignment]
            fh, fw = ih + pad[0] + pad[2], iw + pad[1] + pad[3]
            if fh > h or fw > w:
                continue
            gap = max(2, round(0.2 * height))
            pos = self._position(r, placement, rotation, fh, fw, h, w, margin, gap, occupied)
            if pos is None:
                continue
            y0, x0 = pos
            patch = image[y0 : y0 + fh, x0 : x0 + fw]
            bg = float(patch.mean()) / vmax
            text_value, box_value, stroke_value = _colours(r, style, rgb, bg, self.min_contrast)
            work = patch.astype(np.float32)
            if box_value is not None:
                opacity = 255 if r.random() < 0.75 else int(r.integers(150, 255))
                _blend(work, np.full((fh, fw), opacity, np.uint8), box_value * vmax, 0, 0)
            if stroke_value is not None:
                _blend(work, ink_a, stroke_value * vmax, pad[0], pad[1])
            _blend(work, fill_a, text_value * vmax, pad[0], pad[1])
            patch[...] = np.clip(np.rint(work), 0, vmax).astype(image.dtype)
            label = len(boxes) + 1
            ink = ink_a > 127
            ys, xs = np.nonzero(ink)
            ty, tx = y0 + pad[0], x0 + pad[1]
            instance[ty : ty + ih, tx : tx + iw][ink] = label
            box = (tx + int(xs.min()), ty + int(ys.min()), tx + int(xs.max()) + 1, ty + int(ys.max()) + 1)
            occupied.append((x0, y0, x0 + fw, y0 + fh))
            boxes.append(TextBox(box, text, category, kind, font_info.name, height, rotation, style, label))
        info["n_requested"] = n
        info["n_placed"] = len(boxes)
        return boxes

    @staticmethod
    def _position(
        r: np.random.Generator,
        placement: str,
        rotation: int,
        fh: int,
        fw: int,
        h: int,
        w: int,
        margin: int,
        gap: int,
        occupied: list[tuple[int, int, int, int]],
    ) -> tuple[int, int] | None:
        """Top-left corner of a free ``fh x fw`` footprint, or None."""

        def free(y: int, x: int) -> bool:
            if x < 0 or y < 0 or x + fw > w or y + fh > h:
                return False
            return all(
                not (x < b[2] + gap and b[0] < x + fw + gap and y < b[3] + gap and b[1] < y + fh + gap)
                for b in occupied
            )

        m = min(margin, max(0, (h - fh) // 2), max(0, (w - fw) // 2))
        if placement == "corner":
            corner = int(r.integers(4))
            top, left = corner < 2, corner % 2 == 0
            y = m if top else h - m - fh
            x = m if left else w - m - fw
            if rotation == 0:  # lines stacked towards the middle
                step = max(1, fh // 4)
                for k in range(max(1, (h // 2) // step)):
                    yk = y + k * step if top else y - k * step
                    if free(yk, x):
                        return yk, x
            else:
                step = max(1, fw // 4)
                for k in range(max(1, (w // 2) // step)):
                    xk = x + k * step if left else x - k * step
                    if free(y, xk):
                        return y, xk
        elif placement == "edge":
            vertical_edge = r.random() < (0.8 if rotation else 0.3)
            for _ in range(20):
                if vertical_edge:
                    x = m if r.random() < 0.5 else w - m - fw
                    y = int(r.integers(0, max(1, h - fh + 1)))
                else:
                    y = m if r.random() < 0.5 else h - m - fh
                    x = int(r.integers(0, max(1, w - fw + 1)))
                if free(y, x):
                    return y, x
        for _ in range(40):  # anywhere (and the fallback of the others)
            y, x = int(r.integers(0, max(1, h - fh + 1))), int(r.integers(0, max(1, w - fw + 1)))
            if free(y, x):
                return y, x
        return None


# ---------------------------------------------------------------------------- helpers on samples


def _ids(sample: SynthTextSample, category: str | None) -> list[TextBox]:
    if category is not None and category not in CATEGORIES:
        raise ValueError(f"category must be one of {CATEGORIES} or None, got {category!r}")
    return [b for b in sample.boxes if category is None or b.category == category]


def text_mask(sample: SynthTextSample, category: str | None = None, *, pad: int = 0) -> np.ndarray:
    """Boolean union of the boxes (of one category, or all), each grown by ``pad`` pixels.

    Args:
        sample: A generated sample.
        category: ``'identifying'``, ``'harmless'`` or None for every string.
        pad: Pixels added on every side of each box (clipped to the image).

    Returns:
        A ``bool`` array of the image's rows and columns.
    """
    if pad < 0:
        raise ValueError(f"pad must be non-negative, got {pad}")
    h, w = sample.instance.shape
    mask = np.zeros((h, w), bool)
    for b in _ids(sample, category):
        x0, y0, x1, y1 = b.box
        mask[max(0, y0 - pad) : min(h, y1 + pad), max(0, x0 - pad) : min(w, x1 + pad)] = True
    return mask


def ink_mask(sample: SynthTextSample, category: str | None = None) -> np.ndarray:
    """Boolean map of the ink pixels (instance map) of the strings of one category, or of all."""
    labels = [b.label for b in _ids(sample, category)]
    return np.isin(sample.instance, labels) if labels else np.zeros(sample.instance.shape, bool)


def to_image(sample: SynthTextSample) -> Image:
    """The sample as a one-frame :class:`~deephealth_deid.io.image.Image` for the redaction pipeline."""
    return Image(sample.image[None, ...].copy(), sample.photometric)


def benchmark(*, n: int = 5, size: int = 512, seed: int = 0, fonts: str = "train") -> float:
    """Mean seconds per sample of :meth:`SynthTextGenerator.sample` at ``size x size``.

    Font probing and one warm-up sample are not timed.

    Args:
        n: Samples to time.
        size: Side of the square images.
        seed: Generator seed.
        fonts: Font split.
    """
    gen = SynthTextGenerator(seed=seed, size_range=(size, size), fonts=fonts)
    gen.sample(10_000)
    t0 = time.perf_counter()
    for i in range(n):
        gen.sample(i)
    return (time.perf_counter() - t0) / n
