"""`distill`: the thin command dispatcher. Each command's work lives in its own module."""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

from distill.recipe import RecipeError
from edge_runtime.layout import STAGES

# the one dispatch table: command -> (its one-line help, the module whose `main(args)` runs it)
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("run the whole pipeline (teach, curate, train, eval, quantize, pack), skipping finished stages", "distill.commands.run"),
    "validate": ("check a recipe and print it with every default filled in", "distill.commands.validate"),
    "teach": ("label the training inputs with the recipe's teacher", "distill.commands.teach"),
    "curate": ("validate, deduplicate and decontaminate the teacher's data", "distill.commands.curate"),
    "train": ("train the student (LoRA, QLoRA or full SFT) and merge it", "distill.commands.train"),
    "eval": ("evaluate predictors (teacher, base, student, GGUF, bundle) on a data file", "distill.commands.eval"),
    "report": ("write report.md, report.html and metrics.json for a run directory", "distill.commands.report"),
    "presets": ("list the student presets and their facts", "distill.commands.presets"),
}


def _recipe_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("recipe", help="path to a recipe YAML")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a recipe value, e.g. --set student.training.max_steps=2 (repeatable)")
    p.add_argument("--run-dir", type=Path, help="run directory (default: runs/<recipe name>)")
    p.add_argument("--verbose", action="store_true", default=argparse.SUPPRESS,
                   help="also show the libraries' own warnings, logs and progress bars")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="distill",
        description="Distil a teacher into a small student: " + "; ".join(f"{k}" for k in COMMANDS),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--verbose", action="store_true",
                        help="also show the libraries' own warnings, logs and progress bars")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    p = sub.add_parser("run", help=COMMANDS["run"][0], description=COMMANDS["run"][0])
    _recipe_args(p)
    p.add_argument("--from", dest="start", metavar="STAGE", choices=STAGES,
                   help=f"start at this stage (earlier ones must be done): {', '.join(STAGES)}")
    p.add_argument("--until", metavar="STAGE", choices=STAGES, help="stop after this stage")
    p.add_argument("--force", action="store_true", help="redo the selected stages even if up to date")
    p = sub.add_parser("validate", help=COMMANDS["validate"][0], description=COMMANDS["validate"][0])
    p.add_argument("recipe")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--explain", action="store_true", help="a table of every field: resolved value, default and what "
                   "it does (all fields: docs/recipe-reference.md)")
    for stage in ("teach", "curate", "train"):
        p = sub.add_parser(stage, help=COMMANDS[stage][0], description=COMMANDS[stage][0])
        _recipe_args(p)
        p.add_argument("--force", action="store_true", help="redo the stage even if up to date")
    p = sub.add_parser("eval", help=COMMANDS["eval"][0], description=COMMANDS["eval"][0])
    _recipe_args(p)
    p.add_argument("--predictor", action="append", default=[],
                   help="teacher | base | student | gguf:<type, type+lora or path> | onnx:<fp32|int8|int4 or dir> | bnb:<nf4|int8>[:<dir>] | bundle:<dir> | hf:<dir> (repeatable; "
                        "default: the recipe's eval.predictors)")
    p.add_argument("--data", type=Path, help="a data file in the recipe's input format, or a folder of scans with "
                   "labels.jsonl beside them (read by the OCR front end); default: the eval split")
    p.add_argument("--out", type=Path, help="output directory (default: <run-dir>/eval-adhoc)")
    p = sub.add_parser("report", help=COMMANDS["report"][0], description=COMMANDS["report"][0])
    p.add_argument("run_dir", type=Path)
    p.add_argument("--compare", type=Path, action="append", default=[], help="another run directory to compare with")
    sub.add_parser("presets", help=COMMANDS["presets"][0], description=COMMANDS["presets"][0])
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    from distill.pipeline.runner import StageOrderError
    from distill.progress import quiet_libraries
    from distill.teachers.cache import CacheWriteError
    from distill.teachers.openai_teacher import TeacherFatal

    quiet_libraries(args.verbose)
    try:
        return _dispatch(args)
    except (RecipeError, StageOrderError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (CacheWriteError, TeacherFatal) as exc:  # a full disk, a teacher that cannot work: what was kept, what to do
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except RuntimeError as exc:  # a refusal before work starts (WontFit, ...): its message names the setting to change
        if not getattr(exc, "refusal", False):
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished stages are kept; run the same command again to resume", file=sys.stderr)
        return 130


def _dispatch(args) -> int:
    return importlib.import_module(COMMANDS[args.command][1]).main(args)


if __name__ == "__main__":
    sys.exit(main())
