"""The engine behind HTTP (`morph serve`) and clients with the local engine's interface.

Server: app.py builds the FastAPI app (Morph's routes), steer_routes.py the steering routes, neuronpedia.py
Neuronpedia's inference routes, documents.py keeps each client document's analyzer, turns.py gives the
clients fair turns on the model, security.py the key, size and rate limits, run.py the uvicorn launch and
ray_serve.py the Ray Serve one. Wire: wire.py (JSON, arrays as bytes, analyses as deltas; never a Python object format).
Clients: remote.py (RemoteEngine, RemoteSteerer; connect_engine), neuronpedia_client.py (a Neuronpedia
inference server as the engine), address.py (URLs, loopback). FastAPI, uvicorn and httpx are imported only
here, never by the editor's start.
"""
