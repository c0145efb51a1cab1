"""`morph serve [--model M --sae S] [--host H] [--port P] [--secret-key K]`: the engine behind HTTP.

One model and its SAE per process (and per GPU). Bound to 127.0.0.1 unless told otherwise; any other
address needs a secret key (--secret-key, or MORPH_SECRET_KEY). Clients: `morph FILE --server URL`,
`morph analyze FILE --server URL`, or anything written for Neuronpedia's inference server.
"""

from __future__ import annotations

import argparse

DEFAULT_PORT = 8765


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from morph.cli import add_lens_arguments

    add_lens_arguments(parser, remote=False)
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1; any other needs a secret key)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    parser.add_argument("--secret-key", help="clients must send it (header X-SECRET-KEY); "
                        "default: $MORPH_SECRET_KEY")
    parser.add_argument("--max-documents", type=int, default=32, metavar="N",
                        help="client documents kept (least recently used dropped; default 32)")
    parser.add_argument("--rate", type=float, default=100.0, metavar="R",
                        help="requests a second per client address (default 100)")
    parser.add_argument("--np-model", metavar="NAME",
                        help="the model's name for Neuronpedia clients (e.g. gemma-2-9b), besides its own")
    parser.add_argument("--np-source", metavar="ID",
                        help="the SAE's id for Neuronpedia clients (e.g. 20-gemmascope-res-16k), besides its own")
    parser.add_argument("--ray", action="store_true",
                        help="serve with Ray Serve replicas (the 'ray' extra): see --replicas")
    parser.add_argument("--replicas", type=int, default=2, help="with --ray: replicas, each its own engine (default 2)")
    parser.add_argument("--gpus-per-replica", type=float, default=0.0, metavar="G",
                        help="with --ray: GPUs each replica takes (default 0; 1 for a model per GPU)")
    parser.add_argument("--ray-address", help="with --ray: an existing Ray cluster (default: start one here, "
                        "or $RAY_ADDRESS)")


def run(args: argparse.Namespace) -> int:
    import os

    from morph.errors import InputError

    key = args.secret_key or os.environ.get("MORPH_SECRET_KEY") or None
    if args.max_documents < 1:
        raise InputError("--max-documents must be at least 1")
    if args.rate <= 0:
        raise InputError("--rate must be above 0")
    try:
        from morph.server.run import check_bind, serve
    except ImportError as err:
        raise InputError(f"morph serve needs the 'serve' extra (pip install 'morph[serve]'): {err.name} "
                         "is missing") from None
    check_bind(args.host, args.port, key)  # before the model loads: a wrong option fails at once
    from morph.server.app import ServeSettings
    from morph.server.neuronpedia import Names
    from morph.server.security import Limits

    settings = ServeSettings(secret_key=key, limits=Limits(rate_per_s=args.rate, burst=max(1, int(args.rate * 4))),
                             max_documents=args.max_documents, neuronpedia=Names(args.np_model, args.np_source))
    if args.ray:
        if args.replicas < 1:
            raise InputError("--replicas must be at least 1")
        from morph.features.engine import LensSpec
        from morph.server.ray_serve import serve_with_ray

        serve_with_ray(LensSpec(model=args.model, sae=args.sae, device=args.device or "auto"), args.host,
                       args.port, settings, args.replicas, args.gpus_per_replica, args.ray_address)
        return 0
    from morph.commands.common import engine_from_args

    serve(engine_from_args(args), args.host, args.port, settings)
    return 0
