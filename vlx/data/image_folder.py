"""ImageFolder-style classification data (one sub-directory per class, as torchvision's
ImageFolder and the CLIP benchmark suites lay it out) and image-caption pair files (JSONL or
CSV, as open_clip's ``--csv-img-key filepath --csv-caption-key title`` reads them).

Class names: folder names in sorted order (label = index), renamed by an optional classnames
file: ``.json`` ``{folder: name}``, or ``.txt`` with either one ``folder<TAB>name`` per line
or one name per line in sorted-folder order. Without one, ``_`` in folder names becomes a
space."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

from vlx.data.errors import DataError
from vlx.data.image_text import read_caption_jsonl

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff", ".ppm")
IMAGE_KEYS = ("image", "filepath", "file", "path", "img")
CAPTION_KEYS = ("caption", "title", "text")


@dataclass
class ImageFolder:
    """``samples``: [(image path, label)], ``classnames``: [str], ``folders``: [str]."""

    root: Path
    samples: list[tuple[Path, int]]
    classnames: list[str]
    folders: list[str]


def _read_classnames(path: Path, folders: list[str]) -> list[str]:
    if not path.is_file():
        raise DataError(f"{path}: classnames file not found")
    if path.suffix == ".json":
        try:
            m = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise DataError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None
        if not isinstance(m, dict):
            raise DataError(f"{path}: expected a JSON object {{folder: class name}}")
        missing = [f for f in folders if f not in m]
        if missing:
            raise DataError(f"{path}: no class name for folder {missing[0]!r}")
        return [str(m[f]) for f in folders]
    lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
    if lines and all("\t" in ln for ln in lines):
        m = dict(ln.split("\t", 1) for ln in lines)
        missing = [f for f in folders if f not in m]
        if missing:
            raise DataError(f"{path}: no line 'folder<TAB>name' for folder {missing[0]!r}")
        return [m[f].strip() for f in folders]
    if len(lines) != len(folders):
        raise DataError(f"{path}: {len(lines)} class names for {len(folders)} class folders (one name per line)")
    return [ln.strip() for ln in lines]


def read_image_folder(root: str | Path, classnames: str | Path | None = None) -> ImageFolder:
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: not a directory (expected one sub-directory of images per class)")
    folders = sorted(p.name for p in root.iterdir() if p.is_dir())
    if not folders:
        raise DataError(f"{root}: no class sub-directories (expected one directory of images per class)")
    samples = []
    for label, f in enumerate(folders):
        files = sorted(p for p in (root / f).rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
        samples += [(p, label) for p in files]
    if not samples:
        raise DataError(f"{root}: no image files ({', '.join(IMAGE_EXTENSIONS)}) in the class folders")
    names = _read_classnames(Path(classnames), folders) if classnames else [f.replace("_", " ") for f in folders]
    return ImageFolder(root, samples, names, folders)


def _pick(keys: tuple[str, ...], have: list[str], path: Path, what: str) -> str:
    for k in keys:
        if k in have:
            return k
    raise DataError(f"{path}: no {what} column; expected one of {', '.join(keys)} (got {', '.join(have)})")


def read_pairs(path: str | Path) -> list[dict]:
    """Image-caption pairs from ``.jsonl`` (``{"image", "caption"}``) or ``.csv`` / ``.tsv``
    (header with an image column: image/filepath/... and a caption column: caption/title/text;
    comma or tab separated). Image paths are relative to the file. Returns ``[{"image": Path,
    "caption": str}]``; a missing image or empty caption is a DataError naming the line."""
    path = Path(path)
    if path.suffix == ".jsonl":
        recs = read_caption_jsonl(path)
        return [{"image": path.parent / r["image"], "caption": r["caption"]} for r in recs]
    if path.suffix not in (".csv", ".tsv"):
        raise DataError(f"{path}: expected a .jsonl, .csv or .tsv file of image-caption pairs")
    if not path.is_file():
        raise DataError(f"{path}: caption file not found")
    text = path.read_text()
    first = text.splitlines()[0] if text.strip() else ""
    delim = "\t" if path.suffix == ".tsv" or first.count("\t") > first.count(",") else ","
    reader = csv.DictReader(text.splitlines(), delimiter=delim)
    have = list(reader.fieldnames or [])
    ik, ck = _pick(IMAGE_KEYS, have, path, "image"), _pick(CAPTION_KEYS, have, path, "caption")
    out = []
    for lineno, row in enumerate(reader, 2):
        cap = (row.get(ck) or "").strip()
        if not cap:
            raise DataError(f"{path}:{lineno}: empty caption")
        img = path.parent / (row.get(ik) or "")
        if not img.is_file():
            raise DataError(f"{path}:{lineno}: image file not found: {img}")
        out.append({"image": img, "caption": cap})
    if not out:
        raise DataError(f"{path}: no rows (expected a header and one image-caption pair per line)")
    return out
