"""The one record type every dataset reader yields, so any mix of datasets can feed training."""

from __future__ import annotations

import os
from dataclasses import dataclass, field


@dataclass(frozen=True)
class FaceRecord:
    path: str  # image file
    age: float  # years (FFHQ-Aging: midpoint of the labelled range)
    gender: int  # 0 = male, 1 = female
    source: str  # dataset name, e.g. "utkface"
    age_conf: float = 1.0
    gender_conf: float = 1.0

    @property
    def key(self) -> str:
        """Stable id across machines: dataset name + file name."""
        return f"{self.source}/{os.path.basename(self.path)}"


@dataclass
class ReadStats:
    files: int = 0
    parsed: int = 0
    repaired: int = 0  # malformed names whose age and gender fields were still clear
    skipped: int = 0
    skipped_examples: list[str] = field(default_factory=list)
    repaired_examples: list[str] = field(default_factory=list)

    def skip(self, name: str) -> None:
        self.skipped += 1
        if len(self.skipped_examples) < 20:
            self.skipped_examples.append(name)

    def as_dict(self) -> dict:
        return dict(self.__dict__)
