"""One reader/writer per file format that more than one part of vlx writes: ``mp4`` (H.264
video through PyAV), ``jsonl`` (crash-safe record files) and ``scannet`` (ScanNet v2 scenes in
their published layout)."""
