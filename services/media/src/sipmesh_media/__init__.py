"""sipmesh media service: RTPEngine control (ng protocol) over NATS.

Modules: :mod:`.bencode` and :mod:`.ng` (sans-I/O codec and commands),
:mod:`.client` (asyncio UDP transport), :mod:`.pool` (consistent hashing and
health, pure), :mod:`.app` (the NATS shell), :mod:`.local` (a local RTPEngine
child for ``sipmesh up`` and the tests), :mod:`.config`, :mod:`.metrics`.
"""
