"""A Hugging Face hub on this machine, for tests that load through the real hub client (huggingface_hub, as
transformers and Unsloth call it): the network boundary, and only it, is replaced.

It answers what loading a model needs (`/<repo>/resolve/<revision>/<file>` with the headers the client checks,
and the file listings under `/api/models/<repo>`) from a folder holding one subfolder per repo, and records
every request with its Authorization header.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import threading
from pathlib import Path

COMMIT = "0" * 40


class FakeHub:
    def __init__(self, root: Path):
        self.root, self.requests = root, []
        hub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_HEAD(self):
                hub.answer(self, with_body=False)

            def do_GET(self):
                hub.answer(self, with_body=True)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}"

    def close(self) -> None:
        self.server.shutdown()

    def answer(self, handler, with_body: bool) -> None:
        self.requests.append({"method": handler.command, "path": handler.path,
                              "authorization": handler.headers.get("authorization")})
        parts = handler.path.split("?")[0].strip("/").split("/")
        if len(parts) >= 5 and parts[2] == "resolve":  # <org>/<name>/resolve/<revision>/<file>
            path = self.root / parts[0] / parts[1] / "/".join(parts[4:])
            if path.is_file():
                data = path.read_bytes()
                headers = {"ETag": f'"{hashlib.sha256(data).hexdigest()}"', "X-Repo-Commit": COMMIT}
                return self.send(handler, 200, data, headers, with_body)
            return self.send(handler, 404, b"", {"X-Error-Code": "EntryNotFound"}, with_body)
        if parts[:2] == ["api", "models"] and len(parts) >= 4:  # api/models/<org>/<name>[/tree/<revision>/...]
            repo = self.root / parts[2] / parts[3]
            names = sorted(str(p.relative_to(repo)) for p in repo.rglob("*") if p.is_file())
            listing = ([{"type": "file", "path": n, "size": (repo / n).stat().st_size, "oid": COMMIT} for n in names]
                       if "tree" in parts else {"id": f"{parts[2]}/{parts[3]}", "sha": COMMIT,
                                                "siblings": [{"rfilename": n} for n in names]})
            return self.send(handler, 200, json.dumps(listing).encode(), {"Content-Type": "application/json"},
                             with_body)
        self.send(handler, 404, b"", {}, with_body)

    @staticmethod
    def send(handler, status: int, body: bytes, headers: dict, with_body: bool) -> None:
        handler.send_response(status)
        for key, value in {**headers, "Content-Length": str(len(body))}.items():
            handler.send_header(key, value)
        handler.end_headers()
        if with_body:
            handler.wfile.write(body)
