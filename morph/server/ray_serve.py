"""`morph serve --ray`: the same app as Ray Serve replicas (the `ray` extra: `pip install 'morph[ray]'`).

Each replica is one process with its own engine (one model and SAE; with `--gpus-per-replica 1`, one GPU
each), built from the same create_app; Ray Serve's proxy listens on --host/--port and spreads requests over
the replicas. An editor's document lives on one replica: a client sends its document id as the
`serve_multiplexed_model_id` header (the RemoteEngine always does), and each replica registers the
documents it holds through Ray Serve's model multiplexing, whose router sends a document's requests back to
the replica that holds it (best effort; a request that lands elsewhere is answered in full there, with
the same numbers). The driver starts a local Ray instance (or joins the cluster at --ray-address /
$RAY_ADDRESS); the workers import this same `morph` (its folder goes on their PYTHONPATH). Ctrl+C or
SIGTERM stops the application and the Ray instance it started.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

from morph.errors import InputError
from morph.features.engine import LensSpec
from morph.server.app import ServeSettings



def build_deployment(replicas: int, gpus_per_replica: float, max_documents: int):
    """The Ray Serve deployment: a replica = an Engine and create_app's ASGI app."""
    from ray import serve

    @serve.ingress()
    class MorphReplica:
        def __init__(self, spec: LensSpec, settings: ServeSettings) -> None:
            from morph.features.engine import Engine
            from morph.server.app import create_app

            self._app = create_app(Engine.load(spec), settings)

        def __serve_build_asgi_app__(self):
            load = self.hold_document
            app = self._app

            async def with_affinity(scope, receive, send) -> None:
                if scope["type"] == "http":
                    document = serve.get_multiplexed_model_id()
                    if document:
                        await load(document)  # registers the document with this replica for the router
                await app(scope, receive, send)

            return with_affinity

        @serve.multiplexed(max_num_models_per_replica=max_documents)
        async def hold_document(self, document: str) -> str:
            return document

    options = {"num_cpus": 1}
    if gpus_per_replica:
        options["num_gpus"] = gpus_per_replica
    return serve.deployment(MorphReplica, name="morph", num_replicas=replicas, ray_actor_options=options,
                            max_ongoing_requests=64)


def serve_with_ray(spec: LensSpec, host: str, port: int, settings: ServeSettings, replicas: int,
                   gpus_per_replica: float, address: str | None) -> None:
    try:
        import ray
        from ray import serve
    except ImportError:
        raise InputError("morph serve --ray needs the 'ray' extra (pip install 'morph[ray]')") from None
    import morph

    root = str(Path(morph.__file__).resolve().parent.parent)
    env = {"PYTHONPATH": os.pathsep.join([root, *filter(None, [os.environ.get("PYTHONPATH")])])}
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "MORPH_CACHE_DIR", "HF_HOME"):
        if name in os.environ:
            env[name] = os.environ[name]

    def stop(_signum, _frame):
        raise KeyboardInterrupt

    ray.init(address=address or os.environ.get("RAY_ADDRESS"), runtime_env={"env_vars": env},
             include_dashboard=False, log_to_driver=False, configure_logging=False)
    signal.signal(signal.SIGTERM, stop)  # after ray.init, which installs a handler of its own
    try:
        serve.start(http_options={"host": host, "port": port})
        deployment = build_deployment(replicas, gpus_per_replica, settings.max_documents)
        print(f"morph: serving {spec.model or 'the default model'} on http://{host}:{port} with {replicas} Ray "
              f"Serve replicas" + (" (secret key required)" if settings.secret_key else ""), file=sys.stderr,
              flush=True)
        serve.run(deployment.bind(spec, settings), name="morph", route_prefix="/", blocking=True)
    except KeyboardInterrupt:
        pass
    finally:
        try:
            serve.shutdown()
        finally:
            ray.shutdown()
