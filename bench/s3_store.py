#!/usr/bin/env python3
"""The S3 store backend (issue 15) against a real radosgw with Object Lock
(tests/s3/ceph-s3.sh up; a single-node Ceph with a memstore OSD on this
machine), collectors over loopback HTTP, agents forwarding full spools:

1. throughput, one collector: one agent's spool of RECORDS lines (`wormlog
   append`) forwarded by `wormlog run` (no sources) into a collector whose
   store is kept in S3; the clock runs from the agent's start until the
   collector's state shows every record stored (each batch: checked,
   written as a locked object, claimed, written locally, fsynced).
2. throughput, two collectors: two agents, each with a spool of RECORDS
   lines, forwarding at the same time to two collectors of the same
   buckets; records/s of both together.
3. latency: an agent tails a file written at RATE lines/s for SECONDS
   into one S3-backed collector; a line's latency is from its write to the
   receipt in the chain that covers it: p50/p99/max.
4. the scheduled verification's full pass over what (1) stored — the local
   copy and the bucket's claims and objects — unthrottled: seconds per GiB
   of records.

Each figure RUNS times; medians. The endpoint and credentials from the
environment as `tests/s3/ceph-s3.sh env` prints them.

usage: s3_store.py BIN_DIR WORKDIR [RECORDS] [RUNS] [RATE] [SECONDS]
"""
import json, os, shutil, signal, statistics, subprocess, sys, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from read_store import stored  # noqa: E402  (the next seq, from /metrics)

ENDPOINT = os.environ.get("AWS_ENDPOINT_URL") or os.environ.get("WORMLOG_TEST_S3")


def sh(*args, **kw):
    return subprocess.run(list(args), check=True, capture_output=True, **kw)


def rm(p):
    if os.path.exists(p):
        subprocess.run(["chattr", "-R", "-ia", p], capture_output=True)
        shutil.rmtree(p)


def stop(p):
    p.send_signal(signal.SIGTERM)
    p.wait(timeout=60)


def keygen(bin_dir, d):
    return sh(f"{bin_dir}/wormlog", "keygen", "--key-dir", f"{d}/keys").stdout.decode().strip()


def agent_config(d, agent_id, urls, sources="", checkpoint="1s"):
    with open(f"{d}/agent.toml", "w") as f:
        f.write(f'[agent]\nid = "{agent_id}"\nspool_dir = "{d}/spool"\nkey_dir = "{d}/keys"\n'
                f'control_socket = "{d}/control.sock"\n\n[spool]\nappend_only = "off"\n'
                f'checkpoint_interval = "{checkpoint}"\n\n{sources}\n[forward]\n'
                f'urls = [{", ".join(json.dumps(u) for u in urls)}]\n')


def collector(bin_dir, d, name, bucket, agents, verify="off"):
    os.makedirs(d, exist_ok=True)
    with open(f"{d}/collector.toml", "w") as f:
        f.write(f'[collector]\nlisten = "127.0.0.1:0"\nstore_dir = "{d}/store"\nid = "{name}"\n'
                f'append_only = "off"\n\n[store]\nkind = "s3"\nendpoint = "{ENDPOINT}"\n'
                f'bucket = "{bucket}"\nheads_bucket = "{bucket}-heads"\nretention_days = 1\n\n'
                f'[verify]\nevery = "{verify}"\nrate = "0"\n')
        for aid, pk in agents:
            f.write(f'\n[[agents]]\nid = "{aid}"\npubkey = "{pk}"\n')
    return f"{d}/collector.toml"


def serve(bin_dir, cfg, log):
    p = subprocess.Popen([f"{bin_dir}/wormlog-collector", "serve", "--config", cfg],
                         stderr=open(log, "w"), stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        text = open(log).read()
        if "listening on 127.0.0.1:" in text:
            return p, int(text.split("listening on 127.0.0.1:")[1].split()[0])
        time.sleep(0.05)
    raise SystemExit(f"collector did not start: {open(log).read()}")


def fill(bin_dir, d, agent_id, records):
    rm(d)
    os.makedirs(d)
    pk = keygen(bin_dir, d)
    agent_config(d, agent_id, ["http://127.0.0.1:1"])
    pad = "x" * 120
    data = "".join(f"2026-12-05T08:00:00Z ehr-app: user=u{i % 20000:05d} action=view patient=MRN-{i:08d} {pad}\n"
                   for i in range(records)).encode()
    sh(f"{bin_dir}/wormlog", "append", "--config", f"{d}/agent.toml", "--source", "app", "-q", input=data)
    return pk


def total_records(bin_dir, d):
    out = json.loads(sh(f"{bin_dir}/wormlog", "verify", "--json", "--spool", f"{d}/spool").stdout)
    return out["records"]


def bucket_name(tag):
    return f"wlbench-{tag}-{time.time_ns() % 10**9}"


def throughput(bin_dir, w, records, n_collectors):
    agents = []
    for i in range(n_collectors):
        d = f"{w}/agent-{i}"
        pk = fill(bin_dir, d, f"bench-{i}", records)
        agents.append((d, f"bench-{i}", pk, total_records(bin_dir, d)))
    bucket = bucket_name(f"t{n_collectors}")
    cols = []
    for i in range(n_collectors):
        cfg = collector(bin_dir, f"{w}/col-{i}", f"c{i}", bucket, [(a, pk) for _, a, pk, _ in agents])
        if i == 0:
            sh(f"{bin_dir}/wormlog-collector", "create-buckets", "--config", cfg)
        cols.append(serve(bin_dir, cfg, f"{w}/col-{i}.log"))
    runs = []
    t0 = time.monotonic()
    for i, (d, aid, pk, total) in enumerate(agents):
        agent_config(d, aid, [f"http://127.0.0.1:{cols[i][1]}"])
        runs.append(subprocess.Popen([f"{bin_dir}/wormlog", "run", "--config", f"{d}/agent.toml"],
                                     stderr=open(f"{d}/run.log", "w"), stdout=subprocess.DEVNULL))
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        if all(stored(cols[i][1], aid) >= total - 8 for i, (_, aid, _, total) in enumerate(agents)):
            break
        time.sleep(0.05)
    elapsed = time.monotonic() - t0
    done = sum(stored(cols[i][1], aid) for i, (_, aid, _, _) in enumerate(agents))
    for p in runs:
        stop(p)
    for p, _ in cols:
        stop(p)
    return {"collectors": n_collectors, "records": done, "seconds": round(elapsed, 2),
            "records_per_s": round(done / elapsed), "bucket": bucket}


def verify_pass(bin_dir, w, bucket, agent_id, pk):
    """The scheduled verification's full pass over collector 0's store and
    the bucket: from its own verify.json."""
    d = f"{w}/col-0"
    cfg = collector(bin_dir, d, "c0", bucket, [(agent_id, pk)], verify="1s")
    try:
        os.remove(f"{d}/store/verify.json")
    except OSError:
        pass
    p, _ = serve(bin_dir, cfg, f"{w}/col-verify.log")
    deadline = time.monotonic() + 900
    state = {}
    while time.monotonic() < deadline:
        try:
            state = json.load(open(f"{d}/store/verify.json"))
        except (OSError, ValueError):
            state = {}
        if state.get("passes", 0) >= 1:
            break
        time.sleep(0.1)
    stop(p)
    gib = state["last_pass_bytes"] / 2**30
    return {"records": state["last_pass_records"], "bytes": state["last_pass_bytes"],
            "seconds": round(state["last_pass_seconds"], 2),
            "seconds_per_gib": round(state["last_pass_seconds"] / gib, 1),
            "failures": len(state["last_failures"])}


def latency(bin_dir, w, rate, seconds):
    d = f"{w}/lat"
    rm(d)
    os.makedirs(f"{d}/logs")
    pk = keygen(bin_dir, d)
    bucket = bucket_name("lat")
    cfg = collector(bin_dir, f"{w}/col-lat", "clat", bucket, [("lat", pk)])
    rm(f"{w}/col-lat/store")
    sh(f"{bin_dir}/wormlog-collector", "create-buckets", "--config", cfg)
    col, port = serve(bin_dir, cfg, f"{w}/col-lat.log")
    agent_config(d, "lat", [f"http://127.0.0.1:{port}"],
                 f'[[sources.file]]\nname = "app"\npaths = ["{d}/logs/app.log"]\npoll_interval = "10ms"\n',
                 checkpoint="200ms")
    agent = subprocess.Popen([f"{bin_dir}/wormlog", "run", "--config", f"{d}/agent.toml"],
                             stderr=open(f"{d}/run.log", "w"), stdout=subprocess.DEVNULL)
    time.sleep(0.5)  # not a measurement: lets the daemon open its spool
    pad = b"x" * 150
    n = 0
    t_start = time.time()
    with open(f"{d}/logs/app.log", "ab", buffering=0) as f:
        while time.time() - t_start < seconds:
            due = int((time.time() - t_start) * rate)
            if due > n:
                f.write(b"".join(b"%d %d %s\n" % (time.time_ns(), i, pad) for i in range(n, due)))
                n = due
            time.sleep(0.001)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and stored(port, "lat") <= n:
        time.sleep(0.05)
    time.sleep(3)  # the last checkpoints and their receipts
    stop(agent)
    stop(col)
    recs = [json.loads(l) for l in sh(f"{bin_dir}/wormlog", "cat", "--json", "--spool",
                                      f"{d}/spool").stdout.splitlines()]
    receipts = sorted((int(r["tree_size"]), ts_ns(r["ts"])) for r in recs if r["kind"] == "receipt")
    lat, ri = [], 0
    for r in recs:
        if r["kind"] != "entry":
            continue
        written = int(r["body"].split()[0])
        while ri < len(receipts) and receipts[ri][0] <= r["seq"]:
            ri += 1
        if ri == len(receipts):
            continue
        lat.append((receipts[ri][1] - written) / 1e9)
    lat.sort()
    return {"lines": n, "covered": len(lat), "p50_s": round(lat[len(lat) // 2], 3),
            "p99_s": round(lat[int(len(lat) * 0.99)], 3), "max_s": round(lat[-1], 3)}


def ts_ns(s):
    import datetime
    main_part, _, frac = s.rstrip("Z").partition(".")
    dt = datetime.datetime.strptime(main_part, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=datetime.timezone.utc)
    return int(dt.timestamp()) * 10**9 + int((frac + "000000000")[:9] or 0)


def median(xs, k):
    return statistics.median(x[k] for x in xs)


def main():
    if len(sys.argv) < 3 or not ENDPOINT:
        raise SystemExit(__doc__)
    bin_dir, w = sys.argv[1], sys.argv[2]
    records = int(sys.argv[3]) if len(sys.argv) > 3 else 500_000
    runs = int(sys.argv[4]) if len(sys.argv) > 4 else 3
    rate = int(sys.argv[5]) if len(sys.argv) > 5 else 10_000
    seconds = int(sys.argv[6]) if len(sys.argv) > 6 else 20
    os.makedirs(w, exist_ok=True)
    out = {"records_per_agent": records, "runs": runs, "one": [], "two": [], "verify": [], "latency": []}
    for _ in range(runs):
        for n, key in ((1, "one"), (2, "two")):
            for i in range(2):
                rm(f"{w}/col-{i}")
            r = throughput(bin_dir, w, records, n)
            print(json.dumps(r), file=sys.stderr, flush=True)
            out[key].append(r)
            if n == 1:
                pk = open(f"{w}/agent-0/keys/host.pub").read().strip()
                v = verify_pass(bin_dir, w, r["bucket"], "bench-0", pk)
                print(json.dumps(v), file=sys.stderr, flush=True)
                out["verify"].append(v)
        lat = latency(bin_dir, w, rate, seconds)
        print(json.dumps(lat), file=sys.stderr, flush=True)
        out["latency"].append(lat)
    out["median"] = {
        "one_collector_records_per_s": median(out["one"], "records_per_s"),
        "two_collectors_records_per_s": median(out["two"], "records_per_s"),
        "verify_seconds_per_gib": median(out["verify"], "seconds_per_gib"),
        "latency_p50_s": median(out["latency"], "p50_s"),
        "latency_p99_s": median(out["latency"], "p99_s"),
    }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
