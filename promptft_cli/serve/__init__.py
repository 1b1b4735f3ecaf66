"""`promptft serve`: a finished run behind an HTTP API (docs/serving.md).

backend.py (what a run computes, one class per task) → batching.py (dynamic batcher) → schemas.py
(limits, request models) → guard.py (ASGI: request ids, body size, draining, 500s) → app.py (routes)
→ server.py (flags, uvicorn). FastAPI and uvicorn are imported only when the command runs.
"""
