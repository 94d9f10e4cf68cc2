#!/usr/bin/python3
"""More traffic endpoints for the e2e tests (stdlib only, run inside a namespace).

Usage:
  traffic.py trickle-server PORT          dual-stack TCP server: each connection gets 1 KiB
                                          every 50 ms for at most 40 s
  traffic.py trickle-client ADDR PORT OUT connect, read; after each read write the byte count
                                          so far to OUT; gives up after 30 s of silence or 40 s
  traffic.py udp-probe ADDR PORT          connected UDP socket: send one datagram, wait 2 s;
                                          prints `refused` (ICMP unreachable), `answer` or
                                          `timeout`
  traffic.py udp-echo PORT                dual-stack UDP echo server (runs until killed)
  traffic.py udp-client ADDR PORT N       N request/response exchanges; prints `ok N`
ADDR decides the family (':' means IPv6).
"""

import socket
import sys
import threading
import time


def family(addr):
    return socket.AF_INET6 if ":" in addr else socket.AF_INET


def trickle_server(port):
    ls = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    ls.bind(("::", port))
    ls.listen(16)

    def serve(c):
        end = time.monotonic() + 40
        try:
            while time.monotonic() < end:
                c.sendall(b"x" * 1024)
                time.sleep(0.05)
        except OSError:
            pass
        c.close()

    while True:
        c, _ = ls.accept()
        threading.Thread(target=serve, args=(c,), daemon=True).start()


def trickle_client(addr, port, out):
    s = socket.socket(family(addr), socket.SOCK_STREAM)
    s.settimeout(5)
    s.connect((addr, port))
    s.settimeout(30)
    total = 0
    end = time.monotonic() + 40
    try:
        while time.monotonic() < end:
            b = s.recv(65536)
            if not b:
                break
            total += len(b)
            with open(out + ".tmp", "w") as f:
                f.write(str(total))
            import os
            os.replace(out + ".tmp", out)
    except OSError as e:
        print(f"error {e}")
    print(f"total {total}")


def udp_probe(addr, port):
    s = socket.socket(family(addr), socket.SOCK_DGRAM)
    s.settimeout(2)
    s.connect((addr, port))
    s.send(b"probe")
    try:
        s.recv(2048)
        print("answer")
    except ConnectionRefusedError:
        print("refused")
    except socket.timeout:
        print("timeout")


def udp_echo(port):
    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.bind(("::", port))
    while True:
        data, peer = s.recvfrom(65536)
        s.sendto(data, peer)


def udp_client(addr, port, n):
    for i in range(n):
        s = socket.socket(family(addr), socket.SOCK_DGRAM)
        s.settimeout(2)
        s.connect((addr, port))
        msg = f"req {i}".encode()
        s.send(msg)
        if s.recv(2048) != msg:
            print(f"exchange {i}: bad answer")
            return 1
        s.close()
    print(f"ok {n}")
    return 0


def main(a):
    if a[0] == "trickle-server":
        trickle_server(int(a[1]))
    elif a[0] == "trickle-client":
        trickle_client(a[1], int(a[2]), a[3])
    elif a[0] == "udp-probe":
        udp_probe(a[1], int(a[2]))
    elif a[0] == "udp-echo":
        udp_echo(int(a[1]))
    elif a[0] == "udp-client":
        return udp_client(a[1], int(a[2]), int(a[3]))
    else:
        print(__doc__)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
