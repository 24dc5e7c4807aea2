"""A destination receiver as a user would write one: it verifies every delivery with Svix's
own library (`svix.webhooks.Webhook`), appends what it accepted to a JSON-lines file, and
answers 503 to the first N requests when told to. Prints its port, then serves until killed.

Usage: svix_receiver.py SECRET_FILE OUT_FILE FAIL_FIRST [DELAY_MS]
With DELAY_MS, each verified delivery is first noted in OUT_FILE.arrivals (its webhook-id), then
answered that long later (a request in flight to kill the sender under).
The secret is read from SECRET_FILE at every request (the test writes it after creating the
destination).
"""

import json
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from svix.webhooks import Webhook, WebhookVerificationError

secret_file, out_file, fail_first = sys.argv[1], sys.argv[2], int(sys.argv[3])
delay_ms = int(sys.argv[4]) if len(sys.argv) > 4 else 0
state = {"failures_left": fail_first}


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        if state["failures_left"] > 0:
            state["failures_left"] -= 1
            self.send_response(503)
            self.end_headers()
            return
        with open(secret_file) as f:
            secret = f.read().strip()
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            Webhook(secret).verify(body, headers)
        except WebhookVerificationError as error:
            print(f"refused: {error}", file=sys.stderr, flush=True)
            self.send_response(401)
            self.end_headers()
            return
        if delay_ms:
            with open(out_file + ".arrivals", "a") as f:
                f.write(headers["webhook-id"] + "\n")
            time.sleep(delay_ms / 1000)
        with open(out_file, "a") as f:
            f.write(json.dumps({"id": headers["webhook-id"], "body": json.loads(body)}) + "\n")
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
