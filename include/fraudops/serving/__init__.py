"""Real-time scoring: the champion answers every request, challengers score a mirrored sample.

Modules: ``schema`` (the request contract), ``models`` (champion + previous slot, alias watcher),
``features`` (one online computation per event, sliced per model), ``shadow`` (isolated challenger
worker processes), ``service`` (the plain ``score`` function), ``app`` (Starlette/uvicorn),
``deploy`` (the control API), ``bootstrap`` (a first champion on an empty registry).
Heavy libraries are imported inside functions so the CLI stays fast.
"""

from __future__ import annotations
