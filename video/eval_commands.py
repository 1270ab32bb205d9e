"""``vlx video eval-qa | eval-gen | eval-retrieval``: parsers and the runs behind them (the
scoring lives in ``video/evaluate.py``, the file readers in ``video/benchmarks.py``).
Models come from a trained run (``--ckpt``: its ``config.yaml`` says what to build) or, for
QA, from a predictions JSONL (``{"id", "prediction"}`` per line) made by any other model."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def add_video_parser(subparsers) -> None:
    p = subparsers.add_parser("video", help="video benchmark evaluation (QA, generation, retrieval), merge-lora")
    sub = p.add_subparsers(dest="video_command", required=True)
    from video.cli import add_merge_lora_parser

    add_merge_lora_parser(sub)

    def common(q, judge: bool = True):
        q.add_argument("--video-root", required=True, help="folder of the benchmark's videos")
        q.add_argument("--out", required=True, help="results folder (per-sample JSONL, summary.json, summary.md)")
        q.add_argument("--ckpt", default=None, help="a trained run (checkpoint dir or run dir)")
        q.add_argument("--device", default="auto", help="auto (cuda when present), cpu, cuda, cuda:1, ...")
        q.add_argument("--batch-size", type=int, default=8)
        q.add_argument("--limit", type=int, default=None, help="only the first N samples")
        q.add_argument("--no-progress", action="store_true")
        if judge:
            q.add_argument(
                "--predictions", default=None, help="JSONL of {id, prediction[, prediction2]} instead of --ckpt"
            )
            q.add_argument("--max-new-tokens", type=int, default=32)
            q.add_argument(
                "--judge-url", default=None, help="OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1"
            )
            q.add_argument("--judge-model", default=None, help="the judge's model name (recorded in every result)")
            q.add_argument("--judge-key-env", default=None, help="environment variable holding the judge's API key")
            q.add_argument("--judge-timeout", type=float, default=120.0)

    q = sub.add_parser("eval-qa", help="open-ended video QA: exact match and a judge's yes/no + score")
    q.add_argument("--format", required=True, choices=["msrvtt-qa", "msvd-qa", "activitynet-qa"])
    q.add_argument("--file", required=True, help="test_qa.json (MSVD/MSRVTT-QA) or test_q.json (ActivityNet-QA)")
    q.add_argument("--answers", default=None, help="ActivityNet-QA: test_a.json")
    q.add_argument("--mapping", default=None, help="MSVD-QA: youtube_mapping.txt")
    q.add_argument("--judge-prompt", default=None, help="prompt file (default: video/prompts/judge_qa.txt)")
    common(q)
    q.set_defaults(func=run_eval_qa)

    g = sub.add_parser("eval-gen", help="Video-ChatGPT generation benchmark: 5 judge scores 0-5")
    g.add_argument("--generic", default=None, help="generic_qa.json (correctness, detail, context)")
    g.add_argument("--temporal", default=None, help="temporal_qa.json")
    g.add_argument("--consistency", default=None, help="consistency_qa.json")
    common(g)
    g.set_defaults(func=run_eval_gen)

    r = sub.add_parser("eval-retrieval", help="MSR-VTT 1k-A text-video retrieval: R@1/5/10, MdR, MnR")
    r.add_argument("--csv", required=True, help="MSRVTT_JSFUSION_test.csv (key, vid_key, video_id, sentence)")
    common(r, judge=False)
    r.set_defaults(func=run_eval_retrieval)


def _run_model(ckpt: str, device_pref: str):
    """(model on device, run config, ckpt fingerprint fields) of a trained run."""
    from video.cli import find_run_config
    from vlx.cli import load_recipe_config
    from vlx.train.checkpoint import find_checkpoint, load_model_weights
    from vlx.utils import pick_device

    config = find_run_config(ckpt)
    _, cfg = load_recipe_config(str(config), [])
    device = pick_device(device_pref)
    p = Path(ckpt)
    weights = p if p.suffix == ".safetensors" else find_checkpoint(p) / "model.safetensors"
    st = weights.stat() if weights.is_file() else None
    ident = {
        "ckpt": str(weights.resolve()),
        "ckpt_size": st.st_size if st else None,
        "ckpt_mtime": st.st_mtime_ns if st else None,
    }
    return cfg, device, ident, (lambda model: load_model_weights(model, ckpt))


def _captioner_predictor(args) -> tuple[Any, dict]:
    import torch

    from video.io import load_video
    from video.models.captioner import build_video_captioner
    from video.recipes import _eval_load

    cfg, device, ident, load_weights = _run_model(args.ckpt, args.device)
    if not hasattr(cfg.model, "lm"):
        from vlx.data.errors import DataError

        raise DataError(f"{args.ckpt}: recipe {cfg.recipe!r} is not a captioner (video_captioning / video_qa)")
    model = build_video_captioner(cfg.model)
    load_weights(model)
    model.to(device).eval()
    load = _eval_load(cfg.data.load)

    @torch.no_grad()
    def predict(records: list[dict], key: str) -> list[str]:
        frames = torch.stack([load_video(r["video"], load)[0] for r in records])  # uint8 (B, T, H, W, 3)
        return model.generate(frames.to(device), [r[key] for r in records], max_new_tokens=args.max_new_tokens)

    return predict, {**ident, "load": str(load), "max_new_tokens": args.max_new_tokens}


def _file_predictor(path: str) -> tuple[Any, dict]:
    from video.evaluate import file_sha256
    from vlx.data.errors import DataError

    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: predictions file not found")
    preds: dict[str, dict] = {}
    for ln, line in enumerate(p.read_text().splitlines(), 1):
        if line.strip():
            try:
                row = json.loads(line)
                preds[str(row["id"])] = row
            except (ValueError, KeyError, TypeError):
                raise DataError(f"{p}:{ln}: expected a JSON object with 'id' and 'prediction'") from None

    def predict(records: list[dict], key: str) -> list[str]:
        col = "prediction2" if key == "question2" else "prediction"
        missing = [r["id"] for r in records if r["id"] not in preds or col not in preds[r["id"]]]
        if missing:
            raise DataError(f"{p}: no {col!r} for id {missing[0]!r}")
        return [str(preds[r["id"]][col]) for r in records]

    return predict, {"predictions": str(p.resolve()), "predictions_sha256": file_sha256(p)}


def _predictor(args):
    from vlx.config import ConfigError

    if (args.ckpt is None) == (args.predictions is None):
        raise ConfigError("give exactly one of --ckpt (a trained captioner) or --predictions (a JSONL file)")
    return _captioner_predictor(args) if args.ckpt else _file_predictor(args.predictions)


def _judge(args):
    from video.judge import Judge, JudgeConfig
    from vlx.config import ConfigError

    if args.judge_url is None:
        return None
    if not args.judge_model:
        raise ConfigError("--judge-url needs --judge-model (its name goes into every result)")
    return Judge(JudgeConfig(args.judge_url, args.judge_model, args.judge_key_env, timeout_s=args.judge_timeout))


def run_eval_qa(args: argparse.Namespace) -> int:
    from video.benchmarks import load_qa_benchmark
    from video.evaluate import ResultLog, file_sha256, generate_answers, judge_answers, qa_summary, write_summary
    from video.judge import JudgePrompt, builtin_prompt

    extra = args.answers if args.format == "activitynet-qa" else args.mapping
    records = load_qa_benchmark(args.format, args.file, args.video_root, extra)[: args.limit]
    out = Path(args.out)
    predict, model_id = _predictor(args)
    bench = {"format": args.format, "file_sha256": file_sha256(args.file)}
    answers = ResultLog(out / "answers.jsonl", {**bench, **model_id})
    generate_answers(records, predict, answers, args.batch_size, not args.no_progress)
    judge, judged, failed = _judge(args), None, 0
    if judge is not None:
        prompt = JudgePrompt.load(args.judge_prompt) if args.judge_prompt else builtin_prompt("judge_qa")
        jcfg = {"answers": answers.fingerprint, "judge": judge.cfg.model, "prompt_sha256": prompt.sha256}
        judged = ResultLog(out / "judge.jsonl", jcfg)
        failed = judge_answers(records, answers, judge, prompt, judged, not args.no_progress)
    s = qa_summary(answers, judged, judge.cfg.model if judge else None)
    s.update({"format": args.format, "judge_failed": failed, "model": model_id})
    table = [("samples", s["samples"]), ("video errors", s["video_errors"]), ("exact match %", s.get("exact_match"))]
    if judge is not None:
        table += [
            ("judge", s["judge"]),
            ("judge accuracy %", s.get("judge_accuracy")),
            ("judge score (0-5)", s.get("judge_score")),
            ("judge calls failed", failed),
        ]
    write_summary(out, f"{args.format} ({len(records)} questions)", s, table)
    print((out / "summary.md").read_text(), end="")
    print(f"wrote {out / 'summary.md'}, {out / 'summary.json'} and per-sample {out / 'answers.jsonl'}")
    return 0


GEN_CRITERIA = (  # (name, benchmark file argument, prompt file)
    ("correctness", "generic", "gen_correctness"),
    ("detail", "generic", "gen_detail"),
    ("context", "generic", "gen_context"),
    ("temporal", "temporal", "gen_temporal"),
    ("consistency", "consistency", "gen_consistency"),
)


def run_eval_gen(args: argparse.Namespace) -> int:
    from video.benchmarks import load_videochatgpt_gen
    from video.evaluate import ResultLog, file_sha256, generate_answers, judge_answers, write_summary
    from video.judge import builtin_prompt
    from vlx.config import ConfigError

    files = {k: getattr(args, k) for k in ("generic", "temporal", "consistency") if getattr(args, k)}
    if not files:
        raise ConfigError("give at least one of --generic, --temporal, --consistency")
    judge = _judge(args)
    if judge is None:
        raise ConfigError("the generation benchmark is scored by a judge: give --judge-url and --judge-model")
    predict, model_id = _predictor(args)
    out, summary = Path(args.out), {"judge": judge.cfg.model, "model": model_id}
    for kind, path in files.items():
        records = load_videochatgpt_gen(path, args.video_root)[: args.limit]
        answers = ResultLog(out / f"answers_{kind}.jsonl", {"file_sha256": file_sha256(path), **model_id})
        generate_answers(records, predict, answers, args.batch_size, not args.no_progress)
        for name, src, prompt_name in GEN_CRITERIA:
            if src != kind:
                continue
            prompt = builtin_prompt(prompt_name)
            jcfg = {"answers": answers.fingerprint, "judge": judge.cfg.model, "prompt_sha256": prompt.sha256}
            log = ResultLog(out / f"judge_{name}.jsonl", jcfg)
            failed = judge_answers(records, answers, judge, prompt, log, not args.no_progress)
            scores = [r["score"] for r in log.rows.values() if r.get("score") is not None]
            summary[name] = {"score": sum(scores) / len(scores) if scores else None, "n": len(scores), "failed": failed}
    table = [("judge", judge.cfg.model)] + [
        (f"{k} (0-5)", v["score"]) for k, v in summary.items() if isinstance(v, dict) and "score" in v
    ]
    write_summary(out, "Video-ChatGPT generation benchmark", summary, table)
    print((out / "summary.md").read_text(), end="")
    return 0


def run_eval_retrieval(args: argparse.Namespace) -> int:
    import torch

    from video.benchmarks import load_msrvtt_1ka
    from video.evaluate import ResultLog, _bar, file_sha256, write_summary
    from video.io import load_video
    from video.models.video_clip import build_video_clip
    from video.recipes import _eval_load
    from vlx.metrics import retrieval_metrics
    from vlx.tokenizers import build_tokenizer

    records = load_msrvtt_1ka(args.csv, args.video_root)[: args.limit]
    cfg, device, ident, load_weights = _run_model(args.ckpt, args.device)
    model = build_video_clip(cfg.model)
    load_weights(model)
    model.to(device).eval()
    tok = build_tokenizer(cfg.tokenizer)
    load = _eval_load(cfg.data.load)
    out = Path(args.out)
    log = ResultLog(out / "video_embeddings.jsonl", {"csv_sha256": file_sha256(args.csv), "load": str(load), **ident})
    todo = [r for r in records if r["video_id"] not in log.rows]
    with torch.no_grad(), _bar(len(records), "video embeddings", not args.no_progress) as bar:
        bar.update(len(records) - len(todo))
        for s in range(0, len(todo), args.batch_size):
            batch = todo[s : s + args.batch_size]
            frames = torch.stack([load_video(r["video"], load)[0] for r in batch]).to(
                device
            )  # uint8, normalised on device
            emb = model.encode_video(frames).float().cpu()
            for r, e in zip(batch, emb):
                log.add({"id": r["video_id"], "embedding": e.tolist()})
            bar.update(len(batch))
        v = torch.tensor([log.rows[r["video_id"]]["embedding"] for r in records])
        caps = [r["captions"][0] for r in records]
        t = []
        for s in range(0, len(caps), 256):
            enc = tok(caps[s : s + 256])
            t.append(model.encode_text(enc["input_ids"].to(device), enc["attention_mask"].to(device)).float().cpu())
        t = torch.cat(t)
    sim = t @ v.T  # (sentences, videos); sentence i belongs to video i
    gt = torch.arange(len(records))
    res = {f"t2v_{k}": x for k, x in retrieval_metrics(sim, gt).items()}
    res.update({f"v2t_{k}": x for k, x in retrieval_metrics(sim.T, gt).items()})
    res.update({"n": len(records), "chance_R@1": 100.0 / len(records), "model": ident})
    table = [(k, res[k]) for k in res if k.startswith(("t2v", "v2t"))] + [("chance R@1", res["chance_R@1"])]
    write_summary(out, f"MSR-VTT 1k-A retrieval ({len(records)} videos)", res, table)
    print((out / "summary.md").read_text(), end="")
    return 0
