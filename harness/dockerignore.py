""".dockerignore as Docker reads it, to tell which files a build context would send.

Ours: no library matches BuildKit (docker-py's older port keeps .dockerignore; pathspec is git's).

A line-for-line port of what BuildKit and the Docker CLI use:
- reading the file: moby/patternmatcher `ignorefile.ReadAll` (a BOM on the first line is dropped;
  lines starting with `#` are comments; whitespace trimmed; `!` marks an exception; each pattern
  goes through Go's `filepath.Clean`; a leading `/` is dropped);
- matching: moby/patternmatcher `New`, `Pattern.compile`, `Pattern.match` and
  `MatchesOrParentMatches`: `*` and `?` never cross `/`, `**` crosses any number of directories,
  a pattern that matches a parent directory matches everything below it, and the last pattern
  that matches decides (a later `!pattern` re-includes, a later pattern excludes again).
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass
from pathlib import Path

ESCAPED = set(".+()|{}$")  # patternmatcher's shouldEscape: regex-special, not glob-special


def go_clean(path: str) -> str:
    """Go's path/filepath.Clean on a slash-separated path."""
    if not path:
        return "."
    cleaned = posixpath.normpath(path)
    if cleaned.startswith("//"):  # POSIX normpath keeps two leading slashes; Go does not
        cleaned = "/" + cleaned.lstrip("/")
    return cleaned


def read_ignorefile(text: str) -> list[str]:
    """ignorefile.ReadAll: the patterns of a .dockerignore, in order."""
    patterns = []
    for number, line in enumerate(text.split("\n")):
        line = line.removesuffix("\r")  # bufio.ScanLines drops a trailing CR
        if number == 0:
            line = line.removeprefix("\ufeff")
        if line.startswith("#"):
            continue
        pattern = line.strip()
        if not pattern:
            continue
        invert = pattern[0] == "!"
        if invert:
            pattern = pattern[1:].strip()
        if pattern:
            pattern = go_clean(pattern)
            if len(pattern) > 1 and pattern[0] == "/":
                pattern = pattern[1:]
        patterns.append("!" + pattern if invert else pattern)
    return patterns


@dataclass
class Pattern:
    cleaned: str
    exclusion: bool
    kind: str = ""
    regex: re.Pattern | None = None

    def __post_init__(self) -> None:
        self._compile()

    def _compile(self) -> None:
        """Pattern.compile, with "/" as the separator."""
        regex, kind, text, i = "^", "exact", self.cleaned, 0
        position = 0
        while position < len(text):
            char = text[position]
            position += 1
            if char == "*":
                if position < len(text) and text[position] == "*":
                    position += 1
                    if position < len(text) and text[position] == "/":
                        position += 1
                    if position >= len(text):
                        if kind == "exact":
                            kind = "prefix"
                        else:
                            regex += ".*"
                            kind = "regexp"
                    else:
                        regex += "(.*/)?"
                        kind = "regexp"
                    if i == 0:
                        kind = "suffix"
                else:
                    regex += "[^/]*"
                    kind = "regexp"
            elif char == "?":
                regex += "[^/]"
                kind = "regexp"
            elif char in ESCAPED:
                regex += "\\" + char
            elif char == "\\":
                if position < len(text):
                    regex += "\\" + text[position]
                    position += 1
                    kind = "regexp"
                else:
                    regex += "\\\\"
            elif char in "[]":
                regex += char
                kind = "regexp"
            else:
                regex += char  # as Go does: anything else is copied into the regexp
            i += 1
        self.kind = kind
        if kind == "regexp":
            self.regex = re.compile(regex + r"\Z")  # Go's `$` without (?m): end of text only

    def match(self, path: str) -> bool:
        if self.kind == "exact":
            return path == self.cleaned
        if self.kind == "prefix":
            return path.startswith(self.cleaned[:-2])
        if self.kind == "suffix":
            suffix = self.cleaned[2:]
            if path.endswith(suffix):
                return True
            return suffix[:1] == "/" and path == suffix[1:]
        assert self.regex is not None  # compiled whenever the kind is regexp
        return bool(self.regex.match(path))


class DockerIgnore:
    """`DockerIgnore(text).excluded("src/app/.env")` -> whether Docker leaves that file out."""

    def __init__(self, text: str) -> None:
        self.patterns = []
        for raw in read_ignorefile(text):
            pattern = go_clean(raw.strip())  # patternmatcher.New trims and cleans again
            exclusion = pattern.startswith("!")
            if exclusion:
                if len(pattern) == 1:
                    raise ValueError('illegal exclusion pattern: "!"')
                pattern = pattern[1:]
            self.patterns.append(Pattern(pattern, exclusion))

    def excluded(self, path: str) -> bool:
        """MatchesOrParentMatches for a slash-separated path relative to the context."""
        path = go_clean(path)
        if path == ".":
            return False
        parent = posixpath.dirname(path) or "."
        parent_dirs = parent.split("/")
        matched = False
        for pattern in self.patterns:
            if pattern.exclusion != matched:
                continue
            match = pattern.match(path)
            if not match and parent != ".":
                for i in range(len(parent_dirs)):
                    if pattern.match("/".join(parent_dirs[: i + 1])):
                        match = True
                        break
            if match:
                matched = not pattern.exclusion
        return matched

    def context(self, root: Path) -> list[str]:
        """The files a `docker build` of `root` would send, as sorted relative paths."""
        files = [p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()]
        return sorted(f for f in files if not self.excluded(f))
