"""video: video-text retrieval and LLaVA-style video captioning on the vlx core (PLLaVA, ToMe, CLIP4Clip)."""
