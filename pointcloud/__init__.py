"""pointcloud: point ops, point encoders, depth projection and image-bridged contrastive pre-training "
"(CLIP2Point, Text4Point)."""
