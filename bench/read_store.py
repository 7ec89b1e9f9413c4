#!/usr/bin/env python3
"""The reading side on a large store (issue 14): RECORDS audit lines of an
EHR-like application are appended to an agent's spool (`wormlog append`),
forwarded by `wormlog run` (no sources) into a collector over loopback
HTTP, and then read through the collector's HTTP API by an auditor with a
token, the way `wormlog-collector query` does:

1. index build: the first search after the store is filled (the index is
   built from nothing: every record read once, word filters made);
   index size on disk against the store's;
2. index load: the first search after a collector restart;
3. searches, RUNS times each, the median (and min/max) of the time to the
   first page (limit 100), all within one agent and one day:
   rare  - a patient id in 1 line of 100,000 (MRN-00424242)
   user  - a user id in 1 line of 20,000 (u00042)
   every - a word in every line (first page at once)
   absent- an id in no line (only the filters' false positives are read)
   plain - no text, newest first
   next  - the second page of `user`, by its cursor
4. export of EXPORT records from the middle (time, bytes), and the time
   `wormlog verify --bundle` takes to check it;
5. disclosure of one entry (RUNS entries; time), and its verification.

Lines look like
  2026-12-05T07:00:00.123Z ehr-app[4242]: user=u00042 action=view patient=MRN-01234567 record=R000000042 ip=10.1.2.3 result=ok
with ids that vary from line to line (so the filters hold ~3 distinct
words a line, the hard case for a word index).

With WORMLOG_BENCH_ENCRYPT=1 the agent encrypts at rest (`[spool]
encrypt_to`, an identity made with age-keygen) and the collector holds that
identity as its read identity (`[read] identity`): the index is built from
opened bodies, and searches and disclosures open what they read.

usage: read_store.py BIN_DIR WORKDIR [RECORDS] [RUNS] [EXPORT]
  BIN_DIR holds the release binaries wormlog and wormlog-collector.
"""
import json, os, shutil, signal, statistics, subprocess, sys, time, urllib.request, urllib.parse

RARE = "MRN-00424242"


def sh(*args, **kw):
    return subprocess.run(list(args), check=True, capture_output=True, **kw)


def rm(path):
    subprocess.run(["chattr", "-R", "-ia", path], stderr=subprocess.DEVNULL)
    shutil.rmtree(path, ignore_errors=True)


def gen(path, n):
    if os.path.exists(path):
        return
    acts = ["view", "edit", "print", "export", "login"]
    with open(path + ".tmp", "w") as f:
        chunk = 100_000
        for base in range(0, n, chunk):
            lines = []
            for i in range(base, min(n, base + chunk)):
                mrn = RARE if i % 100_000 == 4242 else f"MRN-{(i * 2654435761) % 99_999_989:08d}"
                if mrn == RARE and i % 100_000 != 4242:
                    mrn = "MRN-00000000"
                lines.append(
                    f"2026-12-05T07:{i // 600_000 % 60:02d}:{i // 10_000 % 60:02d}.{i % 1000:03d}Z ehr-app[{4000 + i % 97}]: "
                    f"user=u{(i * 7919) % 20_000:05d} action={acts[i % 5]} patient={mrn} record=R{i:09d} "
                    f"ip=10.{i % 200}.{i // 200 % 250}.{i % 7} result=ok\n")
            f.write("".join(lines))
    os.rename(path + ".tmp", path)


class Api:
    def __init__(self, port, token):
        self.base = f"http://127.0.0.1:{port}"
        self.token = token

    def get(self, path, **q):
        url = self.base + path + ("?" + urllib.parse.urlencode(q) if q else "")
        req = urllib.request.Request(url, headers={"Authorization": f"Bearer {self.token}"})
        t0 = time.monotonic()
        with urllib.request.urlopen(req, timeout=600) as r:
            body = r.read()
        return time.monotonic() - t0, body


def start_collector(b, w):
    before = os.path.getsize(f"{w}/collector.log")
    log = open(f"{w}/collector.log", "a")
    p = subprocess.Popen([f"{b}/wormlog-collector", "serve", "--config", f"{w}/collector.toml"],
                         stderr=log, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        text = open(f"{w}/collector.log").read()[before:]
        parts = text.split("listening on 127.0.0.1:")
        if len(parts) > 1:
            return p, int(parts[-1].split()[0])
        time.sleep(0.05)
    raise SystemExit("collector did not start")


def stored(port, agent="bench"):
    """The next seq the collector on `port` expects from `agent`, from its
    /metrics (state.json, a cache, trails a busy agent by up to 10 s)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            for line in r.read().decode().splitlines():
                if line.startswith(f'wormlog_collector_next_seq{{agent="{agent}"}}'):
                    return int(float(line.split()[-1]))
    except OSError:
        pass
    return 0


def du(path):
    return int(sh("du", "-sb", path).stdout.split()[0])


def med(xs):
    return {"median_ms": round(statistics.median(xs) * 1000, 1), "min_ms": round(min(xs) * 1000, 1),
            "max_ms": round(max(xs) * 1000, 1)}


def main():
    b, w = sys.argv[1], sys.argv[2]
    n = int(sys.argv[3]) if len(sys.argv) > 3 else 10_000_000
    runs = int(sys.argv[4]) if len(sys.argv) > 4 else 5
    export_n = int(sys.argv[5]) if len(sys.argv) > 5 else 10_000
    os.makedirs(w, exist_ok=True)
    inp = f"{w}/in-{n}.log"
    gen(inp, n)
    for d in ["spool", "keys", "store", "ckeys"]:
        rm(f"{w}/{d}")
    open(f"{w}/collector.log", "w").close()
    pubkey = sh(f"{b}/wormlog", "keygen", "--key-dir", f"{w}/keys").stdout.decode().strip()
    t = sh(f"{b}/wormlog-collector", "token")
    token = t.stdout.decode().strip()
    hash_line = [l for l in t.stderr.decode().splitlines() if l.startswith("token_sha256")][0]
    encrypt = os.environ.get("WORMLOG_BENCH_ENCRYPT") == "1"
    read_section, spool_section = "", ""
    if encrypt:
        if os.path.exists(f"{w}/reader.txt"):
            os.remove(f"{w}/reader.txt")
        sh("age-keygen", "-o", f"{w}/reader.txt")
        recipient = sh("age-keygen", "-y", f"{w}/reader.txt").stdout.decode().strip()
        read_section = f'\n[read]\nidentity = "{w}/reader.txt"\n'
        spool_section = f'\n[spool]\nencrypt_to = ["{recipient}"]\n'
    with open(f"{w}/collector.toml", "w") as f:
        f.write(read_section)
        f.write(f"""[collector]
listen = "127.0.0.1:0"
store_dir = "{w}/store"
key_dir = "{w}/ckeys"

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
{spool_section}
[forward]
url = "http://127.0.0.1:{port}"
""")
    t0 = time.monotonic()
    with open(inp, "rb") as f:
        sh(f"{b}/wormlog", "append", "--config", f"{w}/agent.toml", "--source", "ehr", "--quiet", stdin=f)
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
    day = {"from": "2026-12-04T12:00:00Z", "to": "2099-01-01T00:00:00Z"}
    # 1. The index built from nothing by the first search.
    build_s, body = api.get("/v1/agents/bench/records", text=RARE, limit=100, **day)
    first = json.loads(body)
    index_bytes = du(f"{w}/store/index")
    store_bytes = du(f"{w}/store/agents/bench")
    # 2. A restart: the index is loaded, not built.
    col.send_signal(signal.SIGTERM)
    col.wait(timeout=60)
    col, port = start_collector(b, w)
    api = Api(port, token)
    load_s, _ = api.get("/v1/agents/bench/records", text=RARE, limit=100, **day)
    # 3. Searches.
    queries = {
        "rare": {"text": RARE},
        "user": {"text": "u00042"},
        "every": {"text": "ehr-app"},
        "absent": {"text": "MRN-99999998"},
        "plain": {},
    }
    out = {}
    for name, q in queries.items():
        times, last = [], None
        for _ in range(runs):
            s, body = api.get("/v1/agents/bench/records", limit=100, **day, **q)
            times.append(s)
            last = json.loads(body)
        out[name] = {**med(times), "returned": len(last["records"]), "blocks_read": last["blocks_read"],
                     "blocks_skipped": last["blocks_skipped"], "records_read": last["records_read"]}
    _, body = api.get("/v1/agents/bench/records", limit=100, text="u00042", **day)
    cursor = json.loads(body)["next_cursor"]
    if cursor is not None:
        times = [api.get("/v1/agents/bench/records", limit=100, text="u00042", cursor=cursor, **day)[0]
                 for _ in range(runs)]
        out["next"] = med(times)
    # 4. Export from the middle.
    mid = records // 2
    times = []
    for _ in range(runs):
        s, bundle = api.get("/v1/agents/bench/export", from_seq=mid, to_seq=mid + export_n - 1)
        times.append(s)
    with open(f"{w}/export.wlbundle", "wb") as f:
        f.write(bundle)
    receipt_key = open(f"{w}/ckeys/receipt.pub").read().strip()
    vt = []
    for _ in range(runs):
        t0 = time.monotonic()
        sh(f"{b}/wormlog", "verify", "--bundle", f"{w}/export.wlbundle", "--pubkey", pubkey,
           "--collector-pubkey", receipt_key)
        vt.append(time.monotonic() - t0)
    out["export"] = {**med(times), "records": export_n, "bytes": len(bundle), "verify": med(vt)}
    # 5. Disclosure.
    hits = json.loads(api.get("/v1/agents/bench/records", text=RARE, limit=100, **day)[1])["records"]
    times, vt = [], []
    for h in hits[:runs]:
        s, bundle = api.get(f"/v1/agents/bench/records/{h['seq']}/disclosure")
        times.append(s)
        with open(f"{w}/disclosure.wlbundle", "wb") as f:
            f.write(bundle)
        t0 = time.monotonic()
        sh(f"{b}/wormlog", "verify", "--bundle", f"{w}/disclosure.wlbundle", "--pubkey", pubkey,
           "--collector-pubkey", receipt_key)
        vt.append(time.monotonic() - t0)
    out["disclosure"] = {**med(times), "bytes": len(bundle), "verify": med(vt)}
    col.send_signal(signal.SIGTERM)
    col.wait(timeout=60)
    print(json.dumps({
        "encrypted": encrypt,
        "records": records, "lines": n, "append_s": round(append_s, 1), "forward_s": round(forward_s, 1),
        "store_mib": round(store_bytes / 2**20, 1), "index_mib": round(index_bytes / 2**20, 2),
        "index_build_s": round(build_s, 2), "first_rare_hits": len(first["records"]),
        "index_load_first_query_ms": round(load_s * 1000, 1), "queries": out,
    }, indent=1))


if __name__ == "__main__":
    main()
