"""scene_graph data: ScanNet-layout scenes, ScanRefer / Nr3D / Sr3D / ScanQA / 3DSSG readers,
and the procedural room generator."""
