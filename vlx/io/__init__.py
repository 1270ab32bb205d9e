"""One reader/writer per file format that more than one part of vlx writes: ``mp4`` (H.264
video through PyAV) and ``jsonl`` (crash-safe record files)."""
