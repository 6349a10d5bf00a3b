"""The production loop on real data (issue #18): drift, live accuracy by shadow sampling, and
one turn of log -> retrain -> compare -> promote -> hot swap, all through the real CLI.

    python benchmarks/flywheel.py [--bundle runs/intents-zh/pack/bundle] [--work runs/flywheel]

Data: SMP2017 (data/smp2017): the develop split, shuffled, is the live stream (`--stream`
rows) and a later slice (the rest); the train split is the deployed student's training data;
no test split is read. A loopback OpenAI-compatible teacher answers from the human labels,
wrong on a `--teacher-error` share of inputs (the same inputs every time).

1. Drift: `edge-runtime serve` (no teacher, no answer cache) gets in-distribution traffic
   (develop rows), then, each after `POST /admin/reload` (a fresh drift window), traffic of
   three labels only, long inputs (four requests run together) and English messages
   (Banking77's train split). /metrics is read every `--every` requests: PSI per feature
   and `edge_drift_flag`.
2. Shadow: the production server (teacher, request log, `--shadow-fraction`) answers the
   stream; the Wilson interval of student-teacher agreement in /metrics is set against the
   student's true accuracy on the same requests.
3. One turn: `distill run recipes/intents-zh.yaml` with `data.logs` = that log,
   `student.init_adapter` = the deployed run's adapter, a short training, the later slice as
   eval split; `edge-runtime compare OLD NEW --data later.jsonl`; on PROMOTE, `POST
   /admin/reload` moves the production server to the new bundle. The later slice is served
   before and after: accuracy, escalation rate and cost.

Prints a summary and writes WORK/flywheel.json. The turn's training length is
`--turn-rows`/`--turn-epochs`/`--turn-steps`; `--set KEY=VALUE` passes more recipe overrides
(tests run the loop on a tiny in-process model this way).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from distill.teachers.loopback import RecordingServer  # noqa: E402
from edge_runtime.bundle import load_bundle  # noqa: E402
from edge_runtime.report import wilson  # noqa: E402

ADMIN_ENV = "FLYWHEEL_ADMIN_TOKEN"
SHIFT_LABELS = ("music", "weather", "flight")


def read_csv(path: Path, text: str = "text", label: str = "label") -> list[dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as fh:
        return [{"text": r[text], "label": r[label]} for r in csv.DictReader(fh) if r.get(text)]


def _unit(*parts: Any) -> float:
    """A fixed pseudo-random number in [0, 1) for these parts (the same input, the same draw)."""
    return int(hashlib.sha256("\0".join(map(str, parts)).encode()).hexdigest()[:12], 16) / 16**12


class LabelTeacher:
    """A loopback teacher that answers a classification prompt with the input's human label,
    wrong (another label) on an `error_rate` share of inputs."""

    def __init__(self, task, labelled: dict[str, str], error_rate: float, seed: int):
        sentinel = "\x00INPUT\x00"
        self.prefix, self.suffix = task.render_prompt({task.input_field: sentinel}).split(sentinel)
        self.labels, self.labelled, self.error_rate, self.seed = list(task.labels), labelled, error_rate, seed
        self.asked = self.wrong = self.unknown = 0
        self.server = RecordingServer(self._answer)

    def label_for(self, text: str) -> str:
        gold = self.labelled.get(text)
        if gold is None:
            self.unknown += 1
            return self.labels[int(_unit(self.seed, "unknown", text) * len(self.labels))]
        if _unit(self.seed, text) < self.error_rate:
            self.wrong += 1
            others = [x for x in self.labels if x != gold]
            return others[int(_unit(self.seed, "wrong", text) * len(others))]
        return gold

    def _answer(self, request: dict[str, Any]) -> str:
        self.asked += 1
        content = request["messages"][-1]["content"]
        text = content[len(self.prefix): len(content) - len(self.suffix)] if self.suffix else content[len(self.prefix):]
        return json.dumps({"label": self.label_for(text)})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Served:
    """`edge-runtime serve BUNDLE` as a user starts it, on a free loopback port."""

    def __init__(self, bundle: Path, flags: list[str], log_path: Path, threads: int | None):
        self.port, self.log_path = free_port(), log_path
        self.url = f"http://127.0.0.1:{self.port}"
        self.cmd = [sys.executable, "-m", "edge_runtime.cli", "serve", str(bundle), "--port", str(self.port),
                    "--admin-token-env", ADMIN_ENV, *(["--threads", str(threads)] if threads else []), *flags]
        env = {**os.environ, ADMIN_ENV: "flywheel-admin", "PYTHONPATH": str(ROOT)}
        self._log = open(log_path, "w", encoding="utf-8")
        self.proc = subprocess.Popen(self.cmd, stdout=self._log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        self.client = httpx.Client(base_url=self.url, timeout=300)
        deadline = time.time() + 600
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"serve exited with {self.proc.returncode}; see {log_path}")
            try:
                if self.client.get("/healthz").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        else:
            self.close()
            raise RuntimeError(f"serve did not answer /healthz in 600 s; see {log_path}")
        self.task = load_bundle(bundle).task

    def ask(self, text: str) -> dict[str, Any]:
        r = self.client.post(f"/v1/tasks/{self.task.name}", json={"input": text})
        if r.status_code != 200:
            raise RuntimeError(f"POST /v1/tasks/{self.task.name}: HTTP {r.status_code} {r.text[:200]}")
        return r.json()

    def metrics(self) -> dict[str, Any]:
        """Samples of /metrics: {name: value} or {name: {label value: value}} for one label."""
        from prometheus_client.parser import text_string_to_metric_families

        out: dict[str, Any] = {}
        for fam in text_string_to_metric_families(self.client.get("/metrics").text):
            for s in fam.samples:
                if s.labels:
                    out.setdefault(s.name, {})[",".join(s.labels[k] for k in sorted(s.labels))] = s.value
                else:
                    out[s.name] = s.value
        return out

    def reload(self, bundle: Path | None = None) -> dict[str, Any]:
        r = self.client.post("/admin/reload", json={"bundle": str(bundle)} if bundle else {},
                             headers={"X-Admin-Token": "flywheel-admin"}, timeout=600)
        if r.status_code != 200:
            raise RuntimeError(f"POST /admin/reload: HTTP {r.status_code} {r.text[:300]}")
        return r.json()

    def close(self) -> None:
        self.client.close()
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self._log.close()


def student_label(body: dict[str, Any]) -> str | None:
    answer = body.get("student_answer") if body.get("escalated") else body.get("answer")
    return answer.get("label") if isinstance(answer, dict) else None


# ---- 1. drift ----------------------------------------------------------------------------
def drift_phase(server: Served, name: str, texts: list[str], every: int) -> dict[str, Any]:
    trace, first = [], None
    for i, text in enumerate(texts, 1):
        server.ask(text)
        if i % every == 0 or i == len(texts):
            m = server.metrics()
            flag, psi = int(m.get("edge_drift_flag", 0)), m.get("edge_drift_psi", {})
            trace.append({"requests": i, "flag": flag, "psi": psi})
            if flag and first is None:
                first = i
    return {"phase": name, "requests": len(texts), "flag_first_at": first, "flag_end": trace[-1]["flag"],
            "psi_end": trace[-1]["psi"], "psi_max": {k: max(t["psi"].get(k, 0.0) for t in trace) for k in trace[-1]["psi"]},
            "trace": trace}


def run_drift(a, bundle: Path, stream: list[dict], pool: list[dict], english: list[str]) -> dict[str, Any]:
    rng = random.Random(a.seed)
    n = a.drift_requests
    indist = [r["text"] for r in (stream * (n // max(1, len(stream)) + 1))[:n]]
    by_label = [r["text"] for r in pool if r["label"] in SHIFT_LABELS]
    rng.shuffle(by_label)
    texts = [r["text"] for r in stream]
    phases = [("in-distribution (develop rows)", indist),
              (f"labels shift (only {', '.join(SHIFT_LABELS)})", (by_label * (n // max(1, len(by_label)) + 1))[:n]),
              ("long inputs (4 requests run together)", ["，".join(texts[(4 * i + j) % len(texts)] for j in range(4))
                                                      for i in range(n)]),
              ("English (Banking77 train messages)", english[:n])]
    phases = [p for i, p in enumerate(phases) if a.drift_phases is None or i in a.drift_phases]
    flags = ["--no-answer-cache", "--drift-window", str(a.drift_window)]
    server = Served(bundle, flags, a.work / "serve-drift.log", a.threads)
    out = []
    try:
        for i, (name, phase_texts) in enumerate(phases):
            if i:
                server.reload()  # the same bundle: a fresh drift window for the next phase
            t0 = time.perf_counter()
            out.append({**drift_phase(server, name, phase_texts, a.every), "seconds": round(time.perf_counter() - t0, 1)})
            print(f"  drift: {name}: flag first at {out[-1]['flag_first_at']}, PSI {out[-1]['psi_end']}", flush=True)
        threshold = server.metrics().get("edge_drift_threshold")
    finally:
        server.close()
    unscored = [line for line in a.work.joinpath("serve-drift.log").read_text().splitlines() if "drift: not scoring" in line]
    return {"window": a.drift_window, "threshold": threshold, "every": a.every, "phases": out,
            "unscored": unscored[0].split("drift: ", 1)[1] if unscored else None}


# ---- 2. shadow and 3. the turn -----------------------------------------------------------
def serve_rows(server: Served, rows: list[dict]) -> dict[str, Any]:
    """Each row through the server: the student's and the final answers against the label."""
    t0 = time.perf_counter()
    before = server.metrics()
    answers = []
    for r in rows:
        body = server.ask(r["text"])
        final = body.get("answer") or {}
        answers.append({"text": r["text"], "gold": r["label"], "student": student_label(body),
                        "final": final.get("label"), "escalated": bool(body.get("escalated")),
                        "confidence": body.get("confidence")})
    after = server.metrics()
    n = len(answers)
    right = sum(x["student"] == x["gold"] for x in answers)
    return {"requests": n, "student_accuracy": right / n, "student_ci95": list(wilson(right, n)),
            "served_accuracy": sum(x["final"] == x["gold"] for x in answers) / n,
            "escalation_rate": sum(x["escalated"] for x in answers) / n,
            "escalation_cost_usd": after.get("edge_escalation_cost_usd_total", 0.0) - before.get("edge_escalation_cost_usd_total", 0.0),
            "seconds": round(time.perf_counter() - t0, 1), "answers": answers}


def wait_for_shadow(server: Served, timeout_s: float = 120.0) -> dict[str, Any]:
    """Metrics once the shadow counters stop moving (the sampler works off the request path)."""
    last, steady, deadline = None, 0, time.time() + timeout_s
    while time.time() < deadline:
        m = server.metrics()
        now = m.get("edge_shadow_requests_total", {})
        steady = steady + 1 if now == last else 0
        if steady >= 3:
            break
        last = now
        time.sleep(0.5)
    time.sleep(1.5)  # the request log's writer flushes every 0.5 s
    return server.metrics()


def shadow_figures(m: dict[str, Any], served: dict[str, Any], logdir: Path) -> dict[str, Any]:
    from edge_runtime.request_log import read_log

    counts = m.get("edge_shadow_requests_total", {})
    get = lambda outcome: int(counts.get(f"{outcome},random", 0))  # noqa: E731  (labels sorted: outcome, sample)
    gold = {x["text"]: x["gold"] for x in served["answers"]}
    sampled = [r for r in read_log(logdir) if (r.get("shadow") or {}).get("sample") == "random" and "agree" in r["shadow"]]
    right = [((r.get("student_answer") or {}).get("label") == gold.get(r["input"])) for r in sampled]
    teacher_right = [((r.get("teacher_answer") or {}).get("label") == gold.get(r["input"])) for r in sampled]
    ratio = m.get("edge_shadow_agreement_ratio", {}).get("random")
    lo = m.get("edge_shadow_agreement_ci95_lower", {}).get("random")
    hi = m.get("edge_shadow_agreement_ci95_upper", {}).get("random")
    truth = served["student_accuracy"]
    return {"sampled": get("agree") + get("disagree"), "agree": get("agree"), "errors": get("error"),
            "skipped_budget": get("skipped_budget"), "dropped": get("dropped"),
            "agreement": ratio, "ci95": [lo, hi], "true_accuracy": truth,
            "covers_true_accuracy": bool(lo is not None and lo <= truth <= hi),
            "true_accuracy_on_sampled": sum(right) / len(right) if right else None,
            "teacher_accuracy_on_sampled": sum(teacher_right) / len(teacher_right) if teacher_right else None,
            "cost_usd": m.get("edge_shadow_cost_usd_total", 0.0)}


def write_csv(path: Path, rows: list[dict]) -> Path:
    with open(path, "w", encoding="utf-8", newline="") as fh:
        w = csv.DictWriter(fh, ["text", "label"])
        w.writeheader()
        w.writerows(rows)
    return path


def run_turn(a, bundle: Path, logdir: Path, later_csv: Path, later_n: int, replay: Path) -> dict[str, Any]:
    """`distill run` from the log: the deployed adapter continued on the log's teacher rows
    plus a random sample of the old training rows (a replay, so the other labels are not forgotten)."""
    run_dir = bundle.resolve().parents[1]
    adapter = (a.init_adapter or run_dir / "train" / "adapter").resolve()
    deployed = adapter.parent.parent / "recipe.resolved.json"  # the same student.model the adapter was trained on
    model = json.loads(deployed.read_text())["student"]["model"] if deployed.is_file() else None
    sets = [*([f"student.model={model}"] if model else []), f"data.path={replay.resolve()}", f"data.logs=[{logdir.resolve()}]", f"data.eval_path={later_csv.resolve()}",
            f"data.split.eval_size={later_n}", f"student.init_adapter={adapter}",
            f"student.training.epochs={a.turn_epochs}", "eval.predictors=[gguf]", f"quantize.types=[{a.turn_type}]",
            *([f"student.training.max_steps={a.turn_steps}"] if a.turn_steps else []), *a.overrides]
    turn_dir = a.work / "turn"
    cmd = [sys.executable, "-m", "distill.cli", "run", str(a.recipe), "--run-dir", str(turn_dir)]
    for s in sets:
        cmd += ["--set", s]
    t0 = time.perf_counter()
    with open(a.work / "turn.log", "w", encoding="utf-8") as log:
        done = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    seconds = time.perf_counter() - t0
    if done.returncode != 0:
        raise RuntimeError(f"the turn's `distill run` failed ({done.returncode}); see {a.work / 'turn.log'}")
    teach = json.loads((turn_dir / "teach" / "record.json").read_text())["outputs"].get("logs")
    train = json.loads((turn_dir / "train" / "train_metrics.json").read_text())
    new = Path(json.loads((turn_dir / "pack" / "record.json").read_text())["outputs"]["bundle"])
    return {"command": "distill run " + " ".join(cmd[4:]), "seconds": round(seconds, 1), "new_bundle": str(new),
            "log_rows": teach, "train": {k: train.get(k) for k in ("train_rows", "val_rows", "steps", "train_seconds",
                                                                     "val_accuracy", "temperature", "base_model")}}


def run_compare(a, old: Path, new: Path, data: Path) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "edge_runtime.cli", "compare", str(old), str(new), "--data", str(data), "--json",
           *(["--threads", str(a.threads)] if a.threads else [])]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    if done.returncode not in (0, 1):
        raise RuntimeError(f"edge-runtime compare failed ({done.returncode}): {done.stderr[-2000:]}")
    result = json.loads(done.stdout)
    return {**result, "exit_code": done.returncode, "seconds": round(time.perf_counter() - t0, 1),
            "command": "edge-runtime " + " ".join(cmd[3:])}


def run_loop(a, bundle: Path, stream: list[dict], later: list[dict], teacher: LabelTeacher, replay: Path) -> dict[str, Any]:
    logdir = a.work / "log"
    flags = ["--teacher-url", teacher.server.url, "--teacher-model", a.teacher_model, "--log-dir", str(logdir),
             "--log-inputs", "full", "--shadow-fraction", str(a.shadow_fraction), "--shadow-max-per-hour", "1000000"]
    server = Served(bundle, flags, a.work / "serve-production.log", a.threads)
    out: dict[str, Any] = {"serve": "edge-runtime " + " ".join(server.cmd[3:])}
    try:
        stream_served = serve_rows(server, stream)
        out["shadow"] = shadow_figures(wait_for_shadow(server), stream_served, logdir)
        out["stream"] = {k: v for k, v in stream_served.items() if k != "answers"}
        print(f"  shadow: {json.dumps(out['shadow'])}", flush=True)
        later_csv, later_jsonl = write_csv(a.work / "later.csv", later), a.work / "later.jsonl"
        later_jsonl.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in later), encoding="utf-8")
        out["turn"] = run_turn(a, bundle, logdir, later_csv, len(later), replay)
        print(f"  turn: {json.dumps(out['turn'])}", flush=True)
        new = Path(out["turn"]["new_bundle"])
        out["compare"] = run_compare(a, bundle, new, later_jsonl)
        print(f"  compare: {'PROMOTE' if out['compare']['promote'] else 'KEEP'} {json.dumps(out['compare'])}", flush=True)
        before = serve_rows(server, later)
        out["later_before"] = {k: v for k, v in before.items() if k != "answers"}
        if out["compare"]["promote"] or a.swap_always:
            t0 = time.perf_counter()
            out["reload"] = {**server.reload(new), "seconds": round(time.perf_counter() - t0, 1)}
            after = serve_rows(server, later)
            out["later_after"] = {k: v for k, v in after.items() if k != "answers"}
    finally:
        server.close()
    return out


# ---- main --------------------------------------------------------------------------------
def print_summary(r: dict[str, Any]) -> None:
    pct = lambda v: "-" if v is None else f"{100 * v:.1f}%"  # noqa: E731
    d = r["drift"]
    print(f"\n== drift (window {d['window']}, threshold {d['threshold']}, /metrics every {d['every']} requests)")
    if d["unscored"]:
        print(f"   not scored: {d['unscored']}")
    for p in d["phases"]:
        psi = ", ".join(f"{k} {v:.3f}" for k, v in sorted(p["psi_end"].items()))
        print(f"   {p['phase']:<44} {p['requests']:>4} req  flag first at {p['flag_first_at'] or 'never':>5}  PSI: {psi}")
    loop = r["loop"]
    s = loop["shadow"]
    print(f"\n== shadow ({r['settings']['shadow_fraction']:g} of {loop['stream']['requests']} requests, teacher error "
          f"{r['settings']['teacher_error']:g})")
    print(f"   agreement {pct(s['agreement'])} of {s['sampled']}, 95% Wilson [{pct(s['ci95'][0])}, {pct(s['ci95'][1])}]; "
          f"true student accuracy {pct(s['true_accuracy'])} on all (covered: {s['covers_true_accuracy']}), "
          f"{pct(s['true_accuracy_on_sampled'])} on the sampled; teacher right on {pct(s['teacher_accuracy_on_sampled'])}")
    t, c = loop["turn"], loop["compare"]
    print(f"\n== one turn ({t['seconds']:.0f} s): log rows {t['log_rows']}, train {t['train']}")
    print(f"   compare on {c['rows']} later rows: OLD {pct(c['old'])} NEW {pct(c['new'])}, NEW-OLD {100 * c['difference']:+.1f} "
          f"[{100 * c['ci'][0]:+.1f}, {100 * c['ci'][1]:+.1f}] -> {'PROMOTE' if c['promote'] else 'KEEP'}")
    for key in ("later_before", "later_after"):
        if key in loop:
            x = loop[key]
            print(f"   {key:<13} student {pct(x['student_accuracy'])} served {pct(x['served_accuracy'])} "
                  f"escalated {pct(x['escalation_rate'])} cost ${x['escalation_cost_usd']:.6f}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bundle", type=Path, default=ROOT / "runs/intents-zh/pack/bundle")
    ap.add_argument("--recipe", type=Path, default=ROOT / "recipes/intents-zh.yaml")
    ap.add_argument("--data", type=Path, default=ROOT / "data/smp2017", help="train.csv and develop.csv (never a test split)")
    ap.add_argument("--english", type=Path, default=ROOT / "data/banking77/train.csv")
    ap.add_argument("--work", type=Path, default=ROOT / "runs/flywheel")
    ap.add_argument("--overwrite", action="store_true", help="replace --work if it exists")
    ap.add_argument("--stream", type=int, default=500, help="develop rows in the live stream; the rest is the later slice")
    ap.add_argument("--later", type=int, default=None, help="rows in the later slice (default: all the rest)")
    ap.add_argument("--shadow-fraction", type=float, default=0.3)
    ap.add_argument("--teacher-error", type=float, default=0.02, help="share of inputs the loopback teacher gets wrong")
    ap.add_argument("--teacher-model", default="deepseek-chat", help="its name prices the calls (edge_runtime/prices.yaml)")
    ap.add_argument("--drift-requests", type=int, default=600, help="requests per drift phase")
    ap.add_argument("--drift-window", type=int, default=500)
    ap.add_argument("--drift-phases", type=lambda v: [int(x) for x in v.split(",")], default=None, metavar="I,J",
                    help="run only these drift phases: 0 in-distribution, 1 labels, 2 long inputs, 3 English")
    ap.add_argument("--every", type=int, default=25, help="read /metrics every N requests in the drift phases")
    ap.add_argument("--turn-rows", type=int, default=300, help="old training rows replayed beside the log's rows")
    ap.add_argument("--turn-epochs", type=float, default=1.0)
    ap.add_argument("--turn-steps", type=int, default=None, help="cap on training steps (student.training.max_steps)")
    ap.add_argument("--turn-type", default="q4_k_m", help="the quantize type the new bundle ships")
    ap.add_argument("--init-adapter", type=Path, default=None, help="default: the bundle's run's train/adapter")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="more recipe overrides for the turn")
    ap.add_argument("--swap-always", action="store_true", help="hot swap to the new bundle even when compare says keep")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    if not (a.bundle / "manifest.json").is_file():
        ap.error(f"--bundle {a.bundle}: no bundle there; run `distill run recipes/intents-zh.yaml` first")
    if a.work.exists():
        if not a.overwrite:
            ap.error(f"--work {a.work} exists; pass --overwrite to replace it")
        shutil.rmtree(a.work)
    a.work.mkdir(parents=True)
    started = time.perf_counter()

    train, develop = read_csv(a.data / "train.csv"), read_csv(a.data / "develop.csv")
    english = [r["text"] for r in read_csv(a.english, label="category")]
    random.Random(a.seed).shuffle(develop)
    random.Random(a.seed).shuffle(english)
    stream, later = develop[: a.stream], develop[a.stream:][: a.later]
    if not stream or not later:
        ap.error(f"--stream {a.stream}: leaves {len(later)} of {len(develop)} develop rows for the later slice")
    task = load_bundle(a.bundle).task
    teacher = LabelTeacher(task, {r["text"]: r["label"] for r in train + develop}, a.teacher_error, a.seed)
    teacher.server.start()
    result: dict[str, Any] = {"bundle": str(a.bundle), "settings": {k: (str(v) if isinstance(v, Path) else v)
                                                                    for k, v in vars(a).items()}}
    try:
        print(f"drift: {a.drift_requests} requests per phase", flush=True)
        result["drift"] = run_drift(a, a.bundle, stream, train + develop, english)
        print(f"loop: stream {len(stream)}, later {len(later)}", flush=True)
        replay = write_csv(a.work / "replay.csv", random.Random(a.seed).sample(train, min(a.turn_rows, len(train))))
        result["loop"] = run_loop(a, a.bundle, stream, later, teacher, replay)
    finally:
        teacher.server.stop()
    result["teacher"] = {"asked": teacher.asked, "wrong": teacher.wrong, "unknown_inputs": teacher.unknown}
    result["seconds"] = round(time.perf_counter() - started, 1)
    (a.work / "flywheel.json").write_text(json.dumps(result, indent=2, ensure_ascii=False), encoding="utf-8")
    print_summary(result)
    print(f"\n{result['seconds']:.0f} s in all; figures in {a.work / 'flywheel.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
