"""Metrics shared by the core and every sibling: retrieval, classification, captioning."""

from vlx.metrics.captioning import (
    bleu,
    caption_metrics,
    cider_d,
    cider_d_scores,
    lcs_length,
    rouge_l,
    rouge_l_scores,
    tokenize_caption,
)
from vlx.metrics.classification import topk_accuracy
from vlx.metrics.retrieval import image_text_retrieval_metrics, retrieval_metrics, retrieval_ranks

__all__ = [
    "retrieval_metrics",
    "retrieval_ranks",
    "image_text_retrieval_metrics",
    "topk_accuracy",
    "caption_metrics",
    "bleu",
    "rouge_l",
    "rouge_l_scores",
    "cider_d",
    "cider_d_scores",
    "tokenize_caption",
    "lcs_length",
]
