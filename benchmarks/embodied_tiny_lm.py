"""Write a RANDOM tiny causal LM (2-layer Llama, MiniLM's WordPiece tokenizer, seed 0) to a
folder, to show the ``hf_lm`` planner's mechanics in the Kitchen chain results without a
model download. Its plans are not those of a trained model.

    python benchmarks/embodied_tiny_lm.py runs/embodied/tiny_lm
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(out: str) -> None:
    from tests.vlx._hf_ckpt import save_tiny_llama

    save_tiny_llama(out, seed=0)
    print(out)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "runs/embodied/tiny_lm")
