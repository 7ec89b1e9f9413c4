#!/usr/bin/env python3
"""wormlog on the peers' file benchmark (../shared/bench): tail INPUT from its
start into a durable, chained, signed spool. Prints one JSON line, in the same
shape as ../shared/bench/run_peer.py, so the two can be set side by side.

The clock starts when the daemon is started and stops when it has exited
after reading the whole input and a SIGTERM: the graceful stop makes every
record durable (final fdatasync, stop record, signed checkpoint), so the
figure is "start to a durable spool", stricter than the peers' "output file
holds all the bytes". CPU time and peak RSS come from /usr/bin/time -v.

With WORMLOG_BENCH_ENCRYPT_TO=age1... the spool is encrypted at rest
(`[spool] encrypt_to`, docs/FORMAT.md 6.2.1). With WORMLOG_BENCH_APPEND=1
the input goes through `wormlog append --source app` (standard input) instead
of the file source; the clock then runs from its start to its exit (which
closes the spool durably).

usage: file_source.py WORMLOG_BIN INPUT WORKDIR [timeout_s]
"""
import json, os, re, shutil, signal, subprocess, sys, time


def main():
    binary, inp, workdir = sys.argv[1:4]
    timeout = float(sys.argv[4]) if len(sys.argv) > 4 else 900
    size = os.path.getsize(inp)
    append = os.environ.get("WORMLOG_BENCH_APPEND") == "1"
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

""")
        recipient = os.environ.get("WORMLOG_BENCH_ENCRYPT_TO")
        if recipient:
            f.write(f'\n[spool]\nencrypt_to = ["{recipient}"]\n')
        if not append:
            f.write(f'\n[[sources.file]]\nname = "app"\npaths = ["{inp}"]\n')
    subprocess.run([binary, "keygen", "--key-dir", f"{run}/keys"], check=True, capture_output=True)
    tfile = f"{run}/time.txt"
    subprocess.run(["sync"])
    time.sleep(1.0)
    t0 = time.monotonic()
    if append:
        with open(inp, "rb") as stdin:
            subprocess.run(["/usr/bin/time", "-v", "-o", tfile, binary, "append", "--config", conf, "--source", "app"],
                           stdin=stdin, stdout=open(f"{run}/stdout.txt", "w"), stderr=open(f"{run}/stderr.txt", "w"),
                           check=True, timeout=timeout)
    p = None if append else subprocess.Popen(["/usr/bin/time", "-v", "-o", tfile, binary, "run", "--config", conf],
                         stdout=open(f"{run}/stdout.txt", "w"), stderr=open(f"{run}/stderr.txt", "w"))
    pid, timed_out = None, False
    while p is not None:
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
    if p is not None:
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
    mode = ("append" if append else "durable") + ("+encrypt" if os.environ.get("WORMLOG_BENCH_ENCRYPT_TO") else "")
    print(json.dumps(dict(peer="wormlog", mode=mode, elapsed_s=round(elapsed, 3), timed_out=timed_out,
                          lines=lines, lines_per_s=round(lines / elapsed),
                          MiB_per_s=round(size / elapsed / 2**20, 2), spool_MB=round(spool_bytes / 1e6),
                          cpu_s=round(user + sysc, 2), cpu_us_per_line=round((user + sysc) / max(lines, 1) * 1e6, 3),
                          peak_rss_MiB=round(rss / 1024, 1), verified=(v.returncode == 0),
                          all_lines=(lines == size // 200))), flush=True)
    subprocess.run(["chattr", "-R", "-ia", run], stderr=subprocess.DEVNULL)
    shutil.rmtree(run, ignore_errors=True)


if __name__ == "__main__":
    main()
