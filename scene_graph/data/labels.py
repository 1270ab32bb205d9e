"""ScanNet's label map (``scannetv2-labels.combined.tsv``) and ScanRefer's 18 classes.

The tsv maps each raw annotation label (column ``raw_category``) to an NYU40 id / class
(``nyu40id`` / ``nyu40class``). ScanRefer's 18 classes are 17 NYU40 classes plus "others":
a raw label whose NYU40 class is not one of the 17 (walls, floors and ceilings included) is
"others", and so is a name missing from the map (ScanRefer's ``raw2label`` lookup).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from vlx.data.errors import DataError

SCANNET18 = (
    "cabinet", "bed", "chair", "sofa", "table", "door", "window", "bookshelf", "picture", "counter",
    "desk", "curtain", "refrigerator", "shower curtain", "toilet", "sink", "bathtub", "others",
)  # fmt: skip
OTHERS = SCANNET18.index("others")
LABEL_MAP = "scannetv2-labels.combined.tsv"


@dataclass(frozen=True)
class LabelMap:
    """raw label -> (nyu40 id, nyu40 class name); ``source`` is the tsv it came from."""

    raw: dict[str, tuple[int, str]]
    source: str = "<memory>"

    def nyu40(self, label: str, where: str = "") -> tuple[int, str]:
        """The NYU40 id and class of a raw label; DataError naming the map when it lacks it."""
        try:
            return self.raw[label]
        except KeyError:
            raise DataError(f"{where or self.source}: label {label!r} is not in {self.source}") from None

    def scannet18(self, name: str) -> int:
        """ScanRefer's class index of an object name (underscores read as spaces); unknown
        names and non-18 NYU40 classes are "others" (17), as ScanRefer's lookup does."""
        hit = self.raw.get(" ".join(name.split("_")))
        if hit is None or hit[1] not in SCANNET18:
            return OTHERS
        return SCANNET18.index(hit[1])


def read_label_map(path: str | Path) -> LabelMap:
    """Read ``scannetv2-labels.combined.tsv`` (tab-separated, a header row with at least
    ``raw_category``, ``nyu40id``, ``nyu40class``); one-line DataError on a missing file or
    column or a non-integer id."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: label map not found (ScanNet's {LABEL_MAP})")
    out: dict[str, tuple[int, str]] = {}
    with p.open(newline="") as f:
        reader = csv.DictReader(f, delimiter="\t")
        cols = [c.strip() for c in reader.fieldnames or []]
        missing = [c for c in ("raw_category", "nyu40id", "nyu40class") if c not in cols]
        if missing:
            raise DataError(f"{p}: missing column(s) {', '.join(missing)}")
        for k, row in enumerate(reader):
            row = {(key or "").strip(): (v or "").strip() for key, v in row.items()}
            try:
                out[row["raw_category"]] = (int(row["nyu40id"]), row["nyu40class"])
            except ValueError:
                raise DataError(f"{p} line {k + 2}: nyu40id must be an integer, got {row['nyu40id']!r}") from None
    return LabelMap(out, str(p))
