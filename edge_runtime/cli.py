"""`edge-runtime`: fit, pack, verify, inspect, serve, predict, bench, report, compare. A thin dispatcher;
each command is one function of the module that owns the work."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from edge_runtime import layout


def _fit(a) -> int:
    from edge_runtime.fit import fit
    from edge_runtime.profiles import get_profile

    result = fit(a.model, get_profile(a.profile, a.profiles), n_ctx=a.ctx, parallel=a.parallel, gpu_layers=a.gpu_layers)
    print(json.dumps(result.to_dict(), indent=2) if a.json else result.summary())
    return 0 if result.fits else 1


def _pack(a) -> int:
    import shutil
    import tempfile

    from edge_runtime.bundle import pack_run, to_tar

    out = Path(a.out)
    if out.suffix == ".tar" or a.tar:
        tar = out if out.suffix == ".tar" else out.with_suffix(".tar")
        with tempfile.TemporaryDirectory(dir=tar.parent if tar.parent.exists() else None) as tmp:
            bundle = pack_run(Path(a.run_dir), a.profile, Path(tmp) / "bundle", overwrite=True, qtype=a.type)
            to_tar(bundle, tar, overwrite=a.overwrite)
            shutil.rmtree(bundle)
        print(f"bundle archive written: {tar}")
    else:
        print(f"bundle written: {pack_run(Path(a.run_dir), a.profile, out, overwrite=a.overwrite, qtype=a.type)}")
    return 0


def _verify(a) -> int:
    from edge_runtime.bundle import load_bundle

    b = load_bundle(a.bundle)
    print(f"OK: {len(b.manifest['files'])} files match manifest.json ({b.manifest['format']} v{b.manifest['format_version']})")
    return 0


def _inspect(a) -> int:
    from edge_runtime.bundle import describe, load_bundle

    print(describe(load_bundle(a.bundle, check_hashes=not a.fast)))
    return 0


def _serve(a) -> int:
    from edge_runtime.production import settings_from_flags
    from edge_runtime.security import check_bind
    from edge_runtime.server import serve
    from edge_runtime.server_settings import ServerSettings

    api_key = _api_key(a)
    loop = settings_from_flags(a)  # flag errors before the model loads
    check_bind(a.host, api_key, a.insecure_no_key)  # before the model loads
    settings = ServerSettings(
        host=a.host, allowed_hosts=tuple(a.allowed_host), api_key=api_key, admin_token=_admin_token(a),
        max_queue=a.max_queue, timeout_s=a.timeout, request_timeout_s=a.request_timeout or None,
        max_body_bytes=a.max_body, max_tokens_cap=a.max_tokens, max_image_pixels=a.max_image_pixels,
        parallel=a.parallel, n_threads=a.threads, decoding=_decoding_flags(a), gpu_layers=a.gpu_layers,
        teacher_url=a.teacher_url, teacher_model=a.teacher_model, teacher_key_env=a.teacher_key_env,
        teacher_price_input_per_m=a.teacher_price_input_per_m, teacher_price_output_per_m=a.teacher_price_output_per_m,
        teacher_privacy=_privacy_flags(a), escalation_max_per_hour=a.escalation_max_per_hour,
        escalation_max_usd_per_hour=a.escalation_max_usd_per_hour, loop=loop)
    serve(a.bundle, settings, port=a.port, insecure_no_key=a.insecure_no_key)
    return 0


def _privacy_flags(a) -> dict:
    from edge_runtime.privacy import DEFAULTS, check_local_hosts

    hosts = tuple(a.teacher_local_host) if a.teacher_local_host else DEFAULTS["local_hosts"]
    problems = check_local_hosts(list(hosts))
    if problems:
        raise ValueError("--teacher-local-host: " + "; ".join(problems))
    return {"mask": a.teacher_mask, "local_hosts": hosts, "audit_log": a.audit_log, "audit_content": a.audit_content}


def _secret_from(env_flag: str, env_name: str | None, file_flag: str, file_path: str | None) -> str | None:
    """A secret from an environment variable or a file (neither shows in `ps`); empty is an error."""
    import os

    if env_name:
        value = os.environ.get(env_name, "")
        if not value:
            raise ValueError(f"{env_flag} {env_name}: the environment variable is unset or empty")
        return value
    if file_path:
        value = Path(file_path).read_text(encoding="utf-8").strip()
        if not value:
            raise ValueError(f"{file_flag} {file_path}: the file is empty")
        return value
    return None


def _admin_token(a) -> str | None:
    """The token that turns on POST /admin/reload (hot swap), from --admin-token-env or --admin-token-file."""
    return _secret_from("--admin-token-env", a.admin_token_env, "--admin-token-file", a.admin_token_file)


def _api_key(a) -> str | None:
    """The server's API key from --api-key-env or --api-key-file (not shown in `ps`), or --api-key."""
    given = [n for n, v in (("--api-key", a.api_key), ("--api-key-env", a.api_key_env), ("--api-key-file", a.api_key_file)) if v]
    if len(given) > 1:
        raise ValueError(f"give one of {', '.join(given)}, not several")
    key = _secret_from("--api-key-env", a.api_key_env, "--api-key-file", a.api_key_file)
    if key:
        return key
    if a.api_key:
        print("warning: --api-key shows in the process list; prefer --api-key-env NAME or --api-key-file PATH",
              file=sys.stderr)
    return a.api_key


def _decoding_flags(a) -> dict:
    """Serve/predict flags that override the bundle's decoding settings."""
    out = {}
    if a.speculate is not None:
        out["speculate"] = a.speculate
    if a.draft_max is not None:
        out["draft_max"] = a.draft_max
    return out


def _add_gpu_layers(s) -> None:
    s.add_argument("--gpu-layers", type=int, default=None, metavar="N",
                   help="layers llama.cpp offloads to the GPU: -1 all, 0 none (default: the bundle's profile: "
                        "all on gpu-server, none elsewhere)")


def _add_decoding_flags(s) -> None:
    s.add_argument("--speculate", action=argparse.BooleanOptionalAction, default=None,
                   help="prompt-lookup speculation on or off (default: the bundle's generation.json)")
    s.add_argument("--draft-max", type=int, default=None, metavar="N",
                   help="tokens drafted from the prompt per verifying pass (default: the bundle's)")


def _predict(a) -> int:
    from edge_runtime.bundle import load_bundle
    from edge_runtime.engines import bundle_predictor
    from edge_runtime.router import Router

    b = load_bundle(a.bundle)
    task = b.task
    if a.image:
        from edge_runtime.ocr import ocr_lines

        example = {task.input_field: ocr_lines(a.image)}
    elif a.input is not None:
        example = {task.input_field: Path(a.input[1:]).read_text() if a.input.startswith("@") else a.input}
    else:
        example = {task.input_field: sys.stdin.read()}
    pred = bundle_predictor(b, n_threads=a.threads, decoding=_decoding_flags(a), n_gpu_layers=a.gpu_layers)
    try:
        p = pred.predict(example)
    finally:
        pred.close()
    body = Router(task, float(b.generation.get("confidence_threshold", layout.CONFIDENCE_THRESHOLD))).route(example, p)
    body["latency_s"] = round(p.latency_s, 3)
    print(json.dumps(body, indent=2, ensure_ascii=False))
    return 0 if p.valid else 1


def _bench(a) -> int:
    from edge_runtime.bench import run_bench

    report = run_bench(a.bundle, n_requests=a.requests, gen_tokens=a.tokens, n_threads=a.threads, gpu_layers=a.gpu_layers)
    print(json.dumps(report, indent=2))
    if a.json:
        Path(a.json).write_text(json.dumps(report, indent=2))
    return 0


def _report(a) -> int:
    from edge_runtime.report import report

    html = None if a.no_html else (a.html or str(Path(a.logdir) / "report.html"))
    text, summary, note = report(a.logdir, html, bundle=a.bundle, drift_threshold=a.drift_threshold)
    print(json.dumps(summary, indent=2) if a.json else text)
    if note:
        print(note, file=sys.stderr)
    return 0


def _compare(a) -> int:
    from edge_runtime.compare import compare, summary

    result = compare(a.old, a.new, a.data, limit=a.limit, min_gain=a.min_gain / 100, n_threads=a.threads)
    print(json.dumps(result, indent=2) if a.json else summary(result))
    return 0 if result["promote"] else 1


def build_parser() -> argparse.ArgumentParser:
    from edge_runtime.server_settings import DEFAULTS as SERVER

    p = argparse.ArgumentParser(prog="edge-runtime", description="Run distilled task models offline on a device.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    s = sub.add_parser("fit", help="check whether a GGUF fits a device profile's memory, with the largest ctx/slots")
    s.add_argument("model", help="a .gguf file")
    s.add_argument("--profile", default=layout.PROFILE)
    s.add_argument("--profiles", help="YAML file with your own device profiles")
    _add_gpu_layers(s)
    s.add_argument("--ctx", type=int, default=layout.N_CTX)
    s.add_argument("--parallel", type=int, default=layout.PARALLEL)
    s.add_argument("--json", action="store_true")
    s.set_defaults(fn=_fit)

    s = sub.add_parser("pack", help="package a run's quantized model, task and eval into a verified bundle")
    s.add_argument("run_dir")
    s.add_argument("--profile", default=layout.PROFILE)
    s.add_argument("--out", required=True, help="bundle directory, or a path ending in .tar for an archive")
    s.add_argument("--tar", action="store_true", help="write a .tar archive")
    s.add_argument("--type", default=None,
                   help="which quantize artifact to ship, e.g. q4_k_m or q4_k_m+lora (default: the recipe's first quantized type)")
    s.add_argument("--overwrite", action="store_true")
    s.set_defaults(fn=_pack)

    s = sub.add_parser("verify", help="check a bundle's files against its manifest (sha256, format)")
    s.add_argument("bundle")
    s.set_defaults(fn=_verify)

    s = sub.add_parser("inspect", help="print what a bundle holds: task, model, fit, settings, files")
    s.add_argument("bundle")
    s.add_argument("--fast", action="store_true", help="skip the sha256 check")
    s.set_defaults(fn=_inspect)

    s = sub.add_parser("serve", help="serve a bundle offline: OpenAI-compatible and task endpoints")
    s.add_argument("bundle")
    s.add_argument("--host", default=SERVER.host)
    s.add_argument("--port", type=int, default=8080)
    s.add_argument("--api-key", default=None, help="require this key (Authorization: Bearer KEY); visible in `ps`, "
                   "prefer --api-key-env or --api-key-file")
    s.add_argument("--api-key-env", default=None, metavar="NAME", help="require the key held in this environment variable")
    s.add_argument("--api-key-file", default=None, metavar="PATH", help="require the key held in this file")
    s.add_argument("--allowed-host", action="append", default=[], metavar="NAME",
                   help="also answer requests whose Host header is NAME (repeatable; '*' for any). By default the "
                        "server answers to loopback names and addresses and the address it is bound to, which "
                        "stops DNS-rebinding pages from reading its answers")
    s.add_argument("--insecure-no-key", action="store_true",
                   help="allow a non-loopback --host without an API key (anyone who reaches it may use the model)")
    s.add_argument("--max-tokens", type=int, default=None, metavar="N",
                   help="most tokens one OpenAI request may generate (clamps the client's max_tokens; default: 4096)")
    s.add_argument("--max-queue", type=int, default=SERVER.max_queue, help="waiting requests before 429")
    s.add_argument("--max-image-pixels", type=int, default=SERVER.max_image_pixels, metavar="N",
                   help="refuse uploaded images larger than this (413, read from the header before decoding)")
    s.add_argument("--queue-timeout", "--timeout", dest="timeout", type=float, default=SERVER.timeout_s, metavar="SECONDS",
                   help="queue wait timeout: seconds a request may wait for a free model slot before 504 (default 120)")
    s.add_argument("--request-timeout", type=float, default=SERVER.request_timeout_s, metavar="SECONDS",
                   help="generation timeout: seconds one request may generate once it holds a slot; llama.cpp is "
                        "stopped and the client gets 504 (default 120; 0 = no limit)")
    s.add_argument("--max-body", type=int, default=SERVER.max_body_bytes, metavar="BYTES",
                   help="largest request body in bytes, chunked bodies included; more gets 413 (default 8 MiB)")
    s.add_argument("--parallel", type=int, default=None, help="model slots (default: the bundle's)")
    s.add_argument("--teacher-url", default=None,
                   help="OpenAI-compatible teacher for escalation. Escalation is off without it: a bundle's "
                        "generation.json teacher (URL, key variable) is only a suggestion and is never contacted on its own")
    s.add_argument("--teacher-model", default=None, help="the teacher's model name (default: the bundle's suggestion)")
    s.add_argument("--teacher-key-env", default=None, metavar="NAME",
                   help="environment variable holding the teacher's API key (default EDGE_TEACHER_API_KEY); the "
                        "variable a bundle names is never read")
    s.add_argument("--teacher-price-input-per-m", type=float, default=None, metavar="USD",
                   help="the teacher's price per million prompt tokens, to cost escalations (default: the model's "
                        "list price in edge_runtime/prices.yaml, 0 for a model not listed there)")
    s.add_argument("--teacher-price-output-per-m", type=float, default=None, metavar="USD",
                   help="the teacher's price per million completion tokens (default: the list price, likewise)")
    s.add_argument("--teacher-mask", action=argparse.BooleanOptionalAction, default=True,
                   help="mask PII (emails, cards, resident IDs, phone numbers) as [PHONE_1] ... before a request goes "
                        "to a teacher outside --teacher-local-host, and restore the values in its answer (default on)")
    s.add_argument("--teacher-local-host", action="append", default=[], metavar="HOST",
                   help="a teacher host (name, address or network such as 10.0.0.0/8) on the premises: no masking, "
                        "no audit (repeatable; default: loopback only)")
    s.add_argument("--audit-log", default=None, metavar="PATH",
                   help="append one JSON line per HTTP call to a remote teacher: time, endpoint, model, tokens, "
                        "sha256 of the bytes sent (never the content unless --audit-content)")
    s.add_argument("--audit-content", action="store_true", help="also write what was sent (masked) into the audit log")
    s.add_argument("--escalation-max-per-hour", type=int, default=None, metavar="N",
                   help="at most N escalations in any sliding hour; past it the student's answer is returned with "
                        "escalation_skipped: \"budget\" (default: no limit)")
    s.add_argument("--escalation-max-usd-per-hour", type=float, default=None, metavar="USD",
                   help="at most this teacher cost in any sliding hour (needs the teacher's prices; default: no limit)")
    s.add_argument("--admin-token-env", default=None, metavar="NAME",
                   help="turn on POST /admin/reload (hot swap to a new bundle, header X-Admin-Token) with the token "
                        "held in this environment variable; SIGHUP reloads the start path either way")
    s.add_argument("--admin-token-file", default=None, metavar="PATH", help="the same, the token read from a file")
    s.add_argument("--threads", type=int, default=None)
    _add_gpu_layers(s)
    _add_decoding_flags(s)
    from edge_runtime.production import add_serve_flags

    add_serve_flags(s)
    s.set_defaults(fn=_serve)

    s = sub.add_parser("predict", help="answer one input (text, @file or --image photo) with a bundle")
    s.add_argument("bundle")
    s.add_argument("--input", help="the task input text, or @path to read it from a file")
    s.add_argument("--image", help="a receipt/invoice photo, read with OCR")
    s.add_argument("--threads", type=int, default=None)
    _add_gpu_layers(s)
    _add_decoding_flags(s)
    s.set_defaults(fn=_predict)

    s = sub.add_parser("bench", help="measure tokens/s vs raw llama-cpp-python and latency with/without prefix reuse")
    s.add_argument("bundle")
    s.add_argument("--requests", type=int, default=10)
    s.add_argument("--tokens", type=int, default=64)
    s.add_argument("--threads", type=int, default=None)
    _add_gpu_layers(s)
    s.add_argument("--json", help="also write the report here")
    s.set_defaults(fn=_bench)

    s = sub.add_parser("compare", help="score two bundles on the same labelled rows; promote NEW only when it is "
                       "better with 95%% confidence (exit 0: promote, 1: keep OLD)")
    s.add_argument("old", help="the bundle serving now")
    s.add_argument("new", help="the candidate bundle")
    s.add_argument("--data", required=True, metavar="FILE|LOGDIR",
                   help="labelled rows: a JSONL file with the task's input field and `answer` (or `gold`, `label`), "
                        "e.g. runs/<recipe>/teach/eval.jsonl; or a request log directory (the teacher's answers of "
                        "escalated and shadow-sampled requests)")
    s.add_argument("--min-gain", type=float, default=0.0, metavar="POINTS",
                   help="promote only when the 95%% interval of NEW - OLD lies above this many points (default 0)")
    s.add_argument("--limit", type=int, default=None, metavar="N", help="use the first N rows only")
    s.add_argument("--threads", type=int, default=None)
    s.add_argument("--json", action="store_true", help="print the figures as JSON")
    s.set_defaults(fn=_compare)

    s = sub.add_parser("report", help="summarise a request log (serve --log-dir): a table and an HTML page with a plot")
    s.add_argument("logdir")
    s.add_argument("--html", default=None, metavar="PATH", help="where to write the page (default LOGDIR/report.html)")
    s.add_argument("--no-html", action="store_true", help="print the table only")
    s.add_argument("--bundle", default=None, help="the bundle that served the log: adds drift against its reference")
    s.add_argument("--drift-threshold", type=float, default=None, metavar="PSI", help="drift flag threshold (default 0.2)")
    s.add_argument("--json", action="store_true", help="print the summary as JSON instead of the table")
    s.set_defaults(fn=_report)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "fn", None):
        parser.print_help()
        return 2
    try:
        return args.fn(args)
    except (FileNotFoundError, FileExistsError, KeyError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
