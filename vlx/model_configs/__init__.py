"""vlx's own model shapes as data (open_clip's ``model_configs/*.json``): one JSON per preset
with ``model`` (a DualEncoderConfig), ``tokenizer`` (a TokenizerConfig) and ``preprocess``
(image size, mean, std). Read by ``vlx.models.presets``."""
