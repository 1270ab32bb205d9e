"""Image-text training from WebDataset tar shards in img2dataset's layout (``{key}.jpg`` or
another image extension, ``{key}.txt`` caption, optional ``{key}.json``), read with the
``webdataset`` library's tar iterator.

Splitting. Every epoch the shard list is shuffled with (seed, epoch); rank r of W takes
shards r, r + W, ...; DataLoader worker w of K takes every K-th of those. So within an epoch
each shard is read by exactly one worker of one rank.

Order. Each worker shuffles its samples with a buffer (``shuffle_buffer`` samples) seeded by
(seed, epoch, rank, worker) and collates full batches of ``batch_size`` itself; its last
partial batch goes to the main process, which merges such remainders into full batches, so
every batch has exactly ``batch_size`` samples. The stream of batches is therefore a deterministic
function of (shards, seed, epoch, rank, world size, workers).

Epoch length. ``len()`` is ``W x`` the smallest rank's sample count (from the shards'
``_stats.json`` / ``index.json``, else counted from the tar headers once): ranks step together
and a rank's samples beyond that are not used in that epoch. When the shard count is a
multiple of W and shards hold equal counts, every sample is seen exactly once per epoch
across ranks. A rank left short by skipped samples continues into its next shard pass.

Resume. The trainer restores (epoch, batches consumed); the epoch's stream is rebuilt and
its first ``skip_batches`` batches are read, decoded and discarded in the main process, so a
resumed run trains on exactly the batches the killed run had not: nothing is replayed or
skipped, at the cost of re-reading the epoch's consumed part (up to one epoch of I/O).

Bad data. A sample whose image does not decode, or that has no image or no caption, is
skipped and counted (``corrupt``, ``no_image``, ``no_caption``); an unreadable tar is
counted in ``bad_shards``. ``stats()`` sums the counts over ranks for the trainer's log.
"""

from __future__ import annotations

import io
import json
import random
import tarfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from vlx.data.errors import DataError

IMAGE_EXTS = ("jpg", "jpeg", "png", "webp", "bmp")
COUNTERS = ("samples", "corrupt", "no_image", "no_caption", "bad_shards")


def expand_shards(spec: str | list[str]) -> list[str]:
    """A directory (its ``*.tar``, sorted), a brace pattern (``data/{00000..00099}.tar``), a
    comma-separated list, or a list -> shard paths; missing files are a DataError."""
    import braceexpand

    if isinstance(spec, (list, tuple)):
        urls = [str(s) for s in spec]
    elif Path(spec).is_dir():
        urls = sorted(str(p) for p in Path(spec).glob("*.tar"))
        if not urls:
            raise DataError(f"{spec}: no *.tar shards in this directory")
    else:
        urls = [u for part in str(spec).split(",") for u in braceexpand.braceexpand(part.strip())]
    missing = [u for u in urls if "://" not in u and not Path(u).is_file()]
    if missing:
        raise DataError(f"{missing[0]}: shard not found ({len(missing)} of {len(urls)} missing)")
    return urls


def shard_count(url: str) -> int:
    """Samples in a shard: img2dataset's ``{shard}_stats.json`` ``successes``, else the number of
    distinct keys with an image member in the tar's headers."""
    stats = Path(url[: -len(".tar")] + "_stats.json") if url.endswith(".tar") else None
    if stats is not None and stats.is_file():
        data = json.loads(stats.read_text())
        if "successes" in data:
            return int(data["successes"])
    keys = set()
    try:
        with tarfile.open(url) as tf:
            for m in tf:
                base, _, ext = m.name.rpartition("/")[2].partition(".")
                if ext.lower() in IMAGE_EXTS:
                    keys.add(base)
    except (tarfile.TarError, OSError):
        return 0
    return len(keys)


def decode_sample(
    sample: dict[str, Any], transform: Callable[[Image.Image], torch.Tensor], counts: dict[str, int]
) -> dict[str, Any] | None:
    """A raw tar sample -> ``{"image", "caption", "key", "meta", "caption_id", ...}``, or None
    (counted) when its image or caption is missing or its image does not decode."""
    ext = next((e for e in IMAGE_EXTS if e in sample), None)
    if ext is None:
        counts["no_image"] += 1
        return None
    cap = sample.get("txt")
    caption = cap.decode("utf-8", "replace").strip() if isinstance(cap, bytes) else None
    if not caption:
        counts["no_caption"] += 1
        return None
    try:
        with Image.open(io.BytesIO(sample[ext])) as img:
            img.load()
            image = transform(img)
    except Exception:  # noqa: BLE001 - any decoder failure is a corrupt sample, counted and skipped
        counts["corrupt"] += 1
        return None
    meta: dict[str, Any] = {}
    if isinstance(sample.get("json"), bytes):
        try:
            meta = json.loads(sample["json"])
        except json.JSONDecodeError:
            meta = {}
    counts["samples"] += 1
    return {
        "image": image,
        "caption": caption,
        "negative": meta.get("negative"),
        "relation": meta.get("relation"),
        "key": sample.get("__key__"),
        "index": int(meta.get("index", -1)) if str(meta.get("index", -1)).lstrip("-").isdigit() else -1,
        # equal captions share an id (they are positives for each other), stable across processes
        "caption_id": zlib.crc32(caption.encode("utf-8")) & 0x7FFFFFFF,
    }


class ShardStream(IterableDataset):
    """``ShardStream(shards, transform, shuffle_buffer=1000, seed=0)``; the trainer calls
    ``epoch_loader(...)``. ``item_fn`` (optional) post-processes each decoded sample."""

    def __init__(
        self,
        shards: str | list[str],
        transform: Callable[[Image.Image], torch.Tensor],
        shuffle_buffer: int = 1000,
        seed: int = 0,
        item_fn: Callable[[dict], dict] | None = None,
    ):
        self.urls = expand_shards(shards)
        self.transform, self.shuffle_buffer, self.seed = transform, shuffle_buffer, seed
        self.item_fn = item_fn
        self.counts_per_shard = [shard_count(u) for u in self.urls]
        self._epoch, self._pass, self._rank, self._world = 0, 0, 0, 1
        self._batch_size, self._collate = 1, list
        self._stats = dict.fromkeys(COUNTERS, 0)

    # -- splitting -------------------------------------------------------------------------
    def rank_shards(self, epoch: int, rank: int, world: int) -> list[int]:
        """Shard indices rank ``rank`` reads in ``epoch`` (shuffled with (seed, epoch))."""
        order = list(range(len(self.urls)))
        random.Random(self.seed * 1_000_003 + epoch).shuffle(order)
        return order[rank::world]

    def per_rank_counts(self, world: int) -> list[int]:
        return [sum(self.counts_per_shard[i] for i in self.rank_shards(0, r, world)) for r in range(world)]

    def __len__(self) -> int:
        import torch.distributed as dist

        world = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
        if len(self.urls) < world:
            raise DataError(f"{len(self.urls)} shards for {world} ranks: every rank needs at least one shard")
        return world * min(self.per_rank_counts(world))

    # -- worker side -----------------------------------------------------------------------
    def __iter__(self) -> Iterator[tuple[str, Any, dict[str, int]]]:
        from webdataset.tariterators import tarfile_samples

        info = get_worker_info()
        wid, nw = (info.id, info.num_workers) if info is not None else (0, 1)
        epoch = self._epoch + 1000 * self._pass
        mine = self.rank_shards(epoch, self._rank, self._world)[wid::nw]
        rng = random.Random(hash((self.seed, epoch, self._rank, wid)) & 0xFFFFFFFF)
        counts = dict.fromkeys(COUNTERS, 0)

        def on_error(exc: Exception) -> bool:
            counts["bad_shards"] += 1
            return True  # skip the rest of this tar and go on

        def samples() -> Iterator[dict]:
            for i in mine:
                for raw in tarfile_samples([{"url": self.urls[i]}], handler=on_error):
                    item = decode_sample(raw, self.transform, counts)
                    if item is not None:
                        yield self.item_fn(item) if self.item_fn else item

        def shuffled() -> Iterator[dict]:
            buf: list[dict] = []
            for item in samples():
                buf.append(item)
                if len(buf) >= self.shuffle_buffer:
                    yield buf.pop(rng.randrange(len(buf)))
            rng.shuffle(buf)
            yield from buf

        # Full batches are collated here in the worker (one shared tensor per field instead of
        # one per sample); the worker's remainder goes to the main process to be merged.
        batch: list[dict] = []
        for item in shuffled():
            batch.append(item)
            if len(batch) == self._batch_size:
                yield "full", self._collate(batch), _take(counts)
                batch = []
        yield "rest", batch, _take(counts)

    # -- main process ----------------------------------------------------------------------
    def epoch_loader(
        self,
        epoch: int,
        batch_size: int,
        collate_fn: Callable[[list[dict]], Any],
        rank: int = 0,
        world: int = 1,
        num_workers: int = 0,
        skip_batches: int = 0,
        pin_memory: bool = False,
    ) -> Iterator[Any]:
        """Collated batches of exactly ``batch_size`` samples for (epoch, rank); the first
        ``skip_batches`` are read and dropped (resume). Never ends: when the rank's shards
        run out it starts another shuffled pass over them."""
        self._rank, self._world, self._epoch = rank, world, epoch
        self._batch_size, self._collate = batch_size, collate_fn
        pending: list[dict] = []
        n = 0
        self._pass = 0
        while True:
            loader = DataLoader(self, batch_size=None, num_workers=num_workers, pin_memory=pin_memory)
            got = False
            for kind, payload, delta in loader:
                for k, v in delta.items():
                    self._stats[k] += v
                if kind == "full":
                    got, n = True, n + 1
                    if n > skip_batches:
                        yield payload
                    continue
                pending += payload
                got = got or bool(payload)
                while len(pending) >= batch_size:
                    batch, pending = pending[:batch_size], pending[batch_size:]
                    n += 1
                    if n > skip_batches:
                        yield collate_fn(batch)
            if not got:
                raise DataError(f"rank {rank}: its shards hold no usable samples ({self.stats_local()})")
            self._pass += 1

    def stats_local(self) -> dict[str, int]:
        return dict(self._stats)

    def stats(self) -> dict[str, int]:
        """Counters summed over ranks (a collective: call it on every rank at the same point)."""
        import torch.distributed as dist

        t = torch.tensor([self._stats[k] for k in COUNTERS], dtype=torch.long)
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(t)
        return {f"data/{k}": int(v) for k, v in zip(COUNTERS, t.tolist())}


def _take(counts: dict[str, int]) -> dict[str, int]:
    out = dict(counts)
    for k in counts:
        counts[k] = 0
    return out
