"""A planner from any local Hugging Face causal LM, in two modes.

- ``mode="generate"``: the model writes a JSON plan (optionally after a chain-of-thought
  paragraph) from a prompt rendered with the tokenizer's chat template (a plain prompt when
  the tokenizer has none); batched greedy generation via ``plan_batch``; answers are parsed
  with ``json`` (base.parse_plan_text), and what does not parse is a counted PARSE error.
- ``mode="score"``: every admissible (skill, args) grounding, plus "done", is scored by the
  log-likelihood of its text given the prompt, and the best is taken, step by step, until
  "done" wins or ``max_steps`` (LoTa-Bench, Choi et al. 2024; SayCan's "Say" term). Steps
  come from the closed set of groundings, so this mode can never produce an unparseable step.

Token accounting: in generate mode prompt/completion tokens are the real counts per
instruction; in score mode ``prompt_tokens`` sums the context length over steps and
``completion_tokens`` sums the scored option tokens. Latency of a batch is split evenly over
its instructions.
"""

from __future__ import annotations

import copy
import inspect
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from embodied.planners.base import (
    build_plan_prompt,
    build_score_prompt,
    choose_greedily,
    enumerate_groundings,
    plan_from_text,
    step_text,
)
from embodied.types import Plan, PlanStep, SkillSpec
from vlx.config import ConfigError

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
# Files of which a saved tokenizer has at least one (fast, sentencepiece, BPE, WordPiece, tiktoken).
_TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer.model",
    "vocab.json",
    "vocab.txt",
    "spiece.model",
    "tokenizer.tiktoken",
)


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0][:200]}" if text else type(e).__name__


def check_model_folder(path: Any) -> Path:
    """``path`` must be a local folder holding a model (config.json) and its tokenizer;
    otherwise one ``ConfigError`` line saying what is missing (transformers would take a
    missing folder for a hub repo id and fail many lines later)."""
    if path is None or not str(path).strip():
        raise ConfigError("planner 'hf_lm': missing option 'path' (a local model folder: --planner-arg path=DIR)")
    p = Path(str(path)).expanduser()
    if not p.is_dir():
        raise ConfigError(
            f"planner 'hf_lm': key 'path': {str(path)!r} is not an existing folder (a local model folder)"
        )
    if not (p / "config.json").is_file():
        raise ConfigError(f"planner 'hf_lm': key 'path': {p} has no config.json (not a saved Hugging Face model)")
    if not any((p / f).is_file() for f in _TOKENIZER_FILES):
        raise ConfigError(
            f"planner 'hf_lm': key 'path': {p} has no tokenizer (none of {', '.join(_TOKENIZER_FILES)}); "
            "save the tokenizer into the model folder"
        )
    return p


class HFLMPlanner:
    """Args:
    path: a local directory with a causal LM and its tokenizer (loaded with local_files_only).
    mode: "generate" or "score".
    chain_of_thought: generate mode asks for a "Reasoning:" paragraph before the JSON.
    max_new_tokens: generation budget per plan.
    batch_size: instructions per generate call / options per scoring forward pass.
    max_steps: cap on plan length in score mode.
    score_norm: "sum" (SayCan) or "mean" (per-token, less biased to short options).
    use_chat_template: render prompts with the tokenizer's chat template if it has one.
    reuse_prefix_cache: score mode runs the prompt once and reuses its KV cache (off for
        models whose cache cannot be batch-repeated).
    device, dtype: where and in what precision to run the model.
    """

    def __init__(
        self,
        path: str | None = None,
        mode: str = "generate",
        chain_of_thought: bool = False,
        max_new_tokens: int = 256,
        batch_size: int = 8,
        max_steps: int = 8,
        score_norm: str = "sum",
        use_chat_template: bool = True,
        device: str = "cpu",
        dtype: str = "float32",
        reuse_prefix_cache: bool = True,
    ):
        if mode not in ("generate", "score"):
            raise ConfigError(f"planner 'hf_lm': key 'mode': expected 'generate' or 'score', got {mode!r}")
        if score_norm not in ("sum", "mean"):
            raise ConfigError(f"planner 'hf_lm': key 'score_norm': expected 'sum' or 'mean', got {score_norm!r}")
        if dtype not in _DTYPES:
            raise ConfigError(f"planner 'hf_lm': key 'dtype': expected one of {list(_DTYPES)}, got {dtype!r}")
        check_model_folder(path)
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.path = str(path)
        self.mode = mode
        self.chain_of_thought = chain_of_thought
        self.max_new_tokens = max_new_tokens
        self.batch_size = batch_size
        self.max_steps = max_steps
        self.score_norm = score_norm
        self.reuse_prefix_cache = reuse_prefix_cache
        from vlx.utils import pick_device

        self.device = pick_device(device)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(self.path, local_files_only=True)
        except Exception as e:  # noqa: BLE001  transformers raises many kinds; one line for the user
            raise ConfigError(
                f"planner 'hf_lm': key 'path': {self.path}: cannot load its tokenizer ({_first_line(e)})"
            ) from None
        try:
            model = AutoModelForCausalLM.from_pretrained(self.path, local_files_only=True, dtype=_DTYPES[dtype])
        except Exception as e:  # noqa: BLE001
            raise ConfigError(
                f"planner 'hf_lm': key 'path': {self.path}: cannot load a causal LM ({_first_line(e)})"
            ) from None
        self.model = model.to(self.device).eval()
        # transformers >= 5.2x names the KV cache `cache`; earlier versions `past_key_values`.
        self._cache_kw = "cache" if "cache" in inspect.signature(self.model.forward).parameters else "past_key_values"
        self.use_chat_template = bool(use_chat_template and getattr(self.tokenizer, "chat_template", None))
        gen_cfg = self.model.generation_config
        self.eos_token_id = (
            self.tokenizer.eos_token_id if self.tokenizer.eos_token_id is not None else gen_cfg.eos_token_id
        )
        if isinstance(self.eos_token_id, list):
            self.eos_token_id = self.eos_token_id[0]
        pad = self.tokenizer.pad_token_id
        self.pad_token_id = pad if pad is not None else (self.eos_token_id if self.eos_token_id is not None else 0)

    def __repr__(self) -> str:
        return f"HFLMPlanner(path={self.path!r}, mode={self.mode!r}, chat_template={self.use_chat_template})"

    # -- prompts
    def render(self, user_text: str) -> str:
        """The full prompt text: chat template with a generation prompt, or the plain text."""
        if self.use_chat_template:
            return self.tokenizer.apply_chat_template(
                [{"role": "user", "content": user_text}], tokenize=False, add_generation_prompt=True
            )
        return user_text + "\n"

    def encode(self, text: str, prompt: bool) -> list[int]:
        """Token ids. A prompt starts with the tokenizer's BOS (when it has one and no chat
        template already wrote it); nothing is appended, so a prompt's ids are a prefix of
        the ids of the prompt plus a continuation (BERT-style [SEP] would break that)."""
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        bos = self.tokenizer.bos_token_id
        if prompt and not self.use_chat_template and bos is not None and ids[:1] != [bos]:
            ids = [bos] + ids
        return ids

    def score_context(self, instruction: str, skills: Sequence[SkillSpec], history: Sequence[PlanStep] = ()) -> str:
        """Text before step ``len(history) + 1``: the prompt, then numbered steps, ending in
        "N." (each option continues it with " text\n")."""
        text = self.render(build_score_prompt(instruction, skills)) + "1."
        for k, s in enumerate(history):
            text += f" {step_text(s)}\n{k + 2}."
        return text

    def score_inputs(
        self, instruction: str, skills: Sequence[SkillSpec], options: Sequence[str], history: Sequence[PlanStep] = ()
    ) -> tuple[list[int], list[list[int]]]:
        """(context ids, ids of each option's " text\n"). An option is tokenized together
        with the context and split off at the context's length, so word pieces that merge
        across the boundary (SentencePiece's leading "▁") come out as in running text; when
        the context's ids are not a prefix of the joint ids, it is tokenized alone."""
        context = self.score_context(instruction, skills, history)
        ctx = self.encode(context, prompt=True)
        out = []
        for o in options:
            full = self.encode(context + f" {o}\n", prompt=True)
            ids = full[len(ctx) :] if full[: len(ctx)] == ctx else self.encode(f" {o}\n", prompt=False)
            if not ids:
                raise ValueError(f"option {o!r} tokenizes to nothing with {self.path}")
            out.append(ids)
        return ctx, out

    # -- scoring
    @torch.no_grad()
    def score_options(self, prefix_ids: list[int], options: Sequence[list[int]]) -> torch.Tensor:
        """Log-likelihood of each option's ids after ``prefix_ids`` -> (N,) float32 (sum or
        mean over the option's tokens). Options are batched with right padding, so the
        positions and causal mask of real tokens match an unpadded forward pass; with
        ``reuse_prefix_cache`` the shared prefix runs once and its KV cache is repeated over
        each batch (the prompt is most of the tokens when there are many groundings)."""
        P = len(prefix_ids)
        prefix_logits = cache = None
        if self.reuse_prefix_cache:
            out = self.model(input_ids=torch.tensor([prefix_ids], device=self.device), use_cache=True)
            prefix_logits = out.logits[:, -1:]  # (1, 1, V): predicts option token 0
            cache = getattr(out, self._cache_kw)
        scores = []
        for i in range(0, len(options), self.batch_size):
            chunk = options[i : i + self.batch_size]
            B, Lo = len(chunk), max(len(o) for o in chunk)
            opt = torch.full((B, Lo), self.pad_token_id, dtype=torch.long)
            opt_mask = torch.zeros((B, Lo), dtype=torch.long)
            for r, o in enumerate(chunk):
                opt[r, : len(o)] = torch.tensor(o)
                opt_mask[r, : len(o)] = 1
            opt, opt_mask = opt.to(self.device), opt_mask.to(self.device)
            if cache is not None:
                past = copy.deepcopy(cache)  # the forward pass appends to it
                past.batch_repeat_interleave(B)
                mask = torch.cat([torch.ones((B, P), dtype=torch.long, device=self.device), opt_mask], 1)
                logits = self.model(input_ids=opt, attention_mask=mask, use_cache=True, **{self._cache_kw: past}).logits
                logits = torch.cat([prefix_logits.expand(B, -1, -1), logits[:, :-1]], 1)  # (B, Lo, V)
            else:
                ids = torch.cat([torch.tensor([prefix_ids], device=self.device).expand(B, -1), opt], 1)
                mask = torch.cat([torch.ones((B, P), dtype=torch.long, device=self.device), opt_mask], 1)
                logits = self.model(input_ids=ids, attention_mask=mask).logits[:, P - 1 : -1]  # (B, Lo, V)
            tok = torch.log_softmax(logits.float(), -1).gather(-1, opt.unsqueeze(-1)).squeeze(-1)  # (B, Lo)
            s = (tok * opt_mask).sum(-1)
            if self.score_norm == "mean":
                s = s / opt_mask.sum(-1)
            scores.append(s.cpu())
        return torch.cat(scores)

    def _plan_by_scoring(self, instruction: str, skills: Sequence[SkillSpec]) -> Plan:
        t0 = time.perf_counter()
        steps: list[PlanStep] = []
        notes: list[str] = []
        tokens = {"prompt": 0, "completion": 0}

        def score_step(history: list[PlanStep], texts: list[str]) -> torch.Tensor:
            prefix, opt_ids = self.score_inputs(instruction, skills, texts, history)
            tokens["prompt"] += len(prefix)
            tokens["completion"] += sum(len(o) for o in opt_ids)
            return self.score_options(prefix, opt_ids)

        choose_greedily(enumerate_groundings(skills), self.max_steps, score_step, steps, notes, digits=2)
        return Plan(
            steps=steps,
            raw_text="\n".join(f"{i + 1}. {step_text(s)}" for i, s in enumerate(steps)),
            latency_s=time.perf_counter() - t0,
            prompt_tokens=tokens["prompt"],
            completion_tokens=tokens["completion"],
            reasoning="; ".join(notes),
        )

    # -- generation
    @torch.no_grad()
    def _generate(self, prompts: list[str]) -> list[tuple[str, int, int, float]]:
        """(text, prompt tokens, completion tokens, seconds) per prompt, batched with left
        padding so every row's generation starts at the same column."""
        results = []
        for i in range(0, len(prompts), self.batch_size):
            chunk = prompts[i : i + self.batch_size]
            t0 = time.perf_counter()
            encoded = [self.encode(p, prompt=True) for p in chunk]
            L = max(len(e) for e in encoded)
            ids = torch.full((len(chunk), L), self.pad_token_id, dtype=torch.long)
            mask = torch.zeros((len(chunk), L), dtype=torch.long)
            for r, e in enumerate(encoded):
                ids[r, L - len(e) :] = torch.tensor(e)
                mask[r, L - len(e) :] = 1
            out = self.model.generate(
                input_ids=ids.to(self.device),
                attention_mask=mask.to(self.device),
                max_new_tokens=self.max_new_tokens,
                do_sample=False,
                pad_token_id=self.pad_token_id,
                eos_token_id=self.eos_token_id,
            )
            gen = out[:, L:].cpu()
            dt = (time.perf_counter() - t0) / len(chunk)
            for r, e in enumerate(encoded):
                row = gen[r].tolist()
                n = len(row)
                if self.eos_token_id is not None and self.eos_token_id in row:
                    n = row.index(self.eos_token_id) + 1  # the eos was generated; count it
                text = self.tokenizer.decode(row[:n], skip_special_tokens=True)
                results.append((text, len(e), n, dt))
        return results

    def plan_batch(
        self, instructions: Sequence[str], observations: Sequence[Any], skills: Sequence[SkillSpec]
    ) -> list[Plan]:
        """One plan per instruction; generate mode runs them through the LM in batches."""
        if len(observations) != len(instructions):
            raise ValueError(f"plan_batch: {len(instructions)} instructions but {len(observations)} observations")
        if self.mode == "score":
            return [self._plan_by_scoring(ins, skills) for ins in instructions]
        prompts = [self.render(build_plan_prompt(ins, skills, self.chain_of_thought)) for ins in instructions]
        return [
            plan_from_text(text, latency_s=dt, prompt_tokens=p, completion_tokens=c)
            for text, p, c, dt in self._generate(prompts)
        ]

    def plan(self, instruction: str, observation: Any, skills: Sequence[SkillSpec]) -> Plan:
        return self.plan_batch([instruction], [observation], skills)[0]
