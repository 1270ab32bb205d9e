"""Write tiny random CLIP and SigLIP checkpoints (the real transformers classes and
save_pretrained files) to checkpoints/tiny_clip and checkpoints/tiny_siglip, for the CPU
twins of the fine-tuning configs and for trying `vlx eval --model` without a download.

    python scripts/make_tiny_checkpoints.py [OUT_DIR]
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.vlx._hf_ckpt import save_tiny_clip, save_tiny_siglip  # noqa: E402

if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "checkpoints")
    print(save_tiny_clip(out / "tiny_clip"), save_tiny_siglip(out / "tiny_siglip"))
