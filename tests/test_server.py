"""`morph serve` and the RemoteEngine: results through the server equal the local engine's, a keystroke
travels as a change, the guards answer 4xx in one line, Neuronpedia's routes answer in its shapes."""

from __future__ import annotations

import numpy as np
import pytest

from morph.errors import NoFeatureMatches
from morph.features.analysis import Analysis, AnalysisConfig, FinalResult, PartialResult
from morph.features.engine import Engine

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("httpx")

from tests.live_server import LiveServer  # noqa: E402

TEXT = ("The lighthouse keeper climbed the stairs at dusk.\nThe lamp was cold and the sea was loud.\n\n"
        "In the village, the baker counted loaves and coins.\nShe sang while the ovens warmed.\n\n") * 6

ARRAYS = ("token_ids", "offsets", "indptr", "indices", "values", "hook_acts", "sse")


def assert_same(local: Analysis, remote: Analysis) -> None:
    for name in ARRAYS:
        a, b = getattr(local, name), getattr(remote, name)
        assert a.dtype == b.dtype, name
        assert a.shape == b.shape, name
        assert np.array_equal(a, b), name
    assert local.paragraphs == remote.paragraphs and local.markup == remote.markup
    assert local.text_length == remote.text_length and local.generation == remote.generation
    assert local.d_sae == remote.d_sae
    assert local.summaries(5) == remote.summaries(5)


def assert_close(local: Analysis, remote: Analysis) -> None:
    """`assert_same` within float rounding, for analyses whose batches may have shared a forward pass with
    another client's (a pass's shape moves the last bits of its sums)."""
    for name in ("token_ids", "offsets"):
        assert np.array_equal(getattr(local, name), getattr(remote, name)), name
    features = list(range(local.d_sae))
    np.testing.assert_allclose(remote.feature_matrix(features), local.feature_matrix(features), atol=1e-5)
    np.testing.assert_allclose(remote.sse, local.sse, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(remote.hook_acts.astype(np.float32), local.hook_acts.astype(np.float32), atol=2e-3)
    assert local.paragraphs == remote.paragraphs and local.markup == remote.markup
    assert local.text_length == remote.text_length and local.generation == remote.generation


@pytest.fixture(scope="module")
def engine(tiny_lens, one_torch_thread):
    return Engine(tiny_lens)


@pytest.fixture(scope="module")
def server(engine):
    with LiveServer(engine) as live:
        yield live


def test_norms_travel_whole_with_their_start_means_and_content_shares():
    """A client ranks with the server's statistics: the start means (a text's first positions) and the content
    words' shares come too."""
    from morph.features.ranking import FeatureNorms
    from morph.server.wire import norms_from_json, norms_to_json

    one = np.arange(4, dtype=np.float32)
    for start, content in ((None, None), (np.arange(12, dtype=np.float32).reshape(3, 4), one / 4)):
        back = norms_from_json(norms_to_json(FeatureNorms(one, one + 1, one + 2, start, content)))
        assert np.array_equal(back.typical, one + 2)
        assert (back.start is None) if start is None else np.array_equal(back.start, start)
        assert (back.content is None) if content is None else np.array_equal(back.content, content)


def test_remote_analysis_equals_local_element_for_element(tiny_lens, server):
    from morph.server.remote import RemoteEngine

    local = Engine(tiny_lens)
    remote = RemoteEngine(server.url)
    assert remote.model_name == local.model_name and remote.sae_name == local.sae_name
    assert_same(local.analyze(TEXT, 1), remote.analyze(TEXT, 1))
    headed = "# The lighthouse\n\n" + TEXT  # a paragraph's opening mark travels too
    assert_same(local.analyze(headed, 4), remote.analyze(headed, 4))
    assert remote.analyze(headed, 5).markup[0] == 2
    # a keystroke in the middle: the same numbers, incrementally on both sides
    at = TEXT.index("baker") + 5
    edited = TEXT[:at] + "s" + TEXT[at:]
    local_events = list(local.stream(edited, 2, focus=at + 1))
    remote_events = list(remote.stream(edited, 2, focus=at + 1))
    assert [type(e) for e in local_events] == [type(e) for e in remote_events]
    for a, b in zip(local_events, remote_events):
        if isinstance(a, (PartialResult, FinalResult)):
            assert_same(a.analysis, b.analysis)
    final = remote_events[-1].analysis
    assert np.array_equal(local.feature_scales(local_events[-1].analysis), remote.feature_scales(final))
    feature = int(final.indices[0])
    assert remote.label(feature) == local.label(feature)
    assert remote.feature_report(feature, final) == local.feature_report(feature, local_events[-1].analysis)
    assert remote.labels.search("the", 5) == local.labels.search("the", 5)


def test_a_keystroke_travels_as_the_edit(server):
    from morph.server.remote import RemoteEngine
    from morph.server.wire import common_rows

    remote = RemoteEngine(server.url)
    sizes: list[int] = []
    remote._http.client.event_hooks["request"].append(
        lambda request: sizes.append(len(request.read())) if request.url.path == "/v1/morph/analyze" else None)
    text = TEXT * 4
    first = remote.analyze(text, 1)
    at = len(text) // 2
    edited = text[:at] + "x" + text[at:]
    second = remote.analyze(edited, 2, focus=at + 1)
    assert len(sizes) == 2 and sizes[0] > len(text) and sizes[1] < 400  # the keystroke went up as the edit
    head, tail = common_rows(first, second)
    sent = second.n_tokens - head - tail
    # the rows between are those of the few recomputed blocks (the edited one and its neighbours)
    assert sent <= 2 * AnalysisConfig().max_block_tokens
    assert sent < 0.25 * second.n_tokens
    assert second.stats.reused_blocks > 3 * second.stats.computed_blocks  # the server kept the document


def test_a_restarted_server_sends_the_document_again(engine):
    from morph.server.remote import RemoteEngine

    live = LiveServer(engine).start()
    try:
        remote = RemoteEngine(live.url)
        first = remote.analyze(TEXT, 1)
        live.stop()
        from morph.errors import ServerUnavailable

        with pytest.raises(ServerUnavailable, match="down or unreachable"):
            remote.analyze(TEXT + "!", 2)
        live.start()
        again = remote.analyze(TEXT + "!", 3)
        assert again.n_tokens >= first.n_tokens and again.generation == 3
        assert_same(Engine(engine.lens).analyze(TEXT + "!", 3), again)
    finally:
        live.stop()


def test_cli_analyze_through_the_server_prints_what_the_local_one_does(tiny_dirs, server, tmp_path, capsys):
    import json

    from morph.cli import main

    path = tmp_path / "draft.txt"
    path.write_text(TEXT, encoding="utf-8")
    assert main(["analyze", str(path), "--json", "--model", str(tiny_dirs["model"]), "--sae",
                 str(tiny_dirs["sae"]), "--device", "cpu"]) == 0
    local = json.loads(capsys.readouterr().out)
    assert main(["analyze", str(path), "--json", "--server", server.url]) == 0
    remote = json.loads(capsys.readouterr().out)
    for report in (local, remote):
        for p in report["paragraphs"]:
            p.pop("elapsed_s", None)
    assert remote["tokens"] == local["tokens"]
    assert remote["paragraphs"] == local["paragraphs"]


def test_cli_with_the_server_down_says_so_in_one_line(capsys):
    from morph.cli import main
    from tests.live_server import free_port

    code = main(["analyze", __file__, "--server", f"http://127.0.0.1:{free_port()}"])
    err = capsys.readouterr().err
    assert code != 0
    assert err.count("\n") == 1 and "down or unreachable" in err and "Traceback" not in err


def test_two_editors_and_a_one_off_at_once_each_get_the_local_numbers(tiny_lens, server):
    import threading

    from morph.server.remote import RemoteEngine

    texts = [TEXT, TEXT.replace("lighthouse", "harbour"), TEXT.upper()]

    def typing(engine, text: str) -> Analysis:  # each keystroke's analysis after the last, as in the editor
        for step in range(3):
            engine.analyze(text[: len(text) - 3 + step], 7, focus=len(text) - 3 + step)
        return engine.analyze(text, 7, focus=len(text))

    expected = [typing(Engine(tiny_lens), texts[0]), typing(Engine(tiny_lens), texts[1]),
                Engine(tiny_lens).analyze(texts[2], 7)]
    results: dict[int, Analysis] = {}
    errors: list[BaseException] = []

    def client(i: int) -> None:
        try:
            remote = RemoteEngine(server.url)
            if i == 2:  # the CLI's way: a window at a time, nothing kept on the server
                window = next(iter(remote.analyze_windows(texts[i])))
                results[i] = window.analysis
                results[i].generation = 7
            else:
                results[i] = typing(remote, texts[i])
        except BaseException as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    for i in range(3):
        assert_close(expected[i], results[i])  # two documents' batches may have shared a pass


def test_two_editors_opening_documents_at_once_share_the_servers_passes(tiny_lens, one_torch_thread):
    """Two clients open documents while another request has the model's turn: their padded batches go through
    the model together (the info route says how passes were shared), and each gets the local engine's numbers."""
    import threading

    import httpx

    from morph.server.remote import RemoteEngine

    config = AnalysisConfig(context_tokens=12, min_block_tokens=6, max_block_tokens=20, segment_tokens=60)
    engine = Engine(tiny_lens, config)
    texts = [TEXT, TEXT.replace("lighthouse", "harbour")]
    expected = [Engine(tiny_lens, config).analyze(text) for text in texts]
    results: dict[int, Analysis] = {}
    with LiveServer(engine) as live:
        turns = live.app.app.state.turns
        threads = [threading.Thread(target=lambda i=i: results.__setitem__(i, RemoteEngine(live.url).analyze(
            texts[i]))) for i in range(2)]
        turns.checkpoint()  # a third client's request has the model's turn
        for thread in threads:
            thread.start()
        while len(turns._waiting) < 2:  # both documents wait for it
            threading.Event().wait(0.01)
        turns.done()
        for thread in threads:
            thread.join(60)
        shared = httpx.get(f"{live.url}/v1/morph/info").json()["analysis_passes"]
    assert shared["documents"] == 2 and shared["largest"] >= 2
    for i in range(2):
        assert_close(expected[i], results[i])


def test_morph_serve_through_the_entry_point(tiny_dirs, tmp_path):
    import os
    import subprocess
    import sys
    import time

    import httpx

    from tests.live_server import free_port

    port = free_port()
    env = dict(os.environ, HF_HUB_OFFLINE="1", MORPH_SECRET_KEY="k3y")
    server = subprocess.Popen([sys.executable, "-m", "morph", "serve", "--model", str(tiny_dirs["model"]),
                               "--sae", str(tiny_dirs["sae"]), "--device", "cpu", "--port", str(port)],
                              env=env, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert server.poll() is None and time.monotonic() < deadline, "morph serve did not start"
            time.sleep(0.2)
        path = tmp_path / "draft.txt"
        path.write_text(TEXT, encoding="utf-8")
        done = subprocess.run([sys.executable, "-m", "morph", "analyze", str(path), "--json", "--server",
                               f"127.0.0.1:{port}"], env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert '"paragraphs"' in done.stdout
        refused = subprocess.run([sys.executable, "-m", "morph", "analyze", str(path), "--server",
                                  f"127.0.0.1:{port}"], env=dict(env, MORPH_SECRET_KEY="wrong"),
                                 capture_output=True, text=True, timeout=120)
        assert refused.returncode == 2 and refused.stderr.count("\n") == 1 and "refused the key" in refused.stderr
    finally:
        server.terminate()
        _, err = server.communicate(timeout=30)
    assert "serving" in err and "127.0.0.1" in err and "Traceback" not in err


def test_steering_through_the_server_streams_the_local_candidates(tiny_lens, server):
    import threading

    from morph.features.steering import CandidateReady, SteerDone, SteerProgress, SteerRequest
    from morph.server.remote import RemoteEngine

    remote = RemoteEngine(server.url).steerer()
    local = Engine(tiny_lens).steerer()
    start, end = TEXT.index("The lamp"), TEXT.index(" loud.") + 6
    assert remote.concepts(TEXT, start, end, 5) == local.concepts(TEXT, start, end, 5)
    assert remote.concepts_for("sea", TEXT, start, end, 3) == local.concepts_for("sea", TEXT, start, end, 3)
    with pytest.raises(NoFeatureMatches, match="no feature matches 'zebra'"):  # as locally: the words may go alone
        remote.concepts_for("zebra", TEXT, start, end, 3)
    assert remote.search("the", 3) == local.search("the", 3)
    assert remote.label(3) == local.label(3)
    request = SteerRequest.single(3, 2.0, n=2, max_tokens=6, seed=1)
    remote.prepare(TEXT, start, end)  # the server reads the selection ahead, as the pane asks it to
    events = list(remote.stream(TEXT, start, end, request))
    assert isinstance(events[-1], SteerDone) and events[-1].result.rounds == 2  # nothing passes: a second round
    assert sum(isinstance(e, CandidateReady) for e in events) == 4
    assert {e.round for e in events if isinstance(e, SteerProgress)} == {1, 2}
    expected = local.run(TEXT, start, end, request)
    assert events[-1].result.candidates == expected.candidates
    assert events[-1].result.original == expected.original and events[-1].result.request == request
    # a cancel ends the run with its SteerDone (cancelled), as locally
    cancel = threading.Event()
    cancel.set()
    done = remote.run(TEXT, start, end, SteerRequest.single(3, 2.0, n=2, max_tokens=40, seed=1), cancel)
    assert done.cancelled
    # a bad request is refused before any event, in one line
    from morph.errors import InputError

    with pytest.raises(InputError, match="refused the request"):
        remote.stream(TEXT, end, start, request)


def test_a_neuronpedia_inference_server_as_the_engine(engine, server, tmp_path, capsys):
    """Against morph serve's Neuronpedia routes: each token's top features are the server's topk-by-token."""
    import httpx

    from morph.cli import main
    from morph.server.neuronpedia_client import NeuronpediaEngine

    url = f"neuronpedia+{server.url}?model={engine.model_name}&source={engine.sae_name}&topk=4"
    remote = NeuronpediaEngine(url)
    text = "The lamp was cold.\n\nThe sea was loud and grey."
    analysis = remote.analyze(text, 5)
    direct = httpx.post(server.url + "/v1/activation/topk-by-token", json={
        "prompt": text, "model": engine.model_name, "source": engine.sae_name, "ignoreBos": True, "topK": 4}).json()
    assert analysis.generation == 5 and analysis.n_tokens == len(direct["results"])
    for i, result in enumerate(direct["results"]):
        start, end = analysis.offsets[i]
        assert text[start:end] == result["token"]
        assert analysis.token_features(i, 4) == [(f["featureIndex"], pytest.approx(f["activationValue"]))
                                                 for f in result["topFeatures"]]
    assert remote.label(7) == "feature 7" and analysis.summaries(3)
    path = tmp_path / "draft.txt"
    path.write_text(text, encoding="utf-8")
    assert main(["analyze", str(path), "--json", "--server", url]) == 0
    assert '"paragraphs"' in capsys.readouterr().out
    assert main(["analyze", str(path), "--server", f"neuronpedia+{server.url}"]) == 2
    assert "needs ?model=" in capsys.readouterr().err


def test_cli_features_and_steer_through_the_server_print_what_the_local_ones_do(tiny_dirs, server, tmp_path, capsys):
    import json

    from morph.cli import main

    lens_args = ["--model", str(tiny_dirs["model"]), "--sae", str(tiny_dirs["sae"]), "--device", "cpu"]
    path = tmp_path / "draft.txt"
    path.write_text(TEXT, encoding="utf-8")
    for command in (["features", "the", "--json", "--limit", "4"], ["features", "--id", "5", "--json"],
                    ["steer", str(path), "--start", "0", "--end", "40", "--feature", "3", "--strength", "2", "-n",
                     "2", "--max-tokens", "5", "--json"]):
        assert main(command + lens_args) == 0
        local = json.loads(capsys.readouterr().out)
        assert main(command + ["--server", server.url]) == 0
        remote = json.loads(capsys.readouterr().out)
        if command[0] == "steer":
            for report in (local, remote):
                for key in ("elapsed_s", "first_candidate_s", "tokens_per_s"):
                    report.pop(key, None)
        assert remote == local


def test_a_server_of_another_protocol_is_refused_in_one_line(capsys):
    """An older `morph serve` (protocol 1) answers: the client says so, it does not misread the answers."""
    import http.server
    import json
    import threading

    from morph.cli import main

    class OldServer(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802
            body = json.dumps({"api": 1, "model": "m", "sae": "s", "d_sae": 8, "labels_source": "x"}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    old = http.server.ThreadingHTTPServer(("127.0.0.1", 0), OldServer)
    threading.Thread(target=old.serve_forever, daemon=True).start()
    try:
        code = main(["analyze", __file__, "--server", f"http://127.0.0.1:{old.server_address[1]}"])
    finally:
        old.shutdown()
        old.server_close()
    err = capsys.readouterr().err
    assert code != 0 and err.count("\n") == 1 and "protocol 1" in err and "Traceback" not in err
