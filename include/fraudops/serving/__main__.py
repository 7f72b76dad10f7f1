"""``python -m fraudops.serving``: run the scoring service (same as ``fraudops serve``)."""

from __future__ import annotations

if __name__ == "__main__":
    from fraudops.serving.commands import serve

    serve()
