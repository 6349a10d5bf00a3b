"""`quantize`: a thin dispatcher over gguf.py, check.py, imatrix.py, sweep.py, onnx_export.py and bnb.py."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _task_and_rows(args) -> tuple:
    """Task spec and rows from --run (a run directory) or --recipe/--rows."""
    from edge_runtime.task import TaskSpec

    if args.run:
        from quantize.sweep import load_run

        info = load_run(Path(args.run))
        return info.task, info.eval_rows, info.merged_dir
    if not args.recipe:
        return None, [], None
    import yaml

    data = yaml.safe_load(Path(args.recipe).read_text(encoding="utf-8"))
    task = TaskSpec.model_validate(data.get("task", data))
    if not args.rows:
        raise SystemExit("--recipe needs --rows JSONL (rows with the task's input field)")
    from edge_runtime.layout import read_jsonl

    rows = read_jsonl(args.rows)
    task.resolve_language([task.input_text(r) for r in rows[:200] if task.input_field in r])  # as `distill` would
    return task, rows, None


def cmd_types(args) -> int:
    from edge_runtime.gguf_types import TYPES

    for t in TYPES:
        print(f"{t.name:8s} ~{t.bits:5.2f} bits/weight  {'imatrix' if t.imatrix else '       '}  {t.note}")
    print("\nimatrix: quantized with the importance matrix when one is given (--imatrix, --imatrix-texts)")
    return 0


def read_texts(path: str) -> list[str]:
    """Importance-matrix texts: one a line, or JSONL objects with `text`."""
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line)["text"] if line.lstrip().startswith("{") else line.rstrip("\n") for line in fh if line.strip()]


def cmd_gguf(args) -> int:
    from quantize.artifacts import BuildSettings, build_gguf_artifacts
    from quantize.gguf import QTYPES

    types = [t.strip().lower() for t in args.types.split(",") if t.strip()]
    bad = [t for t in types if t not in QTYPES]
    if bad:
        raise SystemExit(f"unknown type(s) {bad}; `quantize types` lists them")
    texts = (lambda: read_texts(args.imatrix_texts)) if args.imatrix_texts else None
    settings = BuildSettings(types, imatrix_texts=texts, imatrix=Path(args.imatrix) if args.imatrix else None,
                             embedding_type=args.embedding_type, existing="rebuild" if args.overwrite else "refuse",
                             name=args.name, outtype="bf16" if types == ["bf16"] else "f16", check=not args.no_check)
    build_gguf_artifacts(Path(args.hf_dir), Path(args.out), settings)
    return 0


def cmd_lora(args) -> int:
    from quantize.gguf import convert_lora_to_gguf

    convert_lora_to_gguf(Path(args.adapter_dir), Path(args.base), Path(args.out), args.outtype, args.overwrite)
    return 0


def cmd_check(args) -> int:
    from quantize.check import answer_agreement, check_metadata, compare_logits, hf_greedy

    task, rows, merged = _task_and_rows(args)
    hf = Path(args.hf) if args.hf else merged
    if hf is None:
        raise SystemExit("give --hf HF_DIR (the model the GGUF was made from) or --run RUN_DIR")
    report: dict = {}
    failed = False
    prompts = [task.render_prompt(r) for r in rows[: args.n]] if task else []
    reference = hf_greedy(hf, prompts, args.max_new_tokens) if prompts else []
    for g in args.gguf:
        problems = check_metadata(Path(g), hf)
        entry = {"metadata_problems": problems, "logits": compare_logits(Path(g), hf)}
        if prompts:
            entry["agreement"] = answer_agreement(Path(g), prompts, reference, task, args.max_new_tokens).to_dict()
        failed |= bool(problems)
        report[g] = entry
        ag = entry.get("agreement")
        print(f"{g}: metadata {'OK' if not problems else 'PROBLEMS: ' + '; '.join(problems)}; "
              f"logits max |diff| {entry['logits']['max_abs_diff']:.4f} (HF std {entry['logits']['hf_std']:.3f})"
              + (f"; greedy answers identical {ag['exact']}/{ag['n']}, same parsed answer {ag['same_answer']}/{ag['n']} "
                 f"({ag['reference_parsed']} of the HF answers parsed)" if ag else ""))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 1 if failed else 0


def cmd_onnx(args) -> int:
    from quantize.onnx_export import QUANT_KINDS, export_onnx, model_bytes, quantize_onnx

    types = [t.strip().lower() for t in args.types.split(",") if t.strip()]
    bad = [t for t in types if t not in ("fp32",) + QUANT_KINDS]
    if bad:
        raise SystemExit(f"unknown ONNX type(s) {bad}; choose from fp32, {', '.join(QUANT_KINDS)}")
    out = Path(args.out)
    fp32 = out / "onnx-fp32"
    if fp32.exists() and not args.overwrite and "fp32" not in types:
        print(f"reusing {fp32}")
    else:
        export_onnx(Path(args.hf_dir), fp32, overwrite=args.overwrite)
    made = {"fp32": fp32}
    for t in types:
        if t != "fp32":
            made[t] = quantize_onnx(fp32, out / f"onnx-{t}", t, overwrite=args.overwrite, block_size=args.block_size)
    for t, d in made.items():
        if t in types:
            print(f"{t:5s} {model_bytes(d) / 2**20:9.1f} MiB  {d}")
    return 0


def cmd_bnb(args) -> int:
    from quantize.bnb import save_bnb

    save_bnb(Path(args.hf_dir), args.kind, Path(args.out), overwrite=args.overwrite)
    return 0


def cmd_sweep(args) -> int:
    from quantize.sweep import render_table, sweep

    types = [t.strip().lower() for t in args.types.split(",")] if args.types else None
    result = sweep(Path(args.run_dir), args.profile, types=types, out_dir=Path(args.out) if args.out else None,
                   limit=args.limit, overwrite=args.overwrite)
    print(render_table(result))
    return 0 if result["pick"] else 1


def build_parser() -> argparse.ArgumentParser:
    from edge_runtime.gguf_types import EMBEDDING_TYPES
    from edge_runtime.layout import MODEL_NAME

    p = argparse.ArgumentParser(prog="quantize", description="Quantize a distilled student and check it still answers the same.")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("types", help="list the quantization types with their bits per weight")
    s.set_defaults(func=cmd_types)

    s = sub.add_parser("gguf", help="convert an HF model folder to GGUF F16 and quantize it to the given types")
    s.add_argument("hf_dir", help="merged HF student folder (config.json + weights + tokenizer)")
    s.add_argument("--out", required=True, help="output folder")
    s.add_argument("--types", default="f16,q4_k_m", help="comma-separated types (see `quantize types`)")
    s.add_argument("--name", default=MODEL_NAME, help="file name prefix: NAME-TYPE.gguf")
    s.add_argument("--imatrix", help="an importance matrix GGUF, used for the types `quantize types` marks")
    s.add_argument("--imatrix-texts", help="compute the importance matrix from these texts (.txt lines or JSONL with `text`)")
    s.add_argument("--embedding-type", choices=EMBEDDING_TYPES,
                   help="type of the token embedding and output tensors (default: llama.cpp's choice for the type)")
    s.add_argument("--no-check", action="store_true", help="skip the tokenizer/EOS/chat-template check")
    s.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    s.set_defaults(func=cmd_gguf)

    s = sub.add_parser("lora", help="convert a PEFT LoRA adapter to a GGUF adapter for llama.cpp")
    s.add_argument("adapter_dir")
    s.add_argument("--base", required=True, help="the base model's HF folder (config and tokenizer are read)")
    s.add_argument("--out", required=True, help="output .gguf")
    s.add_argument("--outtype", default="f16", choices=["f32", "f16", "bf16", "q8_0"])
    s.add_argument("--overwrite", action="store_true", help="replace an existing output")
    s.set_defaults(func=cmd_lora)

    s = sub.add_parser("check", help="compare GGUF(s) with the HF model: metadata, logits, greedy answers")
    s.add_argument("gguf", nargs="+")
    s.add_argument("--hf", help="the HF model folder the GGUF was made from")
    s.add_argument("--run", help="a run directory: its merged student, task and eval rows")
    s.add_argument("--recipe", help="a recipe or task YAML (with --rows) for task prompts")
    s.add_argument("--rows", help="JSONL rows for --recipe")
    s.add_argument("-n", type=int, default=8, help="number of task prompts for the answer check")
    s.add_argument("--max-new-tokens", type=int, default=128)
    s.add_argument("--json", help="write the full report here")
    s.set_defaults(func=cmd_check)

    s = sub.add_parser("onnx", help="export an HF model folder to ONNX (KV cache) and quantize it to INT8/INT4")
    s.add_argument("hf_dir", help="merged HF student folder (config.json + weights + tokenizer)")
    s.add_argument("--out", required=True, help="output folder: onnx-fp32/, onnx-int8/, onnx-int4/ go under it")
    s.add_argument("--types", default="fp32,int8,int4", help="comma-separated: fp32, int8 (dynamic), int4 (MatMulNBits)")
    s.add_argument("--block-size", type=int, default=32, help="INT4 block size")
    s.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    s.set_defaults(func=cmd_onnx)

    s = sub.add_parser("bnb", help="save a pre-quantized bitsandbytes NF4/INT8 checkpoint (GPU servers; see docs/bnb.md)")
    s.add_argument("hf_dir", help="merged HF student folder (config.json + weights + tokenizer)")
    s.add_argument("--kind", required=True, choices=["nf4", "int8"], help="nf4 (4-bit, double quantisation) or int8 (LLM.int8)")
    s.add_argument("--out", required=True, help="output folder (a transformers checkpoint with its quantization_config)")
    s.add_argument("--overwrite", action="store_true", help="replace an existing output")
    s.set_defaults(func=cmd_bnb)

    s = sub.add_parser("sweep", help="quantize to every type, evaluate, pick the smallest that keeps the quality floor")
    s.add_argument("run_dir")
    s.add_argument("--profile", required=True, help="device profile (router-8gb, edge-box, gpu-server)")
    s.add_argument("--types", help="comma-separated subset of types (default: all)")
    s.add_argument("--out", help="output folder (default RUN_DIR/sweep)")
    s.add_argument("--limit", type=int, help="evaluate on the first N eval rows only")
    s.add_argument("--overwrite", action="store_true", help="rebuild artifacts that exist (default: reuse them)")
    s.set_defaults(func=cmd_sweep)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (FileNotFoundError, FileExistsError, ValueError, OSError, RuntimeError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
