"""The recipe schema: one YAML file describes a whole fine-tuning run.

Both sides use this module: the laptop validates a recipe before renting anything, the pod validates the
same file before training. It imports only pydantic and yaml, so `podtune --help` stays fast.
Every field has a description (a test checks it); `podtune schema` prints the JSON Schema.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

BUILTIN_TINY = "builtin:tiny-llama"
HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
RECIPE_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{0,39}$")
# Values that end up in the RunPod GraphQL query, which the SDK interpolates without escaping.
SAFE_TEXT = re.compile(r"^[A-Za-z0-9 ._:/@+-]*$")
LOCAL_DATA_SUFFIXES = (".json", ".jsonl")
# Host names, IPv4/IPv6 addresses and login names as ssh accepts them; never starting with `-`, which ssh would
# read as an option (`-oProxyCommand=...` runs a command on the laptop).
SSH_HOST = re.compile(r"^(?:[A-Za-z0-9_](?:[A-Za-z0-9._-]{0,252})|\[?[0-9A-Fa-f:.]+\]?)$")
SSH_USER = re.compile(r"^[A-Za-z_][A-Za-z0-9._-]{0,31}$")
DEFAULT_IMAGE = "runpod/pytorch:2.8.0-py3.11-cuda12.8.1-cudnn-devel-ubuntu22.04"
# torch.load before 2.6 runs code from a checkpoint (CVE-2025-32434), and transformers refuses it, which breaks
# checkpoint resume.
MIN_TORCH = (2, 6)

ALPACA_KO_TEMPLATE = (
    "아래에는 작업을 설명하는 지시 사항과 추가적인 컨텍스트를 제공하는 입력이 있습니다. "
    "요청을 적절하게 완료하는 응답을 작성하세요.\n\n"
    "### instruction:\n{instruction}\n\n### input:\n{input}\n\n### output:\n{output}"
)


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelSpec(_Spec):
    base: str = Field(description="Base model: a Hub id (`meta-llama/Llama-2-7b-hf`) or `builtin:tiny-llama`.")
    revision: str = Field("main", description="Hub revision (branch, tag or commit) of the base model.")
    trust_remote_code: bool = Field(False, description="Allow custom modelling code from the Hub repo.")

    @field_validator("base")
    @classmethod
    def _base_is_known(cls, value: str) -> str:
        if value != BUILTIN_TINY and not HUB_ID.match(value):
            raise ValueError(f"'{value}' is not a Hub id; write it as `owner/name` or use `{BUILTIN_TINY}`")
        return value

    @property
    def is_builtin(self) -> bool:
        return self.base == BUILTIN_TINY


class DatasetSpec(_Spec):
    source: str = Field(
        description="Hub dataset id (`heegyu/open-korean-instructions`) or a local .json/.jsonl file in the "
        "recipe's folder, relative to the recipe file; local files are uploaded with the run (data elsewhere: "
        "`--data PATH` on the command line)."
    )
    split: str = Field("train", description="Split to train on, with slicing: `train`, `train[:10%]`.")
    format: Literal["text", "alpaca", "chat"] = Field(
        description="`text`: one column of ready text. `alpaca`: instruction/input/output rendered with "
        "`prompt_template` and EOS appended. `chat`: messages rendered with the tokenizer's chat template."
    )
    text_column: str = Field("text", description="Column holding the text (format `text`).")
    prompt_template: str = Field(
        ALPACA_KO_TEMPLATE,
        description="Template for `alpaca`, with `{instruction}`, `{input}` and `{output}` placeholders.",
    )
    append_eos: bool = Field(True, description="Append the tokenizer's EOS token (without it the model never stops).")
    columns: dict[Literal["instruction", "input", "output"], str] = Field(
        default_factory=dict, description="Rename map from the alpaca roles to the dataset's column names."
    )
    system_prompt: str | None = Field(None, description="System message put before every conversation (format `chat`).")
    chat_template: Literal["tokenizer", "llama3"] = Field(
        "tokenizer", description="`tokenizer`: the base tokenizer's own template; `llama3`: the Llama-3 header template."
    )
    eval_fraction: float = Field(
        0.0, ge=0.0, lt=0.5, description="Share of records held out for evaluation (0 = no eval split)."
    )

    @field_validator("source")
    @classmethod
    def _local_source_stays_beside_the_recipe(cls, value: str) -> str:
        # A shared recipe must not be able to pick a file from the laptop (~/.runpod/config.toml) to upload.
        parts = value.replace("\\", "/").split("/")
        if value.startswith(("/", "~")) or ".." in parts:
            raise ValueError(
                "a recipe may only name local data in its own folder (no absolute path, `~` or `..`); put the "
                "file beside the recipe, or give it on the command line: podtune run RECIPE --data PATH")
        return value

    @model_validator(mode="after")
    def _template_has_placeholders(self) -> DatasetSpec:
        if self.format == "alpaca":
            missing = [p for p in ("{instruction}", "{output}") if p not in self.prompt_template]
            if missing:
                raise ValueError(f"prompt_template lacks {', '.join(missing)}; add them or set format: text")
        if self.system_prompt is not None and self.format != "chat":
            raise ValueError("system_prompt applies only to format: chat; set format: chat or remove system_prompt")
        return self

    @property
    def is_local(self) -> bool:
        return self.source.endswith(LOCAL_DATA_SUFFIXES) or self.source.startswith(("./", "../", "/"))


class QuantizationSpec(_Spec):
    load_in_4bit: bool = Field(True, description="Load the base in 4 bit with bitsandbytes (QLoRA). false = plain LoRA.")
    quant_type: Literal["nf4", "fp4"] = Field("nf4", description="4-bit data type.")
    double_quant: bool = Field(True, description="Quantize the quantization constants too (saves ~0.4 bit/param).")
    compute_dtype: Literal["auto", "float16", "bfloat16", "float32"] = Field(
        "auto", description="Matmul dtype; `auto` = bfloat16 where the GPU supports it, else float16 (float32 on CPU)."
    )


class LoraSpec(_Spec):
    r: int = Field(64, ge=1, le=1024, description="LoRA rank.")
    alpha: int = Field(16, ge=1, description="LoRA scaling numerator (scale = alpha / r).")
    dropout: float = Field(0.1, ge=0.0, lt=1.0, description="Dropout on the LoRA input.")
    bias: Literal["none", "all", "lora_only"] = Field("none", description="Which biases to train.")
    target_modules: Literal["default", "all-linear"] | list[str] = Field(
        "default", description="`default` (peft's per-architecture choice), `all-linear`, or a list of module names."
    )


class TrainingSpec(_Spec):
    epochs: float | None = Field(None, gt=0, description="Passes over the data. Set this or max_steps.")
    max_steps: int | None = Field(None, gt=0, description="Optimizer steps to run; overrides epochs.")
    batch_size: int = Field(4, ge=1, le=1024, description="Per-device batch size.")
    grad_accum: int = Field(1, ge=1, le=1024, description="Gradient accumulation steps.")
    optimizer: Literal[
        "paged_adamw_32bit", "paged_adamw_8bit", "adamw_torch", "adamw_8bit", "adamw_bnb_8bit", "sgd", "adafactor"
    ] = Field("paged_adamw_32bit", description="Optimizer name as transformers knows it.")
    learning_rate: float = Field(2e-4, gt=0, lt=1, description="Peak learning rate.")
    lr_scheduler: Literal["cosine", "linear", "constant", "constant_with_warmup"] = Field(
        "cosine", description="Learning-rate schedule."
    )
    warmup_ratio: float = Field(0.0, ge=0, lt=1, description="Share of steps spent warming up.")
    warmup_steps: int = Field(0, ge=0, description="Warm-up steps; overrides warmup_ratio when > 0.")
    weight_decay: float = Field(0.0, ge=0, lt=1, description="AdamW weight decay.")
    max_grad_norm: float = Field(1.0, gt=0, description="Gradient clipping norm.")
    gradient_checkpointing: bool = Field(True, description="Trade compute for activation memory.")
    packing: bool = Field(False, description="Pack several records into each max_seq_length sequence.")
    max_seq_length: int | None = Field(
        None, ge=16, le=131072, description="Token limit per sequence (capped at the model's own limit); null = model limit."
    )
    group_by_length: bool = Field(False, description="Batch records of similar length together.")
    logging_steps: int = Field(5, ge=1, description="Log loss every N steps.")
    save_strategy: Literal["epoch", "steps", "no"] = Field("epoch", description="When to write checkpoints.")
    save_steps: int | None = Field(None, ge=1, description="Checkpoint every N steps (save_strategy: steps).")
    seed: int = Field(42, description="Random seed.")
    precision: Literal["auto", "fp16", "bf16", "fp32"] = Field(
        "auto", description="Mixed precision; `auto` = bf16 if supported, else fp16 (fp32 on CPU)."
    )
    report_to: list[Literal["wandb", "tensorboard"]] = Field(
        default_factory=list, description="Experiment trackers; wandb needs WANDB_API_KEY on the laptop."
    )
    distributed: Literal["none", "ddp", "deepspeed_zero3"] = Field(
        "none",
        description="Multi-GPU strategy when compute.gpu_count > 1: `ddp` keeps a whole copy of the model on each "
        "GPU (simplest, fastest when it fits); `deepspeed_zero3` shards weights, gradients and optimizer state "
        "(the pod gets the deepspeed package). `plan` shows the per-GPU need under each.",
    )
    early_stopping_patience: int | None = Field(
        None, ge=1, description="Stop after N evaluations without improvement (needs dataset.eval_fraction > 0)."
    )

    @model_validator(mode="after")
    def _length_and_saving(self) -> TrainingSpec:
        if self.epochs is None and self.max_steps is None:
            raise ValueError("set training.epochs or training.max_steps")
        if self.save_strategy == "steps" and self.save_steps is None:
            raise ValueError("save_strategy is `steps` but save_steps is missing; set save_steps or use save_strategy: epoch")
        if self.save_steps is not None and self.save_strategy != "steps":
            raise ValueError("save_steps is set but save_strategy is not `steps`; set save_strategy: steps or remove save_steps")
        return self


class EvalSpec(_Spec):
    prompts: list[str] = Field(default_factory=list, description="Prompts answered by base and tuned model for the report.")
    max_new_tokens: int = Field(128, ge=1, le=8192, description="Tokens generated per sample answer.")
    temperature: float = Field(0.7, ge=0.0, le=5.0, description="Sampling temperature (0 = greedy).")
    top_p: float = Field(0.9, gt=0.0, le=1.0, description="Nucleus sampling threshold.")


class OutputSpec(_Spec):
    hub_repo: str | None = Field(None, description="Hub repo to push to (`user/name`); null = keep on the volume only.")
    private: bool = Field(True, description="Create the Hub repo private.")
    push_merged: bool = Field(True, description="Push the merged full model.")
    push_adapter: bool = Field(False, description="Push the LoRA adapter (under `adapter/` in the repo).")

    @field_validator("hub_repo")
    @classmethod
    def _repo_is_hub_id(cls, value: str | None) -> str | None:
        if value is not None and not HUB_ID.match(value):
            raise ValueError(f"'{value}' is not a Hub repo id; write it as `your-user/model-name`")
        return value


def image_torch_version(image: str) -> tuple[int, int] | None:
    """The torch version an image's tag names (`runpod/pytorch:2.4.0-...`, `...-torch280-...`), if it names one."""
    repo, _, tag = image.rpartition(":") if ":" in image.rsplit("/", 1)[-1] else (image, "", "")
    packed = re.search(r"torch(\d)(\d)(\d)", tag)
    if packed:
        return int(packed.group(1)), int(packed.group(2))
    leading = re.match(r"^(\d+)\.(\d+)", tag)
    if leading and "torch" in repo.rsplit("/", 1)[-1]:
        return int(leading.group(1)), int(leading.group(2))
    return None


class SshHostSpec(_Spec):
    host: str = Field(description="Host name or address of a machine you already have.")
    port: int = Field(22, ge=1, le=65535, description="SSH port.")
    user: str = Field("root", description="Login user.")
    key_path: str = Field("~/.ssh/id_ed25519", description="Private key file for that user.")
    usd_per_hour: float = Field(0.0, ge=0, description="What the machine costs you per hour, for the cost report.")
    workspace: str = Field("/workspace", description="Directory podtune may use on that machine.")
    python: str = Field(
        "python3",
        description="Interpreter on that machine (e.g. a conda env's bin/python); a venv is built from it only "
        "when it lacks the training libraries.",
    )

    @field_validator("host")
    @classmethod
    def _host_is_a_host(cls, value: str) -> str:
        if not SSH_HOST.match(value):
            raise ValueError("must be a host name or IP address (letters, digits, `.`, `-`, not starting with `-`)")
        return value

    @field_validator("user")
    @classmethod
    def _user_is_a_login(cls, value: str) -> str:
        if not SSH_USER.match(value):
            raise ValueError("must be a login name (letters, digits, `.`, `_`, `-`, starting with a letter or `_`)")
        return value

    @field_validator("python")
    @classmethod
    def _python_is_a_plain_path(cls, value: str) -> str:
        if not value or any(c.isspace() or c in "'\"$`;&|<>" for c in value):
            raise ValueError("must be an interpreter name or path without spaces or shell characters, e.g. python3")
        return value


class ComputeSpec(_Spec):
    provider: Literal["runpod", "ssh", "local"] = Field("runpod", description="Where to train.")
    gpu_types: list[str] = Field(
        default_factory=list,
        description="GPU types in order of preference (RunPod ids, e.g. `NVIDIA GeForce RTX 3090`); empty = cheapest that fits.",
    )
    gpu_count: int = Field(1, ge=1, le=8, description="GPUs in the pod.")
    cloud: Literal["secure", "community"] = Field(
        "secure",
        description="RunPod cloud tier. `secure`: RunPod's own datacenters (the default, since the pod receives your "
                    "Hub write token and gated weights); `community`: cheaper third-party hosts.",
    )
    volume_gb: int = Field(50, ge=10, le=4000, description="Persistent volume at /workspace (weights cache survives stop).")
    container_disk_gb: int = Field(20, ge=5, le=1000, description="Container disk (lost on stop).")
    image: str = Field(
        DEFAULT_IMAGE, description="Container image with CUDA torch >= 2.6 (older torch.load is unsafe and refused)."
    )
    max_hours: float = Field(24.0, gt=0, le=720, description="Hard limit on pod running time; the pod stops itself.")
    max_usd: float | None = Field(None, gt=0, description="Hard limit on spend at the pod's price; the pod stops itself.")
    stall_minutes: float = Field(15.0, gt=0, description="Stop when no training step completes for this long.")
    idle_after_finish_s: float = Field(0.0, ge=0, description="Seconds the pod may idle after the work is done.")
    ssh: SshHostSpec | None = Field(None, description="The host to use with provider `ssh`.")

    @field_validator("gpu_types")
    @classmethod
    def _gpu_names_are_plain(cls, value: list[str]) -> list[str]:
        for name in value:
            if not SAFE_TEXT.match(name):
                raise ValueError(f"GPU type '{name}' has characters RunPod ids never contain")
        return value

    @field_validator("image")
    @classmethod
    def _image_is_plain(cls, value: str) -> str:
        if not SAFE_TEXT.match(value) or " " in value:
            raise ValueError(f"image '{value}' is not a container image reference")
        torch = image_torch_version(value)
        if torch is not None and torch < MIN_TORCH:
            raise ValueError(
                f"image '{value}' has torch {torch[0]}.{torch[1]}: torch.load before 2.6 is unsafe (CVE-2025-32434) "
                f"and transformers refuses it, so checkpoint resume breaks; use {DEFAULT_IMAGE} or remove compute.image")
        return value

    @model_validator(mode="after")
    def _ssh_needs_host(self) -> ComputeSpec:
        if self.provider == "ssh" and self.ssh is None:
            raise ValueError("provider `ssh` needs compute.ssh with host, port, user and key_path")
        return self


class Recipe(_Spec):
    """A whole run: what to tune, on what data, how, where, and where the result goes."""

    name: str = Field(description="Short name: run ids and pod names start with it (lowercase, digits, `-`, `.`).")
    description: str = Field("", description="Free text shown in reports and the model card.")
    model: ModelSpec = Field(description="The base model.")
    dataset: DatasetSpec = Field(description="Training data and how each record becomes text.")
    quantization: QuantizationSpec = Field(default_factory=QuantizationSpec, description="4-bit loading (QLoRA).")
    lora: LoraSpec = Field(default_factory=LoraSpec, description="The LoRA adapter.")
    training: TrainingSpec = Field(description="Schedule and optimizer.")
    eval: EvalSpec = Field(default_factory=EvalSpec, description="Sample answers from base and tuned model.")
    output: OutputSpec = Field(default_factory=OutputSpec, description="Where the result goes.")
    compute: ComputeSpec = Field(default_factory=ComputeSpec, description="Where it runs and the limits on spend.")

    @field_validator("name")
    @classmethod
    def _name_is_plain(cls, value: str) -> str:
        if not RECIPE_NAME.match(value):
            raise ValueError(f"'{value}' must be 1-40 lowercase letters, digits, `-` or `.`, starting with a letter or digit")
        return value

    @model_validator(mode="after")
    def _cross_checks(self) -> Recipe:
        if self.training.early_stopping_patience and self.dataset.eval_fraction == 0:
            raise ValueError("training.early_stopping_patience needs an eval split; set dataset.eval_fraction (e.g. 0.05)")
        if self.compute.gpu_count > 1 and self.training.distributed == "none":
            raise ValueError("compute.gpu_count > 1 but training.distributed is `none`; set it to `ddp` or `deepspeed_zero3`")
        if self.output.hub_repo and not (self.output.push_merged or self.output.push_adapter):
            raise ValueError("output.hub_repo is set but nothing is pushed; set push_merged or push_adapter to true")
        return self


class RecipeError(Exception):
    """A recipe that cannot be used; `problems` are (field path, message) pairs ready to show a person."""

    def __init__(self, source: str, problems: list[tuple[str, str]], lines: dict[str, int] | None = None):
        self.source = source
        self.problems = problems
        self.lines = lines or {}  # field path -> its line in the YAML file, where the file has it
        shown = [f"{source}: {len(problems)} problem(s)"] + [
            f"  {path}" + (f" (line {self.lines[path]})" if path in self.lines else "") + f": {msg}"
            for path, msg in problems]
        super().__init__("\n".join(shown))


def load_recipe(path: str | Path) -> Recipe:
    """Read and validate a recipe file; raise RecipeError naming each bad field."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RecipeError(str(path), [("(file)", "no such file; check the path (recipes live in recipes/)")]) from None
    except (IsADirectoryError, UnicodeDecodeError) as exc:
        raise RecipeError(str(path), [("(file)", f"not a readable UTF-8 YAML file ({exc.__class__.__name__})")]) from None
    return parse_recipe(text, source=str(path))


class _UniqueKeys:
    """safe_load, except that a key given twice in one mapping is an error: YAML would keep the last one silently,
    and a recipe with `max_hours` twice would run under the limit its author did not mean."""

    def construct_mapping(self, node, deep=False):
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"'{key}' is given twice (first on line {seen[key]}); keep one", key_node.start_mark)
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)  # type: ignore[misc]


class _UniqueKeyLoader(_UniqueKeys, yaml.SafeLoader):
    pass


# libyaml's parser, where PyYAML has it: ~0.6 ms a recipe instead of ~5 ms (a run parses one three times). Its
# errors are worded differently, so a text it rejects is parsed again by the pure-Python one, whose words are shown.
_FastLoader: Any = (type("_UniqueKeyCLoader", (_UniqueKeys, yaml.CSafeLoader), {})
                    if getattr(yaml, "__with_libyaml__", False) else _UniqueKeyLoader)


def parse_recipe(text: str, *, source: str = "recipe") -> Recipe:
    try:
        try:
            data = yaml.load(text, Loader=_FastLoader)  # noqa: S506 - a SafeLoader subclass
        except yaml.YAMLError:
            data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "(yaml)"
        raise RecipeError(source, [(where, f"not valid YAML: {getattr(exc, 'problem', exc)}")]) from None
    if not isinstance(data, dict):
        raise RecipeError(source, [("(top level)", "a recipe is a YAML mapping with name, model, dataset, training, ...")])
    try:
        return Recipe.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
        problems = [_describe(err) for err in errors]
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        lines = {path: line for (path, _), err in zip(problems, errors)
                 if (line := _line_of(root, [str(p) for p in err["loc"]])) is not None}
        raise RecipeError(source, problems, lines) from None


def _line_of(node: Any, loc: list[str]) -> int | None:
    """The YAML line of the deepest part of `loc` the file has: the field itself, or the section a missing one
    belongs in. None for problems about the whole file."""
    line = None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            found = next(((k, v) for k, v in node.value if str(getattr(k, "value", "")) == part), None)
            if found is None:
                break
            node, line = found[1], found[0].start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode) and part.isdigit() and int(part) < len(node.value):
            node = node.value[int(part)]
            line = node.start_mark.line + 1
        else:
            break
    return line


def _describe(err: Any) -> tuple[str, str]:
    loc = [str(p) for p in err["loc"]]
    path = ".".join(loc) or "(top level)"
    kind = err["type"]
    if kind == "extra_forbidden":
        known = _known_fields(loc[:-1])
        close = difflib.get_close_matches(loc[-1], known, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else f"; known fields here: {', '.join(sorted(known))}"
        return path, f"unknown field{hint}"
    if kind == "missing":
        return path, "required field is missing; add it (see `podtune schema`)"
    if kind in ("model_type", "dict_type"):
        # An emptied section reads as null; pydantic's wording ("instance of ModelSpec") means nothing to a person.
        model = _model_at(loc)
        needed = [n for n, f in model.model_fields.items() if f.is_required()] if model else []
        what = "is empty" if err.get("input") is None else f"must be a mapping of fields, not {err['input']!r}"
        fields = f"; it needs at least: {', '.join(needed)}" if needed else "; remove it or give it fields"
        return path, f"{what}{fields} (see `podtune schema`)"
    message = err["msg"].removeprefix("Value error, ")
    if "input" in err and kind not in ("model_type", "dict_type") and not isinstance(err["input"], dict):
        message += f" (got {err['input']!r})"
    return path, message


def _known_fields(loc: list[str]) -> list[str]:
    model = _model_at(loc)
    return list(model.model_fields) if model else []


def _model_at(loc: list[str]) -> type[BaseModel] | None:
    model: type[BaseModel] = Recipe
    for part in loc:
        field = model.model_fields.get(part)
        if field is None:
            return None
        inner = _model_in(field.annotation)
        if inner is None:
            return None
        model = inner
    return model


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def dump_recipe(recipe: Recipe) -> str:
    """YAML text of a recipe (the copy written into the run directory on the pod)."""
    return yaml.safe_dump(recipe.model_dump(mode="json"), allow_unicode=True, sort_keys=False)

