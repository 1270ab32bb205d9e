"""scene_graph: 3D scene graphs, GCN alignment, 3D grounding and QA (3D scene-graph-guided VLP).

- ``relations`` / ``builder``: Sr3D-style spatial relations, vectorised over object pairs, and
  object instances -> torch-geometric ``Data`` / ``HeteroData`` scene graphs.
- ``data``: ScanNet-layout scenes, ScanRefer / Nr3D / Sr3D / ScanQA / 3DSSG readers, procedural
  rooms with same-shape distractors.
- ``models`` / ``losses`` / ``metrics`` / ``recipes``: the graph model, pre-training objectives,
  ScanRefer / referit3d / ScanQA / Scan2Cap metrics, and the ``sg_grounding``, ``sg_qa``,
  ``sg_pretrain`` recipes (``configs/scene_graph/*_tiny.yaml`` run on a CPU).

``vlx scene-graph report`` trains and evaluates the tiny recipes and writes report.json/.md.
"""
