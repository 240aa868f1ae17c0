"""The evaluators by name, as `config.evaluators` names them, and running a chosen few.

A name is the module of this package that holds its `run(inputs) -> dict`; modules are
imported when first asked for, so that checking a config's names imports nothing heavy.
"""

import importlib
from collections.abc import Callable, Iterable

from item_jax.errors import ItemJaxError

# Every evaluator; the default `config.evaluators` runs them all.
NAMES = ("retrieval", "modality_balance", "probe", "knn", "matching", "references")
DEFAULT = ",".join(NAMES)

# The order of a metrics dict's sections, whichever evaluators ran first: report.md's
# table and the validation log list them so.
SECTION_ORDER = (
    "retrieval",
    "retrieval_no_title",
    "retrieval_no_image",
    "modality_balance",
    "linear_probe",
    "knn",
    "linear_probe_no_title",
    "itm",
    "data",
    "references",
)


class UnknownEvaluatorError(ItemJaxError, ValueError):
    """An evaluator name that no module of this package answers to."""


def parse_names(value: str | Iterable[str]) -> tuple[str, ...]:
    """ "retrieval, knn" (or a list of names) -> ("retrieval", "knn"), unchecked."""
    parts = value.split(",") if isinstance(value, str) else value
    return tuple(name.strip() for name in parts if name.strip())


def check_names(names: Iterable[str]) -> tuple[str, ...]:
    """The names, each known; otherwise an error naming the unknown ones and the known."""
    names = tuple(names)
    unknown = [name for name in names if name not in NAMES]
    if unknown:
        raise UnknownEvaluatorError(
            f"unknown evaluator(s) {', '.join(map(repr, unknown))}; known: {', '.join(NAMES)}"
        )
    return names


def of_config(config) -> tuple[str, ...]:
    """The config's chosen evaluators (a stored config from before the field runs them all:
    `item_jax.configs.upgrade_stored_config`)."""
    return check_names(parse_names(config.evaluators))


def get(name: str) -> Callable[..., dict]:
    """The `run` of the evaluator called `name`."""
    check_names((name,))
    return importlib.import_module(f"{__package__}.{name}").run


def run(names: Iterable[str], inputs) -> dict:
    """The chosen evaluators' sections on one embedder's inputs, in SECTION_ORDER.

    `inputs.data`, when given, becomes the "data" section (what was read, not a metric).
    """
    metrics = {}
    for name in names:
        metrics.update(get(name)(inputs))
    if inputs.data is not None:
        metrics["data"] = inputs.data
    rank = {section: index for index, section in enumerate(SECTION_ORDER)}
    return dict(sorted(metrics.items(), key=lambda item: rank.get(item[0], len(rank))))
