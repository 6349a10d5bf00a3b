"""The drift flag's false-alarm rate and detection delay, simulated: SMP2017 develop rows (with a
deployed student's real answers, confidences and token counts) streamed in random windows against
a run's drift reference, and shifted streams (long inputs, English, half of one domain).

    distill run recipes/intents-zh.yaml
    distill eval recipes/intents-zh.yaml --predictor gguf:q4_k_m --data data/smp2017/develop.csv \
        --out runs/intents-zh/eval-develop
    python benchmarks/drift_noise.py --run runs/intents-zh --reps 1000

Figures of 2026-12-03 are in docs/results.md ("Production loop")."""
import argparse, csv, json, random, statistics, copy
from pathlib import Path
import logging; logging.disable(logging.WARNING)
from edge_runtime.drift import DriftMonitor, reference_for_run
from edge_runtime.task import TaskSpec

ROOT = Path(__file__).resolve().parents[1]
ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
ap.add_argument("--run", type=Path, default=ROOT / "runs/intents-zh")
ap.add_argument("--predictions", type=Path, default=None, help="default: RUN/eval-develop/gguf-q4_k_m/predictions.jsonl")
ap.add_argument("--develop", type=Path, default=ROOT / "data/smp2017/develop.csv")
ap.add_argument("--reps", type=int, default=1000, help="random windows per size")
a = ap.parse_args()
RUN, R = a.run, a.reps
task = TaskSpec.model_validate(json.loads((RUN / "pack/bundle/task.json").read_text()))
ref = reference_for_run(RUN, task, RUN / "quantize/model-q4_k_m.gguf", "q4_k_m")
print("reference:", ref["source"], {k: v.get("n") for k, v in ref["features"].items()})
dev = list(csv.DictReader(open(a.develop, encoding="utf-8")))
preds = [json.loads(l) for l in open(a.predictions or RUN / "eval-develop/gguf-q4_k_m/predictions.jsonl")]
assert len(dev) == len(preds) and all(d["label"] == p["gold"]["label"] for d, p in zip(dev, preds))
live = [dict(text=d["text"], prompt_tokens=p["prompt_tokens"], confidence=p["confidence"], label=p["answer"].get("label", "(invalid)"),
             gold=d["label"]) for d, p in zip(dev, preds)]

from llama_cpp import Llama
llm = Llama(str(RUN / "quantize/model-q4_k_m.gguf"), vocab_only=True, verbose=False)
ntok = lambda t: len(llm.tokenize(t.encode(), add_bos=True, special=False))

def monitor(r, n):
    return DriftMonitor(r, window=max(500, n))

def feed(mon, rows):
    for x in rows:
        mon.observe(x["text"], confidence=x.get("confidence"), label=x.get("label"), prompt_tokens=x.get("prompt_tokens"))

rng = random.Random(0)
print("\n== same distribution (develop rows, random windows), false-flag rate ==")
for n in (50, 100, 200, 500):
    flags, by = 0, {}
    for _ in range(R):
        mon = monitor(ref, n)
        feed(mon, rng.sample(live, n))
        if hasattr(mon, "evaluate"):
            ev = mon.evaluate(); hit = [k for k, e in ev.items() if e["flag"]]
        else:
            s = mon.scores(); hit = [k for k, v in s.items() if v > mon.threshold]
        if hit:
            flags += 1
            for f in hit:
                by[f] = by.get(f, 0) + 1
    if hasattr(mon, "evaluate"):
        print("   last window:", {k: (e["psi"], e["noise"]) for k, e in ev.items()})
    print(f"n={n}: {flags}/{R} = {flags / R:.2%} flagged; by feature {by}")
# the flywheel's stream: develop shuffled with seed 0, scored at 50
stream = list(live); random.Random(0).shuffle(stream)
mon = monitor(ref, 500); feed(mon, stream[:50]); print("flywheel stream at 50:", mon.evaluate() if hasattr(mon, "evaluate") else mon.scores(), "flag", mon.drifted())

ENGLISH = ["I still have not received my new card, when will it arrive?", "How do I top up my account with a bank transfer?",
  "Why was I charged a fee for withdrawing cash?", "My card payment was declined at the shop, what happened?",
  "Can I change my PIN at an ATM?", "The exchange rate on my transfer looks wrong.", "How long does a transfer to another country take?",
  "I think someone used my card without my permission.", "Where can I find my account statement?", "Is there a limit on top ups?",
  "My refund has not shown up yet.", "How do I verify my identity?", "I lost my phone, how do I freeze my card?",
  "Can I get a virtual card for online shopping?", "Why is my transfer still pending after two days?", "What currencies do you support?",
  "I was charged twice for the same purchase.", "How do I close my account?", "The app says my top up failed but the money left my bank.",
  "Can I use Apple Pay with this card?", "Please cancel the transaction I made this morning.", "Do you charge for receiving money?"]
def shifted_first_flag(make, r, reps=200, step=10, maxn=300):
    out = []
    for _ in range(reps):
        mon = monitor(r, maxn); n = 0; hit = None
        while n < maxn:
            feed(mon, [make() for _ in range(step)]); n += step
            if mon.drifted():
                hit = n; break
        out.append(hit if hit is not None else maxn + 1)
    out.sort()
    return f"median {statistics.median(out)}, 95th pct {out[int(0.95 * len(out)) - 1]}, never by {maxn}: {sum(o > maxn for o in out)}/{reps}"

inputs_only = copy.deepcopy(ref)
for k in ("label", "confidence"):
    inputs_only["features"].pop(k, None)
def long_row():
    t = "，".join(rng.choice(live)["text"] for _ in range(4)); return dict(text=t, prompt_tokens=ntok(t))
def english_row():
    t = rng.choice(ENGLISH); return dict(text=t, prompt_tokens=ntok(t))
print("\n== shifts: requests until the flag (checked every 10 requests) ==")
print("long (4 develop rows joined), input features only:", shifted_first_flag(long_row, inputs_only))
print("English (synthetic banking messages), input features only:", shifted_first_flag(english_row, inputs_only))
by_label = {}
for x in live:
    by_label.setdefault(x["gold"], []).append(x)
for dom in ("music", "weather", "chat", "flight"):
    def label_shift(dom=dom):
        return rng.choice(by_label[dom]) if rng.random() < 0.5 else rng.choice(live)
    print(f"label shift: 50% {dom} ({len(by_label[dom])} develop rows) + 50% develop:", shifted_first_flag(label_shift, ref, maxn=500))
