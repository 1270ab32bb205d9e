"""Video instruction data for fine-tuning released video LLMs: LLaVA-Video-178K /
LLaVA-NeXT conversation files and Video-ChatGPT's VideoInstruct-100K, read into one record
list, tokenised with the checkpoint's chat template, loss on the answers only.

Formats (a JSON list or JSONL, one entry per line):

- conversations (LLaVA-Video-178K): ``{"id", "video": path, "conversations": [{"from":
  "human", "value": "<video>\\n..."}, {"from": "gpt", "value": "..."}, ...]}``, multi-turn.
  ``from`` is human|user and gpt|assistant, alternating, human first.
- VideoInstruct-100K: ``{"video_id", "q", "a"}`` (one turn; also ``video_name``/``Q``/``A``).

The ``<video>`` convention: a conversation holds the literal ``<video>`` exactly once, in a
human turn, where the clip goes (VideoInstruct entries get ``"<video>\\n"`` in front of the
question). LLaVA-NeXT's files mark video entries with ``<image>``; in an entry with a
``video`` key it is read as ``<video>``. A conversation without it is a one-line
:class:`DataError` naming the file and the entry index.

Record: ``{"video": absolute path, "video_id": str, "turns": [(question, answer), ...],
"where": "file: entry i"}``. Frames are sampled by the one ``VideoLoadConfig`` the recipe
uses for training and evaluation (uniform N or fps; evaluation maps TSN to uniform).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from video.datasets import VideoDataset, _video_path
from video.io import VideoLoadConfig
from vlx.data.errors import DataError

HUMAN, GPT = ("human", "user"), ("gpt", "assistant")


def _entries(file: Path) -> list[Any]:
    if not file.is_file():
        raise DataError(f"{file}: instruction file not found")
    text = file.read_text()
    if file.suffix == ".jsonl":
        out = []
        for ln, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise DataError(f"{file}:{ln}: invalid JSON: {e.msg}") from None
        return out
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"{file}: invalid JSON at line {e.lineno}: {e.msg}") from None
    if not isinstance(data, list):
        raise DataError(f"{file}: expected a JSON list of entries, got {type(data).__name__}")
    return data


def conversation_turns(conv: Any, where: str) -> list[tuple[str, str]]:
    """``[{"from", "value"}, ...]`` -> [(question, answer), ...] with the checks of the
    module doc (alternating roles, exactly one ``<video>`` in a human turn)."""
    if not isinstance(conv, list) or len(conv) < 2:
        raise DataError(f"{where}: 'conversations' must be a list of at least one human and one gpt turn")
    turns = []
    for j in range(0, len(conv) - 1, 2):
        h, g = conv[j], conv[j + 1]
        if not (isinstance(h, dict) and isinstance(g, dict)) or h.get("from") not in HUMAN or g.get("from") not in GPT:
            raise DataError(f"{where}: conversations[{j}:{j + 2}] must be a human turn then a gpt turn")
        turns.append((str(h.get("value", "")).replace("<image>", "<video>"), str(g.get("value", ""))))
    if len(conv) % 2:
        raise DataError(f"{where}: the last turn ({len(conv) - 1}) has no gpt answer")
    n_q = sum(q.count("<video>") for q, _ in turns)
    n_a = sum(a.count("<video>") for _, a in turns)
    if n_q != 1 or n_a:
        raise DataError(f"{where}: expected <video> exactly once, in a human turn; found {n_q} (human) + {n_a} (gpt)")
    if "<video>" not in turns[0][0]:  # the clip must precede the first question it is about
        raise DataError(f"{where}: <video> must be in the first human turn")
    return turns


def load_instructions(file: str | Path, video_root: str | Path | None = None, ext: str | None = None) -> list[dict]:
    """Either format (detected per entry); relative video paths resolve against
    ``video_root`` (default: the file's folder)."""
    file = Path(file)
    root = Path(video_root) if video_root is not None else file.parent
    out = []
    for i, e in enumerate(_entries(file)):
        where = f"{file}: entry {i}"
        if not isinstance(e, dict):
            raise DataError(f"{where}: expected an object")
        if "conversations" in e:
            if "video" not in e:
                raise DataError(f"{where}: missing key 'video'")
            vid = str(e["video"])
            turns = conversation_turns(e["conversations"], where)
        else:
            vid = next((str(e[k]) for k in ("video_id", "video_name", "video") if k in e), None)
            q = next((e[k] for k in ("q", "Q", "question") if k in e), None)
            a = next((e[k] for k in ("a", "A", "answer") if k in e), None)
            if vid is None or q is None or a is None:
                raise DataError(f"{where}: expected 'conversations' + 'video', or VideoInstruct's video_id, q, a")
            q = str(q).replace("<image>", "<video>")
            turns = conversation_turns(
                [{"from": "human", "value": q if "<video>" in q else "<video>\n" + q}, {"from": "gpt", "value": a}],
                where,
            )
        path = Path(vid)
        full = path if path.is_absolute() else _video_path(root, vid, ext, where)
        out.append({"video": str(full), "video_id": path.stem, "turns": turns, "where": where})
    if not out:
        raise DataError(f"{file}: no entries")
    return out


class InstructDataset(Dataset):
    """Decoded clips + their conversations, one item per conversation. Each distinct video
    is decoded by one :class:`video.datasets.VideoDataset` (so ``cache`` holds it once
    however many conversations use it); a bad or missing video is skipped and counted there
    (``skip_bad``) and the item becomes a conversation of the next good video, never a crash
    mid-epoch."""

    def __init__(self, records: list[dict], load: VideoLoadConfig, skip_bad: bool = True, cache: bool = False):
        self.records = records
        videos: dict[str, int] = {}
        self.video_of = [videos.setdefault(r["video"], len(videos)) for r in records]
        self.first_record = {v: i for i, v in reversed(list(enumerate(self.video_of)))}
        unique = [{"video": p, "video_id": Path(p).stem} for p in videos]
        self.base = VideoDataset(unique, load, pairs=False, skip_bad=skip_bad, cache=cache)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> dict[str, Any]:
        item = self.base[self.video_of[i]]
        v = item["video_index"]
        rec = self.records[i if v == self.video_of[i] else self.first_record[v]]
        return {"frames": item["frames"], "turns": rec["turns"], "where": rec["where"]}

    def on_epoch_end(self, epoch: int) -> dict[str, Any]:
        return self.base.on_epoch_end(epoch)


def _stack_frames(frames: list[torch.Tensor]) -> torch.Tensor:
    """Clips of unequal length (fps sampling) are brought to the longest by repeating
    their last frame."""
    T = max(f.shape[0] for f in frames)
    return torch.stack(
        [torch.cat([f, f[-1:].expand(T - f.shape[0], *f.shape[1:])]) if f.shape[0] < T else f for f in frames]
    )


def instruct_collate(model, max_length: int = 256):
    """-> ``{"frames" (B, T, H, W, 3), "input_ids" (B, L), "attention_mask", "labels"}``, right
    padded; ``model.encode_conversation`` puts labels on the answers only. Rows longer than
    ``max_length`` lose their last tokens (the placeholder, at the start, stays)."""
    pad = model.tokenizer.pad_token_id or 0
    encoded: dict[tuple, tuple[list[int], list[int]]] = {}  # each conversation is rendered once

    def encode(it: dict) -> tuple[list[int], list[int]]:
        key = (it["where"], tuple(it["turns"]))
        if key not in encoded:
            encoded[key] = model.encode_conversation(it["turns"], it["where"])
        return encoded[key]

    def collate(items: list[dict]) -> dict[str, Any]:
        rows = [encode(it) for it in items]
        rows = [(ids[:max_length], lab[:max_length]) for ids, lab in rows]
        L = max(len(r[0]) for r in rows)
        ids = torch.full((len(rows), L), pad, dtype=torch.long)
        labels = torch.full((len(rows), L), -100, dtype=torch.long)
        mask = torch.zeros((len(rows), L), dtype=torch.long)
        for b, (r, lab) in enumerate(rows):
            ids[b, : len(r)] = torch.tensor(r)
            labels[b, : len(lab)] = torch.tensor(lab)
            mask[b, : len(r)] = 1
        return {
            "frames": _stack_frames([it["frames"] for it in items]),
            "input_ids": ids,
            "attention_mask": mask,
            "labels": labels,
        }

    return collate
