"""What a scoring run did: :class:`RunSummary`, returned by ``score`` and printed by the CLI."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from popbatch.core import DEFAULT_BATCH_SIZE

ProgressCallback = Callable[[int, int | None], None]

MAX_REASONS = 100
OTHER_REASONS = "(other reasons)"


@dataclass
class RunSummary:
    """What a run did. Always ``rows_read == rows_scored + rows_rejected + rows_skipped``."""

    input: str
    output: str
    rejects: str | None
    model_id: str
    scored_at: str
    rows_read: int = 0
    rows_scored: int = 0
    rows_rejected: int = 0
    rows_skipped: int = 0
    rows_written: int | None = None
    incremental: bool = False
    rows_genre_other: int = 0
    seconds: float = 0.0
    rows_per_second: float = 0.0
    batch_size: int = DEFAULT_BATCH_SIZE
    threads: int = 1
    fills: dict[str, Any] = field(default_factory=dict)
    heads: list[str] = field(default_factory=lambda: ["popular"])
    #: input columns named like score columns (a scored file scored again): the new
    #: scores replace them in the output
    columns_replaced: list[str] = field(default_factory=list)
    #: how many rejected rows gave each reason (at most MAX_REASONS distinct reasons; the
    #: rest are counted under OTHER_REASONS), so that a run can say why without the file
    reject_reasons: dict[str, int] = field(default_factory=dict)

    def count_reasons(self, reasons: Iterable[tuple[str, int]]) -> None:
        """Add rejected rows' ``(reason, rows)`` counts to :attr:`reject_reasons`."""
        for reason, rows in reasons:
            if reason not in self.reject_reasons and len(self.reject_reasons) >= MAX_REASONS:
                reason = OTHER_REASONS
            self.reject_reasons[reason] = self.reject_reasons.get(reason, 0) + rows

    def most_common_reason(self) -> tuple[str, int] | None:
        """The reason most rejected rows gave, with their count (None: nothing rejected)."""
        named = {k: v for k, v in self.reject_reasons.items() if k != OTHER_REASONS}
        if not named:
            return None
        return min(named.items(), key=lambda item: (-item[1], item[0]))  # ties: by name

    @property
    def every_row_rejected(self) -> bool:
        """Rows were read and every one of them was rejected: nothing was scored."""
        return self.rows_read > 0 and self.rows_rejected == self.rows_read

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def line(self) -> str:
        """The one summary line printed on stderr at the end of a run."""
        rejected = f", {self.rows_rejected:,} rejected" if self.rows_rejected else ""
        common = self.most_common_reason()
        if common is not None:
            reason, rows = common
            if rows < self.rows_rejected:  # other reasons too: how many gave this one
                reason += f": {rows:,} row" + ("s" if rows > 1 else "")
            rejected += f" ({reason})"
        if self.incremental:
            rejected += f", {self.rows_skipped:,} up to date"
        rejects = f" (rejects: {self.rejects})" if self.rows_rejected and self.rejects else ""
        if self.incremental and self.rows_written is not None:
            rejects += f", {self.rows_written:,} rows in the target"
        elif self.rows_written is not None and self.rows_written != self.rows_scored:
            rejects += f", {self.rows_written:,} rows written (one per key)"
        replaced = ""
        if self.columns_replaced:
            replaced = f"; new scores replaced input columns {', '.join(self.columns_replaced)}"
        return (
            f"scored {self.rows_scored:,} of {self.rows_read:,} rows{rejected} from {self.input} "
            f"into {self.output}{rejects} in {self.seconds:.2f} s "
            f"({self.rows_per_second:,.0f} rows/s), model {self.model_id[:12]}{replaced}"
        )
