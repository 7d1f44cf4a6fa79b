"""The names models are known by: references by name resolve here (``"Enrollment"``).

Every concrete model is registered under its class name. A relation that names a model
(``ForeignKey("Teacher")``, ``through="Enrollment"``) waits in ``_PENDING`` until that model
exists, then is wired (reverse accessors, automatic join tables). Names resolve within the
referring model's module, and within the generation of its scope (see ``_register``), so
re-running a module or defining the same class names in two modules never mixes them up.
"""

from __future__ import annotations

import sys
from typing import Any

from fluxon.database.relations import CASCADE, ForeignKey, ManyToManyField, add_reverse_accessors
from fluxon.errors import ConfigurationError

__all__ = ["model_by_name", "register_model", "resolve_pending"]

_REGISTRY: dict[str, list[type]] = {}
_GENERATIONS: dict[tuple[str, str], int] = {}   # (module, scope) -> times it was re-run
_PENDING: list[tuple[type, Any]] = []   # (model, field) whose target is not defined yet

def _scope(model: type) -> tuple[str, str]:
    """(module, enclosing scope): models of one module body, or of one function body."""
    return model.__module__, model.__qualname__.rpartition(".")[0]


def _register(cls: type) -> None:
    """Record ``cls`` under its name; a redefinition starts a new generation of its scope.

    Re-running a module (``importlib.reload``, a notebook cell, a test collected twice)
    defines its models again. From the first redefinition on, names used by the new
    classes resolve to the new generation only, so a new ``Student`` never links to the
    old ``Enrollment`` that is about to be redefined too.
    """
    scope = _scope(cls)
    candidates = _REGISTRY.setdefault(cls.__name__, [])
    previous = [c for c in candidates if _scope(c) == scope and c.__qualname__ == cls.__qualname__]
    if previous and not cls._meta.auto_created:
        _GENERATIONS[scope] = _GENERATIONS.get(scope, 0) + 1
    cls._meta.generation = _GENERATIONS.get(scope, 0)
    candidates[:] = [c for c in candidates if c not in previous] + [cls]


def _resolve(reference: Any, model: type, *, final: bool = False) -> type | None:
    """The model a relation names: a class, ``"self"``, ``"Name"`` (same module) or
    ``"package.module.Name"``; None while it is not defined yet.

    A name in the referring model's own scope resolves only within its generation (see
    ``_register``) until ``final``, when binding to a database settles on the newest.
    """
    if isinstance(reference, type):
        return reference
    if reference == "self":
        return model
    if isinstance(reference, str):
        module, _, name = reference.rpartition(".")
        module = module or model.__module__
        scope = _scope(model)
        generation = getattr(getattr(model, "_meta", None), "generation", 0)
        older = None
        for candidate in reversed(_REGISTRY.get(name, [])):
            if candidate.__module__ != module:
                continue
            if _scope(candidate) != scope or candidate._meta.generation == generation:
                return candidate
            older = older or candidate
        return older if final else None
    raise ConfigurationError(f"{model.__name__}: a relation needs a model or a model name, "
                             f"not {reference!r}")


def model_by_name(name: str) -> type | None:
    """The most recently defined model class called ``name`` (None if there is none)."""
    candidates = _REGISTRY.get(name)
    return candidates[-1] if candidates else None


_RESOLVING = [False]


def resolve_pending(final: bool = False) -> None:
    """Resolve references by name whose targets now exist (re-entrant calls are no-ops).

    ``final`` (binding models to a database): also accept an older generation's model.
    """
    if _RESOLVING[0]:
        return
    _RESOLVING[0] = True
    try:
        progress = True
        while progress:
            progress = False
            for item in list(_PENDING):
                model, field = item
                if isinstance(field, ManyToManyField):
                    done = _resolve_m2m(model, field, final)
                else:
                    target = _resolve(field.to_table, model, final=final)
                    done = target is not None
                    if done:
                        field.rel_model = target
                        target._meta.reverse_relations.append(field)
                if done:
                    add_reverse_accessors(field)
                    _PENDING.remove(item)
                    progress = True
    finally:
        _RESOLVING[0] = False


def _resolve_m2m(model: type, field: ManyToManyField, final: bool) -> bool:
    target = _resolve(field.to_table, model, final=final)
    if target is None:
        return False
    if field.through is None:
        field.rel_model = target
        field.through_model = _auto_through(model, field, target)
        field.source_fk, field.target_fk = field.through_model._meta.fields[1:3]  # type: ignore
        return True
    through = _resolve(field.through, model, final=final)
    if through is None:
        return False
    fks = [f for f in through._meta.fields if isinstance(f, ForeignKey)]
    if any(f.rel_model is None for f in fks):
        return False
    source = [f for f in fks if f.rel_model is model]
    dest = [f for f in fks if f.rel_model is target and (target is not model or f is not source[0])]
    if not source or not dest:
        raise ConfigurationError(f"{model.__name__}.{field.name}: the through model "
                                 f"{through.__name__} needs a ForeignKey to {model.__name__} and "
                                 f"one to {target.__name__}")
    field.rel_model, field.through_model = target, through
    field.source_fk, field.target_fk = source[0], dest[0]
    return True


def _auto_through(model: type, field: ManyToManyField, target: type) -> type:
    source_name = model.__name__.lower()
    target_name = target.__name__.lower()
    if source_name == target_name:
        source_name, target_name = "from_" + source_name, "to_" + target_name
    attrs = {
        "__module__": model.__module__,
        "__qualname__": f"{model.__name__}_{field.name}",
        "_auto_created": True,
        source_name: ForeignKey(model, on_delete=CASCADE),
        target_name: ForeignKey(target, on_delete=CASCADE),
        "Meta": type("Meta", (), {"table_name": f"{model._meta.table_name}_{field.name}",
                                  "unique_together": ((source_name, target_name),)}),
    }
    from fluxon.database.models import Model, ModelBase   # the models module imports this one
    through = ModelBase(f"{model.__name__}_{field.name}", (Model,), attrs)
    module = sys.modules.get(model.__module__)
    existing = getattr(module, through.__name__, None)
    if module is not None and (existing is None or getattr(existing, "_auto_created", False)):
        setattr(module, through.__name__, through)  # importable, so its rows pickle
    return through


def register_model(cls: type) -> None:
    """Record a new concrete model and wire every relation that can be resolved now."""
    _register(cls)
    _PENDING.extend((cls, field) for field in cls._meta.fields if isinstance(field, ForeignKey))
    _PENDING.extend((cls, field) for field in cls._meta.many_to_many)
    resolve_pending()
