#!/usr/bin/env python3
"""The auditor's console in a real headless Chromium (Debian's `chromium`,
driven by Selenium through Debian's `chromidriver`), against a real
collector over real TLS (certificates made here), with a store written by
two real agents (`wormlog run`) tailing real files.

What the test causes, and then looks for in the pages:
  * agent ehr-01 is killed (SIGKILL: a crash) while a file it reads is
    deleted, and started again: its timeline must show the stretch nobody
    watched, from the crash to the restart, as an unclean stop, and the
    `deleted` gap, at the right times;
  * agent lab-02 is killed and stays down: the fleet overview must put it
    first, as an agent that stopped forwarding;
  * a line with a patient id is written: the search finds it, the record
    view shows it with its checkpoint and receipt, and the disclosure
    bundle downloaded from the page verifies with `wormlog verify --bundle`
    (so does an export downloaded from the page);
  * a hostile line (markup, a bidi override) is shown as text, never run;
  * a user with only the agent role, and an admin without the auditor
    role, see nothing of the bodies (and the API refuses them);
  * a verification started from the page runs to its verdict;
  * every one of those views is in the collector's access log.

Screenshots of each page go to $WORMLOG_CONSOLE_SHOTS (docs/console when
run by tests/console/run.sh --shots).

Run: bash tests/console/run.sh   (builds the binaries, then runs this)
"""

import base64
import datetime
import hashlib
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.request

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

BIN = os.environ.get("WORMLOG_BIN", os.path.join(os.path.dirname(__file__), "../../target/debug"))
WORMLOG = os.path.abspath(os.path.join(BIN, "wormlog"))
COLLECTOR = os.path.abspath(os.path.join(BIN, "wormlog-collector"))
SHOTS = os.environ.get("WORMLOG_CONSOLE_SHOTS")
NS = 1_000_000_000


def wait_for(what, cond, timeout=30.0, every=0.1):
    """Waits until cond() gives something true, at most `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = cond()
        except Exception as e:  # noqa: BLE001 - kept for the message
            last = e
        if last and not isinstance(last, Exception):
            return last
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def make_certs(d):
    """A CA and a server certificate for 127.0.0.1 and localhost."""
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "console test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(days=1))
          .not_valid_after(now + datetime.timedelta(days=30))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False,
                                       encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    import ipaddress
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    with open(f"{d}/ca.pem", "wb") as f:
        f.write(ca.public_bytes(pem))
    with open(f"{d}/server.pem", "wb") as f:
        f.write(cert.public_bytes(pem))
    with open(f"{d}/server-key.pem", "wb") as f:
        f.write(key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    spki = cert.public_key().public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()


def new_token():
    """A user token and the hash the configuration keeps (wormlog-collector token)."""
    p = subprocess.run([COLLECTOR, "token"], capture_output=True, text=True, check=True)
    token = p.stdout.strip()
    return token, hashlib.sha256(token.encode()).hexdigest()


class Env:
    """The collector, the agents and their files, in one temporary directory."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="wormlog-console-")
        self.spki = make_certs(self.dir)
        self.tokens = {}
        users = []
        for name, roles, agents in [("alice", ["auditor"], None), ("bob", ["admin"], None),
                                    ("ehr-01", ["agent"], ["ehr-01"]), ("lab-02", ["agent"], ["lab-02"])]:
            token, digest = new_token()
            self.tokens[name] = token
            with open(f"{self.dir}/{name}.token", "w") as f:
                f.write(token + "\n")
            line = f'[[users]]\nname = "{name}"\nroles = {json.dumps(roles)}\ntoken_sha256 = "{digest}"\n'
            if agents:
                line += f"agents = {json.dumps(agents)}\n"
            users.append(line)
        self.pubkeys = {}
        for a in ["ehr-01", "lab-02"]:
            os.makedirs(f"{self.dir}/{a}/logs")
            self.pubkeys[a] = subprocess.run([WORMLOG, "keygen", "--key-dir", f"{self.dir}/{a}/keys"],
                                             capture_output=True, text=True, check=True).stdout.strip()
        agents = "".join(f'[[agents]]\nid = "{a}"\npubkey = "{k}"\n' for a, k in self.pubkeys.items())
        with open(f"{self.dir}/collector.toml", "w") as f:
            f.write(f"""[collector]
listen = "127.0.0.1:0"
store_dir = "{self.dir}/store"
id = "console-test"
tls_cert = "{self.dir}/server.pem"
tls_key = "{self.dir}/server-key.pem"
append_only = "off"

[console]
late_after = "5s"

[verify]
every = "off"

{agents}
{"".join(users)}""")
        self.collector_log = open(f"{self.dir}/collector.log", "w+")
        self.collector = subprocess.Popen([COLLECTOR, "serve", "--config", f"{self.dir}/collector.toml"],
                                          stdout=self.collector_log, stderr=subprocess.STDOUT)

        def port():
            self.collector_log.seek(0)
            for line in self.collector_log:
                if "listening on 127.0.0.1:" in line:
                    return line.split("listening on 127.0.0.1:")[1].split()[0].strip(",")
            return None
        self.port = wait_for("the collector to listen", port)
        self.url = f"https://127.0.0.1:{self.port}"
        self.ssl = ssl.create_default_context(cafile=f"{self.dir}/ca.pem")
        self.agents = {}

    def agent_config(self, a):
        d = f"{self.dir}/{a}"
        path = f"{d}/agent.toml"
        with open(path, "w") as f:
            f.write(f"""[agent]
id = "{a}"
spool_dir = "{d}/spool"
key_dir = "{d}/keys"
control_socket = "{d}/control.sock"

[spool]
append_only = "off"
checkpoint_interval = "250ms"
heartbeat_interval = "1s"

[[sources.file]]
name = "app"
paths = ["{d}/logs/*.log"]
poll_interval = "100ms"

[forward]
url = "{self.url}"
ca_file = "{self.dir}/ca.pem"
token_file = "{self.dir}/{a}.token"
""")
        return path

    def start(self, a):
        with open(f"{self.dir}/{a}/daemon.log", "a") as log:
            self.agents[a] = subprocess.Popen([WORMLOG, "run", "--config", self.agent_config(a)],
                                              stdout=log, stderr=subprocess.STDOUT)

    def kill(self, a):
        p = self.agents.pop(a)
        p.send_signal(signal.SIGKILL)
        p.wait()

    def write(self, a, name, *lines):
        with open(f"{self.dir}/{a}/logs/{name}", "ab") as f:
            for line in lines:
                f.write(line if isinstance(line, bytes) else line.encode())
                f.write(b"\n")

    def api(self, user, path):
        req = urllib.request.Request(self.url + path, headers={"Authorization": f"Bearer {self.tokens[user]}"})
        with urllib.request.urlopen(req, context=self.ssl, timeout=10) as r:
            return json.load(r)

    def search(self, agent, **q):
        qs = "&".join(f"{k}={urllib.request.quote(str(v))}" for k, v in q.items())
        return self.api("alice", f"/v1/agents/{agent}/records?{qs}")["records"]

    def access(self):
        out = subprocess.run([COLLECTOR, "access", "--store", f"{self.dir}/store", "--json", "--limit", "100000"],
                             capture_output=True, text=True)
        return [json.loads(line) for line in out.stdout.splitlines() if line.strip()]

    def close(self):
        for p in self.agents.values():
            p.send_signal(signal.SIGTERM)
        for p in self.agents.values():
            p.wait(timeout=20)
        self.collector.send_signal(signal.SIGTERM)
        self.collector.wait(timeout=20)
        self.collector_log.close()
        if os.environ.get("WORMLOG_KEEP"):
            print(f"kept: {self.dir}", file=sys.stderr)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)


PATIENT_LINE = "ehr-api user=dr.house action=READ chart=patient-4711 result=ok"
HOSTILE_LINE = "hostile-marker <img src=x onerror=\"window.__pwned=1\"><script>window.__pwned=2</script> \u202egnp.exe"


class ConsoleTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        e = cls.env = Env()
        try:
            cls.make_history(e)
            cls.browser = cls.open_browser(e)
        except BaseException:
            e.close()
            raise

    @classmethod
    def make_history(cls, e):
        e.write("ehr-01", "ehr.log", "ehr-api started", PATIENT_LINE, HOSTILE_LINE)
        e.write("ehr-01", "other.log", "other log: first line")
        e.write("lab-02", "lab.log", "lab analyser online")
        e.start("ehr-01")
        e.start("lab-02")
        wait_for("the patient line at the collector", lambda: e.search("ehr-01", text="patient-4711"))
        wait_for("the other log at the collector", lambda: e.search("ehr-01", text="first", source="app"))
        wait_for("lab-02 at the collector", lambda: e.search("lab-02", text="analyser"))
        # A crash of ehr-01, a file deleted while it is down, a restart.
        cls.crash_ns = time.time_ns()
        e.kill("ehr-01")
        os.remove(f"{e.dir}/ehr-01/logs/other.log")
        e.kill("lab-02")  # and lab-02 stays down: it stopped forwarding
        time.sleep(3.5)   # longer than twice the 1 s heartbeat: a stretch nobody watched
        cls.restart_ns = time.time_ns()
        e.start("ehr-01")
        gap = wait_for("the deleted gap at the collector",
                       lambda: [g for g in e.search("ehr-01", kind="gap") if "deleted" in json.dumps(g)])
        cls.gap_seq = gap[0]["seq"]
        e.write("ehr-01", "ehr.log", "after the restart")
        wait_for("the line after the restart", lambda: e.search("ehr-01", text="restart"))
        # Wait until lab-02's last receipt is older than late_after (5 s):
        # the overview says so.
        wait_for("lab-02 late in the overview", lambda: [
            a for a in e.api("alice", "/v1/overview")["agents"]
            if a["agent"] == "lab-02" and a["severity"] == 2], timeout=30, every=0.5)

    @classmethod
    def open_browser(cls, e):
        cls.downloads = os.path.join(e.dir, "downloads")
        os.makedirs(cls.downloads)
        o = webdriver.ChromeOptions()
        o.binary_location = os.environ.get("CHROMIUM", "/usr/bin/chromium")
        for a in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                  "--window-size=1366,900", f"--user-data-dir={e.dir}/chromium-profile",
                  f"--ignore-certificate-errors-spki-list={e.spki}", "--lang=en-US"]:
            o.add_argument(a)
        o.add_experimental_option("prefs", {"download.default_directory": cls.downloads,
                                            "download.prompt_for_download": False})
        b = webdriver.Chrome(service=Service(os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")), options=o)
        b.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": cls.downloads})
        b.set_script_timeout(20)
        return b

    @classmethod
    def tearDownClass(cls):
        try:
            cls.browser.quit()
        finally:
            cls.env.close()

    # ---- helpers ----

    def login(self, user):
        b = self.browser
        b.get(self.env.url + "/console/#/login")
        b.execute_script("sessionStorage.clear()")
        b.refresh()  # a new page: nobody signed in
        box = wait_for("the token box", lambda: b.find_element(By.ID, "token").is_displayed() and b.find_element(By.ID, "token"))
        box.send_keys(self.env.tokens[user])
        box.send_keys(Keys.ENTER)
        wait_for(f"{user} signed in", lambda: b.find_element(By.CSS_SELECTOR, "[data-testid=user]").text == user)

    def go(self, hash_, ready):
        b = self.browser
        b.execute_script("location.hash = arguments[0]", hash_)
        return wait_for(f"{hash_} to show {ready}", lambda: b.find_elements(By.CSS_SELECTOR, ready))

    def shot(self, name):
        if SHOTS:
            os.makedirs(SHOTS, exist_ok=True)
            b = self.browser
            h = b.execute_script("return Math.max(document.body.scrollHeight, 700)")
            b.set_window_size(1366, min(h + 40, 1600))
            b.save_screenshot(os.path.join(SHOTS, f"{name}.png"))
            b.set_window_size(1366, 900)

    def page_text(self):
        return self.browser.find_element(By.TAG_NAME, "body").text

    def fetch_status(self, path):
        """The status the API gives the page's own credentials for `path`."""
        return self.browser.execute_async_script("""
            const done = arguments[arguments.length - 1];
            const t = sessionStorage.getItem('wormlog-token');
            fetch(arguments[0], {headers: {Authorization: 'Bearer ' + t}}).then(r => done(r.status), e => done(String(e)));
        """, path)

    def downloaded(self, prefix):
        def find():
            for n in os.listdir(self.downloads):
                if n.startswith(prefix) and not n.endswith(".crdownload"):
                    return os.path.join(self.downloads, n)
            return None
        status = lambda: self.browser.find_element(By.CSS_SELECTOR, "[data-testid=download-status]").text
        try:
            return wait_for(f"a download {prefix}*", find, timeout=30)
        except AssertionError as e:
            raise AssertionError(f"{e}; the page says: {status()}") from None

    def verify_bundle(self, path):
        p = subprocess.run([WORMLOG, "verify", "--bundle", path, "--pubkey", self.env.pubkeys["ehr-01"],
                            "--collector-pubkey", f"{self.env.dir}/store/keys/receipt.pub"],
                           capture_output=True, text=True)
        self.assertEqual(p.returncode, 0, f"wormlog verify --bundle {path}: {p.stdout}{p.stderr}")
        return p.stdout

    # ---- the tests (run in name order) ----

    def test_1_an_agent_user_sees_nothing(self):
        self.login("ehr-01")
        b = self.browser
        wait_for("the no-access notice", lambda: b.find_elements(By.CSS_SELECTOR, "[data-testid=no-access]"))
        self.go("#/agent/ehr-01/search?text=patient-4711", "[data-testid=no-access]")
        text = self.page_text()
        self.assertNotIn("patient-4711", text.split("#/")[0])
        self.assertNotIn("dr.house", b.page_source)
        self.assertEqual(self.fetch_status("/v1/agents/ehr-01/records?text=patient-4711"), 403)
        self.assertEqual(self.fetch_status("/v1/overview"), 403)
        self.shot("no-access")

    def test_2_an_admin_sees_the_fleet_but_no_body(self):
        self.login("bob")
        b = self.browser
        self.go("#/fleet", "[data-testid=fleet] tbody tr")
        rows = b.find_elements(By.CSS_SELECTOR, "[data-testid=fleet] tbody tr")
        self.assertEqual(sorted(r.get_attribute("data-agent") for r in rows), ["ehr-01", "lab-02"])
        self.go("#/agent/ehr-01/timeline", "[data-testid=timeline]")
        self.go("#/agent/ehr-01/search?text=patient-4711", "[data-testid=not-allowed]")
        self.go(f"#/agent/ehr-01/record/{self.gap_seq}", "[data-testid=not-allowed]")
        self.assertNotIn("dr.house", b.page_source)
        self.assertEqual(self.fetch_status("/v1/agents/ehr-01/records?text=patient-4711"), 403)
        self.assertEqual(self.fetch_status(f"/v1/agents/ehr-01/records/{self.gap_seq}"), 403)
        self.assertEqual(self.fetch_status(f"/v1/agents/ehr-01/records/{self.gap_seq}/disclosure"), 403)
        nav = [a.text for a in b.find_elements(By.CSS_SELECTOR, "#nav a")]
        self.assertNotIn("Search", nav)

    def test_3_the_fleet_puts_the_agent_that_stopped_forwarding_first(self):
        self.login("alice")
        b = self.browser
        self.go("#/fleet", "[data-testid=fleet] tbody tr")
        rows = b.find_elements(By.CSS_SELECTOR, "[data-testid=fleet] tbody tr")
        first = rows[0]
        self.assertEqual(first.get_attribute("data-agent"), "lab-02")
        self.assertEqual(first.get_attribute("data-severity"), "2")
        self.assertIn("stopped forwarding", first.text)
        ehr = [r for r in rows if r.get_attribute("data-agent") == "ehr-01"][0]
        self.assertLess(int(ehr.get_attribute("data-severity")), 2, ehr.text)
        self.assertIn("gap(s) in the last 24 hours", ehr.text)
        self.assertIn("unclean stop(s)", ehr.text)
        self.shot("fleet")

    def test_4_the_timeline_shows_the_crash_and_the_deleted_file(self):
        b = self.browser
        c, r = self.crash_ns, self.restart_ns
        frm, to = c - 60 * NS, r + 30 * NS
        self.go(f"#/agent/ehr-01/timeline?from={frm}&to={to}", "[data-testid=events] tbody tr")
        # The stretch nobody watched: from the last record before the kill
        # to the restart, as an unclean stop.
        spans = b.find_elements(By.CSS_SELECTOR, "[data-testid=uncovered] tbody tr")
        unclean = [s for s in spans if s.get_attribute("data-cause") == "not running (unclean stop)"]
        self.assertEqual(len(unclean), 1, [s.text for s in spans])
        s_from, s_to = int(unclean[0].get_attribute("data-from")), int(unclean[0].get_attribute("data-to"))
        self.assertTrue(c - 3 * NS <= s_from <= c, (s_from, c))
        self.assertTrue(r <= s_to <= r + 5 * NS, (s_to, r))
        # The gap, with its cause, at the restart.
        gaps = [e for e in b.find_elements(By.CSS_SELECTOR, "[data-testid=events] tbody tr")
                if e.get_attribute("data-class") == "gap"]
        deleted = [g for g in gaps if g.get_attribute("data-cause") == "deleted"]
        self.assertEqual(len(deleted), 1, [g.text for g in gaps])
        ts = int(deleted[0].get_attribute("data-ts"))
        self.assertTrue(r <= ts <= r + 10 * NS, (ts, r))
        self.assertIn("is no longer found", deleted[0].text)
        starts = [e for e in b.find_elements(By.CSS_SELECTOR, "[data-testid=events] tbody tr")
                  if e.get_attribute("data-class") == "start"]
        self.assertTrue(any("after an unclean stop" in s.text for s in starts), [s.text for s in starts])
        # Drawn: the stretch in the watching lane, the gap among the events.
        self.assertTrue(b.find_elements(By.CSS_SELECTOR, "svg.timeline rect.cov-off[data-cause='not running (unclean stop)']"))
        self.assertTrue(b.find_elements(By.CSS_SELECTOR, "svg.timeline path.ev-gap"))
        self.shot("timeline")
        # Zoom with the keyboard: the range halves.
        chart = b.find_element(By.CSS_SELECTOR, "[data-testid=timeline]")
        chart.send_keys("+")
        wait_for("the zoomed range", lambda: f"from={frm}" not in b.current_url and "timeline?from=" in b.current_url)

    def test_5_search_finds_the_line_and_shows_it_with_its_proof(self):
        b = self.browser
        self.go("#/agent/ehr-01/search", "#search-text")
        box = b.find_element(By.ID, "search-text")
        box.send_keys("patient-4711")
        box.send_keys(Keys.ENTER)
        rows = self.go(b.execute_script("return location.hash"), "[data-testid=results] tbody tr")
        wait_for("the result", lambda: "patient-4711" in b.find_element(By.CSS_SELECTOR, "[data-testid=results]").text)
        self.assertIn(PATIENT_LINE, rows[0].text)
        self.shot("search")
        rows[0].find_element(By.TAG_NAME, "a").click()
        body = wait_for("the record view", lambda: b.find_elements(By.CSS_SELECTOR, "[data-testid=record-body]"))
        self.assertEqual(body[0].text, PATIENT_LINE)
        text = self.page_text()
        self.assertIn("Checkpoint", text)
        self.assertIn("console-test at", text)  # a receipt of this collector
        self.shot("record")

    def test_6_a_hostile_line_is_text(self):
        b = self.browser
        self.go("#/agent/ehr-01/search?text=hostile-marker", "[data-testid=results] tbody tr")
        cell = b.find_element(By.CSS_SELECTOR, "[data-testid=results] tbody tr td.body")
        self.assertIn('<img src=x onerror="window.__pwned=1">', cell.text)
        self.assertIn("\\u{202e}", cell.text)
        self.assertEqual(b.find_elements(By.CSS_SELECTOR, "main img, main script"), [])
        self.assertIsNone(b.execute_script("return window.__pwned"))

    def test_7_a_disclosure_and_an_export_from_the_page_verify(self):
        b = self.browser
        seq = self.env.search("ehr-01", text="patient-4711")[0]["seq"]
        self.go(f"#/agent/ehr-01/record/{seq}", "[data-testid=disclose]")
        b.find_element(By.CSS_SELECTOR, "[data-testid=disclose]").click()
        path = self.downloaded(f"ehr-01-{seq}.disclosure")
        out = self.verify_bundle(path)
        shown = subprocess.run([WORMLOG, "cat", "--bundle", path, "--pubkey", self.env.pubkeys["ehr-01"]],
                               capture_output=True, text=True)
        self.assertIn(PATIENT_LINE, shown.stdout, shown.stderr)
        cmd = wait_for("the command shown", lambda: b.find_element(By.CSS_SELECTOR, "[data-testid=check-command]").text)
        self.assertIn(f"wormlog verify --bundle {os.path.basename(path)} --pubkey '{self.env.pubkeys['ehr-01']}'", cmd)
        self.shot("disclosure")
        b.find_element(By.CSS_SELECTOR, "[data-testid=export-around]").click()
        exp = self.downloaded("ehr-01-0-")
        self.verify_bundle(exp)
        self.assertTrue(out)

    def test_8_a_verification_runs_from_the_page(self):
        b = self.browser
        self.go("#/agent/ehr-01/verify", "[data-testid=verify-start]")
        b.find_element(By.CSS_SELECTOR, "[data-testid=verify-start]").click()
        verdict = wait_for("the verdict", lambda: b.find_element(By.CSS_SELECTOR, "[data-testid=verify-result]").get_attribute("data-ok"), timeout=60)
        self.assertEqual(verdict, "true", b.find_element(By.CSS_SELECTOR, "[data-testid=verify-result]").text)
        self.assertIn("The chain verifies.", self.page_text())
        self.shot("verify")
        self.go("#/fleet", "[data-testid=fleet] tbody tr")
        ehr = [r for r in b.find_elements(By.CSS_SELECTOR, "[data-testid=fleet] tbody tr")
               if r.get_attribute("data-agent") == "ehr-01"][0]
        self.assertIn("(alice)", ehr.text)

    def test_9_every_view_is_in_the_access_log(self):
        want = {
            "alice": {"whoami", "overview", "agents", "timeline", "search", "record", "disclose", "export",
                      "verify_start", "verify_progress"},
            "bob": {"whoami", "overview", "agents", "timeline"},
            "ehr-01": {"whoami"},
        }

        def seen():
            got = {}
            for a in self.env.access():
                if a.get("user"):
                    got.setdefault(a["user"], set()).add(a["action"])
            return all(want[u] <= got.get(u, set()) for u in want) and got
        got = wait_for("every view in the access log", seen, timeout=20, every=0.5)
        refused = [a for a in self.env.access() if a.get("user") in ("bob", "ehr-01") and a["status"] == 403]
        self.assertTrue({a["action"] for a in refused} >= {"search", "record", "disclose", "overview"},
                        (refused, got))
        timeline = [a for a in self.env.access() if a.get("user") == "alice" and a["action"] == "timeline"]
        self.assertTrue(all(a["agent"] == "ehr-01" and a["status"] == 200 for a in timeline), timeline)


if __name__ == "__main__":
    unittest.main(verbosity=2)
