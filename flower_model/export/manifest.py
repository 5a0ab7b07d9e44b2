"""What an export says of itself (`export.json`), and what a finished export returns."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from flower_model.export.parity import Parity, QuantizedAccuracy


@dataclass(frozen=True)
class ExportManifest:
    """What `export.json` says: the format, the run, the contract and how it was checked."""

    format: str
    model_file: str
    run_id: str
    class_names: tuple[str, ...]  # the model's output order
    input_shape: tuple[int | None, ...]
    input_dtype: str
    weights: str  # "ImageNet" or the no-transfer-learning label
    validation_accuracy: float
    exported: str  # ISO 8601, local time
    parity: Parity
    checked_on: str
    quantized: QuantizedAccuracy | None = None

    def to_json(self) -> dict[str, Any]:
        """Return the manifest as plain JSON values."""
        value = asdict(self)
        value["class_names"] = list(self.class_names)
        value["input_shape"] = list(self.input_shape)
        return value

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> ExportManifest:
        """Rebuild a manifest read from `export.json`."""
        quantized = value.get("quantized")
        return cls(
            **{
                **value,
                "class_names": tuple(value["class_names"]),
                "input_shape": tuple(value["input_shape"]),
                "parity": Parity(**value["parity"]),
                "quantized": QuantizedAccuracy(**quantized) if quantized else None,
            }
        )


@dataclass(frozen=True)
class ExportResult:
    """A finished export: where it is, what it holds, and how it was checked."""

    path: Path
    manifest: ExportManifest
    files: dict[str, int]  # name -> bytes, unpacked
    seconds: float
    packed_bytes: int | None = None  # the .zip's own size, for a .zip

    @property
    def format(self) -> str:
        """Return the format's name."""
        return self.manifest.format

    @property
    def parity(self) -> Parity:
        """Return how the export compared with the app."""
        return self.manifest.parity

    @property
    def quantized(self) -> QuantizedAccuracy | None:
        """Return the int8 model against the float one, for an int8 export."""
        return self.manifest.quantized

    @property
    def bytes(self) -> int:
        """Return the size of the export as written: the .zip, or the folder's files."""
        return self.packed_bytes if self.packed_bytes is not None else sum(self.files.values())

    @property
    def model_bytes(self) -> int:
        """Return the size of the model itself."""
        return self.files.get(self.manifest.model_file, 0)
