"""Benchmarks by name: ``build_benchmark("metaworld-mt10")``, ``"metaworld-mt50"``,
``"metaworld-mt1:pick-place-v3"``, ``"kitchen"`` (Franka Kitchen, ``embodied.envs.kitchen``).

A family's module is imported on first use and registers a factory with
``@register_benchmark(family)``; the factory gets the part of the name after the first "-"
(``"mt10"``; ``""`` when there is none) and returns a ``Benchmark``.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module

from embodied.envs.base import Benchmark, TaskEnv, TaskSpec, seeds_for
from vlx.config import ConfigError
from vlx.registry import Registry

BENCHMARKS: Registry[Callable[[str], Benchmark]] = Registry("benchmark")


def register_benchmark(family: str) -> Callable:
    return BENCHMARKS.register(family)


@register_benchmark("metaworld")
def _metaworld(variant: str) -> Benchmark:
    from embodied.envs.metaworld import MetaWorldBenchmark

    return MetaWorldBenchmark(variant or "mt10")


def build_benchmark(name: str) -> Benchmark:
    """The benchmark called ``name`` (``ConfigError`` naming it when unknown)."""
    family, _, variant = name.partition("-")
    if family not in BENCHMARKS:
        try:
            import_module(f"embodied.envs.{family}")
        except ModuleNotFoundError as e:
            if e.name != f"embodied.envs.{family}":
                raise
    if family not in BENCHMARKS:
        raise ConfigError(f"benchmark: unknown {name!r}; known families: {', '.join(BENCHMARKS.names())}, kitchen")
    try:
        return BENCHMARKS.get(family)(variant)
    except KeyError as e:
        raise ConfigError(f"benchmark {name!r}: {e.args[0]}") from None


__all__ = ["BENCHMARKS", "Benchmark", "TaskEnv", "TaskSpec", "build_benchmark", "register_benchmark", "seeds_for"]
