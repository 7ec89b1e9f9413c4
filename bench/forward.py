#!/usr/bin/env python3
"""Forwarding benchmark (issue 4): the agent's forwarder and the collector
over loopback TLS with mutual authentication (certificates made here with
openssl), the collector verifying every batch and fsyncing before it answers.

Two figures, each over RUNS runs (median reported):

1. throughput: a full spool (every line of INPUT appended with `wormlog
   append`) is forwarded by `wormlog run` (no sources) into an empty store;
   the clock runs from the daemon's start until the collector's state shows
   every record stored. Records/s, and the CPU seconds of each process.
2. latency: `wormlog run` tails a file written at RATE lines/s for SECONDS;
   each line carries the time it was written. Afterwards the agent's chain
   is read: a line's latency is the time from its write to the first receipt
   record in the chain that covers it (receipt tree_size > the line's seq).
   p50/p99/max. Receipts answer checkpoints, so this is set by the
   checkpoint triggers: CHECKPOINT sets checkpoint_interval ("default": the
   agent's own defaults).

With WORMLOG_BENCH_HOSTILE=1 a hostile client runs beside the agent in
every run (issue 12): a registered certificate holder ("hostile") keeps
HOSTILE_CONNECTIONS connections (default 7: with the eighth below, its
max_connections_per_client) each holding a body announced at 30 MiB and
dribbling a byte a second (answered 408 at its deadline, then reconnecting
at once), and one more connection at a time sends 79 MiB requests for the
bench agent's chain, which its certificate does not name (403 from the
headers), HOSTILE_REFUSED_PER_S times a second (default 20; 0: as fast as
they are answered, a TLS handshake flood).
The summary then also counts what the hostile client got.

usage: forward.py WORMLOG_DIR INPUT WORKDIR [RUNS] [RATE] [SECONDS] [CHECKPOINT]
  WORMLOG_DIR holds the release binaries wormlog and wormlog-collector.
"""
import json, os, shutil, signal, socket, ssl, statistics, subprocess, sys, threading, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from read_store import stored  # noqa: E402  (the next seq, from /metrics)


def sh(*args, **kw):
    return subprocess.run(list(args), check=True, capture_output=True, **kw)


def cpu_seconds(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except OSError:
        return float("nan")


def peak_rss_mib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def pki(d):
    os.makedirs(d, exist_ok=True)
    def cert(name, cn, san, ca):
        sh("openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
           "-nodes", "-keyout", f"{d}/{name}-key.pem", "-out", f"{d}/{name}.csr", "-subj", f"/CN={cn}")
        with open(f"{d}/{name}.ext", "w") as f:
            f.write(f"subjectAltName=DNS:{san}\n")
        sh("openssl", "x509", "-req", "-in", f"{d}/{name}.csr", "-CA", f"{d}/ca.pem", "-CAkey",
           f"{d}/ca-key.pem", "-CAcreateserial", "-days", "2", "-out", f"{d}/{name}.pem",
           "-extfile", f"{d}/{name}.ext")
    sh("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
       "-keyout", f"{d}/ca-key.pem", "-out", f"{d}/ca.pem", "-days", "2", "-subj", "/CN=bench CA")
    cert("collector", "localhost", "localhost", "ca")
    cert("agent", "bench", "bench", "ca")
    cert("hostile", "hostile", "hostile", "ca")


def rm(path):
    subprocess.run(["chattr", "-R", "-ia", path], stderr=subprocess.DEVNULL)
    shutil.rmtree(path, ignore_errors=True)


def start_collector(bin_dir, w, pubkey):
    # A fresh store needs fresh collector keys: the key of the collector's
    # own chain refuses to sign a new chain once it has evolved.
    rm(f"{w}/store")
    rm(f"{w}/ckeys")
    with open(f"{w}/collector.toml", "w") as f:
        f.write(f"""[collector]
listen = "127.0.0.1:0"
store_dir = "{w}/store"
key_dir = "{w}/ckeys"
tls_cert = "{w}/pki/collector.pem"
tls_key = "{w}/pki/collector-key.pem"
client_ca = "{w}/pki/ca.pem"

[metrics]
listen = "127.0.0.1:{METRICS_PORT}"

[[agents]]
id = "bench"
pubkey = "{pubkey}"

[[agents]]
id = "hostile"
pubkey = "{pubkey}"
""")
    log = open(f"{w}/collector.log", "w")
    p = subprocess.Popen([f"{bin_dir}/wormlog-collector", "serve", "--config", f"{w}/collector.toml"],
                         stderr=log, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        text = open(f"{w}/collector.log").read()
        if "listening on 127.0.0.1:" in text:
            return p, int(text.split("listening on 127.0.0.1:")[1].split()[0])
        time.sleep(0.02)
    raise SystemExit("collector did not start: " + open(f"{w}/collector.log").read())


def agent_config(w, port, sources, checkpoint):
    checkpoint_line = "" if checkpoint == "default" else f'checkpoint_interval = "{checkpoint}"'
    # Experiments: WORMLOG_BENCH_FORWARD='batch_bytes = "1MiB"' adds lines to [forward].
    extra = os.environ.get("WORMLOG_BENCH_FORWARD", "")
    with open(f"{w}/agent.toml", "w") as f:
        f.write(f"""[agent]
id = "bench"
spool_dir = "{w}/spool"
key_dir = "{w}/keys"

[spool]
{checkpoint_line}

{sources}
[forward]
url = "https://localhost:{port}"
ca_file = "{w}/pki/ca.pem"
cert_file = "{w}/pki/agent.pem"
key_file = "{w}/pki/agent-key.pem"
{extra}""")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# The collector's plain-HTTP metrics listener: what it stored, as it stores
# it (state.json, its cache, is written at most every 10 s while an agent
# sends).
METRICS_PORT = free_port()


def stop(p):
    p.send_signal(signal.SIGTERM)
    p.wait(timeout=60)


def fresh_agent(bin_dir, w):
    rm(f"{w}/spool")
    rm(f"{w}/keys")
    return sh(f"{bin_dir}/wormlog", "keygen", "--key-dir", f"{w}/keys").stdout.decode().strip()


HOSTILE = os.environ.get("WORMLOG_BENCH_HOSTILE") == "1"


class Hostile:
    """The hostile client of WORMLOG_BENCH_HOSTILE=1 (see the docstring)."""

    def __init__(self, w, port):
        self.w, self.port = w, port
        self.stop = threading.Event()
        self.answers = {}
        self.lock = threading.Lock()
        n = int(os.environ.get("HOSTILE_CONNECTIONS", "7"))
        rate = float(os.environ.get("HOSTILE_REFUSED_PER_S", "20"))
        self.pause = 1 / rate if rate > 0 else 0
        self.threads = [threading.Thread(target=self.hold, daemon=True) for _ in range(n)]
        self.threads.append(threading.Thread(target=self.refused, daemon=True))
        for t in self.threads:
            t.start()

    def conn(self):
        ctx = ssl.create_default_context(cafile=f"{self.w}/pki/ca.pem")
        ctx.load_cert_chain(f"{self.w}/pki/hostile.pem", f"{self.w}/pki/hostile-key.pem")
        s = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        return ctx.wrap_socket(s, server_hostname="localhost")

    def count(self, status):
        with self.lock:
            self.answers[status] = self.answers.get(status, 0) + 1

    @staticmethod
    def parse(data):
        line = data.split(b"\r\n")[0].decode(errors="replace")
        return line.split(" ")[1] if " " in line else "closed"

    def status(self, s):
        try:
            return self.parse(s.recv(64))
        except OSError as e:
            return type(e).__name__

    def hold(self):
        while not self.stop.is_set():
            try:
                s = self.conn()
                s.sendall(b"POST /v1/agents/hostile/records HTTP/1.1\r\nHost: localhost\r\n"
                          b"Wormlog-Seq: 0\r\nContent-Length: 31457280\r\n\r\n" + b"\0" * 65536)
                s.settimeout(1)
                while not self.stop.is_set():
                    try:
                        data = s.recv(64)
                    except socket.timeout:
                        s.sendall(b"\0")
                        continue
                    self.count(self.parse(data))
                    break
                s.close()
            except OSError as e:
                self.count(type(e).__name__)
                time.sleep(0.05)

    def refused(self):
        while not self.stop.is_set():
            try:
                s = self.conn()
                s.sendall(b"POST /v1/agents/bench/records HTTP/1.1\r\nHost: localhost\r\n"
                          b"Wormlog-Seq: 0\r\nContent-Length: 82837504\r\n\r\n")
                self.count(self.status(s))
                s.close()
                time.sleep(self.pause)
            except OSError as e:
                self.count(type(e).__name__)
                time.sleep(0.05)

    def finish(self):
        self.stop.set()
        for t in self.threads:
            t.join(timeout=10)
        return dict(self.answers)


def throughput(bin_dir, inp, w, runs):
    pubkey = fresh_agent(bin_dir, w)
    agent_config(w, 1, "", "default")
    with open(inp, "rb") as f:
        sh(f"{bin_dir}/wormlog", "append", "--config", f"{w}/agent.toml", "--source", "app", stdin=f)
    out = sh(f"{bin_dir}/wormlog", "verify", "--json", "--spool", f"{w}/spool").stdout
    records = json.loads(out)["records"]
    results = []
    for _ in range(runs):
        col, port = start_collector(bin_dir, w, pubkey)
        agent_config(w, port, "", "default")
        subprocess.run(["sync"])
        hostile = Hostile(w, port) if HOSTILE else None
        if hostile:
            time.sleep(1)  # not a measurement: the hostile connections are up
        t0 = time.monotonic()
        agent = subprocess.Popen([f"{bin_dir}/wormlog", "run", "--config", f"{w}/agent.toml"],
                                 stderr=open(f"{w}/agent.log", "w"), stdout=subprocess.DEVNULL)
        # The agent's own start record and checkpoint come after the spool's
        # end: wait for everything the append wrote.
        deadline = t0 + 600
        while stored(METRICS_PORT) < records:
            if time.monotonic() > deadline:
                raise SystemExit("timed out: " + open(f"{w}/agent.log").read())
            time.sleep(0.01)
        elapsed = time.monotonic() - t0
        cpu_a, cpu_c = cpu_seconds(agent.pid), cpu_seconds(col.pid)
        rss_a, rss_c = peak_rss_mib(agent.pid), peak_rss_mib(col.pid)
        hostile_got = hostile.finish() if hostile else None
        stop(agent)
        stop(col)
        v = subprocess.run([f"{bin_dir}/wormlog-collector", "verify", "--store", f"{w}/store"],
                           capture_output=True)
        assert v.returncode == 0, v.stdout
        results.append({"records": records, "seconds": elapsed, "records_per_s": records / elapsed,
                        "agent_cpu_s": cpu_a, "collector_cpu_s": cpu_c,
                        "agent_peak_rss_mib": rss_a, "collector_peak_rss_mib": rss_c,
                        "hostile_answers": hostile_got})
        print(json.dumps(results[-1]), flush=True)
    return results


def latency(bin_dir, w, runs, rate, seconds, checkpoint):
    results = []
    for _ in range(runs):
        pubkey = fresh_agent(bin_dir, w)
        rm(f"{w}/logs")
        os.makedirs(f"{w}/logs")
        col, port = start_collector(bin_dir, w, pubkey)
        agent_config(w, port, f'[[sources.file]]\nname = "app"\npaths = ["{w}/logs/app.log"]\n'
                     'poll_interval = "10ms"\n', checkpoint)
        hostile = Hostile(w, port) if HOSTILE else None
        agent = subprocess.Popen([f"{bin_dir}/wormlog", "run", "--config", f"{w}/agent.toml"],
                                 stderr=open(f"{w}/agent.log", "w"), stdout=subprocess.DEVNULL)
        time.sleep(0.5)  # not a measurement: lets the daemon open its spool
        pad = "x" * 150
        n = 0
        t_start = time.time()
        with open(f"{w}/logs/app.log", "ab", buffering=0) as f:
            while time.time() - t_start < seconds:
                # Write in 1 ms slices at the target rate.
                due = int((time.time() - t_start) * rate)
                if due > n:
                    f.write(b"".join(b"%d %d %s\n" % (time.time_ns(), i, pad.encode())
                                     for i in range(n, due)))
                    n = due
                time.sleep(0.001)
        # Wait until the last line is covered by a receipt (or 30 s).
        time.sleep(0.2)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if stored(METRICS_PORT) > n + 3:
                break
            time.sleep(0.05)
        time.sleep(6)  # the last checkpoints and their receipts
        hostile_got = hostile.finish() if hostile else None
        collector_rss = peak_rss_mib(col.pid)
        stop(agent)
        stop(col)
        recs = [json.loads(l) for l in sh(f"{bin_dir}/wormlog", "cat", "--json", "--spool",
                                          f"{w}/spool").stdout.splitlines()]
        receipts = [(r["seq"], r) for r in recs if r["kind"] == "receipt"]
        lat = []
        ri = 0
        receipts_by_size = sorted((int(r["tree_size"]), ts_ns(r["ts"])) for _, r in receipts)
        for r in recs:
            if r["kind"] != "entry":
                continue
            written = int(r["body"].split()[0])
            while ri < len(receipts_by_size) and receipts_by_size[ri][0] <= r["seq"]:
                ri += 1
            if ri == len(receipts_by_size):
                continue  # the last lines: covered by no receipt before the stop
            lat.append((receipts_by_size[ri][1] - written) / 1e9)
        lat.sort()
        res = {"lines": n, "covered": len(lat), "p50_s": lat[len(lat) // 2],
               "p99_s": lat[int(len(lat) * 0.99)], "max_s": lat[-1], "checkpoint_interval": checkpoint,
               "collector_peak_rss_mib": collector_rss, "hostile_answers": hostile_got}
        print(json.dumps(res), flush=True)
        results.append(res)
    return results


def ts_ns(rfc3339):
    # 2026-11-26T09:24:00.472798807Z
    date, frac = rfc3339.rstrip("Z").split(".")
    import calendar
    secs = calendar.timegm(time.strptime(date, "%Y-%m-%dT%H:%M:%S"))
    return secs * 10**9 + int(frac.ljust(9, "0"))


def main():
    bin_dir, inp, workdir = sys.argv[1:4]
    runs = int(sys.argv[4]) if len(sys.argv) > 4 else 3
    rate = int(sys.argv[5]) if len(sys.argv) > 5 else 10000
    seconds = float(sys.argv[6]) if len(sys.argv) > 6 else 20
    checkpoint = sys.argv[7] if len(sys.argv) > 7 else "default"
    w = os.path.join(workdir, "forward")
    os.makedirs(w, exist_ok=True)
    pki(f"{w}/pki")
    t = throughput(bin_dir, inp, w, runs)
    l = latency(bin_dir, w, runs, rate, seconds, checkpoint)
    med = lambda xs: statistics.median(xs)
    print(json.dumps({
        "summary": True,
        "records": t[0]["records"],
        "median_records_per_s": med([x["records_per_s"] for x in t]),
        "median_agent_cpu_s": med([x["agent_cpu_s"] for x in t]),
        "median_collector_cpu_s": med([x["collector_cpu_s"] for x in t]),
        "max_agent_peak_rss_mib": max(x["agent_peak_rss_mib"] for x in t),
        "max_collector_peak_rss_mib": max(x["collector_peak_rss_mib"] for x in t),
        "latency_rate": rate,
        "median_p50_s": med([x["p50_s"] for x in l]),
        "median_p99_s": med([x["p99_s"] for x in l]),
        "max_s": max(x["max_s"] for x in l),
        "checkpoint_interval": checkpoint,
        "hostile": HOSTILE,
        "max_collector_peak_rss_mib_latency": max(x["collector_peak_rss_mib"] for x in l),
    }))


if __name__ == "__main__":
    main()
