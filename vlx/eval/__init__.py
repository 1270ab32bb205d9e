"""Evaluation of any image-text model (a vlx preset or a user's CLIP/SigLIP checkpoint) on
data in its usual layouts: zero-shot classification of an ImageFolder with prompt templates
and ensembling, image-text retrieval on caption pairs, sharded embedding export."""
