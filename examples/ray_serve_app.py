"""Models served over Ray Serve, one aiosched Scheduler in every replica.

pip install 'aiosched[ray]'
python examples/ray_serve_app.py          # local Ray: deploy, a few calls with deadlines, shut down

Driven by the load generator: serve it from a local Ray instance for 120 s,

python examples/ray_serve_app.py --serve 120  # prints the RAY_ADDRESS to use, then serves
RAY_ADDRESS=... RAY_AUTH_MODE=token aiosched loadtest --target ray-serve:aiosched \
    --rate 20 --duration 20 --models mobilenet_v3_small --deadline 300 --no-live  # elsewhere

(``RAY_AUTH_MODE=token``: a local instance of Ray 2.60 requires the token it
saved in ``~/.ray/auth_token`` from other drivers); or on a running cluster
(``ray start --head``), where it stays deployed:

python examples/ray_serve_app.py --deploy  # deploys application "aiosched" and returns
aiosched loadtest --target ray-serve:aiosched --rate 40 --duration 20 --deadline 300 --no-live

(``serve run examples.ray_serve_app:app`` also deploys ``app`` and blocks.)
Ray places the replicas (one CPU each here) and routes each call to one;
inside each replica aiosched batches earliest deadline first and rejects early
what cannot meet its deadline. The deadline travels with the call, so time
spent in Ray's router and in transit is charged to it.
"""

from __future__ import annotations

import argparse
import asyncio
import time

import torch

from aiosched import DeadlineUnmeetable
from aiosched.integrations.ray_serve import AioschedClient, ServedModel, aiosched_deployment

APP = "aiosched"
MODELS = {
    "mobilenet_v3_small": ServedModel.zoo("mobilenet_v3_small", max_batch_size=8),
    "tiny_mlp": ServedModel.zoo("tiny_mlp", max_batch_size=16),
}

app = aiosched_deployment(MODELS, backend="cpu", lanes=1, num_replicas=2)


async def calls(client: AioschedClient) -> None:
    image = torch.randn(3, 224, 224)
    replies = await asyncio.gather(
        *(client.call("mobilenet_v3_small", image, deadline=1.0) for _ in range(16))
    )
    served = sorted({r.replica for r in replies if r.ok})
    print(f"16 calls, 1 s deadline: {sum(r.ok for r in replies)} served by {served}")
    top = replies[0].output.argmax().item() if replies[0].ok else None
    print(f"first reply: class {top}, {replies[0].transit_s * 1e3:.1f} ms in transit")
    try:  # 1 ms cannot be met: a typed refusal, not a late answer
        await client.infer("mobilenet_v3_small", image, deadline=0.001)
    except DeadlineUnmeetable as exc:
        print(f"1 ms deadline: {type(exc).__name__}: {exc}")
    y = await client.infer("tiny_mlp", torch.randn(16), deadline=0.1)
    print(f"tiny_mlp: {y.tolist()}")


def main() -> None:
    import ray
    from ray import serve

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--deploy", action="store_true", help="deploy on a running cluster")
    mode.add_argument("--serve", type=float, metavar="S", help="serve from local Ray for S seconds")
    args = parser.parse_args()
    if args.deploy:
        ray.init(address="auto")
        serve.start(proxy_location="Disabled")  # calls come through handles
        serve.run(app, name=APP, route_prefix=None)
        print(f"application {APP!r} is running: aiosched loadtest --target ray-serve:{APP} ...")
        return
    ray.init(num_cpus=2, include_dashboard=False)
    try:
        serve.start(proxy_location="Disabled")
        handle = serve.run(app, name=APP, route_prefix=None)  # returns once the replicas warmed up
        if args.serve is not None:
            address = ray.get_runtime_context().gcs_address
            print(f"serving {APP!r} for {args.serve:g} s; in another terminal:", flush=True)
            print(
                f"RAY_ADDRESS={address} aiosched loadtest --target ray-serve:{APP} ...", flush=True
            )
            time.sleep(args.serve)
        else:
            asyncio.run(calls(AioschedClient(handle)))
    finally:
        serve.shutdown()  # each replica drains, then closes its scheduler
        ray.shutdown()


if __name__ == "__main__":
    main()
