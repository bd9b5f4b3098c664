"""``python -m llmner.serve``: concurrent clients get ``predict``'s entities, bad requests get their 4xx
without stopping anyone, and the page highlights entities in a real (headless) browser."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

import llmner
from llmner.train import train
from tests.conftest import TINY, compose_config
from tests.test_onnx import assert_same_entities

pytest.importorskip("litserve")

MAX_TEXTS, MAX_CHARS = 8, 300


def _post(url: str, body: bytes, content_type: str = "application/json") -> tuple[int, dict]:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": content_type}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=120) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ckpt(tiny_conll, tmp_path_factory):
    out = tmp_path_factory.mktemp("serve_run")
    cfg = compose_config(TINY + [f"data.path={tiny_conll}", "head=crf", "model.lr_backbone=5e-3", "model.lr_head=5e-2",
                                 "data.batch_size=16", "trainer.max_epochs=1", "data.max_test_samples=8"], out)
    train(cfg)
    return out / "checkpoints" / "last.ckpt"


@pytest.fixture(scope="module")
def server(ckpt, tmp_path_factory):
    """The server as a user starts it, on a free port; stopped (its process group) after the module."""
    port, log = _free_port(), tmp_path_factory.mktemp("serve") / "server.log"
    cmd = [sys.executable, "-m", "llmner.serve", f"ckpt_path={ckpt}", f"port={port}", "max_batch_size=4",
           "batch_timeout=0.05", f"max_texts={MAX_TEXTS}", f"max_chars={MAX_CHARS}", f"hydra.run.dir={log.parent}"]
    with open(log, "w") as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, start_new_session=True,
                                env=os.environ | {"OMP_NUM_THREADS": "1"})
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while True:
            try:
                with urllib.request.urlopen(url + "/health", timeout=5) as reply:
                    if reply.read() == b"ok":
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "the server did not get ready in 300 s:\n" + log.read_text()[-3000:]
            time.sleep(1)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


TEXTS = ["John Smith visited Paris on Monday .", "the Red Cross said Anna Berg will lead it .",
         "officials in Oslo met the United Nations .", "prices fell again on Tuesday .", "Li Wei and Sara Costa flew to Lima .",
         "a spokesman for Shell in Cairo declined to comment ."]


def test_check_request_by_hand():
    from llmner.serve import check_request

    assert check_request(b'{"texts": ["a", "b"]}', 2, 5) is None
    assert check_request(b'{"texts": []}', 2, 5) is None
    assert check_request(b'{"texts": [', 2, 5)[0] == 400
    assert check_request(b"\xff\xfe", 2, 5)[0] == 400
    assert check_request(b'["a"]', 2, 5)[0] == 422
    assert check_request(b'{"text": ["a"]}', 2, 5)[0] == 422
    assert check_request(b'{"texts": "a"}', 2, 5)[0] == 422
    assert check_request(b'{"texts": ["a", 3]}', 2, 5)[0] == 422
    assert check_request(b'{"texts": ["a", "b", "c"]}', 2, 5) == (413, "3 texts in one request; the limit is 2 (max_texts)")
    assert check_request(b'{"texts": ["a", "abcdef"]}', 2, 5)[0] == 413


def test_batched_requests_are_split_back_per_request(ckpt):
    """The batched predict (what LitServe calls with several requests) against one predict per request."""
    from llmner.serve import TaggerAPI

    api = TaggerAPI(str(ckpt), max_batch_size=4, batch_timeout=0.01, predict_batch_size=32)
    api.setup("cpu")
    groups = [TEXTS[:2], [], TEXTS[2:5], TEXTS[5:]]
    got = api.predict(groups)
    assert len(got) == len(groups)
    for g, texts in zip(got, groups):  # scores up to the rounding of other padding
        assert_same_entities(g, api.model.predict(texts))
    single = TaggerAPI(str(ckpt), max_batch_size=1, batch_timeout=0.0, predict_batch_size=32)
    single.model = api.model  # no batching: one request's texts per call
    assert single.predict(TEXTS) == api.model.predict(TEXTS)


def test_concurrent_clients_get_predicts_entities(server, ckpt):
    model = llmner.load(ckpt)
    requests = [TEXTS[i % len(TEXTS) : i % len(TEXTS) + 1 + i % 3] for i in range(24)]
    want = [model.predict(r) for r in requests]
    assert any(e for w in want for e in w)
    with ThreadPoolExecutor(12) as pool:
        got = list(pool.map(lambda r: _post(server + "/predict", json.dumps({"texts": r}).encode()), requests))
    assert [g[0] for g in got] == [200] * len(requests)
    for (_, body), w in zip(got, want):
        assert_same_entities(body["entities"], w)


def test_bad_requests_get_their_status_and_stop_no_one(server, ckpt):
    good = json.dumps({"texts": TEXTS[:2]}).encode()
    bad = {
        400: [b'{"texts": ["unfinished', b"not json at all"],
        422: [b'{"text": ["a"]}', b'{"texts": "a"}', b'{"texts": [1, 2]}', b"[]"],
        413: [json.dumps({"texts": ["a"] * (MAX_TEXTS + 1)}).encode(), json.dumps({"texts": ["a" * (MAX_CHARS + 1)]}).encode(),
              b'{"texts": ["' + b"a" * 10_000_000 + b'"]}'],
    }
    jobs = [(status, body) for status, bodies in bad.items() for body in bodies] + [(200, good)] * 6
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda job: (job[0], _post(server + "/predict", job[1])), jobs))
    want = llmner.load(ckpt).predict(TEXTS[:2])
    for expected, (status, body) in got:
        assert status == expected, (expected, status, body)
        if status == 200:
            assert_same_entities(body["entities"], want)
        else:
            assert isinstance(body["detail"], str) and body["detail"]
    # form-encoded JSON (curl -d's default Content-Type) is read as JSON; the server is still up
    status, body = _post(server + "/predict", good, "application/x-www-form-urlencoded")
    assert status == 200
    assert_same_entities(body["entities"], want)
    with urllib.request.urlopen(server + "/health", timeout=10) as reply:
        assert reply.read() == b"ok"


def _chromium() -> str | None:
    """Debian's chromium, installed here if absent and this process may (root, apt-get present)."""
    if not (shutil.which("chromium") and shutil.which("chromedriver")) and os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(["apt-get", "install", "-y", "chromium", "chromium-driver"], capture_output=True, timeout=600)
    return shutil.which("chromium") if shutil.which("chromedriver") else None


def test_page_highlights_the_entities_in_a_browser(server, ckpt, tmp_path):
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install 'llmner[test]')")
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser = _chromium()
    if browser is None:
        pytest.skip("no chromium + chromedriver, and they could not be installed (apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(flag)
    text = TEXTS[0]
    want = llmner.load(ckpt).predict([text], grouped=True)[0]
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(shutil.which("chromedriver")))
    try:
        driver.get(server + "/")
        box = driver.find_element(By.ID, "text")
        box.clear()
        box.send_keys(text)
        driver.find_element(By.ID, "run").click()
        WebDriverWait(driver, 60).until(lambda d: d.find_elements(By.CSS_SELECTOR, "mark.ent")
                                        or d.find_element(By.ID, "result").text)
        marks = driver.find_elements(By.CSS_SELECTOR, "mark.ent")
        found = {}
        for mark in marks:  # the mark's text is the entity followed by its type label
            label = mark.find_element(By.TAG_NAME, "sup").text
            assert label == mark.get_attribute("data-type")
            found.setdefault(label, []).append(mark.text[: -len(label)].strip())
        assert found == {k: v for k, v in want.items() if v}, (found, want)
        assert found, "the model found nothing in the sentence: a weak test"
        assert driver.find_element(By.ID, "result").text.replace("\n", "").startswith(text.split()[0])
        driver.save_screenshot(str(tmp_path / "page.png"))
        assert (tmp_path / "page.png").stat().st_size > 1000
    finally:
        driver.quit()


class _Counting:
    """A request queue that counts the calls made to it (each one a round trip to LitServe's manager)."""

    def __init__(self, queue) -> None:
        self.queue, self.calls = queue, 0

    def get(self, block=True, timeout=None):
        self.calls += 1
        return self.queue.get(block, timeout)

    def get_nowait(self):
        self.calls += 1
        return self.queue.get_nowait()


class _Transport:
    def send(self, item, consumer_id):
        pass


class _Api:
    request_timeout, stream = -1, False

    def __init__(self, max_batch_size: int, batch_timeout: float) -> None:
        self.max_batch_size, self.batch_timeout = max_batch_size, batch_timeout


def _request(i: int) -> tuple:
    return 0, f"uid{i}", time.monotonic(), {"texts": [str(i)]}  # LitServe's (queue id, uid, timestamp, body)


def test_waiting_loop_batches_what_is_queued_and_sleeps_while_idle():
    """``WaitingLoop`` against LitServe's own ``BatchedLoop`` on a real manager queue, as LitServe makes it."""
    import multiprocessing
    import threading

    from litserve.loops import BatchedLoop

    from llmner.serve import WaitingLoop

    with multiprocessing.Manager() as manager:
        queue = _Counting(manager.Queue())
        ours, stock = WaitingLoop(), BatchedLoop()
        for i in range(3):
            queue.queue.put(_request(i))
        batch, timed_out = ours.get_batch_requests(_Api(2, 0.0), queue, _Transport())
        assert [uid for _, uid, _ in batch] == ["uid0", "uid1"] and timed_out == []  # max_batch_size
        batch, _ = ours.get_batch_requests(_Api(8, 0.0), queue, _Transport())
        assert [uid for _, uid, _ in batch] == ["uid2"]  # batch_timeout=0: what is queued, no wait
        # batch_timeout: a request that arrives within it joins the first one's batch
        queue.queue.put(_request(3))
        threading.Timer(0.1, lambda: queue.queue.put(_request(4))).start()
        start = time.monotonic()
        batch, _ = ours.get_batch_requests(_Api(8, 0.5), queue, _Transport())
        assert [uid for _, uid, _ in batch] == ["uid3", "uid4"] and 0.4 < time.monotonic() - start < 2
        # idle for a second: one blocking call here, hundreds of polls in LitServe's loop
        for loop in (ours, stock):
            queue.calls, start = 0, time.monotonic()
            while time.monotonic() - start < 1.0:
                assert loop.get_batch_requests(_Api(8, 0.01), queue, _Transport()) == ([], [])
            if loop is ours:
                assert queue.calls <= 2, queue.calls
            else:
                assert queue.calls > 50, queue.calls  # what the test guards against
