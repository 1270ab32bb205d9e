"""Readers for the published video evaluation files, each in its own layout, into records
``{"id", "video", "video_id", "question", "answer", ...}`` (QA) or
``{"video", "video_id", "captions"}`` (retrieval):

- MSVD-QA and MSRVTT-QA (Xu et al. 2017): ``test_qa.json``, a JSON list of
  ``{"video_id": int, "question", "answer", "id"}``. MSRVTT-QA's ``video_id`` N is
  ``video{N}.mp4``; MSVD-QA's is mapped by ``youtube_mapping.txt`` (lines
  ``<clip name> vid<N>``) to ``<clip name>.avi``. Video-ChatGPT/Video-LLaVA style copies that
  store a ``video`` name instead of the id are read too.
- ActivityNet-QA (Yu et al. 2019): ``{split}_q.json`` ``[{"video_name", "question",
  "question_id"}]`` and ``{split}_a.json`` ``[{"answer", "type", "question_id"}]``, joined on
  ``question_id``; video ``v_<video_name>.mp4`` (ActivityNet's file names) or
  ``<video_name>.mp4``.
- Video-ChatGPT's generation benchmark (Maaz et al. 2023): ``generic_qa.json`` /
  ``temporal_qa.json`` ``[{"Q", "A", "video_name"}]``, ``consistency_qa.json``
  ``[{"Q1", "Q2", "A", "video_name"}]``.
- MSR-VTT 1k-A retrieval (Yu et al. 2018, JSFusion): ``MSRVTT_JSFUSION_test.csv`` with columns
  ``key, vid_key, video_id, sentence``: 1,000 videos, one sentence each.

Video paths stay inside ``video_root`` (``video.datasets.inside_root``).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from video.datasets import VIDEO_EXTS, inside_root
from vlx.data.errors import DataError


def _json_list(path: Path) -> list:
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: invalid JSON at line {e.lineno}: {e.msg}") from None
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a JSON list, got {type(data).__name__}")
    return data


def _field(entry: Any, keys: tuple[str, ...], where: str) -> Any:
    if not isinstance(entry, dict):
        raise DataError(f"{where}: expected an object, got {type(entry).__name__}")
    for k in keys:
        if k in entry:
            return entry[k]
    raise DataError(f"{where}: missing key {'|'.join(keys)}")


def _find_video(root: Path, names: list[str], where: str, ext: str | None) -> Path:
    """The first of ``names`` (with ``ext`` or any common extension) that exists under root;
    else the first candidate, so that decoding later names a concrete missing file."""
    cands = []
    for n in names:
        exts = [ext] if ext is not None else ([""] if Path(n).suffix.lower() in VIDEO_EXTS else list(VIDEO_EXTS))
        cands += [inside_root(root, n + e, where) for e in exts]
    return next((c for c in cands if c.exists()), cands[0])


def load_msrvtt_qa(qa_file: str | Path, video_root: str | Path, ext: str | None = None) -> list[dict]:
    """MSRVTT-QA ``{split}_qa.json``; ``video_id`` N -> ``video{N}``."""
    qa_file, root = Path(qa_file), Path(video_root)
    out = []
    for i, e in enumerate(_json_list(qa_file)):
        where = f"{qa_file}: entry {i}"
        vid = _field(e, ("video_id", "video"), where)
        name = f"video{vid}" if isinstance(vid, int) or str(vid).isdigit() else str(vid)
        out.append(
            {
                "id": str(_field(e, ("id", "question_id"), where)),
                "video_id": name,
                "video": str(_find_video(root, [name], where, ext)),
                "question": str(_field(e, ("question",), where)),
                "answer": str(_field(e, ("answer",), where)),
            }
        )
    return out


def read_msvd_mapping(path: str | Path) -> dict[str, str]:
    """``youtube_mapping.txt``: ``<clip name> vid<N>`` per line -> {"N": clip name}."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: MSVD mapping file not found")
    out = {}
    for ln, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or not parts[1].startswith("vid"):
            raise DataError(f"{path}:{ln}: expected '<clip name> vid<N>', got {line!r}")
        out[parts[1][3:]] = parts[0]
    return out


def load_msvd_qa(
    qa_file: str | Path, video_root: str | Path, mapping_file: str | Path | None = None, ext: str | None = None
) -> list[dict]:
    """MSVD-QA ``{split}_qa.json``; integer ``video_id`` mapped through ``mapping_file``
    (``youtube_mapping.txt``) to the clip's file name."""
    qa_file, root = Path(qa_file), Path(video_root)
    mapping = read_msvd_mapping(mapping_file) if mapping_file is not None else {}
    out = []
    for i, e in enumerate(_json_list(qa_file)):
        where = f"{qa_file}: entry {i}"
        vid = str(_field(e, ("video_id", "video"), where))
        if vid.isdigit():
            if vid not in mapping:
                raise DataError(
                    f"{where}: video_id {vid} is not in the MSVD mapping"
                    + (f" {mapping_file}" if mapping_file else " (pass youtube_mapping.txt)")
                )
            vid = mapping[vid]
        out.append(
            {
                "id": str(_field(e, ("id", "question_id"), where)),
                "video_id": vid,
                "video": str(_find_video(root, [vid], where, ext)),
                "question": str(_field(e, ("question",), where)),
                "answer": str(_field(e, ("answer",), where)),
            }
        )
    return out


def load_activitynet_qa(
    q_file: str | Path, a_file: str | Path, video_root: str | Path, ext: str | None = None
) -> list[dict]:
    """ActivityNet-QA ``{split}_q.json`` + ``{split}_a.json`` joined on ``question_id``;
    records carry the answer ``type`` (0-8) for per-type accuracy."""
    q_file, a_file, root = Path(q_file), Path(a_file), Path(video_root)
    answers: dict[str, dict] = {}
    for i, e in enumerate(_json_list(a_file)):
        where = f"{a_file}: entry {i}"
        answers[str(_field(e, ("question_id",), where))] = e
    out = []
    for i, e in enumerate(_json_list(q_file)):
        where = f"{q_file}: entry {i}"
        qid = str(_field(e, ("question_id",), where))
        if qid not in answers:
            raise DataError(f"{where}: question_id {qid!r} has no answer in {a_file}")
        a = answers[qid]
        name = str(_field(e, ("video_name",), where))
        out.append(
            {
                "id": qid,
                "video_id": name,
                "video": str(_find_video(root, [f"v_{name}", name], where, ext)),
                "question": str(_field(e, ("question",), where)),
                "answer": str(_field(a, ("answer",), f"{a_file}: question_id {qid}")),
                "type": a.get("type"),
            }
        )
    return out


def load_videochatgpt_gen(json_file: str | Path, video_root: str | Path, ext: str | None = None) -> list[dict]:
    """Video-ChatGPT generation benchmark file (generic / temporal / consistency): ids are
    the entries' positions; consistency entries also carry ``question2``."""
    json_file, root = Path(json_file), Path(video_root)
    out = []
    for i, e in enumerate(_json_list(json_file)):
        where = f"{json_file}: entry {i}"
        name = str(_field(e, ("video_name", "video_id", "video"), where))
        rec = {
            "id": str(i),
            "video_id": name,
            "video": str(_find_video(root, [name, f"v_{name}"], where, ext)),
            "question": str(_field(e, ("Q", "Q1", "question"), where)),
            "answer": str(_field(e, ("A", "answer"), where)),
        }
        if "Q2" in e:
            rec["question2"] = str(e["Q2"])
        out.append(rec)
    return out


def load_msrvtt_1ka(csv_file: str | Path, video_root: str | Path, ext: str = ".mp4") -> list[dict]:
    """MSR-VTT 1k-A test split (``MSRVTT_JSFUSION_test.csv``: key, vid_key, video_id,
    sentence) -> one record per row, video ``video_root/<video_id><ext>``."""
    csv_file, root = Path(csv_file), Path(video_root)
    if not csv_file.is_file():
        raise DataError(f"{csv_file}: file not found")
    out = []
    with csv_file.open(newline="") as f:
        reader = csv.DictReader(f)
        need = ("video_id", "sentence")
        missing = [c for c in need if c not in (reader.fieldnames or [])]
        if missing:
            raise DataError(f"{csv_file}: missing column {missing[0]!r} (have {reader.fieldnames})")
        for i, row in enumerate(reader):
            vid, sent = (row["video_id"] or "").strip(), (row["sentence"] or "").strip()
            if not vid or not sent:
                raise DataError(f"{csv_file}: row {i + 2}: empty 'video_id' or 'sentence'")
            path = inside_root(root, vid + ext, f"{csv_file}: row {i + 2}")
            out.append({"video": str(path), "video_id": vid, "captions": [sent]})
    return out


QA_FORMATS = ("msrvtt-qa", "msvd-qa", "activitynet-qa", "videochatgpt")


def load_qa_benchmark(
    fmt: str, file: str, video_root: str, extra: str | None = None, ext: str | None = None
) -> list[dict]:
    """One entry point: ``extra`` is MSVD-QA's mapping file or ActivityNet-QA's answer file."""
    if fmt == "msrvtt-qa":
        return load_msrvtt_qa(file, video_root, ext)
    if fmt == "msvd-qa":
        return load_msvd_qa(file, video_root, extra, ext)
    if fmt == "activitynet-qa":
        if extra is None:
            raise DataError(f"{file}: activitynet-qa needs the answers file (*_a.json) as well")
        return load_activitynet_qa(file, extra, video_root, ext)
    if fmt == "videochatgpt":
        return load_videochatgpt_gen(file, video_root, ext)
    raise DataError(f"unknown QA format {fmt!r}; expected one of {', '.join(QA_FORMATS)}")
