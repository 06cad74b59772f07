"""Fetches Debian packages without installing them: `apt-get download` into a cache, then `dpkg -x`.

Neither step needs root. A package already in the cache (or in /var/cache/apt/archives) at the version apt
would fetch is reused, and so is an unpacked tree; with no apt at all, a tree already unpacked in the cache is
used as it is. Every command goes through one injectable runner, so tests fetch from a fake archive.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

from absl import logging

from electra_jax.data.token_corpus import file_sha256  # the digest build_data records of a vocabulary

# (command, working folder) -> standard output; raises RuntimeError naming the command when it fails.
CommandRunner = Callable[[Sequence[str], Path | None], str]
SYSTEM_ARCHIVES = (Path("/var/cache/apt/archives"),)
_UNPACKED_MARKER = ".unpacked"


def run_command(command: Sequence[str], cwd: Path | None = None) -> str:
    """Runs a command and returns its standard output; a failure raises one RuntimeError with its stderr."""
    try:
        done = subprocess.run(list(command), cwd=cwd, capture_output=True, text=True, check=False)
    except FileNotFoundError as e:
        raise RuntimeError(f"`{command[0]}` is not installed ({e}); the Debian corpus needs apt-get and dpkg "
                           "(a Debian or Ubuntu machine)") from e
    if done.returncode != 0:
        raise RuntimeError(f"`{' '.join(command)}` failed with exit status {done.returncode}: "
                           f"{done.stderr.strip()[-600:]}")
    return done.stdout


@dataclasses.dataclass(frozen=True)
class Package:
    name: str
    version: str
    root: Path  # the unpacked tree (usr/share/... below it)
    deb: Path | None  # the .deb it came from (None: a tree found unpacked with no .deb beside it)
    sha256: str  # of the .deb, "" when there is none


def deb_file_name_pattern(name: str, version: str) -> str:
    """The glob of the file apt-get download writes: name_version_arch.deb with the epoch's ':' as %3a."""
    return f"{name}_{version.replace(':', '%3a')}_*.deb"


def _safe_version(version: str) -> str:
    return re.sub(r"[^A-Za-z0-9.+~-]", "_", version)


class DebianFetcher:
    """Downloads and unpacks Debian packages into `cache_dir` (debs/ and unpacked/NAME_VERSION/)."""

    def __init__(self, cache_dir: str | Path, runner: CommandRunner = run_command,
                 system_archives: Sequence[Path] = SYSTEM_ARCHIVES, offline: bool = False):
        self.cache_dir = Path(cache_dir).expanduser()
        self.runner = runner
        self.system_archives = tuple(Path(p) for p in system_archives)
        self.offline = offline  # use only the trees already unpacked in the cache; run no command

    def candidate_version(self, name: str) -> str:
        """The version `apt-get download NAME` would fetch."""
        shown = self.runner(["apt-cache", "show", "--no-all-versions", name], None)
        match = re.search(r"^Version: (\S+)$", shown, re.MULTILINE)
        if not match:
            raise RuntimeError(f"apt knows no package {name!r} (apt-cache show printed no Version); check the "
                               "name, or run `apt-get update` if the package lists are missing")
        return match.group(1)

    def _find_deb(self, name: str, version: str) -> Path | None:
        pattern = deb_file_name_pattern(name, version)
        for folder in (self.cache_dir / "debs", *self.system_archives):
            found = sorted(folder.glob(pattern)) if folder.is_dir() else []
            if found:
                return found[0]
        return None

    def cached_tree(self, name: str, reason: str) -> Package:
        """The tree of `name` already unpacked in the cache (the newest-named if several), without apt."""
        found = sorted((self.cache_dir / "unpacked").glob(f"{name}_*/{_UNPACKED_MARKER}"))
        if not found:
            raise RuntimeError(f"cannot fetch Debian package {name!r} ({reason}) and {self.cache_dir / 'unpacked'} "
                               f"holds no unpacked {name}_VERSION: run once on a Debian machine with access to the "
                               "archive, or copy a filled --cache_dir from one")
        root = found[-1].parent
        marker = json.loads((root / _UNPACKED_MARKER).read_text())
        deb = self.cache_dir / "debs" / marker["deb"]
        return Package(name, marker["version"], root, deb if deb.is_file() else None,
                       file_sha256(str(deb)) if deb.is_file() else "")

    def fetch(self, name: str) -> Package:
        """The package at apt's candidate version, downloaded and unpacked unless already in the cache."""
        if self.offline:
            return self.cached_tree(name, "offline")
        try:
            version = self.candidate_version(name)
        except RuntimeError as error:
            logging.warning("corpus: apt is not usable for %s (%s); looking in the cache", name, error)
            return self.cached_tree(name, str(error))
        deb = self._find_deb(name, version)
        if deb is None:
            debs = self.cache_dir / "debs"
            debs.mkdir(parents=True, exist_ok=True)
            logging.info("corpus: apt-get download %s=%s", name, version)
            self.runner(["apt-get", "download", f"{name}={version}"], debs)
            deb = self._find_deb(name, version)
            if deb is None:
                raise RuntimeError(f"`apt-get download {name}={version}` wrote no "
                                   f"{deb_file_name_pattern(name, version)} in {debs}")
        root = self.cache_dir / "unpacked" / f"{name}_{_safe_version(version)}"
        if not (root / _UNPACKED_MARKER).exists():
            partial = root.with_name(root.name + ".partial")
            shutil.rmtree(partial, ignore_errors=True)
            partial.mkdir(parents=True)
            self.runner(["dpkg", "-x", str(deb), str(partial)], None)
            (partial / _UNPACKED_MARKER).write_text(json.dumps({"deb": deb.name, "version": version}) + "\n")
            shutil.rmtree(root, ignore_errors=True)
            partial.rename(root)
        return Package(name, version, root, deb, file_sha256(str(deb)))


# ---------------------------------------------------------------------------------------------------------
# Licences, from the package's copyright file

_KNOWN_LICENCES = (
    (r"GNU Free Documentation License|\bGFDL", "GFDL"),
    (r"GNU (Lesser|Library) General Public License|\bLGPL", "LGPL"),
    (r"GNU General Public License|\bGPL", "GPL"),
    (r"Artistic License|\bArtistic\b", "Artistic"),
    (r"Apache License", "Apache"),
    (r"Creative Commons|\bCC-BY", "CC-BY"),
    (r"PostgreSQL License|Permission to use, copy, modify, and distribute this software and its documentation for "
     r"any purpose, without fee", "PostgreSQL"),
    (r"\bMIT\b|Permission is hereby granted, free of charge", "MIT"),
    (r"\bBSD\b|Redistribution and use in source and binary forms", "BSD"),
    (r"public domain|copyright [^.]{0,80}\bexpired", "public domain"),
)


def copyright_file(root: Path, name: str) -> Path | None:
    """The package's copyright file (usr/share/doc/NAME/copyright), or the first one it ships."""
    path = root / "usr" / "share" / "doc" / name / "copyright"
    if path.is_file():
        return path
    found = sorted(root.glob("usr/share/doc/*/copyright"))
    return found[0] if found else None


def licence_summary(text: str) -> str:
    """A short licence name from a copyright file: in the machine-readable (DEP-5) format, the License of the
    `Files: *` stanza, else of the first Files stanza (the upstream work); otherwise "names X, Y": the licences a
    free-form file mentions."""
    if re.match(r"Format:\s*\S*copyright-format", text):
        stanzas = [stanza for stanza in re.split(r"\n\s*\n", text)
                   if re.search(r"^Files:", stanza, re.MULTILINE) and re.search(r"^License:", stanza, re.MULTILINE)]
        main = [stanza for stanza in stanzas if re.search(r"^Files:\s*\*\s*$", stanza, re.MULTILINE)] or stanzas
        if main:
            return re.search(r"^License:\s*(.+)$", main[0], re.MULTILINE).group(1).strip()
    named = [label for pattern, label in _KNOWN_LICENCES if re.search(pattern, text, re.IGNORECASE)]
    # A free-form copyright file: every licence it names (parts of a package can differ), marked as such.
    return "names " + ", ".join(named) if named else "unknown (see the copyright file)"
