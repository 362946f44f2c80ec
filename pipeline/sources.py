"""Input files of a pipeline step: expand a path or glob, and fingerprint the bytes that were read.

The fingerprint (a sha256 over the files' bytes, in name order) ties a training run or a screening
folder to exactly the data it saw: a screening re-run on the same bytes with the same model version
is recognised and not repeated.

Example
-------
>>> import tempfile, pathlib
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> _ = (folder / "a.csv").write_text("id,x\\n1,2\\n")
>>> [p.name for p in source_files(str(folder / "*.csv"))]
['a.csv']
>>> fingerprint(source_files(folder / "a.csv"))["bytes"]
9
>>> _ = (folder / "b[1].csv").write_text("id,x\\n1,2\\n")  # a name with a glob's bracket is a file's
>>> [p.name for p in source_files(folder / "b[1].csv")]
['b[1].csv']
"""

from __future__ import annotations

import glob
import hashlib
from pathlib import Path
from typing import Any

from pipeline.ingest import IngestError

_CHUNK = 1 << 20  # hash in 1 MiB reads: memory stays flat whatever the file size


def source_files(pattern: str | Path) -> list[Path]:
    """The files named by a path or a glob pattern (``*``, ``?``, ``[``), sorted by name.

    Raises
    ------
    IngestError
        A glob pattern matches no file. A plain path is returned as it is, so the reader can say
        what is wrong with it (missing, a folder, empty).
    """
    text = str(pattern)
    if not any(char in text for char in "*?[") or Path(text).is_file():  # batch[1].csv names a file
        return [Path(text)]
    files = sorted(Path(p) for p in glob.glob(text, recursive=True) if Path(p).is_file())
    if not files:
        raise IngestError(f"no file matches {text!r}; check the pattern and the working directory")
    return files


def fingerprint(files: list[Path], names_under: Path | None = None) -> dict[str, Any]:
    """``{"sha256": hex digest over all files' bytes, "bytes": total size, "files": [names]}``.

    With ``names_under`` (a folder of images, whose names are their ids and kinds), each file's
    path inside it is hashed before its bytes, so a file moved or renamed changes the digest too."""
    digest, size = hashlib.sha256(), 0
    for path in files:
        if names_under is not None:
            digest.update(Path(path).relative_to(names_under).as_posix().encode() + b"\0")
        if Path(path).is_symlink() and not Path(path).exists():  # a link to nothing (quarantined): its target
            digest.update(str(Path(path).readlink()).encode() + b"\0")
            continue
        with open(path, "rb") as handle:
            while block := handle.read(_CHUNK):
                digest.update(block)
                size += len(block)
    return {"sha256": digest.hexdigest(), "bytes": size, "files": [str(p) for p in files]}
