"""Video benchmark evaluation with per-sample JSONL written as it goes.

- ``eval_qa``: open-ended video QA (MSVD-QA, MSRVTT-QA, ActivityNet-QA): answers from a
  trained captioner (``--ckpt``) or from a predictions file, scored by exact match and,
  with a judge endpoint, by Video-ChatGPT's GPT-assisted protocol (yes/no accuracy and mean
  score 0-5).
- ``eval_generation``: Video-ChatGPT's generation benchmark: correctness, detail and
  context from the generic questions, temporal from the temporal ones, consistency from the
  paired questions, each a judge score 0-5.
- ``eval_retrieval``: text-video retrieval (MSR-VTT 1k-A) with a trained VideoCLIP:
  R@1/5/10, MdR, MnR both ways.

Every stage writes ``OUT/<stage>.jsonl``: a header line with the configuration and its
fingerprint, then one line per sample, flushed and fsynced. A rerun with the same
configuration skips the samples already there (resume after a kill); a rerun with another
configuration is refused (results of two configurations are never mixed). ``summary.json``
and ``summary.md`` are rewritten at the end.
"""

from __future__ import annotations

import hashlib
import json
import os
import string
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from vlx.data.errors import DataError


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fingerprint(config: dict) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]


class ResultLog:
    """``path``: JSONL whose first line is ``{"fingerprint", "config"}`` and whose other lines
    each hold one sample with an ``"id"``. ``rows``: the samples already there."""

    def __init__(self, path: str | Path, config: dict):
        self.path, self.config, self.fingerprint = Path(path), config, fingerprint(config)
        self.rows: dict[str, dict] = {}
        if self.path.is_file() and self.path.stat().st_size:
            self._load()
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._write_lines([json.dumps({"fingerprint": self.fingerprint, "config": config}, default=str)])

    def _load(self) -> None:
        lines = self.path.read_text().split("\n")
        try:
            header = json.loads(lines[0])
        except ValueError:
            raise DataError(f"{self.path}:1: not a results header; move the file away or use another --out") from None
        if header.get("fingerprint") != self.fingerprint:
            old = header.get("config", {})
            diff = sorted(
                k
                for k in set(old) | set(self.config)
                if json.dumps(old.get(k), default=str) != json.dumps(self.config.get(k), default=str)
            )
            raise DataError(
                f"{self.path}: holds results of another configuration (differs in {', '.join(diff) or 'fingerprint'}); "
                "use another --out, or delete the file to start over"
            )
        body = [ln for ln in lines[1:] if ln.strip()]
        for i, line in enumerate(body):
            try:
                row = json.loads(line)
            except ValueError:
                if i == len(body) - 1:  # a torn last line from a kill: drop it, keep the rest
                    self._write_lines(lines[:1] + body[:-1])
                    break
                raise DataError(f"{self.path}: line {i + 2} is not JSON (corrupt file)") from None
            self.rows[str(row["id"])] = row

    def _write_lines(self, lines: list[str]) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text("".join(ln + "\n" for ln in lines))
        os.replace(tmp, self.path)

    def add(self, row: dict) -> None:
        row = {"id": str(row["id"]), **{k: v for k, v in row.items() if k != "id"}}
        with self.path.open("a") as f:
            f.write(json.dumps(row, default=str) + "\n")
            f.flush()
            os.fsync(f.fileno())
        self.rows[row["id"]] = row


def normalize_answer(s: str) -> str:
    """Lower case, punctuation removed, whitespace collapsed ("A dog." == "a dog")."""
    s = s.lower().translate(str.maketrans("", "", string.punctuation))
    return " ".join(s.split())


def _bar(total: int, desc: str, progress: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="sample", disable=not progress, dynamic_ncols=True)


Predictor = Callable[[list[dict], str], list[str]]  # (records, question key) -> answers


def generate_answers(
    records: Sequence[dict], predict: Predictor, log: ResultLog, batch_size: int, progress: bool = True
) -> None:
    """Fills ``log`` with ``{"id", "video_id", "question", "answer", "prediction"[, "prediction2"]}``
    per record not yet there. A video that cannot be decoded is a row with ``"error"``."""
    todo = [r for r in records if r["id"] not in log.rows]
    with _bar(len(records), "answers", progress) as bar:
        bar.update(len(records) - len(todo))
        for s in range(0, len(todo), batch_size):
            batch = todo[s : s + batch_size]
            try:
                preds = {"prediction": predict(batch, "question")}
                if "question2" in batch[0]:
                    preds["prediction2"] = predict(batch, "question2")
                rows = [{k: v[i] for k, v in preds.items()} for i in range(len(batch))]
            except DataError:  # find the bad video(s) one by one
                rows = []
                for r in batch:
                    try:
                        row = {"prediction": predict([r], "question")[0]}
                        if "question2" in r:
                            row["prediction2"] = predict([r], "question2")[0]
                    except DataError as e:
                        row = {"error": str(e)}
                    rows.append(row)
            for r, row in zip(batch, rows):
                keep = {k: r[k] for k in ("id", "video_id", "question", "question2", "answer", "type") if k in r}
                log.add({**keep, **row})
            bar.update(len(batch))


def judge_answers(
    records: Sequence[dict], answers: ResultLog, judge, prompt, log: ResultLog, progress: bool = True
) -> int:
    """Fills ``log`` with ``{"id", "judge", "pred", "score", "reply"}`` per answered record;
    returns how many judge calls failed (not written, so a rerun retries them)."""
    from video.judge import JudgeError, parse_reply

    todo = [r for r in records if r["id"] in answers.rows and "error" not in answers.rows[r["id"]]]
    failed = 0
    with _bar(len(todo), f"judge {prompt.name}", progress) as bar:
        for r in todo:
            if r["id"] in log.rows:
                bar.update(1)
                continue
            a = answers.rows[r["id"]]
            fields = {
                "question": r["question"],
                "answer": r["answer"],
                "prediction": a["prediction"],
                "question2": r.get("question2", ""),
                "prediction2": a.get("prediction2", ""),
            }
            try:
                reply = judge.chat(*prompt.render(**fields))
            except JudgeError:
                failed += 1
                bar.update(1)
                continue
            log.add({"id": r["id"], "judge": judge.cfg.model, **parse_reply(reply), "reply": reply})
            bar.update(1)
    return failed


def qa_summary(answers: ResultLog, judged: ResultLog | None, judge_name: str | None) -> dict[str, Any]:
    """Exact match over answered samples; judge accuracy (% 'yes') and mean score over the
    judged ones with a valid reply; per-type rows when answers carry a ``type``."""
    rows = list(answers.rows.values())
    ok = [r for r in rows if "error" not in r]

    def block(sel: list[dict]) -> dict[str, Any]:
        out: dict[str, Any] = {"n": len(sel)}
        if sel:
            em = [normalize_answer(r["prediction"]) == normalize_answer(r["answer"]) for r in sel]
            out["exact_match"] = 100.0 * sum(em) / len(sel)
        if judged is not None:
            js = [judged.rows[r["id"]] for r in sel if r["id"] in judged.rows]
            preds = [j["pred"] for j in js if j.get("pred") is not None]
            scores = [j["score"] for j in js if j.get("score") is not None]
            out["judge_n"] = len(js)
            out["judge_accuracy"] = 100.0 * preds.count("yes") / len(preds) if preds else None
            out["judge_score"] = sum(scores) / len(scores) if scores else None
            out["judge_unparsed"] = len(js) - len(preds)
        return out

    summary: dict[str, Any] = {"samples": len(rows), "video_errors": len(rows) - len(ok), **block(ok)}
    if judged is not None:
        summary["judge"] = judge_name
    types = sorted({r["type"] for r in ok if r.get("type") is not None}, key=str)
    if types:
        summary["by_type"] = {str(t): block([r for r in ok if r.get("type") == t]) for t in types}
    return summary


def write_summary(out: Path, title: str, summary: dict[str, Any], table: list[tuple[str, Any]]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / "summary.json.tmp"
    tmp.write_text(json.dumps(summary, indent=2, default=str))
    os.replace(tmp, out / "summary.json")
    fmt = lambda v: f"{v:.2f}" if isinstance(v, float) else ("-" if v is None else str(v))
    lines = [f"# {title}", "", "| metric | value |", "|---|---|", *[f"| {k} | {fmt(v)} |" for k, v in table]]
    (out / "summary.md").write_text("\n".join(lines) + "\n")
