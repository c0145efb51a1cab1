"""Neuronpedia labels: `morph labels fetch` against a fake bulk-export server on loopback fills Morph's cache;
the engine's labels, concept search, `morph features --id`, the panel and the details screen then use them;
a failed or killed download leaves no cache; without a cache the other label sources serve."""

from __future__ import annotations

import gzip
import http.server
import json
import os
import subprocess
import sys
import threading
import urllib.parse
from pathlib import Path

import pytest

from morph.cli import main
from morph.config import Settings, parse_settings
from morph.errors import InputError
from morph.features.engine import Engine
from morph.features.neuronpedia import NeuronpediaSource, cache_folder, read_cache

NPID = "tiny-gpt2/1-res-test"
SOURCE = NeuronpediaSource.parse(NPID)
D_SAE = 512
ROOT = Path(__file__).resolve().parent.parent


def best(i: int) -> str:
    return f"concept{i} tokens"


def other(i: int) -> str:
    return f"notion{i} phrases"


def records(features: range, model_id: str = "tiny-gpt2", layer: str = "1-res-test") -> list[dict]:
    """Two explanations a feature in the export's record format; the worse kind is listed first."""
    out = []
    for i in features:
        for description, kind, explainer in ((other(i), "np_acts-logits-general", "gemini-2.0-flash"),
                                             (best(i), "oai_token-act-pair", "gpt-4o-mini")):
            out.append({"id": f"x{i}{kind}", "modelId": model_id, "layer": layer, "index": str(i),
                        "description": description, "authorId": "bot", "triggeredByUserId": None,
                        "notes": None, "typeName": kind, "explanationModelName": explainer})
    return out


def batch(rows: list[dict]) -> bytes:
    return gzip.compress("\n".join(json.dumps(r) for r in rows).encode() + b"\n")


def export_files() -> dict[str, bytes]:
    return {f"{SOURCE.prefix}batch-0.jsonl.gz": batch(records(range(0, 256))),
            f"{SOURCE.prefix}batch-1.jsonl.gz": batch(records(range(256, D_SAE)))}


class FakeExport:
    """The export bucket on 127.0.0.1: its files, an S3 ListObjectsV2 listing of `page` keys a page (unless
    `listing` is off, as on a plain mirror), and a `stall` key whose body it starts and then holds until
    released (then the connection closes short); with a `gate`, it answers nothing until the gate opens."""

    def __init__(self, files: dict[str, bytes], listing: bool = True, stall: str | None = None, page: int = 1000,
                 gate: threading.Event | None = None):
        self.files, self.listing, self.stall, self.page, self.gate = files, listing, stall, page, gate
        self.release = threading.Event()
        self.stalled = threading.Event()
        export = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                if export.gate is not None:
                    export.gate.wait(60)
                url = urllib.parse.urlsplit(self.path)
                query = urllib.parse.parse_qs(url.query)
                if url.path == "/" and query.get("list-type") == ["2"]:
                    if not export.listing:
                        return self.send_error(404)
                    prefix = query.get("prefix", [""])[0]
                    start = int(query.get("continuation-token", ["0"])[0])
                    found = sorted(k for k in export.files if k.startswith(prefix))
                    shown = found[start:start + export.page]
                    more = start + export.page < len(found)
                    keys = "".join(f"<Contents><Key>{k}</Key><Size>{len(export.files[k])}</Size></Contents>"
                                   for k in shown)
                    token = f"<NextContinuationToken>{start + export.page}</NextContinuationToken>" if more else ""
                    body = ('<?xml version="1.0" encoding="UTF-8"?><ListBucketResult '
                            'xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>neuronpedia-datasets</Name>'
                            f"<Prefix>{prefix}</Prefix><IsTruncated>{str(more).lower()}</IsTruncated>{keys}{token}"
                            "</ListBucketResult>").encode()
                    return self._send(body)
                key = url.path.lstrip("/")
                if key not in export.files:
                    return self.send_error(404)
                data = export.files[key]
                if key == export.stall:
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data[: len(data) // 2])
                    self.wfile.flush()
                    export.stalled.set()
                    export.release.wait(30)
                    return None
                return self._send(data)

            def _send(self, body: bytes) -> None:
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def export():
    server = FakeExport(export_files())
    yield server
    server.close()


@pytest.fixture(scope="module")
def np_dirs(tiny_dirs, tmp_path_factory) -> dict[str, Path]:
    """The tiny model, and a tiny SAE whose cfg.json names it on Neuronpedia."""
    from morph.models.tiny import build_sae

    folder = tmp_path_factory.mktemp("np-sae") / "sae"
    build_sae(folder, d_in=64, hook_name="blocks.1.hook_resid_post", arch="topk", d_sae=D_SAE,
              neuronpedia_id=NPID)
    return {"model": tiny_dirs["model"], "sae": folder}


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """Morph's cache and config folders of the test's own; no export URL from the environment."""
    monkeypatch.setenv("MORPH_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("MORPH_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("MORPH_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("MORPH_NEURONPEDIA_URL", raising=False)
    return tmp_path / "cache"


def lens_args(np_dirs) -> list[str]:
    return ["--model", str(np_dirs["model"]), "--sae", str(np_dirs["sae"]), "--device", "cpu"]


def morph_cli(args: list[str], **kw) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "morph", *args], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)


def fetch_cli(np_dirs, url: str, timeout: float = 120) -> tuple[int, str, str]:
    proc = morph_cli(["labels", "fetch", "--url", url, "--model", str(np_dirs["model"]), "--sae", str(np_dirs["sae"])])
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def fresh_engine(np_dirs, **kw) -> Engine:
    from morph.models.lens import LensSpec

    return Engine.load(LensSpec(model=str(np_dirs["model"]), sae=str(np_dirs["sae"]), device="cpu"), **kw)


def test_fetch_fills_the_cache_and_labels_search_and_details_use_it(np_dirs, cache, export, capsys):
    code, out, err = fetch_cli(np_dirs, export.url)
    assert code == 0, err
    assert f"{2 * D_SAE} explanations of {D_SAE} features (2 files" in out
    cached = read_cache(SOURCE)
    assert cached is not None and len(cached.features) == D_SAE
    assert [e.description for e in cached.features[300]] == [best(300), other(300)]  # the preferred kind first
    assert not [p for p in cache_folder(SOURCE).parent.iterdir() if p.name.startswith(".")]  # no partial left

    engine = fresh_engine(np_dirs)
    labels = engine.labels
    assert labels.source.startswith(f"Neuronpedia explanations of {NPID} (cached)")
    assert engine.label(7) == best(7) and engine.label(300) == best(300)
    info = labels.info(300)
    assert info.label == best(300) and [e.description for e in info.explanations] == [best(300), other(300)]
    assert info.explanations[0].explainer == "gpt-4o-mini" and info.explanations[0].kind == "oai_token-act-pair"
    assert labels.search("concept7")[0] == 7
    assert labels.search("notion9")[0] == 9  # found by an explanation other than the label

    code = main(["features", "--id", "300", *lens_args(np_dirs)])
    printed = capsys.readouterr().out
    assert code == 0 and f"Feature #300 · {best(300)}" in printed and other(300) in printed
    code = main(["features", "--id", "300", "--json", *lens_args(np_dirs)])
    (feature,) = json.loads(capsys.readouterr().out)
    assert feature["label"] == best(300)
    assert [e["description"] for e in feature["explanations"]] == [best(300), other(300)]
    code = main(["features", "concept42", "--json", *lens_args(np_dirs)])
    assert code == 0 and json.loads(capsys.readouterr().out)[0]["id"] == 42


def test_a_listing_in_pages_is_followed(np_dirs, cache):
    files = {f"{SOURCE.prefix}batch-{n}.jsonl.gz": batch(records(range(40 * n, 40 * n + 40))) for n in range(12)}
    server = FakeExport(files, page=5)  # batch-10 and batch-11 sort before batch-2 in the listing
    try:
        assert main(["labels", "fetch", "--url", server.url, "--sae", str(np_dirs["sae"])]) == 0
    finally:
        server.close()
    cached = read_cache(SOURCE)
    assert cached is not None and sorted(cached.features) == list(range(480))


def test_a_download_that_breaks_off_is_refused(np_dirs, cache, capsys):
    server = FakeExport(export_files(), stall=f"{SOURCE.prefix}batch-1.jsonl.gz")
    server.release.set()  # half the file, then the connection closes
    try:
        code = main(["labels", "fetch", "--url", server.url, "--sae", str(np_dirs["sae"])])
    finally:
        server.close()
    err = capsys.readouterr().err
    assert code == 2 and "batch-1.jsonl.gz broke off after" in err and read_cache(SOURCE) is None


def test_a_mirror_without_listings_is_probed_batch_by_batch(np_dirs, cache):
    mirror = FakeExport(export_files(), listing=False)
    try:
        code = main(["labels", "fetch", "--url", mirror.url, "--sae", str(np_dirs["sae"])])
    finally:
        mirror.close()
    assert code == 0
    cached = read_cache(SOURCE)
    assert cached is not None and len(cached.features) == D_SAE and cached.url.startswith(mirror.url)


def test_the_url_comes_from_the_environment(np_dirs, cache, export, monkeypatch, capsys):
    monkeypatch.setenv("MORPH_NEURONPEDIA_URL", export.url)
    assert main(["labels", "fetch", "--sae", str(np_dirs["sae"])]) == 0
    assert export.url in capsys.readouterr().out and read_cache(SOURCE) is not None


def test_server_down_is_one_line_and_writes_nothing(np_dirs, cache):
    server = FakeExport({})
    url = server.url
    server.close()  # nothing listens there now
    code, out, err = fetch_cli(np_dirs, url)
    assert code == 2 and err.count("\n") == 1 and err.startswith("morph: cannot reach") and "Traceback" not in err
    assert not cache_folder(SOURCE).exists()


@pytest.mark.parametrize("files, listing, message", [
    ({}, True, "no explanations export for tiny-gpt2/1-res-test"),
    ({}, False, "no explanations export at"),
    ({f"{SOURCE.prefix}batch-0.jsonl.gz": batch(records(range(4))),
      f"{SOURCE.prefix}batch-1.jsonl.gz": batch(records(range(4, 8)))[:-20]}, True, "batch-1.jsonl.gz is corrupt"),
    ({f"{SOURCE.prefix}batch-0.jsonl.gz": gzip.compress(b'{"modelId": "tiny-gpt2"}\n')}, True, "lacks one of the fields"),
    ({f"{SOURCE.prefix}batch-0.jsonl.gz": batch(records(range(2), model_id="gpt2-small"))}, True,
     "is for gpt2-small/1-res-test, not tiny-gpt2/1-res-test"),
    ({f"{SOURCE.prefix}batch-0.jsonl.gz": batch(records(range(D_SAE, D_SAE + 1)))}, True,
     "is not a feature of this SAE (it has 512)"),
])
def test_a_bad_export_is_one_line_and_keeps_the_old_cache(np_dirs, cache, export, capsys, files, listing, message):
    assert main(["labels", "fetch", "--url", export.url, "--sae", str(np_dirs["sae"])]) == 0
    capsys.readouterr()
    before = (cache_folder(SOURCE) / "explanations.json").read_bytes()
    bad = FakeExport(files, listing=listing)
    try:
        code = main(["labels", "fetch", "--url", bad.url, "--sae", str(np_dirs["sae"])])
    finally:
        bad.close()
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1
    assert (cache_folder(SOURCE) / "explanations.json").read_bytes() == before
    assert not [p for p in cache_folder(SOURCE).parent.iterdir() if p.name.startswith(".")]


def test_an_sae_without_a_neuronpedia_id_is_refused(tiny_dirs, cache, export, capsys):
    code = main(["labels", "fetch", "--url", export.url, "--sae", str(tiny_dirs["sae"])])
    assert code == 2 and "has no Neuronpedia id" in capsys.readouterr().err


def test_a_killed_download_leaves_no_cache_and_the_next_fetch_cleans_up(np_dirs, cache):
    files = export_files()
    server = FakeExport(files, stall=f"{SOURCE.prefix}batch-1.jsonl.gz")
    try:
        proc = morph_cli(["labels", "fetch", "--url", server.url, "--sae", str(np_dirs["sae"])])
        assert server.stalled.wait(120), proc.communicate()
        proc.kill()
        proc.communicate(timeout=30)
    finally:
        server.close()
    assert read_cache(SOURCE) is None and not cache_folder(SOURCE).exists()
    engine = fresh_engine(np_dirs)  # offline, no cache: the promoted tokens serve
    assert engine.labels.source.startswith("decoder") and engine.label(7) != best(7)
    server = FakeExport(files)
    try:
        assert main(["labels", "fetch", "--url", server.url, "--sae", str(np_dirs["sae"])]) == 0
    finally:
        server.close()
    assert read_cache(SOURCE) is not None
    assert not [p for p in cache_folder(SOURCE).parent.iterdir() if p.name.startswith(".")]


def test_the_first_load_fetches_only_when_allowed(np_dirs, cache, export):
    engine = fresh_engine(np_dirs)  # the default: never
    assert engine.labels_fetch is None and engine.labels.source.startswith("decoder")
    assert not cache.exists() or not cache_folder(SOURCE).exists()

    down = FakeExport({})
    down.close()
    engine = fresh_engine(np_dirs, fetch_labels=True, neuronpedia_url=down.url)  # allowed, but offline
    engine.labels_fetch.join(60)
    assert "cannot reach" in engine.labels_fetch_error and engine.labels.source.startswith("decoder")

    engine = fresh_engine(np_dirs, fetch_labels=True, neuronpedia_url=export.url)
    engine.labels_fetch.join(60)
    assert engine.labels_fetch_error is None
    assert engine.label(5) == best(5) and engine.labels.source.startswith("Neuronpedia explanations")
    assert fresh_engine(np_dirs, fetch_labels=True, neuronpedia_url=export.url).labels_fetch is None  # cached


def test_the_setting_is_checked():
    assert Settings().labels_fetch == "never"
    assert parse_settings('labels_fetch = "always"').labels_fetch == "always"
    with pytest.raises(InputError, match="labels_fetch must be"):
        parse_settings('labels_fetch = "ask me"')


async def test_the_panel_shows_neuronpedia_labels_and_details_the_others(np_dirs, cache, export):
    from morph.editor.app import MorphApp
    from morph.editor.feature_screen import FeatureDetailScreen
    from morph.editor.panel import FeatureList
    from tests.test_editor import TEXT, analysed
    from tests.pilot import wait_for

    assert main(["labels", "fetch", "--url", export.url, "--sae", str(np_dirs["sae"])]) == 0
    engine = fresh_engine(np_dirs)
    app = MorphApp(None, TEXT, Settings(debounce_ms=30), lambda _progress: engine)
    async with app.run_test(size=(120, 30)) as pilot:
        await wait_for(pilot, lambda: analysed(app))
        rows = app.query_one("#paragraph-features", FeatureList).rows
        assert rows and all(row.label == best(row.feature) for row in rows)
        await pilot.press("f9", "d")
        await wait_for(pilot, lambda: isinstance(app.screen, FeatureDetailScreen))
        feature = app.screen.report.info.id
        assert best(feature) in str(app.screen.query_one("#title").render())
        assert other(feature) in str(app.screen.query_one("#explanations").render())
        await pilot.press("escape")
        await wait_for(pilot, lambda: not isinstance(app.screen, FeatureDetailScreen))


async def test_labels_fetched_in_the_background_reach_the_panel_when_they_arrive(np_dirs, cache):
    """The first load of an SAE with the network allowed: the editor analyses with the labels it has; when
    Neuronpedia's explanations arrive, the legend and the panel show them without a keystroke."""
    from morph.editor.app import MorphApp
    from morph.editor.panel import FeatureList
    from tests.test_editor import TEXT, analysed
    from tests.pilot import wait_for

    gate = threading.Event()
    server = FakeExport(export_files(), gate=gate)
    try:
        engine = fresh_engine(np_dirs, fetch_labels=True, neuronpedia_url=server.url)
        app = MorphApp(None, TEXT, Settings(debounce_ms=30), lambda _progress: engine)
        async with app.run_test(size=(120, 30)) as pilot:
            await wait_for(pilot, lambda: analysed(app))
            lists = [app.query_one(f"#{name}-features", FeatureList) for name in ("paragraph", "legend")]
            assert all(lst.rows for lst in lists)
            assert not any(row.label == best(row.feature) for lst in lists for row in lst.rows)
            gate.set()
            await wait_for(pilot, lambda: all(row.label == best(row.feature) for lst in lists for row in lst.rows),
                           timeout=60)
            assert app.view.text == TEXT
    finally:
        gate.set()
        server.close()


def test_partial_folders_of_gone_fetches_are_removed_and_running_ones_kept(np_dirs, cache, export):
    parent = cache_folder(SOURCE).parent
    parent.mkdir(parents=True)
    gone, running = parent / f".{SOURCE.source_id}.partial-999999999", parent / f".{SOURCE.source_id}.partial-{os.getppid()}"
    gone.mkdir()
    running.mkdir()
    assert main(["labels", "fetch", "--url", export.url, "--sae", str(np_dirs["sae"])]) == 0
    assert not gone.exists() and running.exists() and read_cache(SOURCE) is not None
