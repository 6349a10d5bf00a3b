"""edge_runtime: what runs on the device. Light dependencies only: never torch,
transformers, peft, trl or datasets (a router installs only this package's extra)."""

__version__ = "0.1.0"
