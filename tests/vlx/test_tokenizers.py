"""The MiniLM tokenizer (default) and HF tokenizers behind one interface."""

import pytest
import torch

from vlx.config import ConfigError, from_dict
from vlx.tokenizers import HFTokenizer, Tokenizer, TokenizerConfig, build_tokenizer


@pytest.fixture(scope="module")
def tok():
    return build_tokenizer(TokenizerConfig(max_length=8))


def test_default_is_minilm_with_bert_ids(tok):
    assert isinstance(tok, Tokenizer) and isinstance(tok, HFTokenizer)
    assert tok.vocab_size == 30522 and tok.pad_token_id == 0
    out = tok(["a red circle", "Hi"])
    assert set(out) == {"input_ids", "attention_mask"}
    assert out["input_ids"].dtype == torch.long and out["attention_mask"].dtype == torch.long
    # [CLS] a red circle [SEP] / [CLS] hi [SEP] [PAD] [PAD]
    assert out["input_ids"].tolist() == [[101, 1037, 2417, 4418, 102], [101, 7632, 102, 0, 0]]
    assert out["attention_mask"].tolist() == [[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]


def test_truncation_keeps_sep_and_decode_round_trips(tok):
    out = tok(["one two three four five six seven eight nine ten", "Two Words"])
    assert out["input_ids"].shape == (2, 8)
    assert out["input_ids"][0, -1].item() == 102 and out["attention_mask"][0].sum() == 8
    assert tok.decode(out["input_ids"][0]) == "one two three four five six"
    assert tok.decode(out["input_ids"]) == ["one two three four five six", "two words"]
    assert tok.decode([101, 7632, 102]) == "hi"


def test_bad_input_and_config_errors(tmp_path):
    tok = build_tokenizer()
    assert tok.max_length == 32
    with pytest.raises(TypeError, match="one string"):
        tok("not a list")
    with pytest.raises(TypeError, match="index 1 is int"):
        tok(["ok", 3])
    with pytest.raises(ConfigError, match=f"{tmp_path}.*tokenizer.json"):
        build_tokenizer(TokenizerConfig(name="hf", path=str(tmp_path)))
    with pytest.raises(ConfigError, match="'path' is required"):
        build_tokenizer(TokenizerConfig(name="hf"))
    with pytest.raises(ConfigError, match="'tok.name'.*minilm"):
        from_dict(TokenizerConfig, {"name": "bpe"}, where="x.yaml", prefix="tok")
    with pytest.raises(ConfigError, match="max_length must be >= 2"):
        from_dict(TokenizerConfig, {"max_length": 1}, where="x.yaml")


def test_hf_tokenizer_from_a_local_copy(tmp_path):
    """The "hf" name loads any local tokenizer dir (here a copy saved by transformers)."""
    build_tokenizer().tokenizer.save_pretrained(tmp_path)
    tok = build_tokenizer(TokenizerConfig(name="hf", path=str(tmp_path), max_length=4))
    assert tok(["a red circle left"])["input_ids"].tolist() == [[101, 1037, 2417, 102]]
