#!/usr/bin/env python3
"""wormlog on the peers' file benchmark (../shared/bench): tail INPUT from its
start into a durable, chained, signed spool. Prints one JSON line, in the same
shape as ../shared/bench/run_peer.py, so the two can be set side by side.

The clock starts when the daemon is started and stops when it has exited
after reading the whole input and a SIGTERM: the graceful stop makes every
record durable (final fdatasync, stop record, signed checkpoint), so the
figure is "start to a durable spool", stricter than the peers' "output file
holds all the bytes". CPU time and peak RSS come from /usr/bin/time -v.

usage: file_source.py WORMLOG_BIN INPUT WORKDIR [timeout_s]
"""
import json, os, re, shutil, signal, subprocess, sys, time


def main():
    binary, inp, workdir = sys.argv[1:4]
    timeout = float(sys.argv[4]) if len(sys.argv) > 4 else 900
    size = os.path.getsize(inp)
    run = os.path.join(workdir, "wormlog")
    subprocess.run(["chattr", "-R", "-ia", run], stderr=subprocess.DEVNULL)
    shutil.rmtree(run, ignore_errors=True)
    os.makedirs(run)
    conf = f"{run}/agent.toml"
    with open(conf, "w") as f:
        f.write(f"""[agent]
id = "bench"
spool_dir = "{run}/spool"
key_dir = "{run}/keys"

[[sources.file]]
name = "app"
paths = ["{inp}"]
""")
    subprocess.run([binary, "keygen", "--key-dir", f"{run}/keys"], check=True, capture_output=True)
    tfile = f"{run}/time.txt"
    subprocess.run(["sync"])
    time.sleep(1.0)
    t0 = time.monotonic()
    p = subprocess.Popen(["/usr/bin/time", "-v", "-o", tfile, binary, "run", "--config", conf],
                         stdout=open(f"{run}/stdout.txt", "w"), stderr=open(f"{run}/stderr.txt", "w"))
    pid, timed_out = None, False
    while True:
        if pid is None:
            try:
                kids = open(f"/proc/{p.pid}/task/{p.pid}/children").read().split()
                pid = int(kids[0]) if kids else None
            except FileNotFoundError:
                pass
        if pid is not None:
            try:
                io = open(f"/proc/{pid}/io").read()
                rchar = int(re.search(r"rchar: (\d+)", io).group(1))
            except (FileNotFoundError, AttributeError):
                rchar = 0
            if rchar >= size:
                break
        if p.poll() is not None:
            break
        if time.monotonic() - t0 > timeout:
            timed_out = True
            break
        time.sleep(0.01)
    if pid is not None:
        os.kill(pid, signal.SIGTERM)
    p.wait(timeout=120)
    elapsed = time.monotonic() - t0
    tt = open(tfile).read()
    g = lambda pat: float(re.search(pat, tt).group(1)) if re.search(pat, tt) else 0.0
    user, sysc = g(r"User time \(seconds\): ([\d.]+)"), g(r"System time \(seconds\): ([\d.]+)")
    rss = g(r"Maximum resident set size \(kbytes\): (\d+)")
    v = subprocess.run([binary, "verify", "--spool", f"{run}/spool", "--pubkey", f"{run}/keys/host.pub", "--json"],
                       capture_output=True, text=True)
    rep = json.loads(v.stdout)
    lines = rep.get("entries", 0)
    spool_bytes = rep.get("bytes", 0)
    print(json.dumps(dict(peer="wormlog", mode="durable", elapsed_s=round(elapsed, 3), timed_out=timed_out,
                          lines=lines, lines_per_s=round(lines / elapsed),
                          MiB_per_s=round(size / elapsed / 2**20, 2), spool_MB=round(spool_bytes / 1e6),
                          cpu_s=round(user + sysc, 2), cpu_us_per_line=round((user + sysc) / max(lines, 1) * 1e6, 3),
                          peak_rss_MiB=round(rss / 1024, 1), verified=(v.returncode == 0),
                          all_lines=(lines == size // 200))), flush=True)
    subprocess.run(["chattr", "-R", "-ia", run], stderr=subprocess.DEVNULL)
    shutil.rmtree(run, ignore_errors=True)


if __name__ == "__main__":
    main()
