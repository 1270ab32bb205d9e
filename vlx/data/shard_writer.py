"""``vlx data shards``: an image folder or a JSONL/CSV of image-caption pairs -> WebDataset tar
shards in img2dataset's layout, written with ``webdataset.TarWriter``.

Per sample ``{key}.{jpg|png|webp|...}`` (the original file's bytes, not re-encoded),
``{key}.txt`` (the caption) and ``{key}.json`` (key, caption, url = the source path, width,
height, status, index = row in the source, plus the JSONL record's other fields such as
``negative``); keys are the shard number (5 digits) then the sample number in the shard, as
img2dataset forms them. Per shard ``{shard}_stats.json`` with ``count``/``successes``/
``failed_to_decode``. An ImageFolder's caption is the class name put into ``template``.
Files that PIL cannot open are left out and counted. Each tar is written under a temporary
name and renamed, so a killed conversion leaves only whole shards (rerun to redo)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from PIL import Image

from vlx.data.errors import DataError
from vlx.data.image_folder import read_image_folder, read_pairs
from vlx.data.image_text import read_caption_jsonl


def _rows(source: Path, classnames: str | None, template: str) -> list[dict[str, Any]]:
    if source.is_dir():
        folder = read_image_folder(source, classnames)
        return [
            {"image": p, "caption": template.format(folder.classnames[y]), "label": y, "classname": folder.classnames[y]}
            for p, y in folder.samples
        ]
    if source.suffix == ".jsonl":
        rows = []
        for r in read_caption_jsonl(source):
            extra = {k: v for k, v in r.items() if k not in ("image", "caption", "_line")}
            rows.append({"image": source.parent / r["image"], "caption": r["caption"], **extra})
        return rows
    return read_pairs(source)


def write_shards(
    source: str | Path,
    out_dir: str | Path,
    samples_per_shard: int = 1000,
    classnames: str | None = None,
    template: str = "{}",
) -> dict[str, Any]:
    """Write the shards; returns {"shards": [...], "samples": n, "failed_to_decode": n}."""
    import webdataset as wds

    if samples_per_shard < 1:
        raise DataError(f"shards: samples_per_shard must be >= 1, got {samples_per_shard}")
    source, out = Path(source), Path(out_dir)
    rows = _rows(source, classnames, template)
    out.mkdir(parents=True, exist_ok=True)
    digits = max(4, len(str(samples_per_shard - 1)))
    shards, written, failed = [], 0, 0
    for sid, lo in enumerate(range(0, len(rows), samples_per_shard)):
        name = f"{sid:05d}.tar"
        tmp = out / f".{name}.tmp"
        ok = bad = 0
        with wds.TarWriter(str(tmp)) as sink:
            for j, r in enumerate(rows[lo : lo + samples_per_shard]):
                path = Path(r["image"])
                try:
                    with Image.open(path) as im:
                        w, h = im.size
                        im.verify()
                except (OSError, SyntaxError, ValueError):
                    bad += 1
                    continue
                ext = path.suffix.lower().lstrip(".").replace("jpeg", "jpg")
                key = f"{sid:05d}{j:0{digits}d}"
                meta = {k: v for k, v in r.items() if k != "image"}
                meta.update(key=key, url=str(path), width=w, height=h, status="success", index=lo + j)
                sink.write({"__key__": key, ext: path.read_bytes(), "txt": r["caption"], "json": json.dumps(meta)})
                ok += 1
        os.replace(tmp, out / name)
        stats = {"count": ok + bad, "successes": ok, "failed_to_decode": bad}
        (out / f"{sid:05d}_stats.json").write_text(json.dumps(stats))
        shards.append(name)
        written, failed = written + ok, failed + bad
    return {"shards": shards, "samples": written, "failed_to_decode": failed, "out": str(out)}
