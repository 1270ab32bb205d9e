import pytest

from scene_graph.builder import GraphConfig
from scene_graph.data.annotations import read_scanrefer
from scene_graph.data.dataset import ReferralDataset, SceneStore
from scene_graph.data.rooms import RoomConfig, generate_rooms


@pytest.fixture(scope="session")
def rooms(tmp_path_factory):
    root = tmp_path_factory.mktemp("rooms")
    generate_rooms(root, RoomConfig(n_train=8, n_val=3, points_per_object=24, seed=1))
    return root


@pytest.fixture(scope="session")
def tokenizer():
    from vlx.tokenizers import TokenizerConfig, build_tokenizer

    return build_tokenizer(TokenizerConfig(max_length=24))


@pytest.fixture(scope="session")
def room_dataset(rooms):
    store = SceneStore(rooms / "scans", GraphConfig(num_points=16, between=False))
    return ReferralDataset(read_scanrefer(rooms / "scanrefer_train.json"), store, progress=False)
