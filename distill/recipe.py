"""Recipes: one YAML file is one runnable pipeline.

Loaded into typed models that reject unknown keys. Every problem is collected and
reported at once with its path (`student.lora.r: must be > 0`), so a user fixes a broken
recipe in one pass. Defaults live here and only here, except those the runtime reads too
(context, slots, threshold, answer length, quality floor): those come from
`edge_runtime.layout`, and the GGUF type list from `edge_runtime.gguf_types`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Callable, Literal, NamedTuple, Union

import yaml
from pydantic import Discriminator, Field, Tag, ValidationError, field_validator, model_validator

from edge_runtime import gguf_types, layout
from edge_runtime.privacy import DEFAULTS as PRIVACY_DEFAULTS
from edge_runtime.privacy import check_local_hosts, is_local, strip_userinfo
from edge_runtime.task import Strict, TaskSpec

# the GGUF types (edge_runtime/gguf_types.py's table, the one list quantize also reads)
QuantizeType = Literal[gguf_types.RECIPE_TYPES]  # type: ignore[valid-type]
EmbeddingType = Literal[gguf_types.EMBEDDING_TYPES]  # type: ignore[valid-type]

# ---------------------------------------------------------------------------- data


class SplitConfig(Strict):
    """How train and eval rows are drawn: from one file, or sampled from each of two."""

    eval_size: int = Field(40, gt=0, description="rows held out for evaluation (never trained on); with data.eval_path, a fixed-seed random sample of that many of its rows (all when larger)")
    train_size: int | None = Field(None, gt=0, description="cap on training rows (None: all the rest); with data.eval_path, a fixed-seed random sample of data.path")
    seed: int = Field(0, description="random seed of the train/eval draw; fixed so re-runs split the same rows")


class DataConfig(Strict):
    path: Path = Field(..., description="JSONL or CSV with the task inputs, or a folder of images read by OCR "
                       "(gold answers beside them in labels.jsonl); relative to the recipe")
    eval_path: Path | None = Field(None, description="a separate evaluation file; else `split` draws one")
    id_field: str | None = Field(None, description="column with a stable row id (else the row number)")
    answer_field: str | None = Field(
        None, description="column with gold answers (an object, or a label / faq id); used by eval and the dataset teacher"
    )
    split: SplitConfig = Field(default_factory=SplitConfig, description="how eval rows are held out when there is no eval_path, and how both files are sampled when there is")
    logs: list[Path] | None = Field(
        None, description="request log directories written by `edge-runtime serve --log-dir` (relative to the recipe): "
        "each input the teacher answered there (escalated or shadow-sampled) becomes a training row with the "
        "teacher's answer, curated like the other rows; the student's own answers are never used. None: no logs")


# ---------------------------------------------------------------------------- teachers


class DatasetTeacher(Strict):
    """Answers already on disk: the data's `answer_field`, or a JSONL log of teacher responses."""

    kind: Literal["dataset"] = Field(..., description="dataset: no model is called; the answers are read from disk")
    responses: Path | None = Field(None, description="JSONL of {id|prompt, response} exported from a teacher")


class SynthesizeConfig(Strict):
    """The teacher writes new inputs from the data's rows as seeds; they are then labelled
    like any other row. Topics and personas spread them; classification targets cycle
    through the labels so the classes stay balanced."""

    count: int = Field(..., gt=0, description="how many new inputs to write")
    per_request: int = Field(5, gt=0, le=50, description="inputs asked for in one request")
    seeds_per_request: int = Field(3, gt=0, description="seed inputs shown as examples in each request")
    topics: list[str] = Field(default_factory=list, description="cycled through, one per request")
    personas: list[str] = Field(default_factory=list, description="cycled through, one per request")
    balance_labels: bool = Field(True, description="classification: ask for each label in turn")
    temperature: float = Field(1.0, ge=0, le=2, description="sampling temperature for writing inputs; 1.0 for variety "
                               "(labelling uses the teacher's own, usually 0)")
    max_tokens: int = Field(1024, gt=0, description="completion token limit per request; 1024 holds `per_request` inputs "
                            "of a few sentences each")
    seed: int = Field(0, description="random seed for choosing seed rows, topics and personas; fixed for reproducible runs")


class TeacherEndpointConfig(Strict):
    """One replica or region of an API teacher; `teacher.base_url` may list several."""

    url: str = Field(..., description="OpenAI-compatible base URL (usually ends in /v1)")
    weight: float = Field(1.0, gt=0, description="share of the work relative to the other endpoints: requests go "
                          "where outstanding requests / weight is lowest, so 2 gets twice the load of 1")
    max_concurrency: int | None = Field(None, gt=0, description="most requests in flight here at once (None: only "
                                        "teacher.concurrency bounds it); e.g. the replica's batch slots")
    rpm: int | None = Field(None, gt=0, description="requests per minute allowed here (None: no limit of its own)")
    tpm: int | None = Field(None, gt=0, description="tokens per minute allowed here, prompt + completion "
                            "(None: no limit of its own)")
    api_key_env: str | None = Field(None, description="environment variable with this endpoint's key "
                                    "(None: teacher.api_key_env)")


# one URL, or a list of endpoints: the discriminator reports only the errors of the form given
# (their tags are left out of error paths, like the teacher kinds)
_URL_FORMS = ("one URL", "endpoints")
BaseUrl = Annotated[
    Union[Annotated[str, Tag(_URL_FORMS[0])], Annotated[list[TeacherEndpointConfig], Tag(_URL_FORMS[1])]],
    Discriminator(lambda v: _URL_FORMS[1] if isinstance(v, list) else _URL_FORMS[0]),
]


class PrivacyConfig(Strict):
    """What may leave the premises when the teacher is an API (edge_runtime/privacy.py). A
    teacher counts as remote when its base_url's host is not in `local_hosts`."""

    mask: bool = Field(PRIVACY_DEFAULTS["mask"], description="replace PII (emails, Luhn-valid cards, mainland "
                       "resident IDs with a valid check digit, mainland mobiles, phone numbers) with placeholders such "
                       "as [PHONE_1] before a request goes to a remote teacher, and put the values back into its "
                       "answer; on by default because nothing should leave the premises unmasked unless asked")
    local_only: bool = Field(PRIVACY_DEFAULTS["local_only"], description="refuse, at validate time, a teacher whose "
                             "host is not in local_hosts (for data that must never leave); off by default because "
                             "most recipes label with an API teacher")
    local_hosts: list[str] = Field(default_factory=lambda: list(PRIVACY_DEFAULTS["local_hosts"]), description=
                                   "teacher hosts on the premises: names, addresses or networks such as 10.0.0.0/8; "
                                   "default loopback only, the one address certainly local (list your vLLM host)")
    audit_content: bool = Field(PRIVACY_DEFAULTS["audit_content"], description="also write what was sent (masked) "
                                "into runs/<recipe>/teacher-audit.jsonl; off by default: the sha256 proves what was "
                                "sent without making the audit log a copy of the data")


class OpenAITeacher(Strict):
    """Any OpenAI-compatible endpoint (DeepSeek, vLLM, SGLang, Ollama, llama.cpp server, gateways)."""

    kind: Literal["openai"] = Field(..., description="openai: any server that speaks the OpenAI chat completions API")
    base_url: BaseUrl = Field(
        ..., description="the endpoint's base URL (e.g. https://api.deepseek.com/v1 or http://localhost:8000/v1), or a "
        "list of URLs / endpoint objects (replicas, keys, regions) that share the work and stand in for one another; "
        "the first one names the cache")
    endpoint_cooldown_s: float = Field(30.0, gt=0, description="seconds a failing endpoint (connection error, 5xx, "
                                       "timeout) of a list is left out before one request probes it again; 30 s "
                                       "covers a replica restart without hammering it")
    model: str = Field(..., description="model name the endpoint serves (e.g. deepseek-chat); also picks known prices")
    api_key_env: str = Field("OPENAI_API_KEY", description="name of the environment variable holding the key")
    temperature: float = Field(0.0, ge=0, le=2, description="sampling temperature; 0 (greedy) gives the teacher's most "
                               "likely answer, the best label; raise it with samples > 1 so the votes differ")
    max_tokens: int = Field(512, gt=0, description="completion token limit per answer; 512 fits the shipped tasks' "
                            "JSON answers with room to spare (raise it for a reasoning model)")
    samples: int = Field(1, gt=0, description="self-consistency: answers per input, majority-voted")
    top_logprobs: int = Field(0, ge=0, le=20, description="classification only: ask the endpoint for this many "
                              "alternatives' log-probabilities per reply token (OpenAI `top_logprobs`, at most 20) and "
                              "keep the label distribution they spell as the row's soft label (the classifier student "
                              "trains on it); 0: off (votes of samples > 1 still give one). 20 sees the most "
                              "alternatives; reasoning models and some APIs return none, and the row keeps the votes")
    concurrency: int = Field(16, gt=0, description="requests in flight at once; 16 keeps a hosted API's latency "
                             "hidden (lower it for a local server that runs one request at a time)")
    requests_per_minute: int | None = Field(None, gt=0, description="client-side request rate limit (None: unlimited, "
                                            "the server's 429s and retries pace it)")
    tokens_per_minute: int | None = Field(None, gt=0, description="client-side limit on prompt + completion tokens per "
                                          "minute (None: unlimited)")
    timeout_s: float = Field(60.0, gt=0, description="seconds one request may take before it counts as timed out "
                             "and is retried; 60 covers a long answer from a busy endpoint")
    max_retries: int = Field(5, ge=0, description="retries of a failed request (timeouts, 429, 5xx) before the row is "
                             "reported as failed; 5 with the doubling backoff waits up to about 15 s in all")
    backoff_s: float = Field(0.5, gt=0, description="first retry backoff; doubles per attempt (capped at 30 s), full jitter")
    response_format: bool = Field(True, description="send the task's JSON schema as response_format")
    reasoning: Literal["drop", "keep"] = Field("drop", description="a reasoning model's thinking text: drop it, or keep it "
                                               "in teach/labelled.jsonl for inspection (the student never trains on it)")
    price_input_per_m: float | None = Field(None, ge=0, description="USD per million prompt tokens")
    price_output_per_m: float | None = Field(None, ge=0, description="USD per million completion tokens")
    max_cost_usd: float | None = Field(None, gt=0, description="USD budget for the teach stage: a request that could "
                                       "cross it is not sent and the stage stops, keeping what it has (None: no cap)")
    synthesize: SynthesizeConfig | None = Field(None, description="write new inputs from the data as seeds")
    privacy: PrivacyConfig = Field(default_factory=PrivacyConfig, description="masking, local_only and the audit "
                                   "log of every remote call")

    @field_validator("base_url", mode="before")
    @classmethod
    def _endpoint_list(cls, value: Any) -> Any:
        """Plain URLs in a list become endpoint objects; an empty list or a repeated URL is refused."""
        if not isinstance(value, list):
            return value
        if not value:
            raise ValueError("the list is empty; give one URL or at least one endpoint {url: ...}")
        items = [{"url": v} if isinstance(v, str) else v for v in value]
        urls = [str(i.get("url", "")).rstrip("/") for i in items if isinstance(i, dict)]
        odd = [u for u in urls if u and not u.startswith(("http://", "https://"))]
        if odd:
            raise ValueError(f"{odd[0]!r} is not an http(s) URL; give the base URL, e.g. http://10.0.0.5:8000/v1")
        twice = sorted({u for u in urls if u and urls.count(u) > 1})
        if twice:
            raise ValueError(f"{', '.join(twice)} is listed more than once; list each endpoint once "
                             "(give it a larger weight for a larger share)")
        return items


class LlamaCppTeacher(Strict):
    kind: Literal["llamacpp"] = Field(..., description="llamacpp: a local GGUF run in-process by llama.cpp")
    model: str = Field(..., description="path to a GGUF, or a model name the toolkit resolves offline")
    n_ctx: int = Field(4096, gt=0, description="context window in tokens; 4096 holds the prompt, few-shot examples and "
                       "the answer of the shipped tasks")
    temperature: float = Field(0.0, ge=0, le=2, description="sampling temperature; 0 (greedy) for the most likely label")
    max_tokens: int = Field(512, gt=0, description="completion token limit per answer")
    samples: int = Field(1, gt=0, description="self-consistency: answers per input, majority-voted")


class TransformersTeacher(Strict):
    kind: Literal["transformers"] = Field(..., description="transformers: a local Hugging Face model")
    model: str = Field(..., description="a preset name, an HF id or a local path")
    temperature: float = Field(0.0, ge=0, le=2, description="sampling temperature; 0 (greedy) for the most likely label")
    max_tokens: int = Field(512, gt=0, description="completion token limit per answer")
    samples: int = Field(1, gt=0, description="self-consistency: answers per input, majority-voted")


TeacherConfig = Annotated[
    Union[DatasetTeacher, OpenAITeacher, LlamaCppTeacher, TransformersTeacher], Field(discriminator="kind")
]
TEACHER_KINDS = ("dataset", "openai", "llamacpp", "transformers")

# ---------------------------------------------------------------------------- stages


class CurateConfig(Strict):
    dedup: bool = Field(True, description="drop exact and near-duplicate inputs (MinHash, see near_duplicate_threshold): "
                        "repeats overweight a few rows in training")
    near_duplicate_threshold: float = Field(0.9, gt=0, le=1, description="MinHash Jaccard above which rows are duplicates")
    decontaminate: bool = Field(True, description="drop training rows that overlap the eval split")
    ngram: int = Field(13, gt=0, description="n-gram size for decontamination")
    max_eval_overlap: float = Field(0.5, ge=0, le=1, description="drop a row when more than this fraction of its n-grams occur in the eval split")
    max_input_chars: int = Field(8000, gt=0, description="drop inputs longer than this many characters: a guard "
                                 "against pasted documents; rows too long in tokens are dropped later by "
                                 "student.training.max_seq_len")
    min_input_chars: int = Field(1, ge=1, description="drop inputs shorter than this (after stripping)")
    max_answer_chars: int | None = Field(None, gt=0, description="drop rows whose canonical answer JSON is longer")
    min_agreement: float = Field(0.0, ge=0, le=1, description="self-consistency agreement below which rows are dropped")
    minhash_perm: int = Field(128, ge=16, description="MinHash permutations for near-duplicate search")
    shingle_chars: int = Field(5, gt=0, description="character shingle size for near-duplicate search")
    shingle_chars_cjk: int = Field(2, gt=0, description="the shingle size for text that is mostly Chinese characters "
                                   "(on 50-character Chinese FAQ texts with one small edit, 2 finds 79% at Jaccard >= 0.9, "
                                   "5 finds 42%; distinct texts stay below 0.2)")
    pii_mask: list[Literal["email", "phone", "card", "iban", "ip", "id"]] = Field(
        default_factory=list, description="PII kinds to mask in inputs and answers alike (e.g. [email, phone]); "
        "phone includes mainland mobiles and numbers after 电话/手机/联系方式/传真/座机, card includes UnionPay (Luhn), "
        "id is a Chinese resident ID number with a valid check digit, birth date and region"
    )
    index_queries: bool = Field(
        False, description="faq tasks: attach each kept training query to the FAQ entry it was labelled with, as a "
        "known phrasing that retrieval indexes; writes curate/knowledge_base.jsonl, which training, eval and the "
        "bundle use (each training prompt leaves its own query out of the index)")


class LoraConfig(Strict):
    r: int = Field(16, gt=0, description="LoRA rank: the width of each low-rank update; 16 is the presets' suggestion, "
                   "enough for a narrow task at a few MB of adapter")
    alpha: int = Field(32, gt=0, description="LoRA scaling numerator (the update is scaled by alpha / r); 2 x r is the "
                       "usual choice")
    dropout: float = Field(0.05, ge=0, lt=1, description="dropout on the LoRA input during training, a light "
                           "regulariser for small datasets")
    target_modules: str | list[str] = Field("all-linear", description="which layers get adapters: all-linear (every "
                                            "linear layer but the output head, as PEFT spells it) or a list of module "
                                            "names such as [q_proj, v_proj]")


class DistillationConfig(Strict):
    """Logit distillation from a local HF teacher that shares the student's tokenizer.

    The loss is `alpha * cross-entropy + (1 - alpha) * divergence`, both at the answer tokens
    only. A teacher with a different tokenizer is refused before any weights are loaded: logit
    distillation compares distributions over the same token ids."""

    teacher_model: str = Field(..., description="preset name, HF id or local path of the teacher (same tokenizer "
                               "as the student, e.g. gemma-3-1b for gemma-3-270m)")
    loss: Literal["forward_kl", "reverse_kl", "jsd"] = Field(
        "forward_kl", description="forward_kl: KL(teacher||student); reverse_kl: KL(student||teacher); "
        "jsd: TRL's generalized Jensen-Shannon divergence with `beta`")
    beta: float = Field(0.5, ge=0, le=1, description="jsd only: 0 is forward KL, 1 is reverse KL (TRL's GKD definition)")
    alpha: float = Field(0.5, ge=0, le=1, description="weight of the cross-entropy on the teacher-labelled answers")
    temperature: float = Field(1.0, gt=0, description="softmax temperature applied to both models' logits")


class FaqTrainingConfig(Strict):
    """How a faq task's training prompts list their candidates (distill/train/faq_views.py says why)."""

    shuffle: bool = Field(False, description="list the retrieved candidates in a random order in training prompts, so "
                          "the student must read them rather than take the first (eval and runtime keep the retriever's "
                          "order); off by default: gemma-3-270m then picked at chance (docs/results.md)")
    views: int = Field(1, ge=1, le=16, description="prompts per training row, each with its own candidate order "
                       "(2-3 with fewer epochs: more orders for the same steps)")
    none_when_missing: bool = Field(True, description='train "none" for a row whose answer is not among its '
                                    "candidates (the right answer given those candidates)")


class TrainingConfig(Strict):
    epochs: float = Field(2.0, gt=0, description="passes over the curated training rows (fractions allowed); 2 for a "
                          "few hundred rows")
    max_steps: int | None = Field(None, gt=0, description="stop after this many steps (overrides epochs)")
    batch_size: int = Field(4, gt=0, description="rows per forward pass on one device; 4 fits a 270M student on a CPU")
    grad_accum: int = Field(1, gt=0, description="batches whose gradients add up to one optimizer step (effective batch "
                            "= batch_size x grad_accum)")
    learning_rate: float | None = Field(None, gt=0, description="None: the student preset's suggestion")
    warmup_ratio: float = Field(0.05, ge=0, lt=1, description="fraction of the steps over which the learning rate "
                                "rises linearly from 0")
    max_seq_len: int = Field(1024, gt=0, description="tokens of prompt + answer; longer rows are dropped (and "
                             "reported), not truncated")
    val_fraction: float = Field(0.1, ge=0, lt=1, description="curated rows held out for validation loss")
    early_stopping_patience: int | None = Field(None, gt=0, description="stop after this many evaluations without "
                                                "a better validation loss (None: train for all epochs)")
    gradient_checkpointing: bool = Field(False, description="recompute activations in the backward pass: less memory, "
                                         "one extra forward pass of time; off since a small student fits without it")
    loss_on_answer_only_head: bool = Field(True, description="compute the output layer only at answer tokens")
    eval_steps: int | None = Field(None, gt=0, description="evaluate and checkpoint every N steps (None: about 4 times a run)")
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto", description="auto: bf16 on a GPU that has it, fp32 on CPU; bf16 on CPU uses autocast"
    )
    seed: int = Field(0, description="random seed of initialisation, shuffling and the validation split")
    distillation: DistillationConfig | None = Field(
        None, description="also match a local teacher's token distributions (logit distillation); None: plain SFT")
    faq: FaqTrainingConfig | None = Field(
        None, description="faq tasks: candidate order and \"none\" labels in training prompts (None: the defaults)")


class RetrieverConfig(Strict):
    """A faq student as a query/entry embedder fused with BM25 (distill/train/retriever.py says how)."""

    unanswerable_rate: float = Field(0.05, ge=0, lt=1, description="the share of queries you expect no FAQ entry to "
                                     "answer: the prior with which abstention (\"none\") is fitted on the validation "
                                     "split; higher abstains more often")
    hard_negatives: int = Field(3, ge=0, le=32, description="BM25's best wrong entries per training query, one drawn "
                                "per step as a hard negative beside the batch's other entries (0: in-batch only)")
    temperature: float = Field(0.05, gt=0, le=1, description="InfoNCE temperature on cosine similarities (0.05 is the "
                               "usual choice for contrastive text embedders)")
    rrf_k: int = Field(60, ge=1, description="reciprocal rank fusion constant (Cormack et al. 2009: 60)")


# student.head when the recipe leaves it out, per task kind: measured choices (docs/results.md,
# "Task heads"); extraction always generates.
HEAD_DEFAULTS = {"extraction": "generate", "classification": "generate", "faq": "generate"}


class HeadRule(NamedTuple):
    """What a student.head other than generate asks of the recipe: a task it answers (`answers`;
    `tasks` says which, `{kind}` being task.kind) and student.method lora; it ships its merged
    body plus `ships`, so no `<type>+lora` quantize type."""

    answers: Callable[[TaskSpec], bool]
    tasks: str
    ships: str


HEAD_RULES = {
    "classifier": HeadRule(lambda task: task.kind == "classification", "classification tasks; task.kind is {kind!r}",
                           "the head file"),
    "retriever": HeadRule(lambda task: task.kind == "faq" and bool(task.knowledge_base),
                          "faq tasks with task.knowledge_base", "retriever.npz"),
}


class StudentConfig(Strict):
    model: str = Field("gemma-3-270m", description="a preset name, an HF id or a local path")
    method: Literal["lora", "qlora", "full"] = Field("lora", description="lora: adapters on frozen weights; qlora: "
                                                     "the same on a 4-bit NF4 base (GPU only, less memory); full: every "
                                                     "weight (the most memory)")
    head: Literal["generate", "classifier", "retriever"] | None = Field(
        None, description="how the student answers: generate (JSON text, token by token, constrained to the task's "
        "schema), classifier (classification only: a linear head on the final hidden state scores every label "
        "in one forward pass and gives a calibrated distribution; the device runs the GGUF body in llama.cpp "
        "(one prompt-evaluation pass, the final hidden state tapped) plus the head with numpy) or retriever (faq with a knowledge base only: the body embeds "
        "queries and entries, fused with BM25, \"none\" below a calibrated probability; see student.retriever). "
        "None: the task kind's default (HEAD_DEFAULTS)")
    lora: LoraConfig = Field(default_factory=LoraConfig, description="the adapters (lora and qlora methods)")
    init_adapter: Path | None = Field(
        None, description="continue from this LoRA adapter folder (a previous run's train/adapter, relative to the "
        "recipe) instead of a fresh LoRA: the student keeps what it learnt and adds what the new rows (e.g. "
        "data.logs) teach, in fewer steps; its r, alpha and target modules apply, `lora` is ignored; a classifier "
        "student (student.head: classifier) continues its trained head too. None: fresh")
    training: TrainingConfig = Field(default_factory=TrainingConfig, description="the optimisation")
    retriever: RetrieverConfig = Field(default_factory=RetrieverConfig, description="student.head: retriever only: "
                                       "negatives, temperature, fusion and the expected unanswerable rate")


class EvalConfig(Strict):
    predictors: list[Literal["teacher", "base", "student", "gguf"]] = Field(
        default_factory=lambda: ["teacher", "base", "student", "gguf"],
        description="what is evaluated: the teacher's answers, the untrained base, the trained HF student and each "
        "quantized GGUF; all four by default so the report shows what training and quantization each did",
    )
    max_examples: int | None = Field(None, gt=0, description="evaluate only the first N eval rows (None: all)")
    max_new_tokens: int = Field(layout.MAX_NEW_TOKENS, gt=0, description="answer length limit in tokens, also the "
                                "bundle's generation limit; 160 fits the shipped tasks' JSON answers")
    requests_per_day: int = Field(100_000, gt=0, description="volume for the monthly cost table")
    bootstrap_samples: int = Field(1000, ge=0, description="bootstrap resamples for the 95% confidence intervals "
                                   "(0: none); 1000 is the usual count for stable bounds and takes well under a second")
    hardware_usd_per_hour: float | None = Field(
        None, gt=0, description="price of the self-hosted device per hour (None: the target profile's default)"
    )
    teacher_price_input_per_m: float = Field(
        0.27, ge=0, description="USD per million prompt tokens for a teacher without prices (dataset: the logged model's; "
        "default: deepseek-chat list price)"
    )
    teacher_price_output_per_m: float = Field(1.10, ge=0, description="USD per million completion tokens, likewise")
    hybrid_thresholds: list[float] = Field(
        default_factory=lambda: [0.0, 0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 0.99],
        description="confidence thresholds below which the hybrid setup asks the teacher",
    )


class QuantizeConfig(Strict):
    types: list[QuantizeType] = Field(
        default_factory=lambda: ["q4_k_m"],
        description="GGUF types; `<type>+lora` quantizes the base alone and keeps the LoRA as an F16 adapter "
        "(needed when the base was itself dequantized from a quantized GGUF, as the offline gemma-3-270m is)",
    )
    embedding_type: EmbeddingType | None = Field(
        None, description="type of the token embedding / tied output tensor (None: llama.cpp's choice per type); "
        "in small models with a large vocabulary it sets the file size"
    )
    imatrix: bool = Field(layout.IMATRIX, description="compute an importance matrix from the task's training prompts "
                          "and use it for the low-bit types that take one; off by default: it costs a pass over the "
                          "data, and q8_0 does not take one")
    quality_floor: float = Field(layout.QUALITY_FLOOR, gt=0, le=1, description="fraction of the F16 student's metric to keep")


class TargetConfig(Strict):
    profile: str = Field(layout.PROFILE, description="the device profile the bundle is packed and fit-checked for "
                         "(edge_runtime/profiles.yaml or your own file); router-8gb, the smallest shipped (8 GB)")
    n_ctx: int = Field(layout.N_CTX, gt=0, description="context window in tokens the device serves with; 2048 holds "
                       "the shipped tasks' prompts and answers and sizes the KV cache in the fit check")
    parallel: int = Field(layout.PARALLEL, gt=0, description="decoding slots served at once (each has its own KV "
                          "cache of n_ctx); 1 for the smallest memory")
    confidence_threshold: float = Field(layout.CONFIDENCE_THRESHOLD, ge=0, le=1, description="below it, the runtime escalates")


class Recipe(Strict):
    name: str = Field("", description="run name; defaults to the file name")
    task: TaskSpec = Field(..., description="what the model reads and answers; shared by every stage and the bundle")
    data: DataConfig = Field(..., description="the inputs (and gold answers, if any)")
    teacher: TeacherConfig = Field(default_factory=lambda: DatasetTeacher(kind="dataset"),
                                   description="what labels the inputs, chosen by `kind`")
    curate: CurateConfig = Field(default_factory=CurateConfig, description="filters between teacher and training")
    student: StudentConfig = Field(default_factory=StudentConfig, description="the small model and how it trains")
    eval: EvalConfig = Field(default_factory=EvalConfig, description="what is compared, and the cost figures")
    quantize: QuantizeConfig = Field(default_factory=QuantizeConfig, description="the GGUF types produced")
    target: TargetConfig = Field(default_factory=TargetConfig, description="the device and how it serves")

    @model_validator(mode="after")
    def _consistent(self) -> "Recipe":
        if self.teacher.kind == "dataset" and self.teacher.responses is None and not self.data.answer_field:
            raise ValueError("teacher.kind 'dataset' needs data.answer_field or teacher.responses")
        if self.teacher.kind == "openai":
            privacy = self.teacher.privacy
            bad = check_local_hosts(privacy.local_hosts)
            if bad:
                raise ValueError("teacher.privacy.local_hosts: " + "; ".join(bad))
            remote = [strip_userinfo(u) for u in teacher_urls(self.teacher) if not is_local(u, privacy.local_hosts)]
            if privacy.local_only and remote:
                raise ValueError(f"teacher.privacy.local_only is true but teacher.base_url {', '.join(remote)} is not "
                                 f"on a local host (teacher.privacy.local_hosts: {privacy.local_hosts}); point the "
                                 f"teacher at a local server, add its host to local_hosts, or set local_only: false")
        rule = HEAD_RULES.get(self.student.head)
        if rule is not None:
            head = self.student.head
            if not rule.answers(self.task):
                raise ValueError(f"student.head: {head} is for {rule.tasks.format(kind=self.task.kind)} "
                                 f"(use student.head: generate)")
            if self.student.method != "lora":
                raise ValueError(f"student.head: {head} trains with student.method: lora")
            lora_types = [t for t in self.quantize.types if gguf_types.split_type(t)[1]]
            if lora_types:
                raise ValueError(f"quantize.types {lora_types}: a {head} student ships its merged body (plus "
                                 f"{rule.ships}); use plain types such as q8_0 or q4_k_m")
        if self.student.init_adapter is not None and (self.student.method == "full" or student_head(self) == "retriever"):
            raise ValueError("student.init_adapter continues a LoRA adapter (and a classifier's head): it needs "
                             "student.method lora or qlora and the generate or classifier head; remove it or change those")
        if self.curate.index_queries and not (self.task.kind == "faq" and self.task.knowledge_base):
            raise ValueError("curate.index_queries attaches training queries to a knowledge base: it needs a faq task "
                             "with task.knowledge_base; remove it or set those")
        return self


def teacher_urls(teacher: OpenAITeacher) -> list[str]:
    """Every endpoint URL of an `openai` teacher (`base_url` is one URL or a list)."""
    return [e.url for e in teacher.base_url] if isinstance(teacher.base_url, list) else [teacher.base_url]


def student_head(recipe: "Recipe") -> str:
    """The head the student trains and ships with: the recipe's, else the kind's default."""
    return recipe.student.head or HEAD_DEFAULTS[recipe.task.kind]


class RecipeError(ValueError):
    """Every problem with one recipe, each naming its field."""

    def __init__(self, path: Path | str, problems: list[str]):
        self.path, self.problems = Path(path), problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{path}: {len(problems)} problem(s) in the recipe:\n{lines}")


def _format_error(err: dict[str, Any]) -> str:
    loc = ".".join(str(p) for p in err["loc"] if not (isinstance(p, str) and p in (*TEACHER_KINDS, *_URL_FORMS)))
    kind, msg = err["type"], err["msg"]
    if kind == "extra_forbidden":
        msg = "unknown key (check the spelling; `distill validate` prints every allowed key with its default)"
    elif kind == "union_tag_invalid":
        got = err.get("input", {}).get("kind") if isinstance(err.get("input"), dict) else None
        msg = f"unknown {got!r}, expected one of {', '.join(TEACHER_KINDS)}"
        loc = f"{loc}.kind" if loc else "kind"
    elif kind == "union_tag_not_found":
        msg = f"missing `kind`, expected one of {', '.join(TEACHER_KINDS)}"
    elif kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        msg = msg.replace("Input should be", "must be")
    elif kind == "value_error":
        msg = msg.removeprefix("Value error, ")
    return f"{loc}: {msg}" if loc else msg


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> Recipe:
    """Load, validate and resolve a recipe file; raise RecipeError listing every problem.

    `overrides` are `dotted.key=value` strings (YAML values) applied before validation,
    for tests and quick experiments: `student.training.max_steps=2`.
    """
    path = Path(path)
    if not path.is_file():
        raise RecipeError(path, [f"file not found: {path} (give the path to a recipe YAML, e.g. recipes/quickstart.yaml)"])
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise RecipeError(path, [f"not valid YAML{where}: {getattr(exc, 'problem', exc)}"]) from None
    if raw is None:
        raise RecipeError(path, ["the file is empty: a recipe needs at least `task` and `data` sections"])
    if not isinstance(raw, dict):
        raise RecipeError(path, [f"a recipe is a YAML mapping of sections, got a {type(raw).__name__}"])
    for item in overrides or []:
        _apply_override(raw, item, path)
    raw.setdefault("name", path.stem)
    try:
        recipe = Recipe.model_validate(raw)
    except ValidationError as exc:
        raise RecipeError(path, [_format_error(e) for e in exc.errors()]) from None
    problems = _resolve_paths(recipe, path.parent)
    if problems:
        raise RecipeError(path, problems)
    return recipe


def _apply_override(raw: dict, item: str, path: Path) -> None:
    if "=" not in item:
        raise RecipeError(path, [f"override {item!r} must look like section.key=value"])
    key, value = item.split("=", 1)
    node = raw
    parts = key.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise RecipeError(path, [f"override {item!r}: {part} is not a section"])
    node[parts[-1]] = yaml.safe_load(value)


def _resolve_paths(recipe: Recipe, base: Path) -> list[str]:
    """Make data paths absolute (relative to the recipe file) and check they exist."""
    problems = []
    checks = [("data.path", recipe.data, "path"), ("data.eval_path", recipe.data, "eval_path")]
    if recipe.teacher.kind == "dataset":
        checks.append(("teacher.responses", recipe.teacher, "responses"))
    for label, obj, attr in checks:
        value = getattr(obj, attr)
        if value is None:
            continue
        resolved = value if value.is_absolute() else (base / value).resolve()
        setattr(obj, attr, resolved)
        if label == "data.path" and resolved.is_dir():
            continue  # a folder of images, read through OCR
        if not resolved.is_file():
            problems.append(f"{label}: file not found: {resolved}")
        elif resolved.suffix.lower() not in (".jsonl", ".csv", ".json"):
            problems.append(f"{label}: unsupported format {resolved.suffix!r}; use .jsonl or .csv")
    for i, logdir in enumerate(recipe.data.logs or []):
        resolved = logdir if logdir.is_absolute() else (base / logdir).resolve()
        recipe.data.logs[i] = resolved
        if not resolved.is_dir():
            problems.append(f"data.logs[{i}]: no such log directory: {resolved} (`edge-runtime serve --log-dir DIR` writes one)")
    if recipe.student.init_adapter is not None:
        adapter = recipe.student.init_adapter
        adapter = recipe.student.init_adapter = adapter if adapter.is_absolute() else (base / adapter).resolve()
        if not (adapter / "adapter_config.json").is_file():
            problems.append(f"student.init_adapter: no LoRA adapter at {adapter} (a run writes one to runs/<recipe>/train/adapter)")
    problems += recipe.task.attach_knowledge_base(base)  # faq: resolve the KB, fill faq_ids
    if recipe.task.language == "auto":  # decided once, here, on the data too: the bundle stores it
        from distill.data.io import input_sample

        recipe.task.resolve_language(input_sample(recipe.data.path, recipe.task))
    return problems


def dump_resolved(recipe: Recipe) -> str:
    """The recipe with every default filled in, as YAML."""
    return yaml.safe_dump(recipe.model_dump(mode="json"), sort_keys=False, allow_unicode=True)
