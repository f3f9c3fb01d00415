#!/usr/bin/env python3
"""The end-to-end test's Alertmanager receiver: a webhook on 127.0.0.1.

    webhook.py PORT_FILE LOG_FILE

Binds 127.0.0.1:0, writes the port to PORT_FILE, and appends one JSON line per
POST to LOG_FILE: {"path": "/receiver/NAME", "received_at": ..., "payload": {...}}
where payload is Alertmanager's webhook body (receiver, status, alerts[], ...).
The test rewrites every receiver of the example Alertmanager config to
http://127.0.0.1:PORT/receiver/NAME, so the path says which receiver Alertmanager
meant to notify and the payload's "receiver" field must agree with it.
"""
import http.server
import json
import sys
import time


class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        try:
            payload = json.loads(body)
        except ValueError:
            payload = {"unparsable": body.decode("utf-8", "replace")}
        with open(self.server.log_file, "a", encoding="utf-8") as f:
            f.write(json.dumps({"path": self.path, "received_at": time.time(), "payload": payload}) + "\n")
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, fmt, *args):
        pass


def main():
    port_file, log_file = sys.argv[1], sys.argv[2]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.log_file = log_file
    open(log_file, "a").close()
    with open(port_file + ".tmp", "w") as f:
        f.write(str(server.server_address[1]))
    import os
    os.replace(port_file + ".tmp", port_file)
    server.serve_forever()


if __name__ == "__main__":
    main()
