"""Sweeps over Dask arrays: chunked, lazy, on one machine or a cluster (needs the ``dask`` extra).

A :class:`~symcost.core.sweep.Sweeper` called with any Dask array maps its own NumPy path over
the blocks (``map_blocks``): every chunk is swept exactly as a NumPy sweep of that chunk, in
float64, with the assumption checks applied to it, so a point that breaks one raises the same
:class:`~symcost.errors.AssumptionError` when the chunk is computed. The results are Dask arrays
of the broadcast shape and the chunks of the inputs; nothing runs until ``.compute()`` (or
``dask.compute`` of several, which shares the blocks between them).

Dask is an optional extra, so the example is not a doctest (tests/core/test_sweep_dask.py runs it)::

    import dask.array as da
    from symcost import symbols as S, sweep

    lazy = sweep(2 * S.batch_size * S.seq_len, batch_size=da.arange(1, 5, chunks=2), seq_len=1024)
    lazy.chunks     # ((2, 2),)
    lazy.compute()  # array([2048., 4096., 6144., 8192.])

On a cluster, connect a client first (``Client("tcp://scheduler:8786")``): the sweeper travels to
the workers as its expressions and compiles there once per process.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

# NB: core.sweep imports this module, so a Sweeper is typed here by what it is used for (called
# with a mapping of NumPy blocks, ``names`` of its outputs), not imported (no cycle).
Sweeper = Any

__all__ = ["is_dask", "sweep_blocks"]


def is_dask(values: Any) -> bool:
    """Whether any of ``values`` is a Dask collection (without importing Dask when it is not loaded)."""
    import sys

    if sys.modules.get("dask") is None:  # a Dask array means Dask is loaded already
        return False
    try:
        from dask import is_dask_collection
    except ImportError:
        return False

    return any(is_dask_collection(v) for v in values)


def _block(sweeper: Sweeper, keys: tuple[Any, ...], *blocks: np.ndarray) -> np.ndarray:
    """One chunk through the NumPy sweep: the named outputs stacked on a new first axis."""
    result = sweeper(dict(zip(keys, blocks)))
    return np.stack([np.asarray(result[name]) for name in sweeper.names])


def sweep_blocks(sweeper: Sweeper, given: Mapping[Any, Any]) -> dict[str, Any]:
    """``{name: Dask array}`` of ``sweeper`` over ``given`` (symbol -> Dask array, NumPy array or
    number), all broadcast together; lazy."""
    import dask.array as da

    keys = tuple(given)
    arrays = da.broadcast_arrays(*(da.asarray(given[k]).astype(np.float64) for k in keys))
    ndim = arrays[0].ndim
    stacked = da.map_blocks(_block, sweeper, keys, *arrays, dtype=np.float64, new_axis=0,
                            chunks=((len(sweeper.names),), *arrays[0].chunks) if ndim else None,
                            meta=np.empty((0,) * (ndim + 1), dtype=np.float64))
    return {name: stacked[i] for i, name in enumerate(sweeper.names)}
