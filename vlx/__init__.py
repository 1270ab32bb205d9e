"""vlx: a shared image-text (CLIP-style) core that video, point-cloud, scene-graph and
embodied siblings build on. See docs/ARCHITECTURE.md for the contracts.

``vlx.create_model_and_transforms``, ``vlx.get_tokenizer`` and ``vlx.list_models`` are
open_clip's entry points (``vlx.factory``), imported on first use so that ``import vlx``
stays light."""

__version__ = "0.1.0"

_FACTORY = ("create_model_and_transforms", "get_tokenizer", "list_models")


def __getattr__(name: str):
    if name in _FACTORY:
        from vlx import factory

        return getattr(factory, name)
    raise AttributeError(f"module 'vlx' has no attribute {name!r}")
