#!/usr/bin/env python3
"""pull_server.py - a small HTTP server for tests/test_pull.sh (never the
internet).  Serves the files of a directory over GET with Range support
(bytes=N- and bytes=N-M; 206 with Content-Range, 416 past the end), and
can misbehave on purpose:

  --cut NAME:BYTES   the first GET of NAME announces the whole length but
                     closes the connection after BYTES bytes
  --corrupt NAME     every GET of NAME has one byte flipped (in the middle)
  --no-range NAME    GETs of NAME ignore Range (200 and the whole file)

It writes its port to PORTFILE once listening, and one line per request to
LOG: "GET /NAME RANGE" (RANGE "-" when none).

usage: pull_server.py DIR PORTFILE LOG [--cut NAME:BYTES] [--corrupt NAME]...
"""
import argparse
import http.server
import os
import re
import socketserver
import sys


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("portfile")
    ap.add_argument("log")
    ap.add_argument("--cut", action="append", default=[])
    ap.add_argument("--corrupt", action="append", default=[])
    ap.add_argument("--no-range", action="append", default=[])
    args = ap.parse_args()
    cuts = {}
    for c in args.cut:
        name, n = c.rsplit(":", 1)
        cuts[name] = int(n)
    log = open(args.log, "a", buffering=1)

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def do_GET(self):
            name = self.path.split("?", 1)[0].lstrip("/")
            rng = self.headers.get("Range")
            log.write("GET /%s %s\n" % (name, rng or "-"))
            path = os.path.join(args.dir, name)
            if "/" in name or not os.path.isfile(path):
                self.send_error(404)
                return
            data = bytearray(open(path, "rb").read())
            if name in args.corrupt and data:
                data[len(data) // 2] ^= 0x55
            total = len(data)
            start, end, status = 0, total - 1, 200
            m = re.fullmatch(r"bytes=(\d+)-(\d*)", rng or "")
            if m and name not in args.no_range:
                start = int(m.group(1))
                if m.group(2):
                    end = min(int(m.group(2)), total - 1)
                if start >= total:
                    self.send_response(416)
                    self.send_header("Content-Range", "bytes */%d" % total)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                status = 206
            body = bytes(data[start:end + 1])
            self.send_response(status)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Accept-Ranges", "bytes")
            if status == 206:
                self.send_header("Content-Range", "bytes %d-%d/%d" % (start, end, total))
            self.end_headers()
            if name in cuts:
                n = cuts.pop(name)
                self.wfile.write(body[:n])
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(2)
                return
            self.wfile.write(body)

    class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
        daemon_threads = True
        allow_reuse_address = True

        def handle_error(self, request, client_address):
            pass    # a client that hangs up (the tests' cuts) is no error here

    srv = Server(("127.0.0.1", 0), Handler)
    with open(args.portfile + ".tmp", "w") as f:
        f.write("%d\n" % srv.server_address[1])
    os.rename(args.portfile + ".tmp", args.portfile)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
