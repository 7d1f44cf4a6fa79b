"""``collect_models``: the concrete models of a module or a list, in dependency order."""

from __future__ import annotations

from types import ModuleType
from typing import TYPE_CHECKING, Any

from fluxon.database.relations import ForeignKey
from fluxon.errors import ConfigurationError

if TYPE_CHECKING:
    from fluxon.database.models import Model

__all__ = ["collect_models"]


def collect_models(obj: Any) -> list[type["Model"]]:
    """Concrete models in ``obj`` (a module or an iterable of models), in dependency order.

    Automatic many-to-many join models are included, right after the models they link.
    """
    from fluxon.database.models import Model   # models re-exports this function
    from fluxon.database.registry import resolve_pending
    resolve_pending(final=True)
    if isinstance(obj, ModuleType):
        found = [v for v in vars(obj).values()
                 if isinstance(v, type) and issubclass(v, Model) and v is not Model]
    elif isinstance(obj, type) and issubclass(obj, Model):
        found = [obj]
    else:
        found = list(obj)
    models: list[type["Model"]] = []
    for model in found:
        if not (isinstance(model, type) and issubclass(model, Model)):
            raise ConfigurationError(f"collect_models: {model!r} is not a model class")
        if model._meta.abstract or model in models:
            continue
        models.append(model)
    for model in list(models):
        for m2m in model._meta.many_to_many:
            through = m2m.through_model
            if through is None:
                raise ConfigurationError(f"{m2m!r}: {m2m.through or m2m.to_table!r} is not defined")
            if through not in models:
                models.append(through)
    for model in models:
        for field in model._meta.fields:
            if isinstance(field, ForeignKey) and field.rel_model is None:
                raise ConfigurationError(f"{field!r} refers to {field.to_table!r}, "
                                         "which is not defined")
    models.sort(key=lambda m: m._meta.creation_order)
    return _dependency_order(models)


def _dependency_order(models: list[type["Model"]]) -> list[type["Model"]]:
    ordered: list[type["Model"]] = []
    visiting: set[type["Model"]] = set()
    present = set(models)

    def visit(model: type["Model"]) -> None:
        if model in ordered or model in visiting:
            return  # already placed, or a cycle (SQLite accepts forward references)
        visiting.add(model)
        for field in model._meta.fields:
            target = getattr(field, "rel_model", None)
            if isinstance(field, ForeignKey) and target in present and target is not model:
                visit(target)
        visiting.discard(model)
        ordered.append(model)

    for model in models:
        visit(model)
    return ordered
