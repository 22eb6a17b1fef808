"""Headless-Chromium test of the web console, driven by Playwright.

Starts `minikafka broker` on a temporary data directory with ephemeral ports (read back from its
log), fills a topic through the CLI, then checks what a user sees in the console: the topic in the
list, its id and configs (with their sources) once selected, its first records in the message
browser, a topic created from the page, and the rate chart moving while a producer runs. Saves a screenshot, prints `N passed, M failed`, exits non-zero on
any failure. Every process it starts is stopped before it exits; every wait has a deadline.

Usage: console_test.py BINARY SCREENSHOT_PATH
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time

from playwright.sync_api import sync_playwright

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
TOPIC = "browser-test"
STARTUP_DEADLINE_S = 60
UI_TIMEOUT_MS = 20_000

# The broker logs where each listener is bound (tracing's fmt output, `addr=HOST:PORT`).
HTTP_RE = re.compile(r"HTTP console and metrics listening.*?addr=(\S+)")
NATIVE_RE = re.compile(r"native server listening.*?addr=(\S+)")

results = []


def check(name, fn):
    try:
        fn()
        results.append((name, None))
        print(f"PASS {name}", flush=True)
    except Exception as e:  # noqa: BLE001 - every failure is reported, none stops the others
        results.append((name, e))
        print(f"FAIL {name}: {e}", flush=True)


class Broker:
    """The broker process; its stderr is scanned for the bound addresses and kept for failures."""

    def __init__(self, binary, data_dir, extra=()):
        env = dict(os.environ, RUST_LOG="info", NO_COLOR="1")
        argv = [binary, "broker", "--data-dir", data_dir, "--listen", "127.0.0.1:0",
                "--http-listen", "127.0.0.1:0", *extra]
        # The Kafka listener is not under test: keep it off its fixed default port.
        help_text = subprocess.run([binary, "broker", "--help"], capture_output=True, text=True,
                                   timeout=30).stdout
        if "--kafka-listen" in help_text:
            argv += ["--kafka-listen", "off"]
        self.proc = subprocess.Popen(
            argv,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
        self.log = []
        self.http = None
        self.native = None
        self.ready = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stderr:
            self.log.append(line)
            if m := HTTP_RE.search(line):
                self.http = m.group(1)
            if m := NATIVE_RE.search(line):
                self.native = m.group(1)
            if self.http and self.native:
                self.ready.set()
        self.ready.set()  # the process ended: stop waiting

    def wait_ready(self):
        if not self.ready.wait(STARTUP_DEADLINE_S) or not (self.http and self.native):
            raise RuntimeError("broker did not report its addresses:\n" + "".join(self.log[-30:]))

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def cli(binary, broker, *args, stdin=None):
    out = subprocess.run([binary, *args, "--broker", broker], input=stdin, capture_output=True,
                         text=True, timeout=60)
    if out.returncode != 0:
        raise RuntimeError(f"minikafka {' '.join(args)} failed: {out.stderr}")
    return out.stdout


class TrickleProducer:
    """Pipes lines into `minikafka produce` at a steady pace until stopped (at most `max_s`)."""

    def __init__(self, binary, broker, topic, max_s=40):
        self.proc = subprocess.Popen([binary, "produce", topic, "--broker", broker],
                                     stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True)
        self.stop_flag = threading.Event()
        self.max_s = max_s
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        deadline = time.monotonic() + self.max_s
        n = 0
        try:
            while not self.stop_flag.is_set() and time.monotonic() < deadline:
                lines = "".join(f"live-{n + i} {'x' * 64}\n" for i in range(50))
                n += 50
                self.proc.stdin.write(lines)
                self.proc.stdin.flush()
                time.sleep(0.1)
        except (BrokenPipeError, ValueError):
            pass

    def stop(self):
        self.stop_flag.set()
        self.thread.join(10)
        try:
            self.proc.stdin.close()
        except BrokenPipeError:
            pass
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


def main():
    binary, screenshot = sys.argv[1], sys.argv[2]
    data_dir = tempfile.mkdtemp(prefix="minikafka-browser-")
    broker = Broker(binary, data_dir)
    producer = None
    follower = []
    try:
        broker.wait_ready()
        url = f"http://{broker.http}/"
        cli(binary, broker.native, "topic", "create", TOPIC, "--partitions", "2",
            "--config", "retention.ms=3600000")
        cli(binary, broker.native, "produce", TOPIC, "--partition", "0",
            stdin="".join(f"hello-{i}\n" for i in range(20)))
        # A consumer group that read part of the topic, so the groups table shows lag.
        cli(binary, broker.native, "consume", TOPIC, "--partition", "0", "--group", "readers",
            "--from-beginning", "--max-messages", "5")

        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.set_default_timeout(UI_TIMEOUT_MS)
            page.goto(url)

            def topic_listed():
                row = page.locator(f'#topics-body tr[data-topic="{TOPIC}"]')
                row.wait_for()
                cells = row.locator("td").all_inner_texts()
                assert cells[1].strip() == "2", f"partitions cell: {cells}"
                assert cells[2].strip() == "20", f"records cell: {cells}"

            check("console lists the test topic with its partitions and records", topic_listed)

            def topic_configs_shown():
                row = page.locator(f'#topics-body tr[data-topic="{TOPIC}"]')
                row.click()
                config = page.locator('#topic-configs-body tr[data-config="retention.ms"]')
                config.wait_for()
                cells = [c.strip() for c in config.locator("td").all_inner_texts()]
                assert cells == ["retention.ms", "3600000", "topic"], f"config row {cells}"
                topic_id = page.inner_text("#topic-detail-id")
                assert re.fullmatch(r"id [A-Za-z0-9_-]{22}", topic_id), topic_id
                policy = page.locator('#topic-configs-body tr[data-config="cleanup.policy"]')
                assert policy.get_attribute("data-source") != "topic", "cleanup.policy not set"
                row.click()  # deselect: the page is as the other checks expect it
                page.locator("#topic-detail").wait_for(state="hidden")

            check("the selected topic shows its id and configs with their sources",
                  topic_configs_shown)

            def browse_first_records():
                page.select_option("#browser-topic", TOPIC)
                page.select_option("#browser-partition", "0")
                page.fill("#browser-offset", "0")
                page.fill("#browser-limit", "5")
                page.click("#browse-btn")
                page.locator('#records-body tr[data-offset="0"]').wait_for()
                rows = page.locator("#records-body tr")
                assert rows.count() == 5, f"{rows.count()} rows"
                for i in range(5):
                    value = rows.nth(i).locator("td.value").inner_text()
                    assert value == f"hello-{i}", f"row {i} value {value!r}"
                page.click("#browse-next")
                page.locator('#records-body tr[data-offset="5"]').wait_for()

            check("message browser shows the first records and pages on", browse_first_records)

            def group_lag_shown():
                row = page.locator('#groups-body tr[data-group="readers"]')
                row.wait_for()
                lag = row.locator("td").nth(3).inner_text().strip()
                assert lag == "15", f"lag {lag!r}"
                row.click()
                detail = page.locator("#group-detail-body tr")
                detail.first.wait_for()
                cells = [c.strip() for c in detail.first.locator("td").all_inner_texts()]
                assert cells == [TOPIC, "0", "5", "20", "15"], f"detail row {cells}"
                members = page.inner_text("#group-detail-members")
                assert "no live members" in members, members

            check("consumer group shows its lag", group_lag_shown)

            def create_topic_from_page():
                page.fill("#create-name", "made-in-browser")
                page.fill("#create-partitions", "3")
                page.click("#create-btn")
                page.locator('#topics-body tr[data-topic="made-in-browser"]').wait_for()
                status = page.inner_text("#create-status")
                assert "created" in status, status

            check("a topic can be created from the page", create_topic_from_page)

            def chart_moves():
                nonlocal producer
                canvas = page.locator("#rate-chart")
                before = canvas.evaluate("c => c.toDataURL()")
                producer = TrickleProducer(binary, broker.native, TOPIC)
                page.wait_for_function(
                    "() => Number(document.getElementById('rate-chart').dataset.produceNow) > 0",
                    timeout=UI_TIMEOUT_MS)
                # Let a few more samples land so the screenshot shows a line, not a dot.
                page.wait_for_function(
                    "() => { const s = window.consoleState.latestRates['" + TOPIC + "'];"
                    " return s && s.produce_records > 0 }", timeout=UI_TIMEOUT_MS)
                # A consumer following the topic draws the consume line too.
                follower.append(subprocess.Popen(
                    [binary, "consume", TOPIC, "--from-beginning", "--follow", "--broker",
                     broker.native], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
                page.wait_for_function(
                    "() => Number(document.getElementById('rate-chart').dataset.consumeNow) > 0",
                    timeout=UI_TIMEOUT_MS)
                page.wait_for_timeout(6000)
                after = canvas.evaluate("c => c.toDataURL()")
                assert after != before, "the chart did not change"
                rate = page.locator(f'#topics-body tr[data-topic="{TOPIC}"] td[data-rate="in"]')
                assert rate.inner_text().strip() not in ("0", ""), rate.inner_text()
                page.select_option("#browser-topic", TOPIC)
                page.check('input[name="rate-window"][value="60"]')
                page.fill("#browser-offset", "0")
                page.fill("#browser-limit", "8")
                page.click("#browse-btn")
                page.locator('#records-body tr[data-offset="7"]').wait_for()
                page.screenshot(path=screenshot, full_page=True)

            check("rate chart moves while a producer runs", chart_moves)

            def token_is_asked_once_and_used():
                secured = Broker(binary, data_dir + "-secured", ["--auth-token", "t0ken"])
                try:
                    secured.wait_ready()
                    p2 = browser.new_page()
                    p2.set_default_timeout(UI_TIMEOUT_MS)
                    prompts = []

                    def answer(dialog):
                        prompts.append(dialog.message)
                        dialog.accept("t0ken")

                    p2.on("dialog", answer)
                    p2.goto(f"http://{secured.http}/")
                    p2.fill("#create-name", "behind-a-token")
                    p2.click("#create-btn")
                    p2.locator('#topics-body tr[data-topic="behind-a-token"]').wait_for()
                    assert len(prompts) == 1, f"asked {len(prompts)} times: {prompts}"
                    p2.close()
                finally:
                    secured.stop()
                    shutil.rmtree(data_dir + "-secured", ignore_errors=True)

            check("a broker with an auth token gets it from the user once", token_is_asked_once_and_used)
            browser.close()
    except Exception as e:  # noqa: BLE001
        results.append(("setup", e))
        print(f"FAIL setup: {e}", flush=True)
    finally:
        for f in follower:
            f.terminate()
            try:
                f.wait(10)
            except subprocess.TimeoutExpired:
                f.kill()
                f.wait(5)
        if producer:
            producer.stop()
        broker.stop()
        shutil.rmtree(data_dir, ignore_errors=True)

    failed = sum(1 for _, e in results if e is not None)
    passed = len(results) - failed
    print(f"{passed} passed, {failed} failed")
    if failed:
        print("broker log tail:\n" + "".join(broker.log[-20:]), file=sys.stderr)
    return 1 if failed or passed == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
