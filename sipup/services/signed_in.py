"""The signed-in user and their company as plain values for a request, built from the cached row.

Reading a page needs a handful of the user's columns (id, name, role, company and its price list), not
ORM instances: building those from the cache on every request cost more than some views. `plain(User,
values)` gives a slotted, read-only object with every mapped column (a column added to the model is carried
without edits) and the model's read-only properties (`is_active`, `is_customer`, ...), which is what
Flask-Login, the guards and the templates read. Anything else (a relationship, a method such as
`check_password`) loads the ORM instance on first use, once per request; a view that changes the user
works on `record(current_user)`, and assigning to the plain object raises rather than losing the change.
"""

from sqlalchemy import inspect
from sqlalchemy.orm import make_transient_to_detached
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.orm.util import identity_key

from ..extensions import db


class ReadOnly(AttributeError):
    """A plain signed-in value was assigned to: change record(obj) instead."""


class _Plain:
    __slots__ = ()
    _model = None
    _columns = ()
    _extras = ()
    _settable = frozenset()

    def __init__(self, values, **extras):
        for key in self._columns:
            object.__setattr__(self, key, values.get(key))
        for key, value in extras.items():
            object.__setattr__(self, key, value)
        object.__setattr__(self, "_record", None)

    def __setattr__(self, key, value):
        if key not in self._settable:
            raise ReadOnly(f"{type(self).__name__}.{key} is read-only: change record() of it instead")
        object.__setattr__(self, key, value)

    def __getattr__(self, key):
        # Only called for what the plain object lacks: relationships, methods, unlisted columns.
        if key.startswith("__"):
            raise AttributeError(key)
        return getattr(self.record(), key)

    def record(self):
        """The ORM instance behind these values on first use: the session's own if it holds one, else attached
        from these values without a query (columns left out load on use), with the extras set on it."""
        found = object.__getattribute__(self, "_record")
        if found is None:
            found = attach(self._model, {key: getattr(self, key) for key in self._columns})
            relationships = inspect(self._model).relationships
            for key in self._extras:
                value = getattr(self, key)
                if key in relationships:
                    if key not in found.__dict__:  # set as loaded, so reading it needs no query
                        set_committed_value(found, key, _recorded(value))
                else:
                    setattr(found, key, value)
            object.__setattr__(self, "_record", found)
        return found

    def __eq__(self, other):
        if isinstance(other, _Plain):
            return other._model is self._model and other.id == self.id
        if isinstance(other, self._model):
            return other.id == self.id
        return NotImplemented

    def __hash__(self):
        return hash((self._model, self.id))

    def __repr__(self):
        return f"<{type(self).__name__} {self.id}>"


def plain_class(model, skips=(), extras=(), settable=(), methods=()):
    """A slotted read-only class carrying model's mapped columns (less skips), its properties and the named
    methods (which must read only columns and extras). Made anew on each call: callers make theirs once and keep
    it (services.accounts)."""
    columns = tuple(a.key for a in inspect(model).column_attrs if a.key not in skips)
    namespace = {
        "__slots__": columns + tuple(extras) + ("_record",),
        "_model": model,
        "_columns": columns,
        "_extras": tuple(extras),
        "_settable": frozenset(settable),
    }
    for klass in reversed(model.__mro__):
        namespace.update({k: v for k, v in vars(klass).items() if isinstance(v, property)})
    namespace.update({name: getattr(model, name) for name in methods})
    return type(f"Plain{model.__name__}", (_Plain,), namespace)


def _recorded(value):
    """A relationship's value for the ORM instance: plain values (one, or a tuple of them) as their instances."""
    if isinstance(value, tuple):
        return [record(each) for each in value]
    return record(value)


def record(obj):
    """The ORM instance for a signed-in value (itself when it already is one), for a view that changes it."""
    return obj.record() if isinstance(obj, _Plain) else obj


def attach(model, values):
    """A persistent instance from cached column values, without a query (unlisted columns load on use)."""
    present = db.session.identity_map.get(identity_key(model, values["id"]))
    if present is not None:
        return present
    obj = model(**values)
    make_transient_to_detached(obj)  # its values count as loaded, not as changes to write
    db.session.add(obj)  # attached as it is: merge() would copy it into a second instance first
    return obj
