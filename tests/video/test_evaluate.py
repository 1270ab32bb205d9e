"""Video benchmark evaluation: the published file layouts, the judge protocol against a
stub OpenAI-compatible server on 127.0.0.1, resumable fingerprinted JSONL, retrieval."""

from __future__ import annotations

import csv
import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from video.benchmarks import load_activitynet_qa, load_msrvtt_1ka, load_msrvtt_qa, load_msvd_qa
from video.evaluate import ResultLog, normalize_answer
from video.judge import Judge, JudgeConfig, JudgeError, parse_reply
from vlx.cli import main
from vlx.config import ConfigError
from vlx.data.errors import DataError

# ---------------------------------------------------------------------------------------
# File layouts
# ---------------------------------------------------------------------------------------


def test_msrvtt_and_msvd_qa_layouts(tmp_path):
    (tmp_path / "videos").mkdir()
    (tmp_path / "videos" / "video7010.mp4").write_bytes(b"x")
    qa = [{"answer": "man", "id": 0, "question": "who is talking?", "video_id": 7010}]
    (tmp_path / "test_qa.json").write_text(json.dumps(qa))
    (rec,) = load_msrvtt_qa(tmp_path / "test_qa.json", tmp_path / "videos")
    assert rec == {
        "id": "0",
        "video_id": "video7010",
        "video": str(tmp_path / "videos" / "video7010.mp4"),
        "question": "who is talking?",
        "answer": "man",
    }
    (tmp_path / "videos" / "-4wsuPCjDBc_5_15.avi").write_bytes(b"x")
    (tmp_path / "youtube_mapping.txt").write_text("-4wsuPCjDBc_5_15 vid1\nabc_1_2 vid2\n")
    qa = [{"answer": "dog", "id": 31, "question": "what runs?", "video_id": 1}]
    (tmp_path / "msvd_qa.json").write_text(json.dumps(qa))
    (rec,) = load_msvd_qa(tmp_path / "msvd_qa.json", tmp_path / "videos", tmp_path / "youtube_mapping.txt")
    assert rec["video"] == str(tmp_path / "videos" / "-4wsuPCjDBc_5_15.avi") and rec["id"] == "31"
    with pytest.raises(DataError, match="msvd_qa.json: entry 0: video_id 1 is not in the MSVD mapping"):
        load_msvd_qa(tmp_path / "msvd_qa.json", tmp_path / "videos")
    (tmp_path / "bad.json").write_text(json.dumps([{"id": 1, "question": "q", "video_id": 3}]))
    with pytest.raises(DataError, match=r"bad.json: entry 0: missing key answer"):
        load_msrvtt_qa(tmp_path / "bad.json", tmp_path)


def test_activitynet_qa_layout(tmp_path):
    q = [
        {"video_name": "abc", "question": "is it day", "question_id": "abc_1"},
        {"video_name": "xyz", "question": "what color", "question_id": "xyz_3"},
    ]
    a = [{"answer": "red", "type": 4, "question_id": "xyz_3"}, {"answer": "yes", "type": 3, "question_id": "abc_1"}]
    (tmp_path / "test_q.json").write_text(json.dumps(q))
    (tmp_path / "test_a.json").write_text(json.dumps(a))
    (tmp_path / "v_abc.mp4").write_bytes(b"x")
    recs = load_activitynet_qa(tmp_path / "test_q.json", tmp_path / "test_a.json", tmp_path)
    assert [(r["id"], r["answer"], r["type"]) for r in recs] == [("abc_1", "yes", 3), ("xyz_3", "red", 4)]
    assert recs[0]["video"] == str(tmp_path / "v_abc.mp4")  # ActivityNet's v_ prefix found
    (tmp_path / "a2.json").write_text(json.dumps(a[:1]))
    with pytest.raises(DataError, match="question_id 'abc_1' has no answer"):
        load_activitynet_qa(tmp_path / "test_q.json", tmp_path / "a2.json", tmp_path)


def test_msrvtt_1ka_csv(tmp_path):
    with (tmp_path / "MSRVTT_JSFUSION_test.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["key", "vid_key", "video_id", "sentence"])
        w.writerow(["ret0", "msr7020", "video7020", "a woman creating a fondant baby"])
        w.writerow(["ret1", "msr7021", "video7021", "a man plays a guitar"])
    recs = load_msrvtt_1ka(tmp_path / "MSRVTT_JSFUSION_test.csv", tmp_path / "v")
    assert [r["video"] for r in recs] == [str(tmp_path / "v" / "video7020.mp4"), str(tmp_path / "v" / "video7021.mp4")]
    assert recs[1]["captions"] == ["a man plays a guitar"]


# ---------------------------------------------------------------------------------------
# Judge against a stub server
# ---------------------------------------------------------------------------------------


class Stub:
    """OpenAI-compatible stub on 127.0.0.1: says 'yes'/5 when the reference appears in the
    prediction (any case), else 'no'/1; records every request."""

    def __init__(self, reply=None, status=200, redirect_to=None):
        self.requests: list[dict] = []
        stub = self

        class H(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                stub.requests.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
                if redirect_to:
                    self.send_response(302)
                    self.send_header("Location", redirect_to)
                    self.end_headers()
                    return
                text = reply(body) if reply else stub.default(body)
                data = json.dumps({"choices": [{"message": {"role": "assistant", "content": text}}]}).encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *a):
                pass

        self.server = HTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.server.server_port}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @staticmethod
    def default(body):
        user = body["messages"][1]["content"]
        ref = next(ln for ln in user.splitlines() if ln.startswith("Reference answer:")).split(":", 1)[1]
        pred = next(ln for ln in user.splitlines() if ln.startswith(("Predicted answer:", "Model answer"))).split(
            ":", 1
        )[1]
        hit = ref.strip().lower() in pred.lower()
        return "{'pred': 'yes', 'score': 5}" if hit else "{'pred': 'no', 'score': 1}"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def stub():
    s = Stub()
    yield s
    s.close()


def test_parse_reply():
    assert parse_reply("{'pred': 'yes', 'score': 4}") == {"pred": "yes", "score": 4.0}
    assert parse_reply('Sure! {"pred": "No", "score": 0}') == {"pred": "no", "score": 0.0}
    assert parse_reply("pred: yes, score: 3") == {"pred": "yes", "score": 3.0}
    assert parse_reply("{'pred': 'maybe', 'score': 9}") == {"pred": None, "score": None}


def test_judge_key_handling(stub, monkeypatch, tmp_path):
    monkeypatch.setenv("JUDGE_KEY", "sk-test123")
    j = Judge(JudgeConfig(stub.url, "stub-judge", "JUDGE_KEY"))
    assert j.chat("sys", "Reference answer: a\nPredicted answer: a") == "{'pred': 'yes', 'score': 5}"
    assert stub.requests[-1]["auth"] == "Bearer sk-test123" and stub.requests[-1]["body"]["model"] == "stub-judge"
    # a redirect is not followed, so the key never reaches the other server
    other = Stub()
    redir = Stub(redirect_to=other.url + "/chat/completions")
    try:
        with pytest.raises(JudgeError, match="redirected"):
            Judge(JudgeConfig(redir.url, "m", "JUDGE_KEY", max_retries=0)).chat("s", "u")
        assert other.requests == []
    finally:
        other.close()
        redir.close()
    monkeypatch.setenv("JUDGE_KEY", "sk-secret\n")
    with pytest.raises(ConfigError) as e:
        Judge(JudgeConfig(stub.url, "m", "JUDGE_KEY"))
    assert "sk-secret" not in str(e.value) and "newline" in str(e.value)
    monkeypatch.setenv("JUDGE_KEY", "sk-ok")
    with pytest.raises(ConfigError, match="plain http to a non-local host"):
        Judge(JudgeConfig("http://judge.example.com/v1", "m", "JUDGE_KEY"))
    big = Stub(reply=lambda body: "x" * 5000)
    try:
        with pytest.raises(JudgeError, match="exceeds 1000 bytes"):
            Judge(JudgeConfig(big.url, "m", max_reply_bytes=1000)).chat("s", "u")
    finally:
        big.close()


# ---------------------------------------------------------------------------------------
# eval-qa end to end (predictions file + stub judge), resume and fingerprint
# ---------------------------------------------------------------------------------------


def _qa_files(tmp_path, n=6):
    (tmp_path / "videos").mkdir(exist_ok=True)
    qa = [{"answer": f"ans{i}", "id": i, "question": f"q{i}?", "video_id": 7000 + i} for i in range(n)]
    (tmp_path / "test_qa.json").write_text(json.dumps(qa))
    # predictions: 0,1,2 exactly right (case/punctuation aside), 3 a paraphrase the judge
    # accepts ("ans3" inside it), 4 and 5 wrong
    preds = ["ANS0.", "ans1", "ans2", "it is ans3", "zzz", "no"]
    (tmp_path / "preds.jsonl").write_text(
        "".join(json.dumps({"id": i, "prediction": p}) + "\n" for i, p in enumerate(preds))
    )
    return tmp_path


def _eval_qa(d, out, *extra):
    args = ["video", "eval-qa", "--format", "msrvtt-qa", "--file", str(d / "test_qa.json")]
    args += ["--video-root", str(d / "videos"), "--predictions", str(d / "preds.jsonl"), "--out", str(out)]
    return main(args + ["--no-progress", *extra])


def test_eval_qa_exact_match_judge_resume_and_fingerprint(tmp_path, stub, capsys):
    d = _qa_files(tmp_path)
    out = tmp_path / "out"
    judge = ["--judge-url", stub.url, "--judge-model", "stub-judge"]
    assert _eval_qa(d, out, "--limit", "4", *judge) == 0  # a first, partial run
    assert len(stub.requests) == 4
    assert _eval_qa(d, out, *judge) == 0  # resumes: only the 2 new samples are judged
    assert len(stub.requests) == 6
    s = json.loads((out / "summary.json").read_text())
    assert s["samples"] == 6 and s["exact_match"] == pytest.approx(50.0)  # 3 of 6
    assert s["judge"] == "stub-judge" and s["judge_accuracy"] == pytest.approx(400 / 6)  # 4 of 6
    assert s["judge_score"] == pytest.approx((4 * 5 + 2 * 1) / 6)
    rows = [json.loads(x) for x in (out / "judge.jsonl").read_text().splitlines()[1:]]
    assert len(rows) == 6 and all(r["judge"] == "stub-judge" for r in rows)
    assert "stub-judge" in (out / "summary.md").read_text()
    # a torn last line (kill mid-write) is dropped and that sample redone
    p = out / "judge.jsonl"
    p.write_text(p.read_text()[:-20])
    assert _eval_qa(d, out, *judge) == 0
    assert len(stub.requests) == 7 and json.loads((out / "summary.json").read_text())["judge_n"] == 6
    # another model's predictions into the same folder: refused, one line
    (d / "preds.jsonl").write_text((d / "preds.jsonl").read_text().replace("zzz", "ans4"))
    capsys.readouterr()
    assert _eval_qa(d, out, *judge) != 0
    err = capsys.readouterr().err.strip()
    assert "answers.jsonl: holds results of another configuration (differs in predictions_sha256)" in err
    assert len(err.splitlines()) == 1


def test_resultlog_refuses_another_config(tmp_path):
    log = ResultLog(tmp_path / "r.jsonl", {"a": 1})
    log.add({"id": 3, "x": 1})
    assert ResultLog(tmp_path / "r.jsonl", {"a": 1}).rows == {"3": {"id": "3", "x": 1}}
    with pytest.raises(DataError, match="differs in a"):
        ResultLog(tmp_path / "r.jsonl", {"a": 2})
    assert normalize_answer("  A  Dog! ") == "a dog"


def test_eval_gen_scores_each_criterion(tmp_path, stub):
    (tmp_path / "v").mkdir()
    gen = [{"Q": "what happens?", "A": "a cat jumps", "video_name": "v1"}]
    cons = [{"Q1": "what jumps?", "Q2": "which animal jumps?", "A": "a cat jumps", "video_name": "v1"}]
    (tmp_path / "generic_qa.json").write_text(json.dumps(gen))
    (tmp_path / "temporal_qa.json").write_text(json.dumps(gen))
    (tmp_path / "consistency_qa.json").write_text(json.dumps(cons))
    (tmp_path / "p.jsonl").write_text(
        json.dumps({"id": 0, "prediction": "cat jumps", "prediction2": "cat jumps"}) + "\n"
    )
    scores = iter(["{'score': 4}", "{'score': 3}", "{'score': 2}", "{'score': 5}", "{'score': 1}"])
    s2 = Stub(reply=lambda body: next(scores))
    try:
        args = ["video", "eval-gen", "--video-root", str(tmp_path / "v"), "--predictions", str(tmp_path / "p.jsonl")]
        for k in ("generic", "temporal", "consistency"):
            args += [f"--{k}", str(tmp_path / f"{k}_qa.json")]
        args += ["--judge-url", s2.url, "--judge-model", "stub", "--out", str(tmp_path / "o"), "--no-progress"]
        assert main(args) == 0
        cons_req = s2.requests[-1]["body"]["messages"][1]["content"]
    finally:
        s2.close()
    s = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert [s[k]["score"] for k in ("correctness", "detail", "context", "temporal", "consistency")] == [4, 3, 2, 5, 1]
    assert "which animal jumps?" in cons_req  # the consistency judge sees both questions


# ---------------------------------------------------------------------------------------
# Retrieval on a trained tiny VideoCLIP
# ---------------------------------------------------------------------------------------


def test_eval_retrieval_msrvtt_1ka(tmp_path):
    import torch

    from video.io import load_video
    from video.models.video_clip import build_video_clip
    from video.recipes import _eval_load
    from video.synthetic import generate_moving_shapes
    from vlx.cli import load_recipe_config
    from vlx.tokenizers import build_tokenizer
    from vlx.train.checkpoint import load_model_weights

    root = generate_moving_shapes(tmp_path / "ms", n_train=8, n_test=6, size=32, seed=2)
    run = tmp_path / "run"
    sets = ["data.shapes_root=" + str(root), f"train.output_dir={run}", "train.max_steps=3", "train.batch_size=4"]
    sets += ["train.progress=false", "train.resume=none"]
    assert main(["train", "configs/video/retrieval_tiny.yaml", *sum([["--set", s] for s in sets], [])]) == 0
    test = [json.loads(x) for x in (root / "test.jsonl").read_text().splitlines()]
    with (tmp_path / "1ka.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["key", "vid_key", "video_id", "sentence"])
        for i, r in enumerate(test):
            vid = r["video"].split("/")[-1][:-4]
            w.writerow([f"ret{i}", vid.replace("video", "msr"), vid, r["caption"]])
    out = tmp_path / "eval"
    cmd = ["video", "eval-retrieval", "--csv", str(tmp_path / "1ka.csv"), "--video-root", str(root / "videos")]
    cmd += ["--ckpt", str(run), "--out", str(out), "--batch-size", "4", "--no-progress", "--device", "cpu"]
    assert main(cmd) == 0
    s = json.loads((out / "summary.json").read_text())
    # the same numbers from a direct loop over the model
    _, cfg = load_recipe_config(str(run / "config.yaml"), [])
    model = build_video_clip(cfg.model).eval()
    load_model_weights(model, run)
    tok = build_tokenizer(cfg.tokenizer)
    with torch.no_grad():
        v = model.encode_video(torch.stack([load_video(root / r["video"], _eval_load(cfg.data.load))[0] for r in test]))
        enc = tok([r["caption"] for r in test])
        t = model.encode_text(enc["input_ids"], enc["attention_mask"])
    sim = t @ v.T
    ranks = [1 + int((sim[i] > sim[i, i]).sum()) for i in range(len(test))]
    assert s["n"] == len(test) == 6 and s["chance_R@1"] == pytest.approx(100 / 6)
    assert s["t2v_R@1"] == pytest.approx(100 * sum(r <= 1 for r in ranks) / 6)
    assert s["t2v_MnR"] == pytest.approx(sum(ranks) / 6, rel=1e-5)
    # resume after a kill: the torn last embedding line is dropped and recomputed, same numbers
    p = out / "video_embeddings.jsonl"
    p.write_text(p.read_text()[:-30])
    assert main(cmd) == 0
    assert json.loads((out / "summary.json").read_text())["t2v_MnR"] == pytest.approx(s["t2v_MnR"])
