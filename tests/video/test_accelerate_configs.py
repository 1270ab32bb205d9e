"""The DeepSpeed launcher configs (configs/video/accelerate_zero{2,3}.yaml) through
accelerate's own code, as far as it runs without CUDA: the config loader (unknown keys are
an error there), ``accelerate launch``'s argument validation and DeepSpeed environment, and
the ``DeepSpeedPlugin`` that turns that environment into the DeepSpeed config dict handed to
``deepspeed.initialize``. DeepSpeed itself is not installed here (its optimizers need CUDA,
see ../shared/DEPS.md): these configs are CUDA only and were never run on this machine."""

from __future__ import annotations

import os
from pathlib import Path
from unittest import mock

import pytest

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = sorted((ROOT / "configs" / "video").glob("accelerate_zero*.yaml"))


def test_both_stages_present():
    assert [p.name for p in CONFIGS] == ["accelerate_zero2.yaml", "accelerate_zero3.yaml"]


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_accelerate_reads_the_config_and_builds_the_deepspeed_config(path):
    from accelerate.commands.config.config_args import ClusterConfig, load_config_from_file
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils import DeepSpeedPlugin, DistributedType
    from accelerate.utils.launch import prepare_deepspeed_cmd_env

    from vlx.config import read_yaml_with_extends

    stage = int(path.stem[-1])
    cfg = load_config_from_file(str(path))  # raises on keys accelerate does not know
    assert isinstance(cfg, ClusterConfig) and cfg.distributed_type == DistributedType.DEEPSPEED
    assert cfg.mixed_precision == "bf16" and not cfg.use_cpu

    # accelerate launch's own path up to the DeepSpeed environment (no process is started)
    argv = ["--config_file", str(path), "-m", "video.train_accelerate", "configs/video/llava.yaml"]
    args, defaults, _ = _validate_launch_command(launch_command_parser().parse_args(argv))
    assert args.use_deepspeed and args.num_processes == 8 and args.zero_stage == stage
    args.deepspeed_fields_from_accelerate_config = ",".join(defaults.deepspeed_config)
    _, env = prepare_deepspeed_cmd_env(args)
    acc_env = {k: v for k, v in env.items() if k.startswith("ACCELERATE_")}
    assert acc_env["ACCELERATE_USE_DEEPSPEED"] == "true" and acc_env["ACCELERATE_MIXED_PRECISION"] == "bf16"

    # what the training process's Accelerator builds from that environment
    with mock.patch.dict(os.environ, acc_env):
        ds = DeepSpeedPlugin().deepspeed_config
    z = ds["zero_optimization"]
    assert z["stage"] == stage
    assert z["offload_optimizer"]["device"] == "none" and z["offload_param"]["device"] == "none"
    assert z["stage3_gather_16bit_weights_on_model_save"] == (stage == 3)  # ZeRO-3 saves whole bf16 weights
    # the launcher config and the recipe config it launches must agree
    llava = read_yaml_with_extends(str(ROOT / "configs" / "video" / "llava.yaml"))
    assert ds["gradient_accumulation_steps"] == llava["train"]["grad_accum"] == 4
    assert ds["gradient_clipping"] == 1.0
    assert ds["train_micro_batch_size_per_gpu"] == "auto"  # filled from the DataLoader by accelerate
