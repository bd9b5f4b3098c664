"""An HTTP server for a tagger: ``python -m llmner.serve ckpt_path=... [port=8000]``.

Built on LitServe (Lightning's serving library, on FastAPI and uvicorn): it runs the model in a
worker process and merges concurrent requests into one model call (dynamic batching:
``max_batch_size`` requests, waiting at most ``batch_timeout`` seconds for them; ``WaitingLoop``).
``ckpt_path`` is anything ``llmner.load`` takes: a checkpoint (any head) or an ONNX export directory.

- ``POST /predict`` with ``{"texts": ["...", ...]}`` answers ``{"entities": [...]}``, one item per
  text: what ``model.predict`` returns for it;
- ``GET /health``: ``ok`` once the model is loaded (503 before);
- ``GET /``: a page to try it (a text box; the entities highlighted in place with their types).

Bad requests are answered by ``RequestLimits`` before they reach the model, so none of them can
stop the worker or delay other clients: 400 for a body that is not JSON, 422 for a missing or
mistyped ``texts``, 413 for more than ``max_texts`` texts, a text over ``max_chars`` characters or
a body over the size these allow.
"""

from __future__ import annotations

import json
import logging
import time
from importlib.resources import files
from pathlib import Path
from queue import Empty

import hydra
import litserve as ls
from omegaconf import DictConfig

from llmner import cli
from llmner.errors import ConfigError

log = logging.getLogger(__name__)


def check_request(body: bytes, max_texts: int, max_chars: int) -> tuple[int, str] | None:
    """``(status, message)`` for a request body that must not reach the model, ``None`` for a good one."""
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError) as err:
        return 400, f"malformed JSON: {err}"
    if not isinstance(payload, dict) or "texts" not in payload:
        return 422, 'expected a JSON object with a "texts" field: {"texts": ["some text", ...]}'
    texts = payload["texts"]
    if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
        return 422, '"texts" must be a list of strings'
    if len(texts) > max_texts:
        return 413, f"{len(texts)} texts in one request; the limit is {max_texts} (max_texts)"
    for i, text in enumerate(texts):
        if len(text) > max_chars:
            return 413, f"text {i} has {len(text)} characters; the limit is {max_chars} (max_chars)"
    return None


class RequestLimits:
    """ASGI middleware: checks ``POST`` bodies of ``path`` (``check_request``) and answers the bad ones itself.

    The body is read once here and handed on unchanged to the endpoint, as JSON.
    """

    def __init__(self, app, path: str = "/predict", max_texts: int = 64, max_chars: int = 5000) -> None:
        self.app, self.path, self.max_texts, self.max_chars = app, path, max_texts, max_chars
        # JSON escapes: at most 6 bytes per character (\\uXXXX), plus the brackets
        self.max_bytes = max_texts * (6 * max_chars + 8) + 1024

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["path"] != self.path or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        body, size, more = b"", 0, True
        while more:  # an oversized body is read to its end but not kept: a client reads its 413, not a reset
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            body = body + chunk if size <= self.max_bytes else b""
            more = message.get("more_body", False)
        if size > self.max_bytes:
            await self._reply(scope, receive, send, 413, f"request body of {size} bytes; the limit is {self.max_bytes}")
            return
        error = check_request(body, self.max_texts, self.max_chars)
        if error is not None:
            await self._reply(scope, receive, send, *error)
            return
        sent = False

        async def replay():
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        # the body was read as JSON whatever its Content-Type said (curl -d says form data): tell the endpoint so
        headers = [(k, v) for k, v in scope["headers"] if k.lower() != b"content-type"]
        await self.app(dict(scope, headers=headers + [(b"content-type", b"application/json")]), replay, send)

    @staticmethod
    async def _reply(scope, receive, send, status: int, message: str) -> None:
        from starlette.responses import JSONResponse

        await JSONResponse({"detail": message}, status_code=status)(scope, receive, send)


class _FirstGiven:
    """A view of LitServe's request queue for one batch: ``first`` (already taken), then the queue's
    requests until ``deadline``, each waited for in one blocking call."""

    def __init__(self, queue, first, deadline: float) -> None:
        self.queue, self.first, self.deadline = queue, [first], deadline

    def get(self, block: bool = True, timeout: float | None = None):
        if self.first:
            return self.first.pop()
        return self.queue.get(timeout=max(0.0, self.deadline - time.monotonic()))

    def get_nowait(self):
        return self.first.pop() if self.first else self.queue.get_nowait()


class WaitingLoop(ls.loops.BatchedLoop):
    """LitServe's batched loop, with a batch collected by blocking calls instead of polling.

    LitServe 0.2 (``collate_requests``) asks its request queue, a ``multiprocessing.Manager`` queue
    whose every call is a round trip to the manager process, for a request once a millisecond, also
    while idle (a 10 ms ``batch_timeout`` window after another): on a small CPU these calls compete
    with the model and the HTTP server for the cores. Here the worker sleeps in one call until a
    request arrives, then gathers more with one call per request for at most ``batch_timeout``
    seconds (0: those already queued, no wait) through LitServe's own ``collate_requests``.
    """

    def get_batch_requests(self, lit_api, request_queue, transport):
        try:
            first = request_queue.get(timeout=1.0)
        except Empty:
            return [], []
        view = _FirstGiven(request_queue, first, time.monotonic() + lit_api.batch_timeout)
        return super().get_batch_requests(lit_api, view, transport)


class TaggerAPI(ls.LitAPI):
    """Texts -> entities with any model ``llmner.load`` reads; batched requests share model calls."""

    def __init__(self, ckpt_path: str, max_batch_size: int, batch_timeout: float, predict_batch_size: int,
                 batch_loop: str = "waiting") -> None:
        super().__init__(max_batch_size=max_batch_size, batch_timeout=batch_timeout, api_path="/predict",
                         loop=WaitingLoop() if max_batch_size > 1 and batch_loop == "waiting" else "auto")
        self.ckpt_path, self.predict_batch_size = ckpt_path, predict_batch_size
        self.batching = max_batch_size > 1

    def setup(self, device) -> None:
        from llmner.builders import load

        self.model = load(self.ckpt_path)
        log.info("serving %s", self.ckpt_path)

    def decode_request(self, request) -> list[str]:
        return request["texts"]  # checked by RequestLimits

    def predict(self, x):
        groups = x if self.batching else [x]  # batching: one list of texts per request
        flat = [t for g in groups for t in g]
        found = self.model.predict(flat, batch_size=self.predict_batch_size) if flat else []
        out, i = [], 0
        for g in groups:
            out.append(found[i : i + len(g)])
            i += len(g)
        return out if self.batching else out[0]

    def encode_response(self, output) -> dict:
        return {"entities": output}


def page() -> str:
    """The HTML of ``GET /`` (``llmner/serve_page.html``)."""
    return files("llmner").joinpath("serve_page.html").read_text(encoding="utf-8")


def build_server(ckpt_path: str, max_batch_size: int = 8, batch_timeout: float = 0.0, predict_batch_size: int = 32,
                 max_texts: int = 64, max_chars: int = 5000, workers: int = 1, timeout: float = 60.0,
                 batch_loop: str = "waiting"):
    """A ``litserve.LitServer`` for ``ckpt_path`` with the limits and the page (not started).

    ``batch_loop``: ``waiting`` (``WaitingLoop``) or ``litserve`` (LitServe's own batched loop).
    """
    from fastapi.responses import HTMLResponse

    if not Path(ckpt_path).exists():
        raise ConfigError(f"ckpt_path={ckpt_path}: no such checkpoint file or ONNX export directory")
    for name, value in (("max_batch_size", max_batch_size), ("max_texts", max_texts), ("max_chars", max_chars),
                        ("workers", workers), ("predict_batch_size", predict_batch_size)):
        if not isinstance(value, int) or value < 1:
            raise ConfigError(f"{name} must be an integer >= 1, got {value!r}")
    if batch_timeout < 0:
        raise ConfigError(f"batch_timeout must be >= 0 seconds, got {batch_timeout}")
    if batch_loop not in ("waiting", "litserve"):
        raise ConfigError(f"batch_loop must be waiting or litserve, got {batch_loop!r}")
    api = TaggerAPI(str(ckpt_path), max_batch_size, batch_timeout, predict_batch_size, batch_loop)
    server = ls.LitServer(api, accelerator="cpu", workers_per_device=workers, timeout=timeout,
                          middlewares=[(RequestLimits, {"path": "/predict", "max_texts": max_texts, "max_chars": max_chars})])
    # LitServe's own "/" says "litserve running"; the page replaces it
    server.app.router.routes = [r for r in server.app.router.routes if getattr(r, "path", None) != "/"]
    html = page()
    server.app.add_api_route("/", lambda: HTMLResponse(html), methods=["GET"], response_class=HTMLResponse)
    return server


def serve(cfg: DictConfig) -> None:
    server = build_server(cfg.ckpt_path, cfg.max_batch_size, cfg.batch_timeout, cfg.predict_batch_size,
                          cfg.max_texts, cfg.max_chars, cfg.workers, cfg.timeout, cfg.batch_loop)
    log.info("http://%s:%d/ (POST /predict, GET /health)", cfg.host, cfg.port)
    server.run(host=cfg.host, port=cfg.port, generate_client_file=False, log_level=cfg.log_level)


@hydra.main(version_base="1.3", config_path="../conf", config_name="serve.yaml")
def main(cfg: DictConfig) -> None:
    cli.run("serve", lambda: serve(cfg))


if __name__ == "__main__":
    main()
