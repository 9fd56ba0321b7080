"""The reference backend server: the canteen's ledger behind the terminals, over HTTP/JSON.

It implements ``docs/backend-contract.md`` (the written contract; ``docs/api/openapi.json`` is
generated from this package). Storage is SQLite or PostgreSQL through SQLAlchemy Core; the HTTP
side is FastAPI. Start it with ``trayscan backend serve``.

Nothing here is imported by the kiosk: this package's modules import FastAPI and SQLAlchemy,
which are only in the ``server`` extra, except :mod:`server.cli`, whose module level needs only
the standard library so that ``trayscan`` can list the ``backend`` commands.
"""
