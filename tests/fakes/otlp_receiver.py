"""A minimal OTLP/HTTP (protobuf) receiver on loopback that keeps what it is sent, for tests."""

from __future__ import annotations

import gzip
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest


class OtlpReceiver:
    """Accepts `POST /v1/traces` and `/v1/metrics`; `spans()` and `metric_names()` read what arrived."""

    def __init__(self) -> None:
        self.traces: list[ExportTraceServiceRequest] = []
        self.metrics: list[ExportMetricsServiceRequest] = []
        self._event = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                if self.headers.get("content-encoding") == "gzip":
                    body = gzip.decompress(body)
                if self.path.endswith("/v1/traces"):
                    msg: Any = ExportTraceServiceRequest()
                    msg.ParseFromString(body)
                    target: list[Any] = receiver.traces
                elif self.path.endswith("/v1/metrics"):
                    msg = ExportMetricsServiceRequest()
                    msg.ParseFromString(body)
                    target = receiver.metrics
                else:
                    msg, target = None, []
                with receiver._event:
                    if msg is not None:
                        target.append(msg)
                    receiver._event.notify_all()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def __enter__(self) -> OtlpReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def spans(self) -> list[tuple[str, Any]]:
        """(scope name, span) of every span received."""
        out = []
        for req in self.traces:
            for rs in req.resource_spans:
                for ss in rs.scope_spans:
                    out.extend((ss.scope.name, span) for span in ss.spans)
        return out

    def metric_names(self) -> set[str]:
        return {
            metric.name
            for req in self.metrics
            for rm in req.resource_metrics
            for sm in rm.scope_metrics
            for metric in sm.metrics
        }
