"""Write the validation rows a classifier-head run held out while training, as a CSV that
`distill eval --data` reads, so a setting the run did not train on (a quantization type, an
importance matrix, a threshold) is chosen on validation rows and the dev split stays unseen.

    python scripts/validation_rows.py runs/intents-zh /tmp/intents-zh-val.csv

The split is recomputed with the train stage's own function from curate/train.jsonl and the
resolved recipe; the script refuses a run that dropped over-long rows (the positions would shift).
"""
import csv, json, sys
from pathlib import Path

from distill.train.classifier import validation_split
from edge_runtime.layout import RunLayout, read_jsonl

run, out = RunLayout(Path(sys.argv[1])), Path(sys.argv[2])
recipe = json.loads(run.recipe.read_text())
trained = json.loads(run.record("train").read_text())["outputs"]
if trained.get("student_head") != "classifier" or trained.get("dropped_too_long"):
    sys.exit(f"{run.root}: only a classifier-head run that dropped no rows can have its validation rows found again")
rows = read_jsonl(run.train_rows)
tr, task, data = recipe["student"]["training"], recipe["task"], recipe["data"]
val_idx, train_idx = validation_split(len(rows), tr["val_fraction"], tr["seed"])
if (len(val_idx), len(train_idx)) != (trained["val_rows"], trained["train_rows"]):
    sys.exit(f"{run.root}: {len(val_idx)}/{len(train_idx)} rows, the run recorded {trained['val_rows']}/{trained['train_rows']}")
with out.open("w", newline="", encoding="utf-8") as fh:
    writer = csv.writer(fh)
    writer.writerow([task["input_field"], data["answer_field"]])
    for i in val_idx:
        writer.writerow([rows[i][task["input_field"]], rows[i]["answer"]["label"]])
print(f"wrote {len(val_idx)} validation rows to {out}")
