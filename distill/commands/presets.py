"""`distill presets`: the student presets and their facts."""

from __future__ import annotations

from rich.table import Table

from distill.progress import console


def main(args) -> int:
    return print_presets()


def print_presets() -> int:
    from distill.models.resolve import presets

    table = Table(title="student presets (distill/models/presets.yaml)")
    for col in ("name", "hf id", "params", "layers", "hidden", "kv heads", "head dim", "vocab", "context", "license", "lora r", "lr"):
        table.add_column(col)
    for name, f in presets().items():
        table.add_row(name, f["hf_id"], f"{f['params'] / 1e9:.2f}B", str(f["layers"]), str(f["hidden_size"]),
                      str(f["kv_heads"]), str(f["head_dim"]), str(f["vocab_size"]), str(f["context_length"]),
                      f["license"], str(f["lora_r"]), str(f["learning_rate"]))
    console.print(table)
    return 0
