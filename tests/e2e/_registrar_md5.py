"""``python -m sipmesh_registrar``, offering an MD5 digest challenge only.

A stopgap for the end-to-end suite until the registrar reads the order of its
digest algorithms from its configuration. SIPp 3.6 computes its answer from
the first WWW-Authenticate only and knows no SHA-256; baresip 1.0 (libre)
rejects a 401 if any challenge in it is not MD5 ("Function not implemented").
The registrar's default, one challenge per algorithm with SHA-256 first (RFC
8760 §2.4), is right, but these clients need MD5 alone.
"""

from __future__ import annotations

import dataclasses

from sipmesh_registrar import app
from sipmesh_registrar.__main__ import run
from sipmesh_registrar.config import RegistrarSettings, make_policy
from sipmesh_registrar.model import Policy


def _md5_only(settings: RegistrarSettings) -> Policy:
    return dataclasses.replace(make_policy(settings), algorithms=(b"MD5",))


if __name__ == "__main__":
    setattr(app, "make_policy", _md5_only)  # noqa: B010 - replacing an import, not an attribute
    run()
