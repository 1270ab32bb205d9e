"""scene_graph: 3D scene graphs, GCN alignment, 3D grounding and QA (3D scene-graph-guided VLP)."""
