"""How sipmsg meets mypyc: the build compiles its modules (``make compile``).

``scripts/compile.py`` compiles the modules to C extensions beside their
``.py`` files; the import system prefers the ``.so``. The pure-Python modules
stay the reference and the fallback (``SIPMESH_PURE=1``).
"""

from __future__ import annotations

from typing import TypeVar

_C = TypeVar("_C", bound=type)


def python_class(cls: _C) -> _C:
    """Keep ``cls`` an ordinary Python class when mypyc compiles its module.

    mypyc turns a compiled module's classes into native classes (a C struct,
    no slot descriptors), except a class with a decorator it does not know,
    such as this one. The value types need to stay Python classes: the parsers
    build them with ``object.__new__`` and the slot descriptors
    (:func:`sipmsg._abnf.slot_setters`), which a native class refuses, and
    callers use :func:`dataclasses.replace` on them. Their methods and the
    module's functions are compiled all the same.
    """
    return cls
