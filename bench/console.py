#!/usr/bin/env python3
"""The console on a large store (issue 16): RECORDS audit lines (the lines
of bench/read_store.py) are appended to an agent's spool in CHUNKS runs of
`wormlog append` a few seconds apart (each run a start and a stop record,
each pause longer than twice the 1 s heartbeat: a stretch nobody watched),
forwarded by `wormlog run` into a collector over loopback HTTP, and then
the console's reads are timed through the API, the way its pages ask them:

1. the first overview after the store is filled (every agent's index and
   timeline built from nothing), and the first after a collector restart
   (loaded);
2. RUNS times each, the median: the overview; the timeline of the whole
   store, of its last hour and of one minute in it (240 buckets); one
   record with its checkpoint and receipts; a search for a rare id;
3. a verification started from the console: its time and rate;
4. with Selenium and Chromium (Debian's python3-selenium, chromium,
   chromium-driver): the time from asking for a page to its content drawn
   in a real headless Chromium — the fleet, the timeline of the whole
   store, a search, a record — RUNS times each, the median.

usage: console.py BIN_DIR WORKDIR [RECORDS] [RUNS] [CHUNKS]
  BIN_DIR holds the release binaries wormlog and wormlog-collector.
"""
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from read_store import RARE, Api, du, gen, med, rm, sh, start_collector, stored  # noqa: E402


def post(api, path):
    req = urllib.request.Request(api.base + path, data=b"{}", method="POST",
                                 headers={"Authorization": f"Bearer {api.token}",
                                          "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.load(r)


def timed(api, path, runs, **q):
    times, body = [], None
    for _ in range(runs):
        s, body = api.get(path, **q)
        times.append(s)
    return med(times), json.loads(body)


def browser_times(port, token, runs, from_ns):
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
        from selenium.webdriver.common.by import By
    except ImportError:
        return {"skipped": "no selenium (apt-get install python3-selenium chromium chromium-driver)"}
    o = webdriver.ChromeOptions()
    o.binary_location = "/usr/bin/chromium"
    for a in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--window-size=1366,900"]:
        o.add_argument(a)
    b = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=o)
    base = f"http://127.0.0.1:{port}/console/"
    try:
        b.get(base)
        b.execute_script("sessionStorage.setItem('wormlog-token', arguments[0])", token)
        b.refresh()
        now = time.time_ns()
        pages = {
            "fleet": ("#/fleet", "[data-testid=fleet] tbody tr"),
            "timeline_all": (f"#/agent/bench/timeline?from={from_ns}&to={now}", "[data-testid=uncovered]"),
            "search_rare": (f"#/agent/bench/search?text={RARE}", "[data-testid=results] tbody tr"),
            "record": ("#/agent/bench/record/5000000", "[data-testid=record-body]"),
        }
        out = {}
        for name, (h, ready) in pages.items():
            times = []
            for _ in range(runs):
                b.execute_script("location.hash = '#/none'")
                t0 = time.monotonic()
                b.execute_script("location.hash = arguments[0]", h)
                deadline = t0 + 120
                while not b.find_elements(By.CSS_SELECTOR, ready):
                    if time.monotonic() > deadline:
                        raise SystemExit(f"page {name} did not draw")
                    time.sleep(0.005)
                times.append(time.monotonic() - t0)
            out[name] = med(times)
        return out
    finally:
        b.quit()


def main():
    b, w = sys.argv[1], sys.argv[2]
    n = int(sys.argv[3]) if len(sys.argv) > 3 else 30_000_000
    runs = int(sys.argv[4]) if len(sys.argv) > 4 else 5
    chunks = int(sys.argv[5]) if len(sys.argv) > 5 else 10
    os.makedirs(w, exist_ok=True)
    inp = f"{w}/in-{n}.log"
    gen(inp, n)
    for d in ["spool", "keys", "store", "ckeys"]:
        rm(f"{w}/{d}")
    open(f"{w}/collector.log", "w").close()
    pubkey = sh(f"{b}/wormlog", "keygen", "--key-dir", f"{w}/keys").stdout.decode().strip()
    t = sh(f"{b}/wormlog-collector", "token")
    token = t.stdout.decode().strip()
    hash_line = [line for line in t.stderr.decode().splitlines() if line.startswith("token_sha256")][0]
    with open(f"{w}/collector.toml", "w") as f:
        f.write(f"""[collector]
listen = "127.0.0.1:0"
store_dir = "{w}/store"
key_dir = "{w}/ckeys"

[verify]
every = "off"

[[agents]]
id = "bench"
pubkey = "{pubkey}"

[[users]]
name = "auditor"
roles = ["auditor"]
{hash_line}
""")
    col, port = start_collector(b, w)
    with open(f"{w}/agent.toml", "w") as f:
        f.write(f"""[agent]
id = "bench"
spool_dir = "{w}/spool"
key_dir = "{w}/keys"

[spool]
checkpoint_interval = "1s"
heartbeat_interval = "1s"

[forward]
url = "http://127.0.0.1:{port}"
""")
    # The lines in CHUNKS runs of `wormlog append`, 2.5 s apart.
    size = os.path.getsize(inp)
    t0 = time.monotonic()
    with open(inp, "rb") as f:
        for i in range(chunks):
            end = size * (i + 1) // chunks
            part = f.read(end - f.tell())
            part += f.readline() if i < chunks - 1 else b""
            subprocess.run([f"{b}/wormlog", "append", "--config", f"{w}/agent.toml", "--source", "ehr", "--quiet"],
                           input=part, check=True)
            if i < chunks - 1:
                time.sleep(2.5)
    append_s = time.monotonic() - t0
    agent = subprocess.Popen([f"{b}/wormlog", "run", "--config", f"{w}/agent.toml"],
                             stderr=open(f"{w}/agent.log", "w"), stdout=subprocess.DEVNULL)
    t0 = time.monotonic()
    while stored(port) < n:
        time.sleep(0.2)
    forward_s = time.monotonic() - t0
    agent.send_signal(signal.SIGTERM)
    agent.wait(timeout=120)
    time.sleep(1.0)
    records = stored(port)
    api = Api(port, token)
    # 1. Built from nothing, then loaded after a restart.
    build_s, _ = api.get("/v1/overview")
    index_bytes = du(f"{w}/store/index")
    timeline_bytes = os.path.getsize(f"{w}/store/index/bench/timeline")
    col.send_signal(signal.SIGTERM)
    col.wait(timeout=60)
    col, port = start_collector(b, w)
    api = Api(port, token)
    load_s, _ = api.get("/v1/overview")
    # 2. The reads, RUNS times each.
    out = {}
    out["overview"], ov = timed(api, "/v1/overview", runs)
    now = time.time_ns()
    out["timeline_all"], tl = timed(api, "/v1/agents/bench/timeline", runs,
                                    **{"from": 0, "to": now, "buckets": 240})
    first_ns = tl["first_ts"]
    last_ns = tl["last_ts"]
    out["timeline_all"].update(events=tl["events_total"], uncovered=len(tl["uncovered"]))
    out["timeline_last_hour"], _ = timed(api, "/v1/agents/bench/timeline", runs,
                                         **{"from": last_ns - 3600 * 10**9, "to": last_ns + 10**9, "buckets": 240})
    mid = (first_ns + last_ns) // 2
    out["timeline_one_minute"], _ = timed(api, "/v1/agents/bench/timeline", runs,
                                          **{"from": mid, "to": mid + 60 * 10**9, "buckets": 240})
    times = []
    for k in range(runs):
        s, _ = api.get(f"/v1/agents/bench/records/{records * (k + 1) // (runs + 2)}")
        times.append(s)
    out["record"] = med(times)
    out["search_rare"], _ = timed(api, "/v1/agents/bench/records", runs, text=RARE, limit=50)
    # 3. A verification from the console.
    t0 = time.monotonic()
    job = post(api, "/v1/agents/bench/verifications")
    while job["state"] != "done":
        time.sleep(0.5)
        job = json.loads(api.get("/v1/agents/bench/verifications/latest")[1])
    verify_s = time.monotonic() - t0
    assert job["result"]["ok"], job
    out["verification"] = {"seconds": round(verify_s, 1), "bytes": job["total_bytes"],
                           "gib_per_s": round(job["total_bytes"] / 2**30 / verify_s, 3),
                           "records": job["result"]["records"]}
    # 4. The pages in a real Chromium.
    out["browser"] = browser_times(port, token, runs, first_ns - 60 * 10**9)
    col.send_signal(signal.SIGTERM)
    col.wait(timeout=60)
    print(json.dumps({
        "records": records, "lines": n, "chunks": chunks, "append_s": round(append_s, 1),
        "forward_s": round(forward_s, 1), "store_mib": round(du(f"{w}/store/agents/bench") / 2**20, 1),
        "index_mib": round(index_bytes / 2**20, 2), "timeline_bytes": timeline_bytes,
        "first_overview_build_s": round(build_s, 2), "first_overview_after_restart_ms": round(load_s * 1000, 1),
        "agents_in_overview": len(ov["agents"]), "reads": out,
    }, indent=1))


if __name__ == "__main__":
    main()
