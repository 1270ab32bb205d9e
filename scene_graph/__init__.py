"""scene_graph: 3D scene graphs, GCN alignment, 3D grounding and QA (3D scene-graph-guided VLP).

- ``relations`` / ``sr3d`` / ``builder``: two named relation sets, ``sr3d`` (referit3d's Sr3D
  generator rules) and ``viewer`` (vlx's viewer-frame rules, vectorised over object pairs), and
  object instances -> torch-geometric ``Data`` / ``HeteroData`` scene graphs.
- ``data``: ScanNet-layout scenes (files through :mod:`vlx.io.scannet`; ``build-scannet`` to
  axis-aligned ``.npz``), the label map and ScanRefer's 18 classes, ScanRefer / Nr3D / Sr3D /
  ScanQA / 3DSSG readers, predicted-proposal files, procedural rooms with same-shape distractors.
- ``models`` / ``losses`` / ``metrics`` / ``recipes``: the graph model, pre-training objectives,
  ScanRefer / referit3d / ScanQA / Scan2Cap metrics, and the ``sg_grounding``, ``sg_qa``,
  ``sg_pretrain`` recipes (``configs/scene_graph/*_tiny.yaml`` run on a CPU).

``vlx scene-graph report`` trains and evaluates the tiny recipes and writes report.json/.md;
``vlx scene-graph build-scannet`` / ``show`` build ScanNet scenes and draw a scene graph.
"""
