"""`distill run`: the stages in order, each skipped when its record says it is done.

Every stage writes into `<run_dir>/<stage>/` and finishes by writing `record.json`: the
fingerprint of what it depended on (its recipe sections, the content hashes of its input
files, the fingerprints of the stages before it), its settings and outputs. A stage whose
record matches is skipped; a change to the recipe changes the fingerprint of the stage it
affects and, through the chain, of every stage after it. A killed stage has no record and
is redone; stages that can resume (teach, train) keep their partial state when the
fingerprint they started under still matches.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from distill.recipe import Recipe
from edge_runtime.layout import STAGES, RunLayout

# Which recipe sections each stage depends on (beyond the stages before it).
STAGE_SECTIONS: dict[str, tuple[str, ...]] = {
    "teach": ("task", "data", "teacher"),
    "curate": ("curate",),
    "train": ("student",),
    "eval": ("eval",),
    "quantize": ("quantize",),
    "pack": ("target",),
}
# Settings that change how a stage runs but not what it produces.
VOLATILE = {"teacher": {"concurrency", "requests_per_minute", "tokens_per_minute", "timeout_s", "max_retries", "backoff_s", "max_cost_usd"}}


@dataclass
class StageContext:
    recipe: Recipe
    run_dir: Path
    stage: str
    fingerprint: str
    records: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def dir(self) -> Path:
        return self.layout.stage(self.stage)

    def upstream(self, stage: str) -> Path:
        return self.layout.stage(stage)

    @property
    def layout(self) -> RunLayout:
        """The run directory's paths (`edge_runtime.layout`)."""
        return RunLayout(self.run_dir)


def _section(recipe: Recipe, name: str) -> Any:
    # exclude_none: an optional setting left unset is not part of what a stage depended on, so a
    # toolkit upgrade that adds one (default None) does not invalidate finished stages
    data = getattr(recipe, name).model_dump(mode="json", exclude_none=True)
    for key in VOLATILE.get(name, ()):
        data.pop(key, None)
    if name == "task" and data.get("language") == "en":
        data.pop("language")  # English is what every run rendered before task.language existed: still valid
    return data


def fingerprint(recipe: Recipe, stage: str, previous: str, input_hashes: dict[str, str]) -> str:
    payload = {
        "stage": stage,
        "sections": {s: _section(recipe, s) for s in STAGE_SECTIONS[stage]},
        "previous": previous,
        "inputs": input_hashes,
        "version": 2,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def input_hashes(recipe: Recipe, stage: str) -> dict[str, str]:
    if stage != "teach":
        return {}
    files = {"data.path": recipe.data.path, "data.eval_path": recipe.data.eval_path}
    if recipe.teacher.kind == "dataset":
        files["teacher.responses"] = recipe.teacher.responses
    if recipe.task.knowledge_base:  # an edited FAQ changes every prompt
        files["task.knowledge_base"] = recipe.task.knowledge_base
    hashes = {k: _content_hash(Path(v)) for k, v in files.items() if v is not None}
    if recipe.data.logs:  # new traffic in a request log re-runs teach
        from distill.data.request_logs import logs_digest

        hashes["data.logs"] = logs_digest(recipe.data.logs)
    return hashes


def _content_hash(path: Path) -> str:
    """sha256 of a file, or of a folder's file names and contents (a folder of scans)."""
    from edge_runtime.bundle import sha256_file

    if not path.is_dir():
        return sha256_file(path)
    digest = hashlib.sha256()
    for child in sorted(p for p in path.iterdir() if p.is_file()):
        digest.update(f"{child.name}\0{sha256_file(child)}\n".encode())
    return digest.hexdigest()


def read_record(run_dir: Path, stage: str) -> dict[str, Any] | None:
    return RunLayout(run_dir).read_record(stage)


def select_stages(start: str | None, until: str | None, only: str | None = None) -> list[str]:
    for name in (start, until, only):
        if name is not None and name not in STAGES:
            raise ValueError(f"unknown stage {name!r}; stages are: {', '.join(STAGES)}")
    if only:
        return [only]
    lo = STAGES.index(start) if start else 0
    hi = STAGES.index(until) if until else len(STAGES) - 1
    if lo > hi:
        raise ValueError(f"--from {start} comes after --until {until}")
    return list(STAGES[lo : hi + 1])


class StageOrderError(RuntimeError):
    """A stage was asked for whose inputs are missing or out of date; the message names the
    stage to run from."""


def write_resolved(recipe: Recipe, run_dir: Path) -> Path:
    """`run_dir/recipe.resolved.json`: the recipe as run, with `user:pass@` removed from every
    URL (it is shared with reports and bundles), written atomically (a temporary file, then
    os.replace: a kill never leaves half a file)."""
    import os

    from edge_runtime.router import strip_userinfo

    def clean(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, list):
            return [clean(v) for v in value]
        if isinstance(value, str) and "://" in value and "@" in value:
            return strip_userinfo(value)
        return value

    path = RunLayout(run_dir).recipe
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(clean(json.loads(recipe.model_dump_json())), indent=2))
    os.replace(tmp, path)
    return path


def run_pipeline(
    recipe: Recipe,
    run_dir: Path,
    start: str | None = None,
    until: str | None = None,
    only: str | None = None,
    force: bool = False,
    log: Callable[[str], None] = print,
) -> dict[str, dict[str, Any]]:
    """Run the selected stages; returns each stage's record."""
    from distill import distributed
    from distill.pipeline import stages as impl

    # several processes (accelerate launch / torchrun): only the train stage is shared; the main
    # process runs the others and writes every record, the rest wait for it and stop after train
    main = distributed.is_main()
    run_dir.mkdir(parents=True, exist_ok=True)
    if main:
        write_resolved(recipe, run_dir)
    selected = select_stages(start, until, only)
    records: dict[str, dict[str, Any]] = {}
    previous = ""
    for stage in STAGES:
        fp = fingerprint(recipe, stage, previous, input_hashes(recipe, stage))
        previous = fp
        if distributed.world_size() > 1 and stage == "train":
            distributed.barrier()  # the main process has finished the stages before this one
            if not main:
                records = {name: rec for name in STAGES[: STAGES.index(stage)]
                           if (rec := read_record(run_dir, name)) is not None}
        elif not main:
            if stage in selected and STAGES.index(stage) > STAGES.index("train"):
                log(f"[{stage}] left to the main process (rank 0)")
                break
            continue
        record = read_record(run_dir, stage)
        if stage not in selected:
            if record is not None:
                records[stage] = record
            continue
        if record and record.get("fingerprint") == fp and not force:
            log(f"[{stage}] up to date (fingerprint {fp}), skipped")
            records[stage] = record
            continue
        for earlier in STAGES[: STAGES.index(stage)]:
            if earlier not in records:
                raise StageOrderError(
                    f"stage {stage!r} needs {earlier!r}, which has not run for this recipe; "
                    f"run `distill run` without --from/--only first"
                )
            if records[earlier].get("fingerprint") != fingerprint_of(recipe, earlier, records):
                raise StageOrderError(
                    f"stage {earlier!r} is out of date for this recipe; re-run from it: --from {earlier}"
                )
        stage_recipe = recipe_for_run(recipe, run_dir) if STAGES.index(stage) > STAGES.index("curate") else recipe
        ctx = StageContext(stage_recipe, run_dir, stage, fp, records)
        log(f"[{stage}] running (fingerprint {fp})")
        moved = _prepare_dir(ctx) if main else None
        if moved:
            log(moved)
        if stage == "train":
            distributed.barrier()  # its directory is ready before any process writes into it
        started = time.time()
        outputs = getattr(impl, f"stage_{stage}")(ctx)
        if not main:  # the main process writes the record
            records[stage] = {"stage": stage, "fingerprint": fp, "outputs": outputs}
            continue
        record = {
            "stage": stage,
            "fingerprint": fp,
            "sections": {s: _section(recipe, s) for s in STAGE_SECTIONS[stage]},
            "inputs": input_hashes(recipe, stage),
            "outputs": outputs,
            "started": started,
            "duration_s": round(time.time() - started, 2),
        }
        final = ctx.layout.record(stage)
        tmp = final.with_name(final.name + ".tmp")
        tmp.write_text(json.dumps(record, indent=2, default=str))
        tmp.replace(final)
        records[stage] = record
        log(f"[{stage}] done in {record['duration_s']:.1f}s")
    return records


def recipe_for_run(recipe: Recipe, run_dir: Path) -> Recipe:
    """The recipe as the stages after curate use it: a faq task retrieves from the knowledge base
    the curate stage enriched with training queries (`curate.index_queries`), when it wrote one.
    Fingerprints stay those of the recipe as written: the enriched file follows from it."""
    from edge_runtime.retrieval import task_for_run

    task = task_for_run(recipe.task, run_dir)
    return recipe if task is recipe.task else recipe.model_copy(update={"task": task})


def fingerprint_of(recipe: Recipe, stage: str, records: dict[str, dict[str, Any]]) -> str:
    previous = ""
    for name in STAGES:
        fp = fingerprint(recipe, name, previous, input_hashes(recipe, name))
        if name == stage:
            return fp
        previous = fp
    raise KeyError(stage)


def _prepare_dir(ctx: StageContext) -> str | None:
    """Keep a partial stage directory only if it was started under the same fingerprint.

    Outputs made under another fingerprint are moved to `<stage>.prev/` (replacing an older
    one), never deleted: a recipe edit must not destroy an hour of training. Returns a note
    for the log when it moved something."""
    marker = ctx.dir / ".fingerprint"
    note = None
    if ctx.dir.exists():
        if not marker.exists() or marker.read_text() != ctx.fingerprint:
            prev = ctx.dir.with_name(ctx.stage + ".prev")
            shutil.rmtree(prev, ignore_errors=True)
            ctx.dir.rename(prev)
            note = f"[{ctx.stage}] outputs of the previous settings moved to {prev}"
        else:
            ctx.layout.record(ctx.stage).unlink(missing_ok=True)
    ctx.dir.mkdir(parents=True, exist_ok=True)
    marker.write_text(ctx.fingerprint)
    return note
