"""The OCR front end on real receipt scans: how much of each gold field survives OCR, and how fast.

For every SROIE scan (the shared data's `sroie/images/`, receipts 000-049) this runs the
runtime's OCR (RapidOCR on onnxruntime, edge_runtime/ocr.py) and checks, per field, whether the
gold value can be found in the text at all (upper-cased, whitespace removed), in the OCR text
and in the data set's own transcript side by side. A field missing from the text is one no
student can copy: this is the ceiling the scans put on extraction. It also prints seconds per
image on this machine and the similarity of the OCR text to the transcript.

`--dev-of RECIPE --write DIR` also writes the scans of that recipe's dev split (never trained
on) with their gold `labels.jsonl`, the folder `distill eval RECIPE --data DIR` reads, so a
trained student can be judged on scans against the same receipts' transcripts.

    python benchmarks/ocr_front_end.py [--images ../shared/data/sroie/images] [--dev-of recipes/receipts.yaml --write DIR]
"""

from __future__ import annotations

import argparse
import difflib
import json
import re
import shutil
import statistics
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIELDS = ("company", "date", "address", "total")


def _squash(text: str) -> str:
    return re.sub(r"\s+", "", text).upper()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=Path, default=ROOT.parent / "shared" / "data" / "sroie" / "images")
    ap.add_argument("--receipts", type=Path, default=ROOT / "data" / "sroie" / "receipts.jsonl")
    ap.add_argument("--dev-of", type=Path, help="a receipts recipe whose dev-split scans to write")
    ap.add_argument("--write", type=Path, help="folder for those scans and their labels.jsonl")
    args = ap.parse_args()
    from edge_runtime.ocr import ocr_lines

    gold = {r["id"]: r for r in map(json.loads, args.receipts.read_text(encoding="utf-8").splitlines()) if r}
    scans = sorted(p for p in args.images.glob("*.jpg") if p.stem in gold)
    if not scans:
        raise SystemExit(f"no SROIE scans with labels in {args.images}")
    found = {src: {f: 0 for f in FIELDS} for src in ("ocr", "transcript")}
    seconds, similarity = [], []
    ocr_lines(scans[0])  # load the models outside the timing
    for path in scans:
        t0 = time.perf_counter()
        lines = ocr_lines(path)
        seconds.append(time.perf_counter() - t0)
        row = gold[path.stem]
        texts = {"ocr": _squash(" ".join(lines)), "transcript": _squash(" ".join(row["ocr_lines"]))}
        similarity.append(difflib.SequenceMatcher(None, texts["ocr"], texts["transcript"], autojunk=False).ratio())
        for src, text in texts.items():
            for f in FIELDS:
                found[src][f] += _squash(str(row["fields"][f])) in text
    n = len(scans)
    print(f"{n} scans ({args.images}); OCR p50 {statistics.median(seconds):.2f} s/image, "
          f"max {max(seconds):.2f} s; text similarity to the transcript, median {statistics.median(similarity):.3f}")
    print(f"{'gold value found in':<22}" + "".join(f"{f:>10}" for f in FIELDS) + f"{'mean':>10}")
    for src in ("transcript", "ocr"):
        rates = [found[src][f] / n for f in FIELDS]
        print(f"{src:<22}" + "".join(f"{r:>10.3f}" for r in rates) + f"{sum(rates) / len(rates):>10.3f}")
    if args.dev_of and args.write:
        from distill.pipeline.stages import load_splits
        from distill.recipe import load_recipe

        _, dev = load_splits(load_recipe(args.dev_of))
        ids = {r["id"] for r in dev} & {p.stem for p in scans}
        args.write.mkdir(parents=True, exist_ok=True)
        with open(args.write / "labels.jsonl", "w", encoding="utf-8") as fh:
            for path in scans:
                if path.stem in ids:
                    shutil.copyfile(path, args.write / path.name)
                    fh.write(json.dumps({"id": path.stem, "fields": gold[path.stem]["fields"]}) + "\n")
        with open(args.write.with_suffix(".transcripts.jsonl"), "w", encoding="utf-8") as fh:
            for i in sorted(ids):
                fh.write(json.dumps(gold[i]) + "\n")
        print(f"wrote the {len(ids)} dev-split scans of {args.dev_of} to {args.write} (labels.jsonl) and their "
              f"transcripts to {args.write.with_suffix('.transcripts.jsonl')}")


if __name__ == "__main__":
    main()
