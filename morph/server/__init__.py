"""The engine behind HTTP (`morph serve`) and a remote engine with the local one's interface.

app.py builds the FastAPI app (Morph's routes and the Neuronpedia-compatible ones, neuronpedia.py),
documents.py keeps each client document's analyzer, wire.py turns results into JSON and back, remote.py is
the client (RemoteEngine), security.py the key, size and rate limits, run.py the uvicorn (or Ray) launch.
FastAPI, uvicorn and httpx are imported only here, never by the editor's start.
"""
