"""Trained tokens per second and peak memory: our trainer against TRL's default SFTTrainer setup.

Same model, same LoRA, same rows, same batch size and number of steps; each trainer runs in
its own process so neither inherits the other's memory. "Default" is what the TRL docs
show: a prompt/completion dataset of strings (TRL adds EOS, tokenizes and masks the prompt),
`SFTConfig` defaults, full logits. Ours adds the answer-only output layer and
length-grouped batches. Tokens are non-padding tokens; the first step is warm-up and not
timed.

    python benchmarks/train_throughput.py --model gemma-3-270m --rows 16 --steps 3
    python benchmarks/train_throughput.py --random-init qwen2.5-1.5b --steps 5   # GPU, random weights
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _rows(recipe_path: str, n: int):
    from distill.data.io import read_rows
    from distill.recipe import load_recipe

    recipe = load_recipe(recipe_path)
    rows = read_rows(recipe.data.path, recipe.data.id_field)[:n]
    for row in rows:
        row["answer"] = row[recipe.data.answer_field]
    return recipe, rows


def _model_path(args) -> str:
    if args.random_init:
        from transformers import AutoModelForCausalLM

        from distill.models.resolve import cache_dir, hf_config_for
        from distill.models.tiny import gemma_tokenizer_dir

        out = cache_dir() / "models" / f"random-{args.random_init}"
        if not (out / "config.json").exists():
            import torch
            from transformers import AutoTokenizer

            cfg = hf_config_for(args.random_init)
            tok = AutoTokenizer.from_pretrained(gemma_tokenizer_dir())
            cfg.vocab_size = max(cfg.vocab_size, len(tok))
            AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16).save_pretrained(out)
            tok.save_pretrained(out)
        return str(out)
    from distill.models.resolve import resolve

    return resolve(args.model).hf_path


def run_one(which: str, args) -> dict:
    """One trainer, in this process; prints a JSON line."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import SFTConfig, SFTTrainer

    from distill.train.data import encode_rows
    from distill.peak_memory import PeakMemory, rss_bytes
    from distill.train.memory import device_name
    from distill.train.trainer import AnswerOnlySFTTrainer, sft_config

    recipe, rows = _rows(args.recipe, args.rows)
    path = _model_path(args)
    tok = AutoTokenizer.from_pretrained(path)
    device = device_name()
    lora = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM")
    method = "qlora" if args.qlora else "lora"
    per_step: list[tuple[float, int]] = []

    class Timer(TrainerCallback):
        def on_step_end(self, a, state, control, **kw):
            per_step.append((time.perf_counter(), trainer.step_tokens))

    def counting(cls):
        class Counting(cls):
            step_tokens = 0

            def training_step(self, model, inputs, *a, **k):
                self.step_tokens += int(inputs["attention_mask"].sum()) if "attention_mask" in inputs else inputs["input_ids"].numel()
                return super().training_step(model, inputs, *a, **k)
        return Counting

    common = dict(per_device_train_batch_size=args.batch_size, max_steps=args.steps, learning_rate=2e-4, report_to=[],
                  disable_tqdm=True, save_strategy="no", use_cpu=device == "cpu", seed=0,
                  bf16=device == "cuda", logging_steps=1000)
    with PeakMemory(device, baseline=rss_bytes()) as peak:
        from distill.train import load_student

        model = load_student(path, method, device, torch.bfloat16 if device == "cuda" else torch.float32)
        if which == "trl":
            ds = Dataset.from_list([{"prompt": recipe.task.render_prompt(r), "completion": recipe.task.render_answer(r["answer"])}
                                    for r in rows])
            trainer = counting(SFTTrainer)(model=model, args=SFTConfig(output_dir=str(args.tmp / which), **common),
                                           train_dataset=ds, processing_class=tok, peft_config=lora, callbacks=[Timer()])
        else:
            enc = encode_rows(tok, recipe.task, rows, 4096, 0.0, 0)
            ds = Dataset.from_list([{k: e[k] for k in ("input_ids", "labels", "length")} for e in enc.train])
            training = recipe.student.training.model_copy(update={"batch_size": args.batch_size, "max_steps": args.steps})
            cfg = sft_config(training, args.tmp / which, len(ds), False, device, method)
            cfg.save_strategy, cfg.learning_rate, cfg.bf16 = "no", 2e-4, device == "cuda"
            trainer = counting(AnswerOnlySFTTrainer)(model=model, args=cfg, train_dataset=ds, processing_class=tok,
                                                     peft_config=lora, callbacks=[Timer()], answer_only_head=True)
        start = time.perf_counter()
        trainer.train()
    (t0, n0), (t1, n1) = per_step[0], per_step[-1]
    timed = len(per_step) > 1
    out = {
        "trainer": which, "device": device, "model": args.random_init or args.model, "method": method,
        "steps": len(per_step), "tokens": n1,
        "tokens_per_s": (n1 - n0) / (t1 - t0) if timed else n1 / (t1 - start),
        "seconds": t1 - start, "peak_memory_bytes": peak.peak_bytes, "peak_memory_method": peak.method,
    }
    print("RESULT " + json.dumps(out), flush=True)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="gemma-3-270m", help="student preset, HF id or local path")
    ap.add_argument("--random-init", default=None, help="a preset name: random weights from its config (speed only)")
    ap.add_argument("--recipe", default=str(ROOT / "recipes" / "receipts-small.yaml"))
    ap.add_argument("--rows", type=int, default=16)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--qlora", action="store_true", help="4-bit NF4 base (CUDA only)")
    ap.add_argument("--only", choices=["ours", "trl"], help=argparse.SUPPRESS)
    ap.add_argument("--tmp", type=Path, default=Path("/tmp/edge-distill-bench"))
    args = ap.parse_args(argv)
    if args.only:
        run_one(args.only, args)
        return 0
    results = {}
    for which in ("trl", "ours"):
        cmd = [sys.executable, __file__, "--only", which, *(argv if argv is not None else sys.argv[1:])]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        if proc.returncode or not line:
            print(proc.stderr[-4000:], file=sys.stderr)
            raise SystemExit(f"{which} run failed (exit {proc.returncode})")
        results[which] = json.loads(line[-1][7:])
    trl, ours = results["trl"], results["ours"]
    print(f"{'trainer':<10}{'tokens/s':>12}{'peak MiB':>12}{'steps':>8}{'tokens':>9}")
    for r in (trl, ours):
        print(f"{r['trainer']:<10}{r['tokens_per_s']:>12.1f}{r['peak_memory_bytes'] / 2**20:>12.0f}{r['steps']:>8}{r['tokens']:>9}")
    speedup = ours["tokens_per_s"] / trl["tokens_per_s"]
    mem = ours["peak_memory_bytes"] / max(trl["peak_memory_bytes"], 1)
    print(f"speed-up {speedup:.2f}x, peak memory {mem:.2f}x of TRL default ({ours['device']}, {ours['model']}, "
          f"{ours['method']}, batch {args.batch_size}, {args.rows} rows; peak by {ours['peak_memory_method']})")
    print(json.dumps({"trl_default": trl, "ours": ours, "speedup": speedup, "memory_ratio": mem}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
