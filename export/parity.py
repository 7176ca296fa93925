"""The parity proof: the ONNX graph gives the native stack's probabilities and labels."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from popbatch.core.errors import ModelError

TOLERANCE = 1e-5
TEST_FILE = "test.parquet"


@dataclass(frozen=True)
class Parity:
    rows: int
    max_abs_diff: float
    labels_identical: bool
    label_mismatches: int

    @property
    def ok(self) -> bool:
        return self.max_abs_diff <= TOLERANCE and self.labels_identical

    def line(self) -> str:
        """The line ``popbatch export`` prints."""
        return (
            f"parity on {self.rows:,} test rows: max |native - onnx| = {self.max_abs_diff:.3g} "
            f"(tolerance {TOLERANCE:g}), labels identical: "
            f"{'yes' if self.labels_identical else f'no ({self.label_mismatches} differ)'}"
        )

    def manifest(self) -> dict:
        fields = asdict(self)
        del fields["label_mismatches"]
        return fields


def split_matrix(stack_dir: Path, feature_names: list[str]) -> np.ndarray:
    """The test split's [N, F] float32 matrix, columns in model order."""
    import polars as pl

    path = Path(stack_dir) / TEST_FILE
    try:
        frame = pl.read_parquet(path, columns=feature_names)
    except FileNotFoundError:
        raise ModelError(f"{path}: no test split to prove parity on; re-run training") from None
    except pl.exceptions.ColumnNotFoundError as exc:
        raise ModelError(f"{path}: lacks feature columns ({exc}); re-run training") from None
    if frame.height == 0:
        raise ModelError(f"{path}: the test split is empty; parity cannot be proven")
    return frame.to_numpy().astype(np.float32)


def compare(
    native_probability: np.ndarray,
    onnx_probability: np.ndarray,
    onnx_label: np.ndarray,
    threshold: float,
) -> Parity:
    native_probability = np.asarray(native_probability, np.float64)
    native_label = native_probability >= threshold
    diff = np.abs(native_probability - np.asarray(onnx_probability, np.float64))
    mismatches = int(np.sum(native_label != np.asarray(onnx_label).astype(bool)))
    return Parity(
        rows=len(native_probability),
        max_abs_diff=float(diff.max()) if diff.size else 0.0,
        labels_identical=mismatches == 0,
        label_mismatches=mismatches,
    )


def require(parity: Parity) -> None:
    """Refuse a graph that does not reproduce the native stack."""
    if not parity.ok:
        raise ModelError(
            f"parity failed, nothing written: {parity.line()}; the ONNX graph does not "
            "reproduce the native stack, report it with the run directory"
        )
