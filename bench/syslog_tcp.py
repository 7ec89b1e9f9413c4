#!/usr/bin/env python3
"""Syslog over TCP into durable storage: wormlog beside rsyslog (imtcp ->
omfile) and syslog-ng (network -> file), in the same run, alternating.

Every receiver gets the same bytes over one TCP connection on loopback: the
peers' kit input (../shared/bench, 200-byte RFC 3164 lines with PRI), LF
framed, sent as fast as the receiver takes them. Durability is matched to
the peers' most durable batching mode ("b2" in ../shared/bench):
  rsyslog    imtcp -> omfile sync="on", 1,024-message batches, raw template
  syslog-ng  network(tcp) -> file fsync(yes) flush-lines(1000), no-parse
  wormlog    the spool's defaults: chained, signed, fdatasync'd group commits
The clock starts when the sender connects and stops when every message is
on disk: for the peers, when the output file holds the whole input (their
templates write each raw message and a newline, so the output equals the
input) and the process was stopped; for wormlog, when the source has logged
the connection closed after all messages and the daemon has exited after
SIGTERM (its stop makes every record durable and writes a signed
checkpoint). wormlog's spool is then verified and its entries counted.

usage: syslog_tcp.py WORMLOG_BIN INPUT WORKDIR PEERS_DIR [runs]
  PEERS_DIR: the folder given to ../shared/bench/install_peers.sh
Prints one JSON line per run and a summary line with medians and ratios.
"""
import json, os, re, shutil, signal, socket, statistics, subprocess, sys, threading, time

RSYSLOG = """global(workDirectory="@WORK@")
module(load="imtcp")
template(name="raw" type="string" string="%rawmsg%\\n")
ruleset(name="r" queue.type="LinkedList" queue.size="100000" queue.dequeueBatchSize="1024") {
  action(type="omfile" file="@OUT@" template="raw" flushOnTXEnd="on" sync="on" asyncWriting="off" ioBufferSize="1m")
}
input(type="imtcp" port="@PORT@" address="127.0.0.1" ruleset="r")
"""

SYSLOG_NG = """@version: 3.38
options { stats-freq(0); threaded(yes); use-dns(no); use-fqdn(no); keep-hostname(yes); };
source s_in { network(ip("127.0.0.1") port(@PORT@) transport("tcp") flags(no-parse) log-iw-size(10000) log-fetch-limit(1000) max-connections(10)); };
destination d_out { file("@OUT@" template("${MESSAGE}\\n") fsync(yes) flush-lines(1000)); };
log { source(s_in); destination(d_out); flags(flow-control); };
"""


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_port(port, timeout=30):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        try:
            return socket.create_connection(("127.0.0.1", port))
        except OSError:
            time.sleep(0.02)
    raise SystemExit(f"nothing listens on {port}")


def time_v(tfile):
    tt = open(tfile).read()
    g = lambda pat: float(re.search(pat, tt).group(1)) if re.search(pat, tt) else 0.0
    cpu = g(r"User time \(seconds\): ([\d.]+)") + g(r"System time \(seconds\): ([\d.]+)")
    return cpu, g(r"Maximum resident set size \(kbytes\): (\d+)") / 1024


def send_all(conn, data):
    conn.sendall(data)
    conn.shutdown(socket.SHUT_WR)


def stop(p):
    try:
        kids = open(f"/proc/{p.pid}/task/{p.pid}/children").read().split()
    except FileNotFoundError:
        kids = []
    for k in kids:
        os.kill(int(k), signal.SIGTERM)
    p.wait(timeout=120)


def run_peer(peer, data, workdir, peers_dir):
    run = os.path.join(workdir, peer)
    shutil.rmtree(run, ignore_errors=True)
    work = f"{run}/work"
    os.makedirs(work)
    out, port = f"{run}/out.log", free_port()
    conf = f"{run}/{peer}.conf"
    tmpl = RSYSLOG if peer == "rsyslog" else SYSLOG_NG
    open(conf, "w").write(tmpl.replace("@OUT@", out).replace("@WORK@", work).replace("@PORT@", str(port)))
    if peer == "rsyslog":
        rsyslogd = shutil.which("rsyslogd", path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")
        cmd, env = [rsyslogd, "-n", "-f", conf, "-i", f"{work}/pid"], dict(os.environ)
    else:
        sng = os.path.join(peers_dir, "sng")
        cmd = [f"{sng}/usr/sbin/syslog-ng", "-F", "-f", conf, f"--module-path={sng}/usr/lib/syslog-ng/3.38",
               "-R", f"{work}/persist", "-c", f"{work}/ctl", "-p", f"{work}/pid", "--no-caps"]
        env = dict(os.environ, LD_LIBRARY_PATH=f"{sng}/usr/lib/syslog-ng")
    tfile = f"{run}/time.txt"
    p = subprocess.Popen(["/usr/bin/time", "-v", "-o", tfile] + cmd, env=env,
                         stdout=open(f"{run}/stdout.txt", "w"), stderr=open(f"{run}/stderr.txt", "w"))
    conn = wait_port(port)
    t0 = time.monotonic()
    sender = threading.Thread(target=send_all, args=(conn, data))
    sender.start()
    while (os.path.getsize(out) if os.path.exists(out) else 0) < len(data):
        if p.poll() is not None or time.monotonic() - t0 > 900:
            break
        time.sleep(0.01)
    stop(p)
    elapsed = time.monotonic() - t0
    sender.join()
    cpu, rss = time_v(tfile)
    ok = os.path.exists(out) and os.path.getsize(out) == len(data)
    return elapsed, cpu, rss, ok


def run_wormlog(binary, data, workdir, n):
    run = os.path.join(workdir, "wormlog")
    subprocess.run(["chattr", "-R", "-ia", run], stderr=subprocess.DEVNULL)
    shutil.rmtree(run, ignore_errors=True)
    os.makedirs(run)
    port = free_port()
    conf = f"{run}/agent.toml"
    open(conf, "w").write(f"""[agent]
id = "bench"
spool_dir = "{run}/spool"
key_dir = "{run}/keys"

[spool]
append_only = "try"
disk_budget = "16GiB"

[[sources.syslog]]
name = "net"
listen = "tcp://127.0.0.1:{port}"
""")
    subprocess.run([binary, "keygen", "--key-dir", f"{run}/keys"], check=True, capture_output=True)
    err = f"{run}/daemon.err"
    tfile = f"{run}/time.txt"
    p = subprocess.Popen(["/usr/bin/time", "-v", "-o", tfile, binary, "run", "--config", conf],
                         stdout=subprocess.DEVNULL, stderr=open(err, "w"))
    conn = wait_port(port)
    t0 = time.monotonic()
    sender = threading.Thread(target=send_all, args=(conn, data))
    sender.start()
    done = re.compile(r"closed after (\d+) messages")
    while not done.search(open(err).read()):
        if p.poll() is not None or time.monotonic() - t0 > 900:
            break
        time.sleep(0.01)
    stop(p)
    elapsed = time.monotonic() - t0
    sender.join()
    cpu, rss = time_v(tfile)
    v = subprocess.run([binary, "verify", "--json", "--spool", f"{run}/spool"], capture_output=True, text=True)
    rep = json.loads(v.stdout)
    return elapsed, cpu, rss, v.returncode == 0 and rep.get("entries") == n


def main():
    binary, inp, workdir, peers_dir = sys.argv[1:5]
    runs = int(sys.argv[5]) if len(sys.argv) > 5 else 3
    data = open(inp, "rb").read()
    n = data.count(b"\n")
    os.makedirs(workdir, exist_ok=True)
    results = {"wormlog": [], "rsyslog": [], "syslog-ng": []}
    for r in range(runs):
        for who in ("rsyslog", "wormlog", "syslog-ng"):
            subprocess.run(["sync"])
            time.sleep(1.0)
            if who == "wormlog":
                elapsed, cpu, rss, ok = run_wormlog(binary, data, workdir, n)
            else:
                elapsed, cpu, rss, ok = run_peer(who, data, workdir, peers_dir)
            row = {"who": who, "run": r, "messages": n, "seconds": round(elapsed, 3),
                   "messages_per_s": round(n / elapsed), "cpu_s": cpu,
                   "cpu_us_per_message": round(cpu / n * 1e6, 3), "peak_rss_mib": round(rss, 1),
                   "complete": ok}
            results[who].append(row)
            print(json.dumps(row), flush=True)
    med = {w: statistics.median(x["messages_per_s"] for x in rows) for w, rows in results.items()}
    faster_peer = max(med["rsyslog"], med["syslog-ng"])
    print(json.dumps({"summary": True, "median_messages_per_s": med,
                      "wormlog_vs_faster_peer": round(med["wormlog"] / faster_peer, 2),
                      "all_complete": all(x["complete"] for rows in results.values() for x in rows)}))


if __name__ == "__main__":
    main()
