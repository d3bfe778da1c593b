#!/usr/bin/env python3
"""Test double for the appliance's PXE HTTP service (appliance/pxe, `kindlingd pxe`).

It stands in for the real service ONLY in the lab-node payload test, so the
payload (qemu/payload/init) can be checked before and independently of the
appliance: it answers the two NoCloud documents and the phone-home endpoint
the payload uses, with the same paths and the same event rules as
docs/contracts.md ("PXE HTTP"):

  GET  /nocloud/MAC/meta-data   instance-id + local-hostname
  GET  /nocloud/MAC/user-data   a #cloud-config document
  POST /nodes/MAC/events        JSON with a string "event" in booted|nocloud|installed|joined

Every accepted event is appended as one JSON line to the events file given on
the command line, which the test reads. Anything else is a 404/400, so a
payload that asks for the wrong thing fails the test.

usage: server.py BIND_ADDR PORT EVENTS_FILE
"""
import json
import re
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MAC = r"([0-9a-f]{2}(?:[:-][0-9a-f]{2}){5})"
EVENTS = {"booted", "nocloud", "installed", "joined"}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"

    def reply(self, status, body, ctype="text/plain"):
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        m = re.fullmatch(r"/nocloud/" + MAC + r"/(meta-data|user-data)", self.path)
        if not m:
            return self.reply(404, "not found\n")
        mac = m.group(1).replace("-", ":")
        if m.group(2) == "meta-data":
            host = "node-" + mac.replace(":", "")[-4:]
            return self.reply(200, f"instance-id: i-{mac.replace(':', '')}\nlocal-hostname: {host}\n")
        return self.reply(200, "#cloud-config\nssh_authorized_keys: []\n")

    def do_POST(self):
        m = re.fullmatch(r"/nodes/" + MAC + r"/events", self.path)
        if not m:
            return self.reply(404, "not found\n")
        length = int(self.headers.get("Content-Length", "0"))
        try:
            body = json.loads(self.rfile.read(length))
        except ValueError as e:
            return self.reply(400, f'{{"error": "event body is not JSON: {e}"}}', "application/json")
        event = body.get("event") if isinstance(body, dict) else None
        if event not in EVENTS:
            return self.reply(400, '{"error": "unknown event"}', "application/json")
        with open(sys.argv[3], "a") as f:
            f.write(json.dumps({"mac": m.group(1), "event": event, "body": body}) + "\n")
        return self.reply(200, '{"ok": true}', "application/json")


if __name__ == "__main__":
    server = ThreadingHTTPServer((sys.argv[1], int(sys.argv[2])), Handler)
    print(f"pxe-double listening on {sys.argv[1]}:{sys.argv[2]}", flush=True)
    server.serve_forever()
