#!/usr/bin/env python3
# W5 reproducer: N clients each send 99 MiB of a 100 MiB request frame; the broker holds
# every partial frame, so its memory grows by ~100 MiB per client (run from the repo root:
# python3 fuzz/findings/big-frames-memory.py 8).
import socket, struct, subprocess, time, tempfile, sys
def rss(pid):
    for l in open(f"/proc/{pid}/status"):
        if l.startswith("VmRSS"): return int(l.split()[1])//1024
d=tempfile.mkdtemp()
s=socket.socket(); s.bind(("127.0.0.1",0)); port=s.getsockname()[1]; s.close()
p=subprocess.Popen(["target/release/cairn","--listen",f"127.0.0.1:{port}","--data-dir",d],stdout=subprocess.DEVNULL,stderr=subprocess.DEVNULL)
time.sleep(1)
print("rss start MiB",rss(p.pid))
n=int(sys.argv[1]); size=100*1024*1024
conns=[]
chunk=b"\0"*(1<<20)
for i in range(n):
    c=socket.create_connection(("127.0.0.1",port))
    c.sendall(struct.pack(">i",size))
    for _ in range(99): c.sendall(chunk)
    conns.append(c)
time.sleep(1)
print(f"rss after {n} connections each sent 99 MiB of a 100 MiB frame: {rss(p.pid)} MiB")
p.kill(); p.wait()
