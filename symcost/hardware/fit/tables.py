"""NVIDIA's per-op tables (the ``aiconfigurator-core`` package, Apache-2.0): where they are, which
ones the fit reads, and the rows of each op family the fit and the error tables use.

The package ships AIConfigurator's measured database as parquet files under
``aiconfigurator_core/systems/data/<gpu>/<op family>/<backend>/<version>/`` with ``latency`` in
milliseconds per call and the table's provenance in ``collection_meta.yaml``. The files are read
where pip put them (the package is located, never imported); ``systems/silicon_sample.csv``
(end-to-end serving runs) is never read: it is evaluation data, not calibration data.

Needs the ``calibration`` extra (``pip install -e '.[calibration]'``: aiconfigurator-core,
pandas, pyarrow, scipy).
"""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...errors import ConfigError

__all__ = ["CHIPS", "PACKAGE", "Table", "data_root", "package_version", "read"]

PACKAGE = "aiconfigurator-core"
"""The distribution that ships the tables."""

CHIPS: dict[str, str] = {"a100_sxm": "A100_SXM_80GB", "h100_sxm": "H100_SXM", "h200_sxm": "H200_SXM",
                         "b200_sxm": "B200", "b300_sxm": "B300", "gb200": "GB200"}
"""AIConfigurator's GPU folder -> the symcost preset its tables are fitted for."""


@functools.lru_cache(maxsize=1)
def data_root() -> Path:
    """``aiconfigurator_core/systems/data`` of the installed package (located, not imported);
    a one-line :class:`~symcost.errors.ConfigError` when the calibration extra is missing."""
    spec = importlib.util.find_spec("aiconfigurator_core")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("the per-op tables need the calibration extra: pip install -e '.[calibration]' "
                          "(aiconfigurator-core, pandas, pyarrow, scipy)")
    return Path(next(iter(spec.submodule_search_locations))) / "systems" / "data"


def package_version() -> str:
    """The installed ``aiconfigurator-core`` version (what every fitted value's source names)."""
    return importlib.metadata.version(PACKAGE)


@dataclass(frozen=True)
class Table:
    """One measured table: GPU folder, op family folder, backend, version and file stem."""

    gpu: str
    family: str
    backend: str
    version: str
    name: str

    @property
    def path(self) -> Path:
        """The parquet file."""
        return data_root() / self.gpu / self.family / self.backend / self.version / f"{self.name}.parquet"

    @property
    def provenance(self) -> str:
        """``collected`` or ``legacy``, as ``collection_meta.yaml`` says (``unknown`` without one)."""
        meta = self.path.parent / "collection_meta.yaml"
        if not meta.exists():
            return "unknown"
        for line in meta.read_text(encoding="utf-8").splitlines():
            if line.startswith("provenance:"):
                return line.split(":", 1)[1].strip()
        return "unknown"

    @property
    def source(self) -> str:
        """How a fitted value cites this table."""
        return (f"{PACKAGE} {package_version()}, systems/data/{self.gpu}/{self.family}/{self.backend}/"
                f"{self.version}/{self.name}.parquet ({self.provenance})")


@functools.lru_cache(maxsize=64)
def read(table: Table) -> Any:
    """The rows of ``table`` as a pandas DataFrame with ``seconds`` (latency / 1000) added."""
    import pandas as pd

    if not table.path.exists():
        raise ConfigError(f"no per-op table {table.path.relative_to(data_root())} in {PACKAGE} {package_version()}")
    frame = pd.read_parquet(table.path)
    frame["seconds"] = frame["latency"].astype(float) / 1000
    return frame
