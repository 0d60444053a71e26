"""The libraries' sdists, unpacked, and one virtual environment that runs them all.

The cache lives outside this checkout on purpose: pytest looks for its
configuration in the parent directories of a suite that has none of its own
(aiojobs's sdist ships none), and version tests ask git about the enclosing
repository; inside the checkout both would find this project's instead.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tarfile
import venv
from dataclasses import dataclass
from pathlib import Path

from .libraries import TEST_REQUIREMENTS, Library

#: Where sdists, sources and the environment are kept between runs.
DEFAULT_CACHE = (
    Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "pytest-asyncspec-compat"
)


@dataclass(frozen=True)
class Environment:
    python: Path
    sources: dict[str, Path]  # library name -> its unpacked sdist


def _sdist(library: Library, downloads: Path) -> Path:
    """The library's sdist, downloaded once (sdists only, never a wheel)."""
    stem = f"{library.name.replace('-', '_')}-{library.version}"
    found = [p for p in downloads.glob("*.tar.gz") if p.name.lower() == f"{stem}.tar.gz".lower()]
    if found:
        return found[0]
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--no-binary",
            ":all:",
            "--dest",
            str(downloads),
            library.pin,
        ],
        check=True,
    )
    found = [p for p in downloads.glob("*.tar.gz") if p.name.lower() == f"{stem}.tar.gz".lower()]
    if not found:
        raise RuntimeError(f"pip downloaded no {stem}.tar.gz into {downloads}")
    return found[0]


def _unpack(sdist: Path, sources: Path) -> Path:
    target = sources / sdist.name.removesuffix(".tar.gz")
    if not target.is_dir():
        with tarfile.open(sdist) as archive:
            archive.extractall(sources, filter="data")
    return target


def _stamp(libraries: list[Library], root: Path) -> str:
    text = "\n".join([*TEST_REQUIREMENTS, *(lib.pin for lib in libraries), str(root)])
    return hashlib.sha256(text.encode()).hexdigest()


def prepare(libraries: list[Library], root: Path, cache: Path) -> Environment:
    """Download and unpack the sdists and install them, their test requirements
    and this checkout (editable, so the code under test is the checked-out one)
    into one environment; a second call with the same inputs reuses it."""
    downloads, sources, env_dir = cache / "sdists", cache / "src", cache / "venv"
    downloads.mkdir(parents=True, exist_ok=True)
    sources.mkdir(parents=True, exist_ok=True)
    sdists = {library.name: _sdist(library, downloads) for library in libraries}
    unpacked = {name: _unpack(sdist, sources) for name, sdist in sdists.items()}
    python = env_dir / "bin" / "python"
    stamp_file = env_dir / "compat-stamp"
    stamp = _stamp(libraries, root)
    if not (stamp_file.exists() and stamp_file.read_text() == stamp):
        venv.create(env_dir, with_pip=True, clear=True)
        subprocess.run(
            [
                str(python),
                "-m",
                "pip",
                "install",
                "--quiet",
                *TEST_REQUIREMENTS,
                *(str(sdist) for sdist in sdists.values()),
                "-e",
                str(root),
            ],
            check=True,
        )
        stamp_file.write_text(stamp)
    return Environment(python, unpacked)
