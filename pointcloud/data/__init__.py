"""Point-cloud data: published formats (ModelNet40 h5/txt, ScanObjectNN h5, PLY/PCD, ScanNet-layout
RGB-D frames) and the procedural primitives generator with paired renders and captions."""
from pointcloud.data.primitives import COLORS, SHAPES, generate_primitives, make_primitive, render_rgb
from pointcloud.data.readers import (PointCloudDataset, check_cloud, read_class_names, read_h5_clouds, read_modelnet_txt,
                                     read_point_file, read_rgbd_frame, read_rgbd_scene, resample)

__all__ = ["COLORS", "SHAPES", "generate_primitives", "make_primitive", "render_rgb", "PointCloudDataset", "check_cloud",
           "read_class_names", "read_h5_clouds", "read_modelnet_txt", "read_point_file", "read_rgbd_frame", "read_rgbd_scene", "resample"]
