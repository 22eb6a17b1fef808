"""Headless-Chromium test of the web console, driven by Playwright.

Starts `minikafka broker` on a temporary data directory with ephemeral ports (read back from its
log), fills a topic through the CLI, then checks what a user sees in the console: the topic in the
list, its id and configs (with their sources) once selected, its first records in the message
browser, a topic created from the page, the rate chart moving while a producer runs, and the cluster
card saying it is a single broker. Then starts a three-broker cluster (`--controllers`), SIGKILLs
one broker and checks the cluster card: the controller marked once, each broker's role, the killed
broker fenced, the under-replicated and offline partitions highlighted, a move and its throttle. Saves screenshots, prints `N passed, M failed`,
exits non-zero on any failure. Every process it starts is stopped before it exits; every wait has a deadline.

Usage: console_test.py BINARY SCREENSHOT_PATH
"""

import os
import re
import shutil
import socket
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


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    """Three brokers forming one cluster on loopback: node ids 1..3, each one's cluster listener
    on a free port named in everyone's `--controllers`, the other listeners on ephemeral ports."""

    def __init__(self, binary, data_dir, size=3):
        self.binary = binary
        ports = {i: free_port() for i in range(1, size + 1)}
        controllers = ",".join(f"{i}@127.0.0.1:{p}" for i, p in ports.items())
        self.brokers = {}
        self.args = {}
        for i, port in ports.items():
            self.args[i] = (os.path.join(data_dir, f"broker{i}"), [
                "--node-id", str(i), "--cluster-listen", f"127.0.0.1:{port}",
                "--controllers", controllers, "--broker-session-timeout-ms", "2000"])
            self.brokers[i] = Broker(binary, *self.args[i])

    def wait_ready(self):
        for b in self.brokers.values():
            b.wait_ready()

    def natives(self, exclude=()):
        return ",".join(b.native for i, b in self.brokers.items() if i not in exclude)

    def kill(self, i):
        b = self.brokers[i]
        b.proc.kill()
        b.proc.wait(15)

    def restart(self, i):
        """Starts broker `i` again on its data dir (its other listeners get new ports)."""
        self.brokers[i] = Broker(self.binary, *self.args[i])
        self.brokers[i].wait_ready()

    def stop(self):
        for b in self.brokers.values():
            b.stop()

    def log_tail(self):
        return "".join(f"--- broker {i}\n" + "".join(b.log[-15:]) for i, b in self.brokers.items())


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

            def single_broker_cluster_card():
                page.locator("#cluster-single").wait_for()
                summary = page.inner_text("#cluster-summary")
                assert summary == "single broker", summary
                rows = page.locator("#cluster-brokers-body tr")
                assert rows.count() == 1, f"{rows.count()} broker rows"
                row = page.locator('#cluster-brokers-body tr[data-broker="0"]')
                assert row.get_attribute("data-controller") == "true"
                assert row.get_attribute("data-state") == "alive"
                assert row.locator("td.role").inner_text() == "controller"
                leads = row.locator('td[data-count="leads"]').inner_text().strip()
                assert leads == "2", f"leads {leads!r}"
                assert f"{TOPIC}/0" in row.locator("td.plist").inner_text()
                assert page.locator("#cluster-attention-body tr.empty").count() == 1
                assert not page.locator("#cluster-reassignments").is_visible(), \
                    "no reassignments are reported: the section stays hidden"

            check("the cluster card says it is a single broker leading every partition",
                  single_broker_cluster_card)

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

            def cluster_card_shows_a_killed_broker():
                cluster = Cluster(binary, data_dir + "-cluster")
                try:
                    cluster.wait_ready()
                    # Three replicas of each partition, and one partition with a single replica
                    # per broker: the killed broker's goes offline.
                    deadline = time.monotonic() + STARTUP_DEADLINE_S
                    while True:
                        try:
                            cli(binary, cluster.natives(), "topic", "create", "replicated",
                                "--partitions", "3", "--replication-factor", "3")
                            cli(binary, cluster.natives(), "topic", "create", "solo",
                                "--partitions", "3", "--replication-factor", "1")
                            break
                        except RuntimeError:
                            if time.monotonic() > deadline:
                                raise
                            time.sleep(1)
                    p3 = browser.new_page(viewport={"width": 1280, "height": 1000})
                    p3.set_default_timeout(UI_TIMEOUT_MS)
                    p3.goto(f"http://{cluster.brokers[1].http}/")
                    p3.wait_for_function(
                        "() => { const c = window.consoleState.cluster; return c && c.clustered &&"
                        " c.controller !== null && c.brokers.length === 3 &&"
                        " c.brokers.every(b => !b.fenced) && c.partitions.length === 6 &&"
                        " c.under_replicated.length === 0 }", timeout=60_000)
                    assert p3.locator("#cluster-single").is_hidden()
                    marked = p3.locator('#cluster-brokers-body tr[data-controller="true"]')
                    assert marked.count() == 1, f"{marked.count()} controllers marked"
                    controller = int(marked.get_attribute("data-broker"))
                    assert p3.locator(".badge").count() == 1
                    # The role column: the controller, and the two other metadata voters.
                    roles = {int(r.get_attribute("data-broker")): r.locator("td.role").inner_text()
                             for r in p3.locator("#cluster-brokers-body tr").all()}
                    assert roles == {i: "controller" if i == controller else "voter"
                                     for i in (1, 2, 3)}, roles
                    # Kill a broker that is neither the controller nor the one serving the page.
                    victim = next(i for i in (2, 3) if i != controller)
                    moved = next(q["partition"] for q in p3.evaluate("window.consoleState.cluster")
                                 ["partitions"] if q["topic"] == "solo" and q["replicas"] == [1])
                    cluster.kill(victim)
                    # Moving broker 1's solo partition there, asked before the dead broker's session
                    # ends (a fenced broker cannot be added): the move waits for it.
                    cli(binary, cluster.natives(exclude=(victim,)), "topic", "reassign", "solo",
                        "--partition", str(moved), "--replicas", str(victim),
                        "--throttle-mb-per-s", "5")
                    row = p3.locator(f'#cluster-brokers-body tr[data-broker="{victim}"]')
                    p3.wait_for_function(
                        f"() => document.querySelector('#cluster-brokers-body"
                        f" tr[data-broker=\"{victim}\"]').dataset.state === 'fenced'",
                        timeout=60_000)
                    assert row.locator("td.state-fenced").inner_text() == "fenced"
                    p3.locator('#cluster-attention-body tr[data-state="under-replicated"]'
                               '[data-topic="replicated"]').first.wait_for()
                    offline = p3.locator('#cluster-attention-body tr[data-state="offline"]')
                    offline.first.wait_for()
                    assert offline.count() == 1, f"{offline.count()} offline rows"
                    cells = [c.strip() for c in offline.locator("td").all_inner_texts()]
                    assert cells[0] == "solo" and cells[2] == "offline" and cells[3] == "none", cells
                    assert cells[4] == f"[{victim}]", cells
                    under = p3.locator('#cluster-attention-body tr.under-replicated'
                                       '[data-topic="replicated"]')
                    assert under.count() == 3, f"{under.count()} under-replicated rows"
                    assert under.first.evaluate(
                        "r => getComputedStyle(r.cells[0]).backgroundColor") != "rgba(0, 0, 0, 0)"
                    # Its replicated partition moved to a survivor, its solo partition has no leader.
                    leads = row.locator('td[data-count="leads"]').inner_text().strip()
                    assert leads == "0", f"the fenced broker leads {leads}"
                    # The move is listed; broker 1 serves the page and leads the partition, and
                    # the dead broker never fetched: no count of records to copy yet.
                    move = p3.locator(f'#cluster-reassignments-body tr[data-topic="solo"]'
                                      f'[data-partition="{moved}"]')
                    move.wait_for()
                    assert p3.locator("#cluster-reassignments").is_visible()
                    assert p3.locator("#cluster-reassignments-body tr").count() == 1
                    throttle = p3.locator("#cluster-throttle")
                    throttle.wait_for()
                    assert throttle.inner_text() == "throttled to 5 MB/s per broker", \
                        throttle.inner_text()
                    cells = [c.strip() for c in move.locator("td").all_inner_texts()]
                    assert cells == ["solo", str(moved), f"[{victim}]", "[1]", "1",
                                     f"broker {victim}: catching up"], cells
                    # 30 MB for it to copy, then it returns: at 5 MB/s the copy takes about six
                    # seconds, and the row shows a bar of the share of broker 1's log it holds.
                    cli(binary, cluster.natives(exclude=(victim,)), "produce", "solo",
                        "--partition", str(moved), stdin=("x" * 999 + "\n") * 30_000)
                    cluster.restart(victim)
                    copying = (f"#cluster-reassignments-body tr[data-topic=\"solo\"]"
                               f" div[data-replica=\"{victim}\"]")
                    p3.wait_for_function(
                        "sel => { const d = document.querySelector(sel); return d &&"
                        " d.querySelector('progress') && +d.dataset.copied > 0 &&"
                        " +d.dataset.copied < +d.dataset.total }", arg=copying, timeout=60_000)
                    bar = p3.locator(copying + " progress")
                    assert 0 < float(bar.get_attribute("value")) < float(bar.get_attribute("max"))
                    text = p3.locator(copying).inner_text().strip()
                    assert re.fullmatch(rf"broker {victim}: \d+% copied, [\d.]+ (KiB|MiB) "
                                        r"\([\d,]+ records\) to copy", text), text
                    p3.screenshot(path=screenshot.replace(".png", "-cluster.png"), full_page=True)
                    # The move ends: the row goes, and so does the throttle.
                    p3.wait_for_function(
                        "() => !document.querySelector('#cluster-reassignments-body tr[data-topic]')",
                        timeout=60_000)
                    throttle.wait_for(state="hidden")
                    p3.close()
                except Exception as e:
                    raise RuntimeError(f"{e}\n{cluster.log_tail()}") from e
                finally:
                    cluster.stop()
                    shutil.rmtree(data_dir + "-cluster", ignore_errors=True)

            check("the cluster card marks the controller, each broker's role, a killed broker, its "
                  "partitions and a throttled move waiting for it, then copying behind a bar",
                  cluster_card_shows_a_killed_broker)
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
