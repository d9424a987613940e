"""W&B sweep definitions, read and expanded without a W&B server.

The schema is W&B's (https://docs.wandb.ai/guides/sweeps/define-sweep-configuration): top-level ``method``
(``grid`` / ``random`` / ``bayes``), ``metric`` (``name``, ``goal``), ``parameters``, ``program``, ``command``,
optional ``name`` / ``description`` / ``run_cap`` / ``early_terminate``. A parameter is ``value``, ``values``
(with ``probabilities`` for random search), or a ``distribution`` with its bounds. ``command`` items are
literal strings or the macros ``${env}``, ``${interpreter}``, ``${program}``, ``${args}``,
``${args_no_hyphens}`` and ``${args_json}``, expanded as the W&B agent does. Locally we run ``grid`` and
``random``; ``bayes`` needs the W&B server (``wandb sweep`` + ``wandb agent``).
"""

from __future__ import annotations

import itertools
import json
import math
import random
import sys
from pathlib import Path
from typing import Any

import yaml

METHODS = ("grid", "random", "bayes")
TOP_LEVEL = {
    "method",
    "metric",
    "parameters",
    "program",
    "command",
    "name",
    "description",
    "run_cap",
    "early_terminate",
    "project",
    "entity",
}
# distribution -> required keys
DISTRIBUTIONS: dict[str, tuple[str, ...]] = {
    "constant": ("value",),
    "categorical": ("values",),
    "int_uniform": ("min", "max"),
    "uniform": ("min", "max"),
    "q_uniform": ("min", "max"),
    "log_uniform": ("min", "max"),  # bounds are exponents: exp(uniform(min, max))
    "log_uniform_values": ("min", "max"),
    "q_log_uniform_values": ("min", "max"),
    "inv_log_uniform_values": ("min", "max"),
    "normal": (),
    "log_normal": (),
    "q_normal": (),
}
PARAM_KEYS = {"value", "values", "probabilities", "distribution", "min", "max", "mu", "sigma", "q"}
DEFAULT_COMMAND = ["${env}", "${interpreter}", "${program}", "${args}"]


class SweepError(ValueError):
    """An invalid sweep definition; the message names the file and the key."""


def load_sweep(path: str | Path) -> dict[str, Any]:
    """Read and validate a sweep YAML file."""
    path = Path(path)
    if not path.is_file():
        raise SweepError(f"{path}: sweep file not found")
    config = yaml.safe_load(path.read_text())
    validate(config, str(path))
    return config


def validate(config: Any, where: str = "sweep") -> None:
    if not isinstance(config, dict):
        raise SweepError(f"{where}: a sweep definition is a mapping; got {type(config).__name__}")
    unknown = set(config) - TOP_LEVEL
    if unknown:
        raise SweepError(
            f"{where}: unknown top-level key(s) {sorted(unknown)}; expected a subset of {sorted(TOP_LEVEL)}"
        )
    if config.get("method") not in METHODS:
        raise SweepError(f"{where}: method must be one of {list(METHODS)}; got {config.get('method')!r}")
    metric = config.get("metric")
    if metric is not None:
        if not isinstance(metric, dict) or "name" not in metric:
            raise SweepError(f"{where}: metric needs a name, e.g. {{name: val/acc1, goal: maximize}}")
        if metric.get("goal", "minimize") not in ("minimize", "maximize"):
            raise SweepError(f"{where}: metric.goal must be minimize or maximize; got {metric['goal']!r}")
    elif config["method"] == "bayes":
        raise SweepError(f"{where}: method bayes needs a metric")
    params = config.get("parameters")
    if not isinstance(params, dict) or not params:
        raise SweepError(f"{where}: parameters must be a non-empty mapping of name -> specification")
    for name, spec in params.items():
        _validate_param(spec, f"{where}: parameters.{name}", config["method"])
    command = config.get("command", DEFAULT_COMMAND)
    if not isinstance(command, list) or not all(isinstance(c, str) for c in command):
        raise SweepError(f"{where}: command must be a list of strings")
    if "${program}" in command and not config.get("program"):
        raise SweepError(f"{where}: command uses ${{program}} but program is not set")


def _validate_param(spec: Any, where: str, method: str) -> None:
    if not isinstance(spec, dict):
        raise SweepError(f"{where}: expected a mapping with value, values or distribution; got {spec!r}")
    unknown = set(spec) - PARAM_KEYS
    if unknown:
        raise SweepError(f"{where}: unknown key(s) {sorted(unknown)}; expected a subset of {sorted(PARAM_KEYS)}")
    dist = _distribution(spec)
    if dist not in DISTRIBUTIONS:
        raise SweepError(f"{where}: unknown distribution {dist!r}; expected one of {sorted(DISTRIBUTIONS)}")
    for key in DISTRIBUTIONS[dist]:
        if key not in spec:
            raise SweepError(f"{where}: distribution {dist} needs {key!r}")
    if "values" in spec and (not isinstance(spec["values"], list) or not spec["values"]):
        raise SweepError(f"{where}: values must be a non-empty list")
    if "probabilities" in spec:
        p = spec["probabilities"]
        if not isinstance(p, list) or len(p) != len(spec.get("values", [])) or not math.isclose(sum(p), 1.0):
            raise SweepError(f"{where}: probabilities must list one weight per value and sum to 1")
    if "min" in spec and "max" in spec and spec["min"] > spec["max"]:
        raise SweepError(f"{where}: min {spec['min']} > max {spec['max']}")
    if method == "grid" and dist not in ("constant", "categorical"):
        raise SweepError(f"{where}: grid search needs value or values; distribution {dist} can only be sampled")


def _distribution(spec: dict) -> str:
    if "distribution" in spec:
        return spec["distribution"]
    if "values" in spec:
        return "categorical"
    if "value" in spec:
        return "constant"
    if "min" in spec and "max" in spec:  # W&B infers int_uniform for ints, uniform otherwise
        return "int_uniform" if all(isinstance(spec[k], int) for k in ("min", "max")) else "uniform"
    return "normal" if "mu" in spec or "sigma" in spec else "?"


def grid(parameters: dict[str, dict]) -> list[dict[str, Any]]:
    """Every combination of the parameters' values, in file order (the last parameter varies fastest)."""
    names = list(parameters)
    choices = [parameters[n]["values"] if "values" in parameters[n] else [parameters[n]["value"]] for n in names]
    return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*choices)]


def sample(spec: dict, rng: random.Random) -> Any:
    """One draw from a parameter specification (W&B's random-search semantics)."""
    dist = _distribution(spec)
    lo, hi = spec.get("min"), spec.get("max")
    mu, sigma, q = spec.get("mu", 0.0), spec.get("sigma", 1.0), spec.get("q", 1)
    if dist == "constant":
        return spec["value"]
    if dist == "categorical":
        return rng.choices(spec["values"], weights=spec.get("probabilities"))[0]
    if dist == "int_uniform":
        return rng.randint(lo, hi)
    if dist == "uniform":
        return rng.uniform(lo, hi)
    if dist == "q_uniform":
        return round(rng.uniform(lo, hi) / q) * q
    if dist == "log_uniform":
        return math.exp(rng.uniform(lo, hi))
    if dist == "log_uniform_values":
        return math.exp(rng.uniform(math.log(lo), math.log(hi)))
    if dist == "q_log_uniform_values":
        return round(math.exp(rng.uniform(math.log(lo), math.log(hi))) / q) * q
    if dist == "inv_log_uniform_values":
        return 1.0 / math.exp(rng.uniform(math.log(1.0 / hi), math.log(1.0 / lo)))
    if dist == "normal":
        return rng.gauss(mu, sigma)
    if dist == "log_normal":
        return math.exp(rng.gauss(mu, sigma))
    if dist == "q_normal":
        return round(rng.gauss(mu, sigma) / q) * q
    raise SweepError(f"cannot sample distribution {dist!r}")


def runs(config: dict[str, Any], *, max_runs: int | None = None, seed: int = 0) -> list[dict[str, Any]]:
    """The parameter sets a local agent runs: the grid (truncated to ``max_runs``), or ``max_runs`` random
    draws (default ``run_cap``, else 10)."""
    method, params = config["method"], config["parameters"]
    if method == "grid":
        combos = grid(params)
        return combos[:max_runs] if max_runs is not None else combos
    if method == "random":
        n = max_runs or config.get("run_cap") or 10
        rng = random.Random(seed)
        return [{name: sample(spec, rng) for name, spec in params.items()} for _ in range(n)]
    raise SweepError(
        f"method {method!r} needs the W&B sweep server's model of past runs; run it with `wandb sweep FILE` and"
        " `wandb agent SWEEP_ID`, or use grid/random locally"
    )


def format_value(value: Any) -> str:
    """A parameter value on the command line: strings as they are, everything else as JSON (true, 0.1, [1,2])."""
    return value if isinstance(value, str) else json.dumps(value)


def expand_command(
    config: dict[str, Any], params: dict[str, Any], *, env: str = "/usr/bin/env", interpreter: str | None = None
) -> list[str]:
    """``command`` with the agent's macros replaced for one parameter set."""
    out: list[str] = []
    for item in config.get("command", DEFAULT_COMMAND):
        if item == "${env}":
            out.append(env)
        elif item == "${interpreter}":
            out.append(interpreter or sys.executable)
        elif item == "${program}":
            out.append(str(config["program"]))
        elif item == "${args}":
            out += [f"--{k}={format_value(v)}" for k, v in params.items()]
        elif item == "${args_no_hyphens}":
            out += [f"{k}={format_value(v)}" for k, v in params.items()]
        elif item == "${args_json}":
            out.append(json.dumps(params))
        elif item.startswith("${") and item.endswith("}"):
            raise SweepError(f"command macro {item} is not supported locally")
        else:
            out.append(item)
    return out


__all__ = ["SweepError", "expand_command", "format_value", "grid", "load_sweep", "runs", "sample", "validate"]
