"""A Hugging Face hub on this machine, for tests that load through the real hub client (huggingface_hub, as
transformers and Unsloth call it): the network boundary, and only it, is replaced.

It answers what loading a model needs (`/<repo>/resolve/<revision>/<file>` with the headers the client checks,
and the file listings under `/api/models/<repo>`) from a folder holding one subfolder per repo, takes what
`HfApi.create_repo` and `HfApi.upload_folder` send into that folder (every file as a regular one, inside the commit:
the fake has no LFS or Xet storage), and records every request with its Authorization header.
"""

from __future__ import annotations

import base64
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

            def do_POST(self):
                hub.receive(self)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}"

    def close(self) -> None:
        self.server.shutdown()

    def record(self, handler) -> list[str]:
        """Record the request; return its path's parts."""
        self.requests.append({"method": handler.command, "path": handler.path,
                              "authorization": handler.headers.get("authorization")})
        return handler.path.split("?")[0].strip("/").split("/")

    def answer(self, handler, with_body: bool) -> None:
        parts = self.record(handler)
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
            return self.send_json(handler, listing, with_body)
        self.send(handler, 404, b"", {}, with_body)

    def receive(self, handler) -> None:
        """An upload's requests: create a repo, validate a card's metadata, tell how each file goes up (all as
        regular files), commit files into the repo's folder."""
        parts = self.record(handler)
        body = json_lines(handler.rfile.read(int(handler.headers.get("Content-Length", 0))))
        if parts == ["api", "repos", "create"]:
            repo = f"{body[0]['organization']}/{body[0]['name']}"
            (self.root / repo).mkdir(parents=True, exist_ok=True)
            return self.send_json(handler, {"url": f"{self.endpoint}/{repo}"})
        if parts == ["api", "validate-yaml"]:
            return self.send_json(handler, {})
        if len(parts) == 6 and parts[:2] == ["api", "models"] and parts[4] == "preupload":
            return self.send_json(handler, {"files": [{"path": file["path"], "uploadMode": "regular",
                                                       "shouldIgnore": False} for file in body[0]["files"]]})
        if len(parts) == 6 and parts[:2] == ["api", "models"] and parts[4] == "commit":
            return self.commit(handler, self.root / parts[2] / parts[3], body)
        self.send(handler, 404, b"", {}, True)

    def commit(self, handler, repo: Path, lines: list[dict]) -> None:
        """Write a commit's files (its header aside; a regular file's content comes base64-encoded)."""
        if any(line["key"] != "file" for line in lines[1:]):
            return self.send_json(handler, {"error": "the fake hub takes regular files only"}, status=400)
        for line in lines[1:]:
            path = repo / line["value"]["path"]
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(base64.b64decode(line["value"]["content"]))
        self.send_json(handler, {"commitUrl": f"{self.endpoint}/{repo.parent.name}/{repo.name}/commit/{COMMIT}",
                                 "commitOid": COMMIT})

    def send_json(self, handler, value, with_body: bool = True, status: int = 200) -> None:
        self.send(handler, status, json.dumps(value).encode(), {"Content-Type": "application/json"}, with_body)

    @staticmethod
    def send(handler, status: int, body: bytes, headers: dict, with_body: bool) -> None:
        handler.send_response(status)
        for key, value in {**headers, "Content-Length": str(len(body))}.items():
            handler.send_header(key, value)
        handler.end_headers()
        if with_body:
            handler.wfile.write(body)


def json_lines(body: bytes) -> list:
    """A request's JSON body, or each line of an NDJSON one (a commit's)."""
    return [json.loads(line) for line in body.splitlines() if line.strip()]
