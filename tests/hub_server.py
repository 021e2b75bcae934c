"""A stand-in for the Hugging Face Hub HTTP API, for offline tests.

`HubServer` serves, on ``127.0.0.1``, the endpoints that ``huggingface_hub`` 2.4 calls to create a
repository and commit files to it (``create_repo``, ``upload_folder``, ``create_commit``,
``create_branch``) and the ones that ``hf_hub_download``, ``snapshot_download``, ``HfFileSystem``,
``datasets.load_dataset`` and ``transformers`` ``from_pretrained`` call to read it back. It keeps
everything in memory, for ``model``, ``dataset`` and ``space`` repositories alike, with real commit
history, branches, git blob ids and LFS objects, so what a test pushes is what it reads back.

Point a client at it with ``HF_ENDPOINT=server.endpoint`` (read when ``huggingface_hub`` and
``datasets`` are imported, so set it in a subprocess's environment) and ``HF_HUB_DISABLE_XET=1``:
with the ``hf_xet`` package installed, ``huggingface_hub`` uploads files that the server marks as LFS
through the Xet content-addressed store, a binary chunk protocol implemented inside ``hf_xet`` that this
stand-in does not speak. With Xet disabled the client uses the legacy LFS path (batch API, one PUT per
object, verify), which is served here. Downloads never use Xet because no response carries an
``X-Xet-Hash`` header.

Endpoints served (``{type}`` is ``models``, ``datasets`` or ``spaces``; ``{prefix}`` is ``""``,
``datasets/`` or ``spaces/``; ``{repo}`` is ``namespace/name``)::

    POST   /api/repos/create                         create_repo (409 when it exists)
    DELETE /api/repos/delete                         delete_repo
    POST   /api/validate-yaml                        README.md front-matter check before a commit
    GET    /api/whoami-v2                            whoami
    GET    /api/agent-harnesses                      registry read once a day for the user agent (empty)
    GET    /api/{type}/{repo}[/revision/{rev}]       repo_info / model_info / dataset_info
    GET    /api/{type}/{repo}/tree/{rev}[/{path}]    list_repo_tree (recursive, expand)
    POST   /api/{type}/{repo}/paths-info/{rev}       get_paths_info
    GET    /api/{type}/{repo}/refs                   list_repo_refs
    GET    /api/{type}/{repo}/commits/{rev}          list_repo_commits
    POST   /api/{type}/{repo}/branch/{branch}        create_branch
    POST   /api/{type}/{repo}/preupload/{rev}        upload mode ("regular" or "lfs") per file
    POST   /api/{type}/{repo}/commit/{rev}           NDJSON commit (file, lfsFile, deletedFile, deletedFolder)
    POST   /{prefix}{repo}.git/info/lfs/objects/batch    LFS batch API (basic transfer)
    PUT    /lfs-objects/{sha256}                     LFS upload target named by the batch answer
    POST   /{prefix}{repo}.git/info/lfs/objects/verify   LFS verify
    HEAD   /{prefix}{repo}/resolve/{rev}/{path}      file metadata: X-Repo-Commit, ETag, X-Linked-Etag, X-Linked-Size
    GET    /{prefix}{repo}/resolve/{rev}/{path}      file content, with ``Range`` support (206)

Not served: the dataset viewer API that ``datasets.load_dataset`` also asks for a Parquet export and
dataset infos, at ``datasets-server.<endpoint host>`` (a different host; on failure ``datasets`` falls back
to the repository files). Tests set ``datasets.config.USE_PARQUET_EXPORT = False`` in the loading process
so that nothing waits on resolving that host name.

Anything else answers 404 and is recorded in `HubServer.unhandled`, so a test can assert that the
client asked for nothing the stand-in does not know. Errors carry the ``X-Error-Code`` header
(``RepoNotFound``, ``RevisionNotFound``, ``EntryNotFound``) that ``huggingface_hub`` maps to its
exception classes.

Example
-------
>>> with HubServer(token="hf_test") as hub:  # doctest: +SKIP
...     api = HfApi(endpoint=hub.endpoint, token="hf_test")
...     api.create_repo("user/data", repo_type="dataset")
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

REPO_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
"""URL segment of the ``/api/{type}`` routes -> repo type."""

URL_PREFIXES = {"model": "", "dataset": "datasets/", "space": "spaces/"}
"""Repo type -> prefix of its web and ``resolve`` URLs (huggingface_hub ``REPO_TYPES_URL_PREFIXES``)."""

DEFAULT_BRANCH = "main"

LFS_THRESHOLD_BYTES = 10 * 1024 * 1024
"""Files above this size are stored with LFS, as the Hub does (its 10 MB limit on regular git files)."""

DEFAULT_GITATTRIBUTES = """\
*.7z filter=lfs diff=lfs merge=lfs -text
*.arrow filter=lfs diff=lfs merge=lfs -text
*.bin filter=lfs diff=lfs merge=lfs -text
*.ckpt filter=lfs diff=lfs merge=lfs -text
*.gz filter=lfs diff=lfs merge=lfs -text
*.h5 filter=lfs diff=lfs merge=lfs -text
*.npy filter=lfs diff=lfs merge=lfs -text
*.npz filter=lfs diff=lfs merge=lfs -text
*.parquet filter=lfs diff=lfs merge=lfs -text
*.pt filter=lfs diff=lfs merge=lfs -text
*.pth filter=lfs diff=lfs merge=lfs -text
*.safetensors filter=lfs diff=lfs merge=lfs -text
*.zip filter=lfs diff=lfs merge=lfs -text
"""
"""The ``.gitattributes`` of the initial commit, a subset of the one the Hub writes on repo creation."""

_LFS_POINTER_SIZE = 134
"""Size in bytes of a git-lfs pointer file for a sha256 oid (reported as ``pointerSize``)."""


def git_blob_id(data: bytes) -> str:
    """Git object id of a blob: sha1 of ``b"blob <size>\\0" + data`` (what ``git hash-object`` prints)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _now() -> str:
    """Current UTC time in the Hub's date format, ``%Y-%m-%dT%H:%M:%S.%fZ`` with milliseconds."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@dataclass(frozen=True)
class StoredFile:
    """One file of a commit: its bytes and whether the Hub stores it with LFS."""

    data: bytes
    lfs: bool

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def blob_id(self) -> str:
        return git_blob_id(self.data)

    @property
    def etag(self) -> str:
        """What the Hub sends as ETag: the sha256 for an LFS file, the git blob id otherwise."""
        return self.sha256 if self.lfs else self.blob_id


@dataclass
class Commit:
    """A commit: its id, parent, message, date and the full file tree (path -> file)."""

    oid: str
    parent: str | None
    title: str
    message: str
    date: str
    files: dict[str, StoredFile]


@dataclass
class Repo:
    """A repository: type, id, visibility, branches (name -> commit id) and every commit by id."""

    repo_type: str
    repo_id: str
    private: bool
    created_at: str
    branches: dict[str, str] = field(default_factory=dict)
    commits: dict[str, Commit] = field(default_factory=dict)

    def resolve(self, revision: str) -> Commit | None:
        """The commit a branch name or a full commit id names, or None."""
        oid = self.branches.get(revision, revision)
        return self.commits.get(oid)


class _HubError(Exception):
    """An HTTP error answer: status, ``X-Error-Code`` (may be empty) and message."""

    def __init__(self, status: int, code: str, message: str, **payload):
        super().__init__(message)
        self.status, self.code, self.message, self.payload = status, code, message, payload


class HubServer:
    """An in-memory Hugging Face Hub on ``127.0.0.1``, run in a background thread.

    Parameters
    ----------
    token : str or None, optional, default None
        The only bearer token accepted. Writes always need it; reads need it for private repos.
        None accepts any token (and anonymous reads of public repos).

    Attributes
    ----------
    endpoint : str
        ``http://127.0.0.1:<port>``, set once the server has started (``start`` or ``with``).
    repos : dict[tuple[str, str], Repo]
        (repo type, repo id) -> repository.
    lfs_objects : dict[str, bytes]
        sha256 -> content of every uploaded LFS object.
    requests : list[tuple[str, str]]
        (method, path) of every request received, in order.
    unhandled : list[tuple[str, str]]
        (method, path) of requests no route matched.
    errors : list[str]
        Exceptions raised while answering (answered with status 500): a bug in the stand-in.
    """

    def __init__(self, token: str | None = None):
        self.token = token
        self.repos: dict[tuple[str, str], Repo] = {}
        self.lfs_objects: dict[str, bytes] = {}
        self.requests: list[tuple[str, str]] = []
        self.unhandled: list[tuple[str, str]] = []
        self.errors: list[str] = []
        self.endpoint = ""
        self._lock = threading.RLock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._commit_counter = 0

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> HubServer:
        """Bind a free port on 127.0.0.1 and serve in a daemon thread."""
        hub = self

        class Handler(_Handler):
            server_hub = hub

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and release the port."""
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    # ------------------------------------------------------------------ test helpers
    def files(
        self, repo_id: str, repo_type: str = "model", revision: str = DEFAULT_BRANCH
    ) -> dict[str, bytes]:
        """Path -> bytes of every file of ``repo_id`` at ``revision``."""
        commit = self._commit(self._repo(repo_type, repo_id), revision)
        return {path: stored.data for path, stored in commit.files.items()}

    def commit_titles(
        self, repo_id: str, repo_type: str = "model", branch: str = DEFAULT_BRANCH
    ) -> list[str]:
        """Commit titles of ``branch``, newest first."""
        repo = self._repo(repo_type, repo_id)
        titles, oid = [], repo.branches[branch]
        while oid is not None:
            commit = repo.commits[oid]
            titles.append(commit.title)
            oid = commit.parent
        return titles

    # ------------------------------------------------------------------ model
    def _repo(self, repo_type: str, repo_id: str) -> Repo:
        repo = self.repos.get((repo_type, repo_id))
        if repo is None:
            raise _HubError(404, "RepoNotFound", f"Repository {repo_id} ({repo_type}) not found")
        return repo

    @staticmethod
    def _commit(repo: Repo, revision: str) -> Commit:
        commit = repo.resolve(revision)
        if commit is None:
            raise _HubError(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        return commit

    def _new_commit(
        self, repo: Repo, parent: Commit | None, files: dict[str, StoredFile], title: str, message: str = ""
    ) -> Commit:
        with self._lock:
            self._commit_counter += 1
            seed = f"{repo.repo_type}/{repo.repo_id}/{self._commit_counter}/{title}".encode()
        commit = Commit(
            oid=hashlib.sha1(seed).hexdigest(),
            parent=parent.oid if parent else None,
            title=title,
            message=message,
            date=_now(),
            files=files,
        )
        repo.commits[commit.oid] = commit
        return commit

    def _is_lfs(self, files: dict[str, StoredFile], path: str, size: int, sample: bytes) -> bool:
        """Upload mode the Hub would choose: LFS for big or binary files and ``.gitattributes`` LFS patterns."""
        if size > LFS_THRESHOLD_BYTES or b"\0" in sample:
            return True
        attributes = files.get(".gitattributes")
        text = attributes.data.decode() if attributes else ""
        for line in text.splitlines():
            parts = line.split()
            if len(parts) >= 2 and "filter=lfs" in parts[1:]:
                pattern = parts[0]
                if fnmatch.fnmatch(path, pattern) or fnmatch.fnmatch(path.rsplit("/", 1)[-1], pattern):
                    return True
        return False


def _tree_entry(path: str, stored: StoredFile, commit: Commit | None) -> dict:
    """A file entry as ``/tree`` and ``/paths-info`` return it (``lastCommit`` only when expanded)."""
    entry: dict = {"type": "file", "oid": stored.blob_id, "size": len(stored.data), "path": path}
    if stored.lfs:
        entry["lfs"] = {"oid": stored.sha256, "size": len(stored.data), "pointerSize": _LFS_POINTER_SIZE}
    if commit is not None:
        entry["lastCommit"] = {"id": commit.oid, "title": commit.title, "date": commit.date}
    return entry


def _folder_entry(path: str, files: dict[str, StoredFile], commit: Commit | None) -> dict:
    """A folder entry; its oid is a digest of the blob ids below it (stable, not git's tree id)."""
    below = sorted(f"{p}:{s.blob_id}" for p, s in files.items() if p.startswith(path + "/"))
    entry: dict = {
        "type": "directory",
        "oid": hashlib.sha1("\n".join(below).encode()).hexdigest(),
        "path": path,
    }
    if commit is not None:
        entry["lastCommit"] = {"id": commit.oid, "title": commit.title, "date": commit.date}
    return entry


def _folders(files: dict[str, StoredFile]) -> set[str]:
    """Every folder path that holds at least one file."""
    folders = set()
    for path in files:
        parts = path.split("/")[:-1]
        folders.update("/".join(parts[: i + 1]) for i in range(len(parts)))
    return folders


_API_REPO = r"/api/(?P<kind>models|datasets|spaces)/(?P<repo>[^/]+/[^/]+)"
_WEB_REPO = r"/(?:(?P<prefix>datasets|spaces)/)?(?P<repo>[^/]+/[^/]+?)"


class _Handler(BaseHTTPRequestHandler):
    """Routes requests to the `HubServer` given as the class attribute ``server_hub``."""

    server_hub: HubServer
    protocol_version = "HTTP/1.1"

    ROUTES = [
        ("POST", r"/api/repos/create", "create_repo"),
        ("DELETE", r"/api/repos/delete", "delete_repo"),
        ("POST", r"/api/validate-yaml", "validate_yaml"),
        ("GET", r"/api/whoami-v2", "whoami"),
        ("GET", r"/api/agent-harnesses", "agent_harnesses"),
        ("GET", _API_REPO + r"(?:/revision/(?P<rev>[^/]+))?", "repo_info"),
        ("GET", _API_REPO + r"/tree/(?P<rev>[^/]+)(?:/(?P<path>.+))?", "tree"),
        ("POST", _API_REPO + r"/paths-info/(?P<rev>[^/]+)", "paths_info"),
        ("GET", _API_REPO + r"/refs", "refs"),
        ("GET", _API_REPO + r"/commits/(?P<rev>[^/]+)", "commits"),
        ("POST", _API_REPO + r"/branch/(?P<branch>[^/]+)", "create_branch"),
        ("POST", _API_REPO + r"/preupload/(?P<rev>[^/]+)", "preupload"),
        ("POST", _API_REPO + r"/commit/(?P<rev>[^/]+)", "commit"),
        ("POST", _WEB_REPO + r"\.git/info/lfs/objects/batch", "lfs_batch"),
        ("PUT", r"/lfs-objects/(?P<oid>[0-9a-f]{64})", "lfs_upload"),
        ("POST", _WEB_REPO + r"\.git/info/lfs/objects/verify", "lfs_verify"),
        ("HEAD", _WEB_REPO + r"/resolve/(?P<rev>[^/]+)/(?P<path>.+)", "resolve"),
        ("GET", _WEB_REPO + r"/resolve/(?P<rev>[^/]+)/(?P<path>.+)", "resolve"),
    ]

    def log_message(self, *args) -> None:
        """Silence the default access log on stderr."""

    # ------------------------------------------------------------------ plumbing
    def _dispatch(self) -> None:
        hub = self.server_hub
        url = urlsplit(self.path)
        self.query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        hub.requests.append((self.command, url.path))
        try:
            self.body = self._read_body()
            for method, pattern, name in self.ROUTES:
                match = re.fullmatch(pattern, url.path)
                if method == self.command and match:
                    params = {k: unquote(v) for k, v in match.groupdict().items() if v is not None}
                    getattr(self, "do_" + name)(**params)
                    return
            hub.unhandled.append((self.command, url.path))
            raise _HubError(404, "", f"no route for {self.command} {url.path}")
        except _HubError as err:
            headers = {"X-Error-Message": err.message}
            if err.code:
                headers["X-Error-Code"] = err.code
            self._send_json({"error": err.message, **err.payload}, status=err.status, headers=headers)
        except Exception as exc:  # a bug in the stand-in: answer 500 and keep it for the test to see
            hub.errors.append(f"{self.command} {url.path}: {exc!r}")
            self._send_json({"error": repr(exc)}, status=500)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _dispatch

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", headers.get("Content-Length", str(len(body))))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _send_json(self, payload, status: int = 200, headers: dict[str, str] | None = None) -> None:
        self._send(
            status, json.dumps(payload).encode(), {"Content-Type": "application/json", **(headers or {})}
        )

    def _json_body(self):
        try:
            return json.loads(self.body or b"{}")
        except json.JSONDecodeError as exc:
            raise _HubError(400, "", f"request body is not JSON: {exc}") from exc

    def _check_token(self, required: bool) -> None:
        """401 unless the bearer token is right; ``required=False`` lets anonymous reads through."""
        auth = self.headers.get("Authorization", "")
        token = auth[7:] if auth.startswith("Bearer ") else None
        if token is None and not required:
            return
        if token is None or (self.server_hub.token is not None and token != self.server_hub.token):
            raise _HubError(401, "", "Invalid credentials in Authorization header")

    def _readable_repo(self, repo_type: str, repo_id: str) -> Repo:
        """The repo if this request may read it; a private repo read anonymously is "not found", as on the Hub."""
        repo = self.server_hub._repo(repo_type, repo_id)
        self._check_token(required=False)
        if repo.private and "Authorization" not in self.headers:
            raise _HubError(401, "RepoNotFound", f"Repository {repo_id} not found")
        return repo

    @staticmethod
    def _api_type(type_segment: str) -> str:
        return REPO_TYPES[type_segment]

    @staticmethod
    def _web_type(prefix: str | None) -> str:
        return {"datasets": "dataset", "spaces": "space"}.get(prefix or "", "model")

    # ------------------------------------------------------------------ repos
    def do_create_repo(self) -> None:
        self._check_token(required=True)
        payload = self._json_body()
        repo_type = payload.get("type") or "model"
        if repo_type not in URL_PREFIXES:
            raise _HubError(400, "", f"invalid repo type {repo_type!r}")
        namespace = payload.get("organization") or "user"
        repo_id = f"{namespace}/{payload['name']}"
        hub = self.server_hub
        url = f"{hub.endpoint}/{URL_PREFIXES[repo_type]}{repo_id}"
        with hub._lock:
            if (repo_type, repo_id) in hub.repos:
                raise _HubError(409, "", "You already created this repo", url=url)  # the Hub sends the url
            repo = Repo(repo_type, repo_id, private=payload.get("visibility") == "private", created_at=_now())
            hub.repos[(repo_type, repo_id)] = repo
            initial = {".gitattributes": StoredFile(DEFAULT_GITATTRIBUTES.encode(), lfs=False)}
            repo.branches[DEFAULT_BRANCH] = hub._new_commit(repo, None, initial, "initial commit").oid
        self._send_json({"url": url, "name": repo_id, "id": repo_id})

    def do_delete_repo(self) -> None:
        self._check_token(required=True)
        payload = self._json_body()
        repo_id = f"{payload.get('organization') or 'user'}/{payload['name']}"
        key = (payload.get("type") or "model", repo_id)
        with self.server_hub._lock:
            if self.server_hub.repos.pop(key, None) is None:
                raise _HubError(404, "RepoNotFound", f"Repository {repo_id} not found")
        self._send_json({})

    def do_validate_yaml(self) -> None:
        content = self._json_body().get("content", "")
        match = re.match(r"^---\s*\n(.*?)\n---\s*(\n|$)", content, flags=re.DOTALL)
        try:
            yaml.safe_load(match.group(1)) if match else None
        except yaml.YAMLError as exc:
            self._send_json({"errors": [{"message": f"YAML: {exc}"}], "warnings": []}, status=400)
            return
        self._send_json({"errors": [], "warnings": []})

    def do_whoami(self) -> None:
        self._check_token(required=True)
        self._send_json(
            {
                "type": "user",
                "name": "user",
                "fullname": "Test User",
                "orgs": [],
                "auth": {"type": "access_token", "accessToken": {"displayName": "test", "role": "write"}},
            }
        )

    def do_agent_harnesses(self) -> None:
        """The registry ``huggingface_hub`` fetches for its user-agent string; empty: no agent detected."""
        self._send_json({"standardEnvVars": [], "harnesses": {}})

    def do_repo_info(self, kind: str, repo: str, rev: str = DEFAULT_BRANCH) -> None:
        stored_repo = self._readable_repo(self._api_type(kind), repo)
        commit = self.server_hub._commit(stored_repo, rev)
        with_blobs = self.query.get("blobs", "").lower() == "true"
        siblings = []
        for path, stored in sorted(commit.files.items()):
            sibling: dict = {"rfilename": path}
            if with_blobs:
                sibling.update(size=len(stored.data), blobId=stored.blob_id)
                if stored.lfs:
                    sibling["lfs"] = {
                        "size": len(stored.data),
                        "sha256": stored.sha256,
                        "pointerSize": _LFS_POINTER_SIZE,
                    }
            siblings.append(sibling)
        card_data = None
        readme = commit.files.get("README.md")
        if readme is not None:
            match = re.match(r"^---\s*\n(.*?)\n---\s*(\n|$)", readme.data.decode(errors="replace"), re.DOTALL)
            card_data = yaml.safe_load(match.group(1)) if match else None
        self._send_json(
            {
                "_id": hashlib.sha1(repo.encode()).hexdigest()[:24],
                "id": repo,
                "author": repo.split("/")[0],
                "sha": commit.oid,
                "lastModified": commit.date,
                "createdAt": stored_repo.created_at,
                "private": stored_repo.private,
                "disabled": False,
                "gated": False,
                "downloads": 0,
                "likes": 0,
                "tags": [],
                "cardData": card_data,
                "siblings": siblings,
                "usedStorage": sum(len(s.data) for s in commit.files.values()),
            }
        )

    def do_tree(self, kind: str, repo: str, rev: str, path: str = "") -> None:
        stored_repo = self._readable_repo(self._api_type(kind), repo)
        commit = self.server_hub._commit(stored_repo, rev)
        recursive = self.query.get("recursive", "").lower() == "true"
        expand = self.query.get("expand", "").lower() == "true"
        path = path.strip("/")
        folders = _folders(commit.files)
        if path and path not in folders:
            raise _HubError(404, "EntryNotFound", f"{path} does not exist on {rev}")
        base = path + "/" if path else ""
        entries = []
        for folder in sorted(folders):
            rest = folder[len(base) :]
            if folder.startswith(base) and rest and (recursive or "/" not in rest):
                entries.append(_folder_entry(folder, commit.files, commit if expand else None))
        for file_path, stored in sorted(commit.files.items()):
            rest = file_path[len(base) :]
            if file_path.startswith(base) and (recursive or "/" not in rest):
                entries.append(_tree_entry(file_path, stored, commit if expand else None))
        self._send_json(entries)

    def do_paths_info(self, kind: str, repo: str, rev: str) -> None:
        stored_repo = self._readable_repo(self._api_type(kind), repo)
        commit = self.server_hub._commit(stored_repo, rev)
        if "json" in self.headers.get("Content-Type", ""):
            form = self._json_body()
            paths, expand = form.get("paths", []), bool(form.get("expand"))
        else:
            form = parse_qs(self.body.decode())
            paths, expand = form.get("paths", []), form.get("expand", ["False"])[-1].lower() == "true"
        folders = _folders(commit.files)
        entries = []
        for path in paths:
            path = path.strip("/")
            if path in commit.files:
                entries.append(_tree_entry(path, commit.files[path], commit if expand else None))
            elif path in folders:
                entries.append(_folder_entry(path, commit.files, commit if expand else None))
        self._send_json(entries)

    def do_refs(self, kind: str, repo: str) -> None:
        stored_repo = self._readable_repo(self._api_type(kind), repo)
        branches = [
            {"name": name, "ref": f"refs/heads/{name}", "targetCommit": oid}
            for name, oid in sorted(stored_repo.branches.items())
        ]
        self._send_json({"branches": branches, "converts": [], "tags": []})

    def do_commits(self, kind: str, repo: str, rev: str) -> None:
        stored_repo = self._readable_repo(self._api_type(kind), repo)
        commit: Commit | None = self.server_hub._commit(stored_repo, rev)
        history = []
        while commit is not None:
            history.append(
                {
                    "id": commit.oid,
                    "title": commit.title,
                    "message": commit.message,
                    "date": commit.date,
                    "authors": [{"user": "user", "avatar": None}],
                }
            )
            commit = stored_repo.commits.get(commit.parent) if commit.parent else None
        self._send_json(history)

    def do_create_branch(self, kind: str, repo: str, branch: str) -> None:
        self._check_token(required=True)
        stored_repo = self.server_hub._repo(self._api_type(kind), repo)
        payload = self._json_body()
        start = self.server_hub._commit(stored_repo, payload.get("startingPoint") or DEFAULT_BRANCH)
        with self.server_hub._lock:
            if branch in stored_repo.branches:
                raise _HubError(409, "", f"Reference refs/heads/{branch} already exists")
            stored_repo.branches[branch] = start.oid
        self._send_json({})

    # ------------------------------------------------------------------ uploads
    def do_preupload(self, kind: str, repo: str, rev: str) -> None:
        self._check_token(required=True)
        hub = self.server_hub
        stored_repo = hub._repo(self._api_type(kind), repo)
        commit = hub._commit(stored_repo, rev)
        answers = []
        for item in self._json_body().get("files", []):
            sample = base64.b64decode(item.get("sample", ""))
            lfs = hub._is_lfs(commit.files, item["path"], int(item["size"]), sample)
            existing = commit.files.get(item["path"])
            oid = None if existing is None else (existing.sha256 if existing.lfs else existing.blob_id)
            answers.append(
                {
                    "path": item["path"],
                    "uploadMode": "lfs" if lfs else "regular",
                    "shouldIgnore": False,
                    "oid": oid,
                }
            )
        self._send_json({"files": answers, "commitOid": commit.oid})

    def do_lfs_batch(self, repo: str, prefix: str | None = None) -> None:
        self._check_token(required=True)
        hub = self.server_hub
        hub._repo(self._web_type(prefix), repo)
        payload = self._json_body()
        if payload.get("operation") != "upload":
            raise _HubError(400, "", "only the upload operation is served")
        objects = []
        for obj in payload.get("objects", []):
            answer = {"oid": obj["oid"], "size": obj["size"], "authenticated": True}
            if obj["oid"] not in hub.lfs_objects:
                verify = f"{hub.endpoint}/{prefix + '/' if prefix else ''}{repo}.git/info/lfs/objects/verify"
                answer["actions"] = {
                    "upload": {"href": f"{hub.endpoint}/lfs-objects/{obj['oid']}"},
                    "verify": {"href": verify},
                }
            objects.append(answer)
        self._send_json(
            {"transfer": "basic", "objects": objects},
            headers={"Content-Type": "application/vnd.git-lfs+json"},
        )

    def do_lfs_upload(self, oid: str) -> None:
        if hashlib.sha256(self.body).hexdigest() != oid:
            raise _HubError(400, "", "uploaded content does not match its sha256 oid")
        self.server_hub.lfs_objects[oid] = self.body
        self._send(200, b"", {"ETag": f'"{oid}"'})

    def do_lfs_verify(self, repo: str, prefix: str | None = None) -> None:
        self._check_token(required=True)
        self.server_hub._repo(self._web_type(prefix), repo)
        payload = self._json_body()
        stored = self.server_hub.lfs_objects.get(payload.get("oid", ""))
        if stored is None or len(stored) != payload.get("size"):
            raise _HubError(404, "", f"LFS object {payload.get('oid')} not uploaded")
        self._send_json({"success": True})

    def do_commit(self, kind: str, repo: str, rev: str) -> None:
        self._check_token(required=True)
        hub = self.server_hub
        repo_type = self._api_type(kind)
        stored_repo = hub._repo(repo_type, repo)
        with hub._lock:
            parent = hub._commit(stored_repo, rev)
            if rev not in stored_repo.branches:
                raise _HubError(400, "", f"can only commit to a branch, not {rev!r}")
            files = dict(parent.files)
            header: dict = {}
            for line in self.body.decode().splitlines():
                if not line.strip():
                    continue
                item = json.loads(line)
                key, value = item["key"], item["value"]
                if key == "header":
                    header = value
                    if value.get("parentCommit") not in (None, parent.oid):
                        raise _HubError(412, "", "A commit has happened since. Please refresh and try again.")
                elif key == "file":
                    content = base64.b64decode(value["content"])
                    files[value["path"]] = StoredFile(content, lfs=False)
                elif key == "lfsFile":
                    data = hub.lfs_objects.get(value["oid"])
                    if data is None:
                        raise _HubError(
                            422, "", f"LFS object {value['oid']} of {value['path']} was never uploaded"
                        )
                    files[value["path"]] = StoredFile(data, lfs=True)
                elif key == "deletedFile":
                    if files.pop(value["path"], None) is None:
                        raise _HubError(404, "EntryNotFound", "A file with this name doesn't exist")
                elif key == "deletedFolder":
                    folder = value["path"].rstrip("/") + "/"
                    files = {p: s for p, s in files.items() if not p.startswith(folder)}
                else:
                    raise _HubError(400, "", f"unknown commit operation {key!r}")
            commit = hub._new_commit(
                stored_repo, parent, files, header.get("summary", "commit"), header.get("description", "")
            )
            stored_repo.branches[rev] = commit.oid
        url = f"{hub.endpoint}/{URL_PREFIXES[repo_type]}{repo}/commit/{commit.oid}"
        self._send_json(
            {
                "success": True,
                "commitOid": commit.oid,
                "commitUrl": url,
                "hookOutput": "",
                "pullRequestUrl": None,
            }
        )

    # ------------------------------------------------------------------ downloads
    def do_resolve(self, repo: str, rev: str, path: str, prefix: str | None = None) -> None:
        hub = self.server_hub
        stored_repo = self._readable_repo(self._web_type(prefix), repo)
        commit = hub._commit(stored_repo, rev)
        stored = commit.files.get(path)
        if stored is None:
            raise _HubError(404, "EntryNotFound", f"{path} does not exist on {rev}")
        data = stored.data
        headers = {
            "X-Repo-Commit": commit.oid,
            "ETag": f'"{stored.etag}"',
            "Accept-Ranges": "bytes",
            "Content-Type": "application/octet-stream",
        }
        if stored.lfs:
            headers.update({"X-Linked-Etag": f'"{stored.sha256}"', "X-Linked-Size": str(len(data))})
        status = 200
        range_header = self.headers.get("Range")
        if range_header and self.command == "GET":
            match = re.fullmatch(r"bytes=(\d*)-(\d*)", range_header.strip())
            if match is None:
                raise _HubError(416, "", f"unsupported Range {range_header!r}")
            first, last = match.groups()
            if first == "":
                start, end = max(len(data) - int(last), 0), len(data) - 1
            else:
                start, end = int(first), min(int(last) if last else len(data) - 1, len(data) - 1)
            if start >= len(data) and len(data) > 0:
                raise _HubError(416, "", f"Range {range_header!r} beyond {len(data)} bytes")
            headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
            data, status = data[start : end + 1], 206
        self._send(status, data, headers)
