"""A stand-in OTLP/HTTP collector for the benchmarks: answers every POST /v1/traces with 200 and counts requests
and bytes (printed on SIGTERM). It does not decode the spans; the tests' receiver (gomon-testkit) does."""
import signal
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

requests = 0
received = 0


class Sink(BaseHTTPRequestHandler):
    def do_POST(self):
        global requests, received
        length = int(self.headers.get("Content-Length", 0))
        self.rfile.read(length)
        requests += 1
        received += length
        self.send_response(200 if self.path == "/v1/traces" else 404)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def stop(*_):
    print(f"OTLP sink: {requests} export requests, {received} bytes", file=sys.stderr)
    sys.exit(0)


signal.signal(signal.SIGTERM, stop)
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Sink).serve_forever()
