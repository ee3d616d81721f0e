"""What to blank: every text region, except markers an OCR backend read as harmless.

The default is safe: a region is blanked unless all of these hold:

1. it came from a detector (device-rule regions are always blanked);
2. keeping harmless text is on (``keep_safe``);
3. an OCR backend read it with at least ``min_confidence``;
4. the text does not match any of the image header's own patient values
   (name parts, IDs, accession number, dates in every common rendering,
   institution, physicians), nor a date, time or ID pattern;
5. every word of it is an allow-listed marker (``L``, ``R``, ``AP``,
   ``PORTABLE``, ultrasound parameters such as ``MI``, ``TIS``, ``Gn``, units
   such as ``cm``, ``MHz``) or a short number (a scale mark, a parameter value).

Rule 4 wins over rule 5: a patient called ``Lat`` or an ID that reads ``12``
makes those strings identifying on that image even though they look harmless.
Matching folds OCR's usual confusions (``O``/``0``, ``I``/``l``/``1``, ``S``/``5``,
``B``/``8``) and ignores spacing and separators.

Header values are patient data: this module never logs or returns them, and a
region's ``reason`` names the attribute matched, never the text.

Example:
    >>> policy = Policy()
    >>> header = {"PatientName": "Lat^Anna", "PatientID": "12"}
    >>> r = Region(0, 0, 0, 20, 10, text="R", text_confidence=0.95)
    >>> policy.decide(r, HeaderTerms.from_header(header)).decision
    'keep'
    >>> r = r.with_(text="LAT")
    >>> d = policy.decide(r, HeaderTerms.from_header(header))
    >>> d.decision, d.reason
    ('blank', 'matches PatientName')
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .regions import Region

__all__ = [
    "Policy",
    "HeaderTerms",
    "DEFAULT_ALLOW",
    "DEFAULT_IDENTIFYING_PATTERNS",
    "IDENTIFYING_KEYWORDS",
]

log = logging.getLogger(__name__)

#: Header attributes whose values are identifying wherever they appear in the pixels.
IDENTIFYING_KEYWORDS: tuple[str, ...] = (
    "PatientName",
    "PatientID",
    "OtherPatientIDs",
    "IssuerOfPatientID",
    "AccessionNumber",
    "PatientBirthDate",
    "StudyDate",
    "SeriesDate",
    "AcquisitionDate",
    "ContentDate",
    "InstitutionName",
    "InstitutionAddress",
    "ReferringPhysicianName",
    "PerformingPhysicianName",
    "OperatorsName",
)

_PERSON_KEYWORDS = frozenset(
    {"PatientName", "ReferringPhysicianName", "PerformingPhysicianName", "OperatorsName"}
)
_WORD_KEYWORDS = frozenset({"InstitutionName", "InstitutionAddress"})
_DATE_KEYWORDS = frozenset({"PatientBirthDate", "StudyDate", "SeriesDate", "AcquisitionDate", "ContentDate"})

#: Words (upper case) that are harmless on their own: laterality and view markers,
#: ultrasound parameters, units, orientation letters. Numbers need no entry.
# fmt: off
DEFAULT_ALLOW: frozenset[str] = frozenset(
    {
        # laterality, views and positions
        "L", "R", "LT", "RT", "LEFT", "RIGHT", "AP", "PA", "LAT", "LATERAL", "LL", "RL", "OBL", "OBLIQUE",
        "PORTABLE", "PORT", "SUPINE", "PRONE", "UPRIGHT", "ERECT", "STANDING", "SITTING", "SEMI", "DECUB",
        "DECUBITUS", "LLD", "RLD", "INSP", "EXP", "WB", "FLEX", "EXT", "AXIAL", "AX", "SAG", "SAGITTAL",
        "COR", "CORONAL", "TRANS", "TRV", "LONG", "SCOUT", "CC", "MLO", "ML", "LM",
        # orientation letters of CT/MR screens
        "A", "P", "S", "I", "H", "F",
        # ultrasound parameters and modes
        "MI", "TI", "TIS", "TIB", "TIC", "GN", "GAIN", "G", "DR", "FR", "FPS", "DYN", "DEPTH", "D", "FOCUS",
        "ZOOM", "PRF", "WF", "SV", "ANGLE", "FREQ", "RES", "GEN", "PEN", "HGEN", "HPEN", "THI", "CF", "PW",
        "CW", "PD", "PWR", "POWER", "PERS", "MAP", "C", "SRI", "CRI", "PRC", "PST", "2D", "3D", "4D", "M",
        "B", "TGC", "X", "AO", "CINE", "IM", "IMG",
        # units
        "CM", "MM", "HZ", "KHZ", "MHZ", "DB", "BPM", "KV", "KVP", "MA", "MAS", "DEG", "MS", "SEC", "MIN",
        "CM/S", "M/S",
        # window settings
        "W", "WL", "WW",
    }
)
# fmt: on

#: Patterns that make a text identifying wherever they match (case-insensitive).
DEFAULT_IDENTIFYING_PATTERNS: dict[str, str] = {
    "date": r"\b\d{1,4}\s*[-/.]\s*\d{1,2}\s*[-/.]\s*\d{2,4}\b",
    "spaced date": r"\b(?:\d{1,2}\s+\d{1,2}\s+(?:19|20)\d{2}|(?:19|20)\d{2}\s+\d{1,2}\s+\d{1,2})\b",
    "compact date": r"\b(?:19|20)\d{2}(?:0[1-9]|1[0-2])(?:[0-2]\d|3[01])\b",
    "date with month name": (
        r"\b\d{1,2}\s*[-/. ]?\s*(?:JAN|FEB|MAR|APR|MAY|JUN|JUL|AUG|SEP|OCT|NOV|DEC)[A-Z]*\.?"
        r"\s*[-/., ]?\s*\d{2,4}\b"
        r"|\b(?:JAN|FEB|MAR|APR|MAY|JUN|JUL|AUG|SEP|OCT|NOV|DEC)[A-Z]*\.?\s*[-/. ]?\s*\d{1,2}(?:ST|ND|RD|TH)?"
        r"\s*[-/., ]\s*\d{2,4}\b"
    ),
    "time": r"\b\d{1,2}\s*:\s*\d{2}(?:\s*:\s*\d{2})?\b",
    "ID": r"\d{5,}|\b[A-Z]{1,4}-?\d{4,}[A-Z]*\b",
    # An ID or a phone number written in groups (901 234 567, 12.345.678, 123-45-6789): two or
    # more groups of digits, one of them at least three long.
    "digit groups": r"\b(?:\d{2,4}[ .\-])*\d{3,4}(?:[ .\-]\d{2,4})+\b|\b(?:\d{2,4}[ .\-])+\d{3,4}\b",
    # 67Y, 45 YO, and DICOM's ages 078Y, 026M, 013W, 004D.
    "age": r"\b\d{1,3}\s*(?:Y|YR|YRS|YEARS?|YO|Y/O|Y\.O\.?)(?![A-Z/])|\b\d{3}[DWMY]\b",
    # 78 F, 45M, 78Y/F, M/73: an age with the patient's sex (not a speed in M/S).
    "age and sex": (
        r"\b\d{1,3}\s*(?:Y|YR|YRS|YEARS?|YO)?\s*[/,]?\s*(?:F|M|FEMALE|MALE)(?![A-Z/])"
        r"|\b(?:F|M|FEMALE|MALE)\s*[/,]\s*\d{1,3}\b"
    ),
    "label": r"\b(?:NAME|DOB|D\.O\.B|BIRTH|MRN|PATIENT|PAT|PID|ACC|ACCESSION|ADDRESS|PHONE|TEL)\b",
}

#: OCR's usual confusions, folded the same way on both sides of a header match.
_CONFUSABLE = str.maketrans(
    {"O": "0", "Q": "0", "D": "0", "I": "1", "L": "1", "|": "1", "S": "5", "B": "8", "Z": "2"}
)

#: Characters allowed between harmless words (they carry no information).
_NEUTRAL = re.compile(r"[\s.,:;/+\-=%()\[\]#'\"°*~<>_]+")
_SHORT_NUMBER = re.compile(r"\d{1,3}(?:[.,]\d{1,3})?")
_SUBTOKEN = re.compile(r"[A-Z]+|\d+(?:[.,]\d+)?")

_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_MONTH_NAMES = (
    "JANUARY",
    "FEBRUARY",
    "MARCH",
    "APRIL",
    "MAY",
    "JUNE",
    "JULY",
    "AUGUST",
    "SEPTEMBER",
    "OCTOBER",
    "NOVEMBER",
    "DECEMBER",
)

#: Header terms shorter than this (after folding) are ignored: a one-letter initial identifies nobody.
MIN_TERM_LENGTH = 2

_YAML_KEYS = ("keep_safe", "min_confidence", "allow_add", "allow_remove", "identifying_patterns")


def _ascii_upper(text: str) -> str:
    """Upper case, accents removed (``'Müller'`` -> ``'MULLER'``)."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).upper()


def _spaced(text: str) -> str:
    """Folded for matching: upper ASCII, confusables folded, separators as single spaces."""
    return re.sub(r"[^A-Z0-9]+", " ", _ascii_upper(text).translate(_CONFUSABLE)).strip()


@dataclass(frozen=True)
class HeaderTerms:
    """The image header's identifying values, folded for matching against OCR text.

    Build it with :meth:`from_header`; it holds the values themselves, so it is
    patient data: its ``repr`` shows only how many terms it holds.
    """

    terms: tuple[tuple[str, str], ...] = field(default=(), repr=False)

    @classmethod
    def from_header(cls, header: Mapping[str, Any] | None) -> HeaderTerms:
        """Terms from a header mapping (keyword -> value or values).

        Person names are split into their parts (on ``^``, spaces, commas);
        institution names and addresses into words; IDs and accession numbers
        are kept whole; dates (``YYYYMMDD``) expand into every common
        rendering (``2019-03-05``, ``05/03/2019``, ``3/5/19``, ``05 Mar 2019``,
        ``Mar 5, 2019``, ...). Keywords not in :data:`IDENTIFYING_KEYWORDS`
        are ignored.
        """
        found: list[tuple[str, str]] = []
        for keyword in IDENTIFYING_KEYWORDS:
            raw = (header or {}).get(keyword)
            if raw is None:
                continue
            values = [raw] if isinstance(raw, (str, bytes)) or not isinstance(raw, Iterable) else list(raw)
            for value in values:
                text = value.decode("latin-1", "replace") if isinstance(value, bytes) else str(value)
                for rendering in _renderings(keyword, text):
                    term = _spaced(rendering)
                    if len(term.replace(" ", "")) >= MIN_TERM_LENGTH:
                        found.append((keyword, term))
        return cls(tuple(dict.fromkeys(found)))

    def __len__(self) -> int:
        return len(self.terms)

    def match(self, text: str) -> str | None:
        """The keyword of the first header value found in ``text``, or ``None``.

        A term matches as whole words (``'DOE'`` in ``'MR DOE J'``) or as a
        run of letters or digits (``'78'`` in ``'78DR78'``); a term of
        four or more characters also matches inside the text with spacing and
        separators ignored (``'DOE JOHN'`` in ``'DOEJOHN'``, ``'20190305'`` in
        ``'2019-03-05'``).
        """
        spaced = _spaced(text)
        if not spaced:
            return None
        padded = f" {spaced} "
        squashed = spaced.replace(" ", "")
        pieces = {p.translate(_CONFUSABLE) for p in _SUBTOKEN.findall(_ascii_upper(text))}
        for keyword, term in self.terms:
            if f" {term} " in padded or term in pieces:
                return keyword
            flat = term.replace(" ", "")
            if len(flat) >= 4 and flat in squashed:
                return keyword
        return None


def _renderings(keyword: str, value: str) -> list[str]:
    value = value.strip()
    if not value:
        return []
    if keyword in _PERSON_KEYWORDS:
        parts = [p for p in re.split(r"[\^=,\s]+", value) if p]
        return [*parts, " ".join(parts)]
    if keyword in _WORD_KEYWORDS:
        words = [w for w in re.split(r"[\s,;/]+", value) if w]
        return [*words, value]
    if keyword in _DATE_KEYWORDS:
        return _date_renderings(value) or [value]
    return [value]


def _date_renderings(value: str) -> list[str]:
    """Every common way of writing the DICOM date ``value`` (``YYYYMMDD``) on a screen."""
    digits = re.sub(r"\D", "", value)
    if len(digits) != 8:
        return []
    try:
        date = _dt.date(int(digits[:4]), int(digits[4:6]), int(digits[6:]))
    except ValueError:
        return []
    yyyy, yy = f"{date.year:04d}", f"{date.year % 100:02d}"
    days = {f"{date.day:02d}", str(date.day)}
    months = {f"{date.month:02d}", str(date.month)}
    out = {digits}
    for y in (yyyy, yy):
        for m in months:
            for d in days:
                out.update({f"{y} {m} {d}", f"{d} {m} {y}", f"{m} {d} {y}"})
        for name in (_MONTHS[date.month - 1], _MONTH_NAMES[date.month - 1]):
            for d in days:
                out.update({f"{d} {name} {y}", f"{name} {d} {y}", f"{y} {name} {d}", f"{d}{name}{y}"})
    return sorted(out)


@dataclass(frozen=True)
class Policy:
    """Decides, region by region, what is blanked and what is kept.

    Attributes:
        keep_safe: Keep regions read as harmless markers; when false, every
            region is blanked.
        min_confidence: Lowest OCR confidence (0 to 1) at which a reading is
            trusted enough to keep a region.
        allow: Harmless words, upper case (see :data:`DEFAULT_ALLOW`).
        identifying_patterns: Name -> regular expression of text that is
            always identifying (see :data:`DEFAULT_IDENTIFYING_PATTERNS`);
            matched case-insensitively anywhere in the text.

    Example:
        >>> Policy(keep_safe=False).decide(Region(0, 0, 0, 9, 9, text="R", text_confidence=1.0)).decision
        'blank'
    """

    keep_safe: bool = True
    min_confidence: float = 0.8
    allow: frozenset[str] = DEFAULT_ALLOW
    identifying_patterns: Mapping[str, str] = field(
        default_factory=lambda: dict(DEFAULT_IDENTIFYING_PATTERNS)
    )
    _compiled: dict[str, re.Pattern[str]] = field(init=False, repr=False, compare=False, default_factory=dict)

    def __post_init__(self) -> None:
        if not 0.0 <= float(self.min_confidence) <= 1.0:
            raise ValueError(f"min_confidence must lie in 0..1, got {self.min_confidence}")
        object.__setattr__(self, "allow", frozenset(_ascii_upper(str(w)).strip() for w in self.allow))
        compiled = {}
        for name, pattern in self.identifying_patterns.items():
            try:
                compiled[name] = re.compile(pattern, re.IGNORECASE)
            except re.error as e:
                raise ValueError(
                    f"identifying pattern {name!r} is not a valid regular expression: {e}"
                ) from e
        object.__setattr__(self, "_compiled", compiled)

    @classmethod
    def from_yaml(cls, path: str | os.PathLike[str]) -> Policy:
        """Read a policy from YAML; every key is optional.

        .. code-block:: yaml

            keep_safe: true          # keep markers read as harmless
            min_confidence: 0.8      # OCR confidence needed to keep a region
            allow_add: [HEAD, FEET]  # more harmless words
            allow_remove: [PORTABLE] # words no longer harmless
            identifying_patterns:    # more regular expressions that always blank
              - 'RM\\d+'

        Raises:
            InputNotFoundError: The file does not exist.
            ConfigError: Bad YAML, an unknown key, a value of the wrong type, or
                an invalid regular expression; the message names the file and key.
        """
        import yaml

        from ..io._files import check_input_file

        p = check_input_file(path)
        try:
            data = yaml.safe_load(p.read_text(encoding="utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError) as e:
            raise ConfigError(f"{p}: not valid YAML ({e})") from e
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ConfigError(f"{p}: a policy is a mapping of {', '.join(_YAML_KEYS)}")
        for key in data:
            if key not in _YAML_KEYS:
                raise ConfigError(f"{p}: unknown key {key!r}; known keys: {', '.join(_YAML_KEYS)}")
        keep_safe = data.get("keep_safe", True)
        if not isinstance(keep_safe, bool):
            raise ConfigError(f"{p}: keep_safe must be true or false, got {keep_safe!r}")
        conf = data.get("min_confidence", 0.8)
        if isinstance(conf, bool) or not isinstance(conf, (int, float)) or not 0 <= conf <= 1:
            raise ConfigError(f"{p}: min_confidence must be a number from 0 to 1, got {conf!r}")
        add = _words(data, "allow_add", p)
        remove = _words(data, "allow_remove", p)
        patterns = dict(DEFAULT_IDENTIFYING_PATTERNS)
        extra = data.get("identifying_patterns") or []
        if not isinstance(extra, list) or not all(isinstance(x, str) for x in extra):
            raise ConfigError(f"{p}: identifying_patterns must be a list of regular expressions (strings)")
        for i, pattern in enumerate(extra):
            try:
                re.compile(pattern)
            except re.error as e:
                raise ConfigError(
                    f"{p}: identifying_patterns[{i}] is not a valid regular expression: {e}"
                ) from e
            patterns[f"configured pattern {i}"] = pattern
        return cls(
            keep_safe=keep_safe,
            min_confidence=float(conf),
            allow=(DEFAULT_ALLOW | add) - remove,
            identifying_patterns=patterns,
        )

    def with_keep_safe(self, keep_safe: bool) -> Policy:
        """The same policy with ``keep_safe`` changed."""
        return replace(self, keep_safe=keep_safe)

    def is_harmless(self, text: str) -> bool:
        """Whether every word of ``text`` is allow-listed or a short number.

        Says nothing about header values or identifying patterns (see
        :meth:`identifying_reason`); an empty text is not harmless.
        """
        upper = _ascii_upper(text).strip()
        words = [w for w in _NEUTRAL.split(upper) if w]
        if not words:
            return False
        return all(self._harmless_word(w) for w in words)

    def _harmless_word(self, word: str) -> bool:
        if word in self.allow or _SHORT_NUMBER.fullmatch(word):
            return True
        pieces = _SUBTOKEN.findall(word)
        if "".join(pieces) != word:  # characters that are neither ASCII letters nor digits
            return False
        if sum(p[0].isdigit() for p in pieces) > 1:  # 123R456: a code, not a number and its unit
            return False
        return all(p in self.allow or _SHORT_NUMBER.fullmatch(p) for p in pieces)

    def identifying_reason(self, text: str, terms: HeaderTerms | None = None) -> str | None:
        """Why ``text`` is identifying (a header match or a pattern), or ``None``.

        The reason names the attribute or the pattern, never the text.
        """
        if terms is not None:
            keyword = terms.match(text)
            if keyword is not None:
                return f"matches {keyword}"
        upper = _ascii_upper(text)
        for name, regex in self._compiled.items():
            if regex.search(upper):
                return f"{name} pattern"
        return None

    def decide(self, region: Region, terms: HeaderTerms | None = None) -> Region:
        """``region`` with its ``decision`` and ``reason`` set."""
        if region.source == "rules":
            return region.with_(decision="blank", reason=region.reason or "device rule")
        if not self.keep_safe:
            return region.with_(decision="blank", reason="keep_safe is off")
        text = region.text
        if text is None or not text.strip():
            return region.with_(decision="blank", reason="no OCR text")
        why = self.identifying_reason(text, terms)
        if why is not None:
            return region.with_(decision="blank", reason=why)
        if region.text_confidence < self.min_confidence:
            return region.with_(decision="blank", reason="OCR confidence below the minimum")
        if self.is_harmless(text):
            return region.with_(decision="keep", reason="harmless marker")
        return region.with_(decision="blank", reason="not on the allow-list")

    def decide_all(
        self, regions: Sequence[Region], header: Mapping[str, Any] | HeaderTerms | None = None
    ) -> list[Region]:
        """Decide every region; logs how many were kept and blanked (never what they read)."""
        terms = header if isinstance(header, HeaderTerms) else HeaderTerms.from_header(header)
        decided = [self.decide(r, terms) for r in regions]
        kept = sum(r.decision == "keep" for r in decided)
        log.debug(
            "policy: %d region(s) blanked, %d kept, %d header term(s) checked",
            len(decided) - kept,
            kept,
            len(terms),
        )
        return decided


def _words(data: Mapping[str, Any], key: str, path: Path) -> frozenset[str]:
    value = data.get(key) or []
    if not isinstance(value, list) or not all(isinstance(x, (str, int, float)) for x in value):
        raise ConfigError(f"{path}: {key} must be a list of words")
    return frozenset(_ascii_upper(str(x)).strip() for x in value if str(x).strip())
