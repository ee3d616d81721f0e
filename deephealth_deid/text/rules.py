"""Fixed regions to blank per device: the manual-mask method of CTP's pixel anonymizer.

Some devices always burn the patient's data into the same place (an ultrasound
scanner's top band, a CR reader's label corner). A rule names the device (by
Manufacturer, ManufacturerModelName and Modality, regular expressions allowed)
and optionally the image size, and lists boxes that are blanked on every frame
of every matching image, whatever the detector finds. Rules add to the
detector; they never stop it from blanking anything else.

The file format (see ``rules_example.yaml`` shipped beside this module):

.. code-block:: yaml

    rules:
      - name: GE LOGIQ top band
        manufacturer: 'G\\.?E\\.? Medical Systems'   # regex, whole value, any case
        model: 'LOGIQ.*'                            # regex on ManufacturerModelName
        modality: US                                # optional
        rows: 480                                   # optional: both or neither
        columns: 640
        boxes:                                      # [x0, y0, x1, y1], pixels, end excluded
          - [0, 0, 640, 40]

Example:
    >>> rules = RuleSet.from_dict({"rules": [{"name": "band", "manufacturer": "ACME.*",
    ...                                        "boxes": [[0, 0, 64, 8]]}]})
    >>> [r.box for r in rules.regions_for({"Manufacturer": ["ACME Imaging"]}, rows=32, columns=64)]
    [(0, 0, 64, 8)]
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .regions import Region

__all__ = ["DeviceRule", "RuleSet", "RULE_KEYWORDS", "EXAMPLE_RULES"]

log = logging.getLogger(__name__)

#: Header attributes a rule can match, by the rule's key.
RULE_KEYWORDS: dict[str, str] = {
    "manufacturer": "Manufacturer",
    "model": "ManufacturerModelName",
    "modality": "Modality",
}

#: The documented example rules file shipped with the package.
EXAMPLE_RULES = Path(__file__).with_name("rules_example.yaml")

_RULE_KEYS = ("name", *RULE_KEYWORDS, "rows", "columns", "boxes")


@dataclass(frozen=True)
class DeviceRule:
    """Boxes to blank on every image of one kind of device.

    Attributes:
        name: A label for logs and QC.
        boxes: ``(x0, y0, x1, y1)`` boxes, in pixels, end excluded.
        patterns: Header keyword -> regular expression its value must match
            whole (case-insensitive); e.g. ``{'Manufacturer': 'ACME.*'}``.
        rows: Image rows the rule is for (``None``: any).
        columns: Image columns the rule is for (``None``: any).
    """

    name: str
    boxes: tuple[tuple[int, int, int, int], ...]
    patterns: tuple[tuple[str, str], ...] = ()
    rows: int | None = None
    columns: int | None = None

    def matches(self, header: Mapping[str, Any], *, rows: int, columns: int) -> bool:
        """Whether an image of this size with this header is one of the rule's."""
        if self.rows is not None and self.rows != rows:
            return False
        if self.columns is not None and self.columns != columns:
            return False
        for keyword, pattern in self.patterns:
            values = header.get(keyword)
            if values is None:
                return False
            if isinstance(values, (str, bytes)):
                values = [values]
            if not any(re.fullmatch(pattern, str(v).strip(), re.IGNORECASE) for v in values):
                return False
        return True


@dataclass(frozen=True)
class RuleSet:
    """Device rules, read from YAML with :meth:`from_yaml`.

    Attributes:
        rules: The rules, in file order.
        path: The file they were read from, if any.
    """

    rules: tuple[DeviceRule, ...] = ()
    path: Path | None = None

    @classmethod
    def from_yaml(cls, path: str | os.PathLike[str]) -> RuleSet:
        """Read and validate a rules file.

        Raises:
            InputNotFoundError: The file does not exist.
            ConfigError: Bad YAML or a malformed rule; the message names the
                file and the key (``rules[2].boxes[0]``).
        """
        import yaml

        from ..io._files import check_input_file

        p = check_input_file(path)
        try:
            data = yaml.safe_load(p.read_text(encoding="utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError) as e:
            raise ConfigError(f"{p}: not valid YAML ({e})") from e
        return cls.from_dict(data, path=p)

    @classmethod
    def from_dict(cls, data: Any, *, path: Path | None = None) -> RuleSet:
        """Validate rules given as the parsed YAML (a mapping with a ``rules`` list)."""
        where = str(path) if path is not None else "rules"
        if not isinstance(data, dict) or set(data) - {"rules", "version"}:
            extra = sorted(set(data) - {"rules", "version"}) if isinstance(data, dict) else None
            what = f"unknown key {extra[0]!r}" if extra else "not a mapping"
            raise ConfigError(f"{where}: {what}; a rules file is a mapping with a 'rules' list")
        items = data.get("rules")
        if not isinstance(items, list):
            raise ConfigError(f"{where}: 'rules' must be a list of rules")
        rules = tuple(_rule(item, f"rules[{i}]", where) for i, item in enumerate(items))
        return cls(rules, path)

    def matching(self, header: Mapping[str, Any], *, rows: int, columns: int) -> list[DeviceRule]:
        """The rules that apply to an image of this size and header."""
        return [r for r in self.rules if r.matches(header, rows=rows, columns=columns)]

    def regions_for(self, header: Mapping[str, Any], *, rows: int, columns: int) -> list[Region]:
        """The boxes of every matching rule as regions of frame 0, clipped to the image.

        Args:
            header: Keyword -> value or values; the keys used are the values of
                :data:`RULE_KEYWORDS`.
            rows: Image rows.
            columns: Image columns.
        """
        regions: list[Region] = []
        for rule in self.matching(header, rows=rows, columns=columns):
            for x0, y0, x1, y1 in rule.boxes:
                r = Region(0, x0, y0, x1, y1, score=1.0, source="rules", reason=f"device rule {rule.name}")
                clipped = r.clipped(rows, columns)
                if clipped is not None:
                    regions.append(clipped)
        if regions:
            log.debug("device rules: %d box(es) apply", len(regions))
        return regions


def _rule(item: Any, key: str, where: str) -> DeviceRule:
    if not isinstance(item, dict):
        raise ConfigError(f"{where}: {key} must be a mapping with 'name' and 'boxes'")
    for k in item:
        if k not in _RULE_KEYS:
            raise ConfigError(f"{where}: unknown key {key}.{k}; known keys: {', '.join(_RULE_KEYS)}")
    name = item.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"{where}: {key}.name must be a non-empty string")
    patterns = []
    for k, keyword in RULE_KEYWORDS.items():
        if k not in item:
            continue
        pattern = item[k]
        if not isinstance(pattern, str) or not pattern:
            raise ConfigError(f"{where}: {key}.{k} must be a non-empty string (a regular expression)")
        try:
            re.compile(pattern)
        except re.error as e:
            raise ConfigError(f"{where}: {key}.{k} is not a valid regular expression: {e}") from e
        patterns.append((keyword, pattern))
    rows, columns = (_size(item, k, key, where) for k in ("rows", "columns"))
    if (rows is None) != (columns is None):
        raise ConfigError(f"{where}: {key} gives one of rows and columns; give both or neither")
    if not patterns and rows is None:
        raise ConfigError(
            f"{where}: {key} matches every image; give at least a manufacturer, model, modality or size"
        )
    boxes = item.get("boxes")
    if not isinstance(boxes, list) or not boxes:
        raise ConfigError(f"{where}: {key}.boxes must be a non-empty list of [x0, y0, x1, y1]")
    return DeviceRule(
        name=name.strip(),
        boxes=tuple(_box(b, f"{key}.boxes[{j}]", where, rows, columns) for j, b in enumerate(boxes)),
        patterns=tuple(patterns),
        rows=rows,
        columns=columns,
    )


def _size(item: Mapping[str, Any], k: str, key: str, where: str) -> int | None:
    value = item.get(k)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"{where}: {key}.{k} must be a positive integer, got {value!r}")
    return value


def _box(
    value: Any, key: str, where: str, rows: int | None, columns: int | None
) -> tuple[int, int, int, int]:
    if (
        not isinstance(value, list)
        or len(value) != 4
        or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value)
    ):
        raise ConfigError(f"{where}: {key} must be [x0, y0, x1, y1], four integers >= 0, got {value!r}")
    x0, y0, x1, y1 = value
    if x1 <= x0 or y1 <= y0:
        raise ConfigError(f"{where}: {key} is empty: x1 must exceed x0 and y1 must exceed y0")
    if columns is not None and rows is not None and (x1 > columns or y1 > rows):
        raise ConfigError(f"{where}: {key} reaches outside the {columns} x {rows} image the rule is for")
    return (x0, y0, x1, y1)
