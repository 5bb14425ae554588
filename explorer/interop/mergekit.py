"""mergekit YAML configs in and out: a config is parsed into a `Plan` (method, base, experts with their parameters),
which `mergekit_merge` runs tensor by tensor. What the plan cannot honour is refused in one line naming the key."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

Setting = Union[float, bool, list]  # a value, or a gradient: a list of numbers spread over the layers

TOP_KEYS = ("merge_method", "base_model", "models", "parameters", "dtype", "out_dtype")
REFUSED = {"slices": "layer slices are not supported; list whole models under models:",
           "modules": "per-module configs are not supported; list whole models under models:",
           "tokenizer_source": "tokenizers are not merged: the base model's tokenizer files are copied",
           "tokenizer": "tokenizers are not merged: the base model's tokenizer files are copied",
           "chat_template": "chat templates are not set: the base model's tokenizer files are copied"}
DTYPES = ("float16", "bfloat16", "float32")
GRADIENT = ("weight", "density", "gamma", "epsilon")  # parameters that may be lists (a gradient over the layers)


@dataclass(frozen=True)
class Spec:
    """A mergekit method: its sparsification, whether it elects signs (TIES), and its defaults."""

    sparsify: str | None  # None, "magnitude", "random", "magnitude_outliers", "della"
    consensus: bool
    normalize: bool
    rescale: bool
    linear: bool = False  # `linear` averages the models themselves, not task vectors

    def globals(self) -> dict[str, Any]:
        """The global (merge-wide) parameters and their defaults."""
        if self.linear:
            return {"normalize": self.normalize}
        return {"int8_mask": False, "normalize": self.normalize, "rescale": self.rescale, "lambda": 1.0}

    def per_model(self) -> dict[str, Any]:
        """The per-model (tensor) parameters and their defaults (None: required)."""
        if self.linear:
            return {"weight": None}
        extra = {"magnitude_outliers": {"gamma": 0.01}, "della": {"epsilon": 0.15}}.get(self.sparsify or "", {})
        return {"weight": None, "density": 1.0, **extra}


SPECS = {"linear": Spec(None, False, True, False, linear=True),
         "task_arithmetic": Spec(None, False, False, False),
         "ties": Spec("magnitude", True, True, False),
         "dare_ties": Spec("random", True, False, True),
         "dare_linear": Spec("random", False, False, True),
         "breadcrumbs": Spec("magnitude_outliers", False, False, False),
         "breadcrumbs_ties": Spec("magnitude_outliers", True, False, False),
         "della": Spec("della", True, True, True),
         "della_linear": Spec("della", False, False, True)}


@dataclass
class Plan:
    """A parsed mergekit config: `models` are (reference, own parameters) in order; `parameters` are global."""

    method: str
    base_model: str | None
    models: list[tuple[str, dict[str, Setting]]]
    parameters: dict[str, Setting] = field(default_factory=dict)
    dtype: str | None = None
    out_dtype: str | None = None

    @property
    def spec(self) -> Spec:
        return SPECS[self.method]

    def inputs(self) -> list[str]:
        """The models whose tensors are merged: every listed model, the base added for linear (as mergekit does)
        and left out for task-vector methods (its delta is zero)."""
        names = [name for name, _ in self.models]
        if self.spec.linear:
            return names + ([self.base_model] if self.base_model and self.base_model not in names else [])
        return [n for n in names if n != self.base_model]

    def option(self, name: str) -> Any:
        """A global parameter's value, or the method's default."""
        return self.parameters.get(name, self.spec.globals()[name])

    def setting(self, model: str, name: str) -> Setting | None:
        """A model's parameter as written (its own, else the global one, else the default; None: not given)."""
        own = dict(self.models).get(model, {})
        return own.get(name, self.parameters.get(name, self.spec.per_model()[name]))

    def to_config(self) -> dict[str, Any]:
        """The mergekit config this plan stands for (keys that were not given are left out)."""
        out: dict[str, Any] = {"merge_method": self.method}
        if self.base_model:
            out["base_model"] = self.base_model
        out["models"] = [{"model": n, **({"parameters": dict(p)} if p else {})} for n, p in self.models]
        for key in ("parameters", "dtype", "out_dtype"):
            if getattr(self, key):
                out[key] = dict(self.parameters) if key == "parameters" else getattr(self, key)
        return out

    def to_yaml(self) -> str:
        import yaml

        return yaml.safe_dump(self.to_config(), sort_keys=False)


def _fail(key: str, problem: str) -> ValueError:
    return ValueError(f"mergekit config: {key}: {problem}")


def read_text(source: str | Path) -> str:
    """The YAML text of `source`: a path to a .yml/.yaml file, or the YAML text itself."""
    if isinstance(source, Path) or ("\n" not in source and source.rstrip().endswith((".yml", ".yaml"))):
        path = Path(source).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"mergekit config {str(path)!r} does not exist")
        return path.read_text()
    return source


def parse_config(source: str | Path) -> Plan:
    """Parse a mergekit YAML (a path or the text) into a Plan; anything it cannot honour raises one ValueError."""
    import yaml

    try:
        raw = yaml.safe_load(read_text(source))
    except yaml.YAMLError as err:
        raise ValueError(f"mergekit config is not valid YAML ({str(err).splitlines()[0]})") from None
    if not isinstance(raw, dict):
        raise ValueError("mergekit config must be a mapping with merge_method and models")
    for key in raw:
        if key in REFUSED:
            raise _fail(key, REFUSED[key])
        if key not in TOP_KEYS:
            raise _fail(key, f"unknown key; explorer reads {', '.join(TOP_KEYS)}")
    method = raw.get("merge_method")
    if method not in SPECS:
        raise _fail("merge_method", f"{method!r} is not supported; use one of {', '.join(SPECS)}")
    spec = SPECS[method]
    base = _reference(raw.get("base_model"), "base_model") if raw.get("base_model") is not None else None
    plan = Plan(method, base, _models(raw.get("models"), spec), _parameters(raw.get("parameters"), spec, "parameters"),
                _dtype(raw, "dtype"), _dtype(raw, "out_dtype"))
    _check_inputs(plan)
    return plan


def _reference(value: Any, key: str) -> str:
    """A model reference: a local folder or a hub id, as a string (LoRA `a+b` and dict forms are refused)."""
    if not isinstance(value, str) or not value.strip():
        raise _fail(key, f"{value!r} is not a model reference; write a folder path or a Hugging Face id")
    if "+" in value:
        raise _fail(key, f"{value!r} applies a LoRA adapter (model+lora), which is not supported; merge the adapter "
                    "into its model first")
    return value.strip()


def _models(value: Any, spec: Spec) -> list[tuple[str, dict[str, Setting]]]:
    if not isinstance(value, list) or not value:
        raise _fail("models", "give a list of models, each as {model: <path or id>, parameters: {...}}")
    out = []
    for i, entry in enumerate(value):
        key = f"models[{i}]"
        if not isinstance(entry, dict) or "model" not in entry:
            raise _fail(key, "each entry needs model: <path or id>")
        extra = sorted(set(entry) - {"model", "parameters"})
        if extra:
            raise _fail(f"{key}.{extra[0]}", "unknown key; an entry has model and parameters")
        name = _reference(entry["model"], f"{key}.model")
        if name in dict(out):
            raise _fail(f"{key}.model", f"{name!r} is listed twice")
        out.append((name, _parameters(entry.get("parameters"), spec, f"{key}.parameters", per_model=True)))
    return out


def _parameters(value: Any, spec: Spec, key: str, per_model: bool = False) -> dict[str, Setting]:
    """Validated parameters: per-model ones may be the method's tensor parameters, global ones those or its globals."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _fail(key, "parameters are a mapping of name: value")
    allowed = {**spec.per_model(), **({} if per_model else spec.globals())}
    out = {}
    for name, v in value.items():
        where = f"{key}.{name}"
        if name not in allowed:
            hint = "a global parameter: put it under the top-level parameters" if name in spec.globals() else \
                f"not a parameter of {'linear' if spec.linear else 'this method'} (it takes {', '.join(allowed)})"
            raise _fail(where, hint)
        out[name] = _value(v, where, name in GRADIENT, isinstance(spec.globals().get(name), bool))
    return out


def _value(v: Any, where: str, gradient: bool, boolean: bool) -> Setting:
    if isinstance(v, list):
        if any(isinstance(e, dict) for e in v):
            raise _fail(where, "conditional values (filter:/value: per tensor name) are not supported; give one value")
        if not gradient or not v or not all(isinstance(e, (int, float)) and not isinstance(e, bool) for e in v):
            raise _fail(where, "a list is a gradient of numbers, allowed for weight, density, gamma and epsilon")
        return [float(e) for e in v]
    if boolean:
        if not isinstance(v, bool):
            raise _fail(where, f"{v!r} is not true or false")
        return v
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise _fail(where, f"{v!r} is not a number")
    return float(v)


def _dtype(raw: dict, key: str) -> str | None:
    value = raw.get(key)
    if value is None:
        return None
    name = str(value).removeprefix("torch.")
    if name not in DTYPES:
        raise _fail(key, f"{value!r} is not supported; use one of {', '.join(DTYPES)}")
    return name


def _check_inputs(plan: Plan) -> None:
    """Refuse what would fail mid-merge: no base for task vectors, nothing to merge, a model without a weight."""
    if not plan.spec.linear and not plan.base_model:
        raise _fail("base_model", f"{plan.method} merges task vectors and needs base_model")
    if not plan.inputs():
        raise _fail("models", "list at least one model besides the base")
    for name in plan.inputs():
        if plan.setting(name, "weight") is None:
            listed = [n for n, _ in plan.models]
            where = f"models[{listed.index(name)}]" if name in listed else "parameters.weight"
            raise _fail(where, f"{name!r} has no weight; give it parameters: {{weight: ...}} or a global weight")
