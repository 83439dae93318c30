"""Read the DVC-versioned raw data (``data/raw``) of a git repository at a given revision.

On a cluster there is no project checkout: the fetch step names a git repo URL and a revision,
and the files the ``fetch`` stage tracked there (``train.parquet``, ``test.parquet``,
``source.json``) are streamed from that revision's DVC remote through ``dvc.api``. The copy is
byte-identical, so ``data_sha256`` (and hence study names and run tags) match what ``dvc repro``
computed for that revision.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

from newsrnn.errors import DvcDataError, redact
from newsrnn.fileio import atomic_dir

# dvc phones home unless told not to; tasks on a cluster must not.
os.environ.setdefault("DVC_NO_ANALYTICS", "1")

RAW_PATH = "data/raw"
RAW_FILES = ("train.parquet", "test.parquet", "source.json")
_SHA_RE = re.compile(r"^[0-9a-f]{40}$")


def resolve_rev(repo: str, rev: str | None = None) -> str:
    """The commit sha that ``rev`` (branch, tag, sha; default HEAD) names in ``repo`` right now.

    Used as the data version in the fetch step's cache key: a branch name alone would let a
    cached fetch hide new commits forever.
    """
    if rev and _SHA_RE.match(rev):
        return rev
    ref = rev or "HEAD"
    # rev-parse works on local paths even for abbreviated shas; ls-remote also covers URLs.
    local = Path(repo)
    if local.is_dir():
        out = subprocess.run(["git", "rev-parse", "--verify", f"{ref}^{{commit}}"], cwd=local,
                             capture_output=True, text=True, check=False)
        if out.returncode == 0:
            return out.stdout.strip()
    out = subprocess.run(["git", "ls-remote", repo, ref], capture_output=True, text=True,
                         check=False, timeout=120)
    if out.returncode != 0:
        raise DvcDataError(f"{repo}: git ls-remote failed: {out.stderr.strip()[:300]}")
    lines = [ln.split("\t") for ln in out.stdout.splitlines() if ln.strip()]
    # Prefer the peeled tag (^{}) so an annotated tag resolves to its commit, not the tag object.
    for sha, name in lines:
        if name.endswith("^{}"):
            return sha
    if not lines:
        raise DvcDataError(f"{repo}: revision {ref!r} not found (give a branch, tag or full commit sha)")
    return lines[0][0]


def fetch_dvc(repo: str, out_dir: str | Path, rev: str | None = None, remote: str | None = None,
              path: str = RAW_PATH, remote_config: dict[str, Any] | None = None) -> dict[str, Any]:
    """Copy ``path/{train,test}.parquet`` and ``source.json`` of ``repo@rev`` into ``out_dir``.

    The files come from the DVC remote (``remote`` names one; default: the repo's default remote),
    never from a fresh download of the corpus. ``out_dir`` is replaced as a whole, so a failure
    leaves no mix of two revisions. Returns the revision's ``source.json`` plus where it came from.
    """
    from dvc.api import DVCFileSystem

    try:
        fs = DVCFileSystem(repo, rev=rev or None, remote=remote or None, remote_config=remote_config)
    except Exception as exc:  # dvc/scmrepo raise many types; the repo and reason are what matter
        raise DvcDataError(f"{repo}@{rev or 'HEAD'}: cannot open the DVC repository: {exc}") from None
    with atomic_dir(out_dir) as tmp:
        for name in RAW_FILES:
            src = f"{path.rstrip('/')}/{name}"
            try:
                with fs.open(src, mode="rb") as fin, open(tmp / name, "wb") as fout:
                    shutil.copyfileobj(fin, fout, 1 << 20)
            except FileNotFoundError:
                raise DvcDataError(f"{repo}@{rev or 'HEAD'}: {src} is not tracked at this revision "
                                   "(was `dvc repro fetch` committed and `dvc push`ed?)") from None
            except Exception as exc:
                raise DvcDataError(f"{repo}@{rev or 'HEAD'}: reading {src} from the DVC remote "
                                   f"failed: {type(exc).__name__}: {str(exc)[:300]}") from None
    info = json.loads((Path(out_dir) / "source.json").read_text())
    print(f"fetch: {info.get('rows')} rows of {path} from {repo}@{rev or 'HEAD'} (DVC remote)")
    return {**info, "dvc": {"repo": redact(repo), "rev": rev or "HEAD"}}
