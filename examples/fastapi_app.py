"""An HTTP inference service: one Scheduler per app, deadlines from a header.

pip install fastapi uvicorn
uvicorn examples.fastapi_app:app --port 8000
curl -s -X POST localhost:8000/infer/tiny_mlp -H 'X-Deadline-Ms: 50' \
     -H 'Content-Type: application/json' -d '{"x": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8,
     0.9, 1.0, 1.1, 1.2, 1.3, 1.4, 1.5, 1.6]}'

The scheduler lives as long as the app: the lifespan starts it, registers the
models and waits for their warm-up before the app takes requests, and closes
it (finishing what is queued) on shutdown. Every request gets its own
deadline from ``X-Deadline-Ms`` (milliseconds; ``DEFAULT_DEADLINE_MS`` when
absent). What the scheduler refuses becomes an HTTP status a client or a load
balancer can act on, each with ``Retry-After``:

- 503 Service Unavailable: the deadline cannot be met at the current load
  (``DeadlineUnmeetable``; retry later, elsewhere, or with a longer deadline),
  or the service is shutting down (``SchedulerClosed``);
- 429 Too Many Requests: the model's queue is full (``Overloaded``);
- 404 for an unknown model, 400 for an input of the wrong shape or a
  deadline <= 0, 422 for a body or header that does not parse, 500 when the
  model itself failed (``ModelError``).

``GET /models`` describes the models served (input shape, dtype, largest
batch): ``aiosched loadtest --target http://127.0.0.1:8000 --rate 30`` reads
it to make its requests.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

import torch
from fastapi import FastAPI, Header, HTTPException, Request
from pydantic import BaseModel

import aiosched
from aiosched.models import tiny_mlp

DEFAULT_DEADLINE_MS = 100.0
RETRY_AFTER_S = 1  # HTTP wants whole seconds


class InferRequest(BaseModel):
    x: list[float]


class InferResponse(BaseModel):
    model: str
    y: list[float]


def create_app(backend: str = "cpu", lanes: int = 1, max_queue: int = 1_000) -> FastAPI:
    """The app, with a scheduler on ``backend`` built when it starts."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with aiosched.Scheduler(backend, lanes=lanes) as sched:
            torch.manual_seed(0)
            sched.register(
                "tiny_mlp",
                tiny_mlp(),
                max_batch_size=16,
                input_shape=(16,),
                dtype=torch.float32,
                max_queue=max_queue,
            )
            await sched.ready()  # warm-up before the first request
            app.state.scheduler = sched
            yield
        # leaving `async with`: new calls are refused, queued ones finish, threads exit

    app = FastAPI(title="aiosched example", lifespan=lifespan)

    @app.post("/infer/{model}", response_model=InferResponse)
    async def infer(
        model: str,
        body: InferRequest,
        request: Request,
        x_deadline_ms: Annotated[float | None, Header()] = None,
    ) -> InferResponse:
        sched: aiosched.Scheduler = request.app.state.scheduler
        deadline_ms = DEFAULT_DEADLINE_MS if x_deadline_ms is None else x_deadline_ms
        if not deadline_ms > 0:
            raise HTTPException(400, "X-Deadline-Ms must be a positive number of milliseconds")
        try:
            y = await sched.infer(model, torch.tensor(body.x), deadline=deadline_ms / 1000.0)
        except aiosched.UnknownModel as exc:
            raise HTTPException(404, str(exc)) from None
        except aiosched.InvalidInput as exc:
            raise HTTPException(400, str(exc)) from None
        except aiosched.Overloaded as exc:
            raise _retry(429, exc) from None
        except (aiosched.DeadlineUnmeetable, aiosched.SchedulerClosed) as exc:
            raise _retry(503, exc) from None
        except aiosched.ModelError as exc:
            raise HTTPException(500, str(exc)) from None
        return InferResponse(model=model, y=[float(v) for v in y])

    @app.get("/models")
    async def models(request: Request) -> dict[str, dict[str, object]]:
        sched: aiosched.Scheduler = request.app.state.scheduler
        return {
            spec.name: {
                "input_shape": None if spec.input_shape is None else list(spec.input_shape),
                "dtype": None if spec.dtype is None else str(spec.dtype).removeprefix("torch."),
                "max_batch_size": spec.max_batch_size,
            }
            for spec in sched.models
        }

    @app.get("/stats")
    async def stats(request: Request) -> dict[str, dict[str, int]]:
        sched: aiosched.Scheduler = request.app.state.scheduler
        return {
            name: {
                "completed": m.completed,
                "met_deadline": m.met_deadline,
                "rejected": m.rejected,
                "queue_depth": m.queue_depth,
            }
            for name, m in sched.snapshot().models.items()
        }

    return app


def _retry(status: int, exc: Exception) -> HTTPException:
    return HTTPException(status, str(exc), headers={"Retry-After": str(RETRY_AFTER_S)})


app = create_app(os.environ.get("AIOSCHED_BACKEND", "cpu"))
