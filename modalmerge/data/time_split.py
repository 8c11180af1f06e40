"""Blocks of one run held out in time (``shard.split_by: time``), shared by preprocess and shard.

A run is cut into contiguous train / val / test blocks, in that order, with
``gap`` volumes left out between consecutive blocks (:func:`time_blocks`). The
shard stage lays its windows inside the blocks; the preprocess stage cleans
each block on its own (:func:`run_blocks`), so no statistic of a held-out block
(its trend, its filtered values near a boundary, its confound fit, its mean and
SD) shapes the training data, and no training statistic shapes the held-out
data: each block is treated as a run of its own (docs/data-sources.md).

Stdlib and the settings only: preprocess imports it, and its code fingerprint
must not widen to the shard writer.
"""

from __future__ import annotations

from modalmerge.settings import ShardSettings

__all__ = ["SPLITS", "run_blocks", "time_blocks"]

SPLITS = ("train", "val", "test")


def time_blocks(n_time: int, fractions: dict, window: int, gap: int) -> dict[str, tuple[int, int]]:
    """Contiguous blocks ``[start, stop)`` of a run for train, val and test, in that order.

    The run's volumes are cut by ``fractions`` and ``gap`` volumes are left out
    between consecutive blocks, so no window of one split overlaps (or sits
    within ``gap`` volumes of) a window of another: slow autocorrelation does
    not leak the held-out block into training. A block with fraction 0 is empty.

    Raises
    ------
    ValueError
        A block with a positive fraction holds fewer than ``window`` volumes.
    """
    wanted = [s for s in SPLITS if fractions[s] > 0]
    usable = n_time - gap * (len(wanted) - 1)
    blocks, start = {}, 0
    for name in SPLITS:
        if fractions[name] <= 0:
            blocks[name] = (start, start)
            continue
        length = int(round(fractions[name] * usable))
        if name == wanted[-1]:
            length = n_time - start
        blocks[name] = (start, start + length)
        if length < window:
            raise ValueError(
                f"split_by time: the {name} block has {length} volumes, fewer than the "
                f"window ({window}) — a run of {n_time} volumes is too short for these "
                "fractions and this gap"
            )
        start += length + gap
    return blocks


def run_blocks(
    n_time: int, shard: ShardSettings | dict | None
) -> dict[str, tuple[int, int]] | None:
    """The non-empty blocks of a run under ``shard`` settings, or None unless ``split_by: time``.

    ``gap`` null means one window, as in the shard stage.
    """
    if shard is None:
        return None
    shard = ShardSettings.coerce(shard)
    if shard.split_by != "time":
        return None
    gap = shard.window if shard.gap is None else shard.gap
    blocks = time_blocks(n_time, shard.fractions.as_dict(), shard.window, gap)
    return {name: span for name, span in blocks.items() if span[1] > span[0]}
