"""Training inputs: dataset readers (one record type), the split manifest and the crop cache."""

from .records import FaceRecord, ReadStats

__all__ = ["FaceRecord", "ReadStats"]
