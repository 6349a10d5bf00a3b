"""The bundle: everything a device needs to answer a task, verified before every load.

Layout (all paths relative, listed with their sha256 in manifest.json):
  model-<qtype>.gguf   the quantized student
  task.json            the TaskSpec (prompts, schema, labels, normalisation)
  schema.json          the answer's JSON schema; grammar.gbnf: the grammar compiled from it
  generation.json      decoding settings, context, slots, confidence threshold, teacher
  tokenizer.json       tokenizer and template facts (template.json from training when present)
  eval.json            the eval summaries of the run; fit.json: the memory fit for the profile
  ocr.json             which OCR models read images (tasks whose input is OCR text)
  drift_reference.json the training inputs' profile live traffic is compared with
                       (`edge_runtime.drift`; absent when the run had no inputs to profile)
A changed, missing or extra file, a path escaping the bundle or an unknown format version
is refused with the file named.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_runtime import layout
from edge_runtime.engines.decoding import DecodeSettings
from edge_runtime.gguf_types import split_type
from edge_runtime.task import TaskSpec

FORMAT = "edge-distill-bundle"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
ADAPTER = "adapter.gguf"
IMAGE_INPUTS = {"ocr_lines", "ocr_text", "image", "lines"}


class BundleError(ValueError):
    """A bundle that must not be loaded; the message names the file and the fix."""


@dataclass(frozen=True)
class ServeSettings:
    """How a device serves the bundle (its generation.json): the recipe's `target` and answer
    length as one object, so `pack` takes them together instead of as four loose arguments."""

    n_ctx: int = layout.N_CTX
    parallel: int = layout.PARALLEL
    confidence_threshold: float = layout.CONFIDENCE_THRESHOLD
    max_new_tokens: int = layout.MAX_NEW_TOKENS

    @classmethod
    def from_recipe(cls, recipe: layout.ResolvedRecipe) -> "ServeSettings":
        return cls(n_ctx=recipe.n_ctx, parallel=recipe.parallel, confidence_threshold=recipe.confidence_threshold,
                   max_new_tokens=recipe.max_new_tokens)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def grammar_for(task: TaskSpec) -> str | None:
    """GBNF text of the task's answer grammar (llama.cpp's converter), or None without llama_cpp."""
    try:
        from llama_cpp.llama_grammar import json_schema_to_gbnf
    except ImportError:
        return None
    return json_schema_to_gbnf(json.dumps(task.json_schema()))


def reads_images(task: TaskSpec) -> bool:
    return task.kind == "extraction" and task.input_field in IMAGE_INPUTS


def ocr_note() -> dict[str, Any]:
    """The OCR engine a device needs for image input: RapidOCR ships its ONNX models in its wheel."""
    note: dict[str, Any] = {"engine": "rapidocr", "runtime": "onnxruntime", "output": "text lines in reading order"}
    try:
        from importlib.metadata import version

        note["rapidocr_version"] = version("rapidocr")
        import rapidocr

        models = Path(rapidocr.__file__).parent / "models"
        note["models"] = {p.name: p.stat().st_size for p in sorted(models.glob("*.onnx"))}
    except Exception as exc:  # the note is informative; serving checks OCR at start
        note["warning"] = f"rapidocr not importable here: {exc}"
    return note


def tokenizer_facts(gguf: Path) -> dict[str, Any]:
    from edge_runtime.fit import read_gguf_metadata

    meta = read_gguf_metadata(gguf)
    keep = {k: v for k, v in meta.items() if k.startswith("tokenizer.") or k.startswith("general.")}
    keep["template"] = "plain task template from task.json (no chat template)"
    return keep


def write_manifest(out: Path, extra: dict[str, Any]) -> dict[str, Any]:
    files = {}
    for path in sorted(out.rglob("*")):
        if path.is_file() and path.name != MANIFEST:
            rel = path.relative_to(out).as_posix()
            files[rel] = {"sha256": sha256_file(path), "bytes": path.stat().st_size}
    manifest = {"format": FORMAT, "format_version": FORMAT_VERSION, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                **extra, "files": files}
    _write_json(out / MANIFEST, manifest)
    return manifest


def pack(model: Path, task: TaskSpec, out_dir: Path, profile: str = layout.PROFILE, *,
         serve: ServeSettings = ServeSettings(),
         teacher: dict[str, Any] | None = None, eval_summary: dict[str, Any] | None = None,
         template: Path | None = None, overwrite: bool = False, profiles_file: str | Path | None = None,
         model_name: str | None = None, adapter: Path | None = None,
         drift_reference: dict[str, Any] | None = None, head: Path | None = None) -> Path:
    """Write a bundle directory for one GGUF (and optionally its GGUF LoRA adapter, applied at
    load time, and a classifier head, `edge_runtime.heads`) and one task; returns the directory."""
    from edge_runtime.fit import fit
    from edge_runtime.profiles import get_profile

    model, out_dir = Path(model), Path(out_dir)
    if not model.is_file():
        raise FileNotFoundError(f"model not found: {model}")
    if adapter is not None and not Path(adapter).is_file():
        raise FileNotFoundError(f"LoRA adapter not found: {adapter}")
    retriever = head is not None and is_retriever_file(head)
    if retriever and not (task.kind == "faq" and task.knowledge_base):
        raise ValueError(f"a retriever head is for faq tasks with a knowledge base; task {task.name!r} is {task.kind}")
    if head is not None and not retriever:
        from edge_runtime.heads import ClassifierHead

        if task.kind != "classification":
            raise ValueError(f"a classifier head is for classification tasks; task {task.name!r} is {task.kind}")
        if sorted(ClassifierHead.load(head).labels) != sorted(task.labels):
            raise ValueError(f"{head}: the head's labels differ from task {task.name!r}'s; pack the run's own head")
    if out_dir.exists() and not overwrite:
        raise FileExistsError(f"{out_dir} exists; pass --overwrite to replace it")
    prof = get_profile(profile, profiles_file)
    extra_weights = (Path(adapter).stat().st_size if adapter else 0) + (Path(head).stat().st_size if head else 0)
    fitted = fit(model, prof, n_ctx=serve.n_ctx, parallel=serve.parallel, extra_weights_bytes=extra_weights)
    tmp = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    model_name = model_name or (model.name if model.name.endswith(".gguf") else "model.gguf")
    _link_or_copy(model, tmp / model_name)
    if adapter is not None:
        _link_or_copy(Path(adapter), tmp / ADAPTER)
    if retriever:  # the entries embedded by the shipped GGUF itself, as queries will be
        from edge_runtime.engines.retriever import LlamaCppRetrieverPredictor
        from edge_runtime.retriever import RETRIEVER_FILE, RetrieverHead

        embedder = LlamaCppRetrieverPredictor(model, task, RetrieverHead.load(head), embed_entries=True)
        embedder.head.save(tmp / RETRIEVER_FILE)
        embedder.close()
    elif head is not None:
        from edge_runtime.heads import HEAD_FILE

        shutil.copyfile(head, tmp / HEAD_FILE)
    from edge_runtime.retrieval import export_knowledge_base

    task = export_knowledge_base(task, tmp)  # a faq task's knowledge base travels in the bundle, named relatively
    (tmp / "task.json").write_text(task.to_json() + "\n", encoding="utf-8")
    _write_json(tmp / "schema.json", task.json_schema())
    gbnf = grammar_for(task)
    if gbnf:
        (tmp / "grammar.gbnf").write_text(gbnf, encoding="utf-8")
    _write_json(tmp / "generation.json", {
        "temperature": 0.0, "max_new_tokens": serve.max_new_tokens, "n_ctx": serve.n_ctx, "parallel": serve.parallel,
        "confidence_threshold": serve.confidence_threshold, "prefix_reuse": True, "teacher": teacher or None,
        "decoding": DecodeSettings.for_task(task.kind).to_dict(),
    })
    facts = tokenizer_facts(model)
    if template is not None and Path(template).is_file():
        facts["training_template"] = json.loads(Path(template).read_text())
    _write_json(tmp / "tokenizer.json", facts)
    _write_json(tmp / "eval.json", eval_summary or {})
    fit_dict = fitted.to_dict()
    fit_dict["model"] = model_name
    _write_json(tmp / "fit.json", fit_dict)
    if reads_images(task):
        _write_json(tmp / "ocr.json", ocr_note())
    if drift_reference:
        from edge_runtime.drift import REFERENCE_FILE, check_reference

        _write_json(tmp / REFERENCE_FILE, check_reference(drift_reference))
    from edge_runtime.heads import HEAD_FILE
    from edge_runtime.retriever import RETRIEVER_FILE

    write_manifest(tmp, {"model": model_name, **({"adapter": ADAPTER} if adapter is not None else {}),
                         **({"head": HEAD_FILE, "answers_with": "classifier"} if head is not None and not retriever else {}),
                         **({"head": RETRIEVER_FILE, "answers_with": "retriever"} if retriever else {}),
                         "task": task.name, "kind": task.kind, "profile": profile, "fits": fitted.fits})
    _replace_dir(tmp, out_dir)
    return out_dir


def _replace_dir(new: Path, dest: Path) -> None:
    """Put the finished `new` at `dest`; an old bundle there is removed only once the new one
    is complete, so a failed `pack --overwrite` leaves the old bundle as it was."""
    if not dest.exists():
        new.rename(dest)
        return
    old = dest.with_name(dest.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    dest.rename(old)
    try:
        new.rename(dest)
    except OSError:
        old.rename(dest)
        raise
    shutil.rmtree(old, ignore_errors=True)


def pack_run(run_dir: Path, profile: str, out_dir: Path, overwrite: bool = False, qtype: str | None = None) -> Path:
    """The pipeline's pack stage: the run's quantized GGUF (`qtype`, default the first quantized
    type of the recipe), task, eval and target settings."""
    run_dir = Path(run_dir)
    run = layout.RunLayout(run_dir)
    recipe_path = run.recipe
    record_path = run.record("quantize")
    for p, what in ((recipe_path, "the resolved recipe"), (record_path, "the quantize record")):
        if not p.is_file():
            raise FileNotFoundError(f"{p} missing ({what}); run `distill run` up to quantize first")
    recipe = run.read_recipe()
    outputs = json.loads(record_path.read_text())["outputs"]
    artifacts: dict[str, str] = outputs["artifacts"]
    if not artifacts:
        raise ValueError(f"{record_path} lists no artifacts")
    quantized = [q for q in artifacts if q not in ("f16", "bf16")]
    if qtype is not None and qtype not in artifacts:
        raise ValueError(f"{record_path} has no {qtype!r} artifact (it has {', '.join(artifacts)}); "
                         f"add it to the recipe's quantize.types and run the quantize stage")
    wanted = [t for t in recipe.quantize_types if t in quantized]  # the recipe's order
    qtype = qtype or (wanted or quantized or list(artifacts))[0]
    model = Path(artifacts[qtype])
    if not model.is_absolute() and not model.exists():
        model = run.quantize_dir / model.name
    adapter = outputs.get("adapters", {}).get(qtype)
    if adapter and not Path(adapter).is_absolute() and not Path(adapter).exists():
        adapter = run.quantize_dir / Path(adapter).name
    from edge_runtime.retrieval import task_for_run

    task = task_for_run(TaskSpec.model_validate(recipe.task), run_dir)  # a faq KB enriched at curate
    evals = {}
    for name, p in (("student", run.eval_metrics), ("quantized", run.quantized_eval / layout.METRICS_FILE)):
        if p.is_file():
            evals[name] = json.loads(p.read_text())
    evals["artifact"] = qtype
    from edge_runtime.router import strip_userinfo

    teacher = recipe.teacher
    esc = {k: teacher[k] for k in ("base_url", "model") if teacher.get(k)} or None
    if esc and isinstance(esc.get("base_url"), list):  # several endpoints: suggest the first
        first = esc["base_url"][0]
        esc["base_url"] = first.get("url") if isinstance(first, dict) else first
    if esc and esc.get("base_url"):  # a suggestion for the operator; never credentials on disk
        esc["base_url"] = strip_userinfo(str(esc["base_url"]))
    if esc and teacher.get("api_key_env"):
        esc["api_key_env"] = teacher["api_key_env"]
    from edge_runtime.drift import reference_for_run

    reference = reference_for_run(run_dir, task, model, qtype)
    return pack(model, task, Path(out_dir), profile, serve=ServeSettings.from_recipe(recipe), teacher=esc,
                eval_summary=evals, template=run.template, overwrite=overwrite,
                model_name=(layout.base_gguf if adapter else layout.model_gguf)(split_type(qtype)[0]),
                adapter=Path(adapter) if adapter else None, drift_reference=reference, head=run_head(run_dir))


def is_retriever_file(head: Path) -> bool:
    """Whether a run's head file is a retriever's (`retriever.npz`) rather than a classifier's."""
    from edge_runtime.retriever import RETRIEVER_FILE

    return Path(head).name == RETRIEVER_FILE


def run_head(run_dir: Path) -> Path | None:
    """A run's head (`train/head.npz` or `train/retriever.npz`, named by the train record), or None."""
    run = layout.RunLayout(run_dir)
    record = run.record("train")
    if not record.is_file():
        return None
    head = json.loads(record.read_text()).get("outputs", {}).get("head")
    if not head:
        return None
    path = Path(head)
    if not path.is_file():
        raise FileNotFoundError(f"{path} missing (the classifier head the train record names); run the train stage again")
    return path


# ---- verification and loading -----------------------------------------------------
def _inside(root: Path, rel: str) -> Path:
    if not rel or rel.startswith(("/", "\\")) or ".." in Path(rel).parts or ":" in rel:
        raise BundleError(f"manifest path {rel!r} escapes the bundle; re-pack it with `edge-runtime pack`")
    path = root / rel
    if path.is_symlink() or not path.resolve().is_relative_to(root.resolve()):
        raise BundleError(f"{rel}: is a link or escapes the bundle; re-pack it with `edge-runtime pack`")
    return path


def verify(bundle_dir: Path, check_hashes: bool = True) -> dict[str, Any]:
    """The manifest of a verified bundle directory; BundleError naming the first bad file."""
    root = Path(bundle_dir)
    if not root.is_dir():
        raise BundleError(f"{root} is not a bundle directory")
    mpath = root / MANIFEST
    if not mpath.is_file():
        raise BundleError(f"{mpath}: manifest.json missing; this is not a bundle (make one with `edge-runtime pack`)")
    try:
        manifest = json.loads(mpath.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"{mpath}: not valid JSON ({exc})") from exc
    if not isinstance(manifest, dict):
        raise BundleError(f"{mpath}: must be a JSON object with format, format_version and files "
                          f"(it is a {type(manifest).__name__}); re-pack with `edge-runtime pack`")
    if manifest.get("format") != FORMAT or manifest.get("format_version") != FORMAT_VERSION:
        raise BundleError(f"{mpath}: unknown bundle format {manifest.get('format')!r} version "
                          f"{manifest.get('format_version')!r}; this runtime reads {FORMAT} v{FORMAT_VERSION}: upgrade edge-runtime or re-pack")
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        raise BundleError(f"{mpath}: lists no files")
    for rel, info in files.items():
        if not isinstance(info, dict) or not isinstance(info.get("bytes"), int) or not isinstance(info.get("sha256"), str):
            raise BundleError(f"{mpath}: files[{rel!r}] must be an object with \"sha256\" and \"bytes\" "
                              f"(it is {json.dumps(info)[:80]}); re-pack with `edge-runtime pack`")
        path = _inside(root, rel)
        if not path.is_file():
            raise BundleError(f"{rel}: listed in the manifest but missing from {root}")
        if path.stat().st_size != info.get("bytes"):
            raise BundleError(f"{rel}: size {path.stat().st_size} differs from the manifest's {info.get('bytes')}; the file was changed")
        if check_hashes and sha256_file(path) != info.get("sha256"):
            raise BundleError(f"{rel}: sha256 differs from the manifest; the file was changed or corrupted")
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_symlink():
            raise BundleError(f"{rel}: links are not allowed in a bundle")
        if path.is_file() and rel != MANIFEST and rel not in files:
            raise BundleError(f"{rel}: extra file not in the manifest; remove it or re-pack")
    for key in ("model", "adapter"):
        if key in manifest and not isinstance(manifest[key], str):
            raise BundleError(f"{mpath}: {key!r} must name a file (a string); re-pack with `edge-runtime pack`")
    for need in ("task.json", "generation.json", manifest.get("model", ""), *([manifest["adapter"]] if manifest.get("adapter") else [])):
        if need not in files:
            raise BundleError(f"{need or 'model'}: required file not in the manifest")
    return manifest


def to_tar(bundle_dir: Path, tar_path: Path, overwrite: bool = False) -> Path:
    tar_path = Path(tar_path)
    if tar_path.exists() and not overwrite:
        raise FileExistsError(f"{tar_path} exists; pass --overwrite to replace it")
    verify(bundle_dir)
    tmp = tar_path.with_name(tar_path.name + ".partial")
    try:  # written aside and renamed: an old archive stays whole until the new one is
        with tarfile.open(tmp, "w") as tar:
            for path in sorted(Path(bundle_dir).rglob("*")):
                if path.is_file():
                    tar.add(path, arcname=path.relative_to(bundle_dir).as_posix())
        tmp.replace(tar_path)
    finally:
        tmp.unlink(missing_ok=True)
    return tar_path


def extract_tar(tar_path: Path, dest: Path | None = None) -> Path:
    """Unpack a bundle archive, refusing members that are links or escape the bundle. Without
    `dest`, into the content-addressed cache (`cached_extract`): loading the same archive
    again reuses that copy instead of leaving another one in the temp directory."""
    if dest is None:
        return cached_extract(tar_path)
    dest = Path(dest)
    with tarfile.open(tar_path) as tar:
        for member in tar.getmembers():
            if not (member.isfile() or member.isdir()):
                raise BundleError(f"{member.name}: archive member is a link or device; refused")
            _inside(dest, member.name)
        tar.extractall(dest, filter="data")
    return dest


def bundle_cache() -> Path:
    """Where archives are unpacked: `<cache>/bundles/<sha256 of the archive>` (EDGE_DISTILL_CACHE)."""
    from edge_runtime.cache import cache_dir

    return cache_dir() / "bundles"


def cached_extract(tar_path: Path) -> Path:
    """The archive unpacked once per content: a directory named by the archive's sha256,
    written under a temporary name and renamed into place when complete, so a reader never
    sees half of it and an interrupted unpack leaves only a `.partial` directory that the
    next unpack removes. Whatever is there is still verified against its manifest on load."""
    digest = sha256_file(Path(tar_path))
    root = bundle_cache()
    root.mkdir(parents=True, exist_ok=True)
    final = root / digest
    if final.is_dir():
        return final
    for stale in root.glob(f"{digest}.partial-*"):
        if time.time() - stale.stat().st_mtime > 3600:
            shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"{digest}.partial-", dir=root))
    try:
        extract_tar(tar_path, tmp)
        try:
            tmp.rename(final)
        except OSError:  # another process finished first: keep its copy
            if not final.is_dir():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


@dataclass
class Bundle:
    """A verified bundle. Its small files (task, knowledge base, generation settings, grammar)
    were read once at load, from bytes checked against the manifest: a file changed after
    load is never picked up. The model and adapter are given to llama.cpp by path."""

    root: Path
    manifest: dict[str, Any]
    task: TaskSpec
    generation: dict[str, Any]
    extra: dict[str, Any] = field(default_factory=dict)
    grammar: str | None = None

    @property
    def model_path(self) -> Path:
        return self.root / self.manifest["model"]

    @property
    def adapter_path(self) -> Path | None:
        """The GGUF LoRA adapter llama.cpp applies on load, for `<type>+lora` bundles."""
        rel = self.manifest.get("adapter")
        return self.root / rel if rel else None

    def read_bytes(self, name: str) -> bytes:
        """A file of the bundle, checked against its manifest sha256 before it is returned."""
        return verified_bytes(self.root, self.manifest, name)

    def read_json(self, name: str) -> Any:
        return json.loads(self.read_bytes(name)) if name in self.manifest["files"] else None


def verified_bytes(root: Path, manifest: dict[str, Any], name: str) -> bytes:
    """The bytes of `name`, which must be in the manifest, inside the bundle and match its sha256."""
    info = manifest["files"].get(name)
    if info is None:
        raise BundleError(f"{name}: the bundle uses this file but its manifest does not list it; "
                          f"a bundle may only use its own files: re-pack it with `edge-runtime pack`")
    data = _inside(root, name).read_bytes()
    if hashlib.sha256(data).hexdigest() != info.get("sha256"):
        raise BundleError(f"{name}: sha256 differs from the manifest; the file was changed or corrupted")
    return data


def _bundle_file(rel: Any, what: str) -> str:
    """`rel` if it names a file inside a bundle (relative, no `..`), else BundleError."""
    if not isinstance(rel, str) or not rel or rel.startswith(("/", "\\")) or ".." in Path(rel).parts \
            or ":" in rel or Path(rel).is_absolute():
        raise BundleError(f"task.json: {what} {rel!r} is outside the bundle; a bundle may only use its own files, "
                          f"listed in manifest.json. Re-pack it with `edge-runtime pack`, which copies the file in")
    return Path(rel).as_posix()


def load_task(root: Path, manifest: dict[str, Any]) -> TaskSpec:
    """The bundle's task from its verified bytes, with its knowledge base (a faq task's) read
    once, from the bundle only, and pinned: never a path outside, never re-read."""
    try:
        task = TaskSpec.from_stored(verified_bytes(root, manifest, "task.json"))
    except BundleError:
        raise
    except Exception as exc:
        raise BundleError(f"task.json: not a valid task spec ({exc})") from exc
    if task.knowledge_base:
        from edge_runtime.retrieval import parse_knowledge_base

        rel = _bundle_file(task.knowledge_base, "knowledge_base")
        data = verified_bytes(root, manifest, rel)
        try:
            task.pin_knowledge_base(parse_knowledge_base(data.decode("utf-8"), rel), str(root / rel))
        except (UnicodeDecodeError, ValueError) as exc:
            raise BundleError(f"{rel}: not a valid knowledge base ({exc}); re-pack the bundle") from exc
    return task


def load_bundle(path: str | Path, check_hashes: bool = True) -> Bundle:
    """Verify then load a bundle directory or .tar archive. The files the runtime reads
    (task, knowledge base, generation settings, grammar) are hashed and read here, once,
    even with `check_hashes=False` (which skips hashing the model)."""
    path = Path(path)
    if path.is_file() and tarfile.is_tarfile(path):
        archive, path = path, extract_tar(path)
        try:
            manifest = verify(path, check_hashes=check_hashes)
        except BundleError:  # a cached copy changed since it was unpacked: unpack it afresh
            shutil.rmtree(path, ignore_errors=True)
            path = extract_tar(archive)
            manifest = verify(path, check_hashes=check_hashes)
    else:
        manifest = verify(path, check_hashes=check_hashes)
    task = load_task(path, manifest)
    try:
        generation = json.loads(verified_bytes(path, manifest, "generation.json"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"generation.json: not valid JSON ({exc}); re-pack the bundle") from exc
    if not isinstance(generation, dict):
        raise BundleError("generation.json: must be a JSON object; re-pack the bundle")
    grammar = verified_bytes(path, manifest, "grammar.gbnf").decode("utf-8") if "grammar.gbnf" in manifest["files"] else None
    return Bundle(path, manifest, task, generation, grammar=grammar)


def describe(bundle: Bundle) -> str:
    """What `edge-runtime inspect` prints."""
    m, g = bundle.manifest, bundle.generation
    fit = bundle.read_json("fit.json") or {}
    lines = [
        f"bundle {bundle.root}  ({m['format']} v{m['format_version']}, created {m.get('created')})",
        f"task: {bundle.task.name} ({bundle.task.kind}), answer keys {bundle.task.answer_keys()}",
        f"model: {m['model']}{'  LoRA adapter: ' + m['adapter'] if m.get('adapter') else ''}  profile: {m.get('profile')}  fits: {fit.get('fits')} "
        f"({fit.get('total_bytes', 0) / 2**20:,.0f} MiB of {fit.get('budget_bytes', 0) / 2**20:,.0f} MiB)",
        f"generation: n_ctx {g.get('n_ctx')}, slots {g.get('parallel')}, max_new_tokens {g.get('max_new_tokens')}, "
        f"confidence threshold {g.get('confidence_threshold')}, teacher {(g.get('teacher') or {}).get('base_url', 'none')}",
        "files:",
    ]
    for rel, info in m["files"].items():
        lines.append(f"  {rel:<24} {info['bytes']:>13,} B  sha256 {info['sha256'][:16]}")
    return "\n".join(lines)
