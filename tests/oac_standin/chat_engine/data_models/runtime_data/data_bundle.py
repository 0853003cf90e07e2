from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


class VariableSize:
    pass


@dataclass
class DataBundleEntry:
    name: str
    shape: list[Any]
    time_axis: int = -1
    sample_rate: int | None = None
    kind: str = "text"

    @classmethod
    def create_audio_entry(cls, name: str, channel_num: int, sample_rate: int) -> DataBundleEntry:
        return cls(name, [channel_num, VariableSize()], 1, sample_rate, "audio")

    @classmethod
    def create_text_entry(cls, name: str) -> DataBundleEntry:
        return cls(name, [VariableSize()], -1, None, "text")

    @classmethod
    def create_framed_entry(cls, name: str, shape: list[Any], time_axis: int, sample_rate: int) -> DataBundleEntry:
        """Video, as the RTC client declares CAMERA_VIDEO: [VariableSize x 3, 3], time axis 0, 30 fps."""
        return cls(name, shape, time_axis, sample_rate, "video")


class DataBundleDefinition:
    def __init__(self) -> None:
        self.entries: dict[str, DataBundleEntry] = {}
        self.main_entry: str | None = None
        self.locked = False

    def add_entry(self, entry: DataBundleEntry) -> None:
        if self.locked:
            raise RuntimeError("definition is locked")
        self.entries[entry.name] = entry
        self.main_entry = self.main_entry or entry.name

    def set_main_entry(self, name: str) -> None:
        self.main_entry = name

    def lockdown(self) -> None:
        self.locked = True

    def get_main_entry(self) -> DataBundleEntry:
        assert self.main_entry is not None
        return self.entries[self.main_entry]


@dataclass
class DataBundle:
    definition: DataBundleDefinition
    data: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    start_of_stream: bool = False
    end_of_stream: bool = False

    def set_main_data(self, value: Any) -> None:
        self.set_data(self.definition.get_main_entry().name, value)

    def set_data(self, name: str, value: Any) -> None:
        entry = self.definition.entries[name]
        if entry.kind == "audio":
            # The engine's rule: audio must be 2-D [channels, N > 0] (dtype is not checked).
            if not isinstance(value, np.ndarray) or value.ndim != 2 or value.shape[0] != entry.shape[0] \
                    or value.shape[1] == 0:
                raise RuntimeError(f"Dimension mismatch for {name}: {getattr(value, 'shape', None)}")
        elif entry.kind == "video":
            # Framed data keeps the declared number of dimensions (CAMERA_VIDEO: [1, H, W, 3]).
            if not isinstance(value, np.ndarray) or value.ndim != len(entry.shape):
                raise RuntimeError(f"Dimension mismatch for {name}: {getattr(value, 'shape', None)}")
        elif not isinstance(value, str):
            raise RuntimeError(f"text entry {name} needs a str")
        self.data[name] = value

    def get_main_data(self) -> Any:
        return self.data.get(self.definition.get_main_entry().name)

    def get_main_definition_entry(self) -> DataBundleEntry:
        return self.definition.get_main_entry()

    def add_meta(self, key: str, value: Any) -> None:
        self.metadata[key] = value

    def get_meta(self, key: str, default: Any = None) -> Any:
        return self.metadata.get(key, default)
