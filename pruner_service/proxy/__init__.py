"""An OpenAI-compatible proxy that prunes a model's reasoning while it thinks (the sidecar).

``settings`` (flags), ``wire`` (what a request asks for and how the reply is shaped), ``upstream``
(the model server, over httpx2), ``session`` (one request's rounds: the shared ``LoopCore``
driven asynchronously), ``app`` (Starlette routes), ``server`` (uvicorn), ``metrics``.
"""
