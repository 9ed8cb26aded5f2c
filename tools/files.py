"""Files: list, read, search and count files under one root folder.

Every path a tool receives is relative to the *files root*; nothing outside it can be
listed, read or searched. The root is, in order of precedence:

1. the folder given to :func:`set_root` (per loaded copy of this module);
2. the environment variable ``LLMC_FILES_ROOT`` (read at every call);
3. the current working directory at call time.

Paths that leave the root (``..``, absolute paths elsewhere, symlinks whose target lies
outside) raise :class:`PathOutsideRootError`, a ``PermissionError`` naming the path and the
root. ``list_files`` and ``grep`` skip such symlinks silently, never follow symlinked
folders and do not descend into hidden folders (``.git``, ``.venv``, ...); name a hidden
folder explicitly to look inside it.

Files are opened by descriptor from the root, one path component at a time, never following
a symlink (``O_NOFOLLOW`` relative to the folder before), so a symlink swapped in between
the checks and the open leads nowhere: the open fails with :class:`PathOutsideRootError`. A
file with more than one hard link is refused (``grep`` skips it): its other names may lie
outside the root, and nothing says where. On a platform without ``dir_fd`` opens (Windows),
files are opened by their resolved path after the same checks.

Reads are capped at ``LLMC_FILES_MAX_BYTES`` bytes (default 1,000,000): a longer read is
*truncated* at a line boundary and ends with a ``[truncated: ...]`` marker line that says how
to read the rest (a ``start_line``/``end_line`` range). Binary files (a NUL byte or mostly
control characters in the first 8 KiB) are described in one line, never dumped.

``llmc.load_tools("tools/files.py")`` returns the tools; a program that wants
:func:`set_root` on that copy reaches its module through any of them::

    tools = llmc.load_tools("tools/files.py")
    sys.modules[tools[0].fn.__module__].set_root("/srv/docs")

The tools only read, so they are ``pure``: identical calls in one run are made once.

``grep`` matches regular expressions with RE2 (the ``google-re2`` binding, a dependency of
llmc): time linear in the text, whatever the pattern, and the GIL released while it matches,
so a pattern from a model cannot freeze the event loop the way ``(a+)+$`` does Python's
``re``. RE2 has no backreferences or lookarounds; such patterns are refused with a message.

This file is loaded by path under an arbitrary module name: it imports only llmc, the
standard library and ``re2``.
"""

import codecs
import difflib
import errno
import fnmatch
import os
import re
import stat
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath
from typing import BinaryIO

import re2

import llmc
from llmc.grammar import MAX_CHOICES, QUESTION_SPANS

ROOT_ENV = "LLMC_FILES_ROOT"
MAX_BYTES_ENV = "LLMC_FILES_MAX_BYTES"
DEFAULT_MAX_BYTES = 1_000_000
#: Bytes sniffed at the start of a file to tell text from binary.
SNIFF_BYTES = 8192
#: Longest line text shown in a grep hit; longer lines are cut with "...".
MAX_HIT_CHARS = 300
#: The longest path accepted; longer text is not a path (often a file's contents passed on).
MAX_PATH_CHARS = 1024

_root_override: Path | None = None


class PathOutsideRootError(PermissionError):
    """A path leads outside the files root (by ``..``, an absolute path or a symlink)."""


# -- configuration ---------------------------------------------------------------------------


def set_root(path: str | os.PathLike[str] | None) -> None:
    """Confine this copy of the files tools to ``path``; ``None`` goes back to the default.

    The default is ``$LLMC_FILES_ROOT`` when set, else the working directory at call time.

    Raises:
        NotADirectoryError: ``path`` is not an existing folder.
    """
    global _root_override
    if path is None:
        _root_override = None
        return
    folder = Path(path).expanduser().resolve()
    if not folder.is_dir():
        raise NotADirectoryError(f"files root {folder} is not an existing folder")
    _root_override = folder


def get_root() -> Path:
    """The files root now in force, resolved (symlinks followed).

    Raises:
        NotADirectoryError: the configured root does not exist or is not a folder.
    """
    if _root_override is not None:
        root, source = _root_override, "set_root()"
    elif os.environ.get(ROOT_ENV):
        root, source = Path(os.environ[ROOT_ENV]).expanduser().resolve(), f"${ROOT_ENV}"
    else:
        root, source = Path.cwd().resolve(), "the working directory"
    if not root.is_dir():
        raise NotADirectoryError(f"files root {root} (from {source}) is not an existing folder")
    return root


def get_max_bytes() -> int:
    """The most bytes one read returns: ``$LLMC_FILES_MAX_BYTES`` or 1,000,000.

    Raises:
        ValueError: the environment variable is not a positive integer.
    """
    raw = os.environ.get(MAX_BYTES_ENV, "").strip()
    if not raw:
        return DEFAULT_MAX_BYTES
    try:
        value = int(raw.replace("_", ""))
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"${MAX_BYTES_ENV} must be a positive number of bytes, got {raw!r}")
    return value


# -- paths -------------------------------------------------------------------------------------


def _short(text: str, limit: int = 60) -> str:
    """A value for an error message: its repr, cut to ``limit`` characters."""
    shown = repr(text)
    return shown if len(shown) <= limit else shown[: limit - 4] + "...'"


def _inside(path: Path, root: Path) -> bool:
    return path == root or path.is_relative_to(root)


def _relative(path: Path, root: Path) -> str:
    relative = path.relative_to(root).as_posix()
    return relative or "."


def _resolve(path: str, root: Path) -> tuple[Path, str]:
    """The real location of ``path`` and its root-relative display name, or refuse it.

    The real location (every symlink followed, as the OS would) must lie inside the root;
    what is opened afterwards is that real location, never the name as given.
    """
    text = path.strip()
    if "\x00" in text:
        raise ValueError(f"path {_short(path)} contains a NUL character")
    if "\n" in text or len(text) > MAX_PATH_CHARS:
        raise ValueError(
            f"{_short(path)} is not a file path ({len(text)} characters); give a path like "
            "'docs/index.md', not a file's contents"
        )
    given = Path(text or ".")
    candidate = given if given.is_absolute() else root / given
    lexical = Path(os.path.normpath(candidate))
    real = candidate.resolve()
    if not _inside(real, root):
        if not _inside(lexical, root):
            raise PathOutsideRootError(
                f"path {path!r} is outside the files root {root}; give a path relative to "
                "the root, without '..' leading out of it"
            )
        raise PathOutsideRootError(
            f"path {path!r} leads outside the files root {root} through a symlink; "
            "only files under the root can be used"
        )
    display = _relative(lexical, root) if _inside(lexical, root) else _relative(real, root)
    return real, display


def _missing(display: str, lexical_parent: Path, root: Path) -> FileNotFoundError:
    hint = "list_files shows what exists"
    if lexical_parent.is_dir():
        names = [entry.name for entry in lexical_parent.iterdir()]
        close = difflib.get_close_matches(Path(display).name, names, n=3)
        if close:
            hint = f"did you mean {', '.join(repr(c) for c in close)}?"
    return FileNotFoundError(f"no file {display!r} under the files root {root}; {hint}")


def _open_file(path: str) -> tuple[Path, str, Path]:
    """Resolve ``path`` to an existing regular file: (real path, display name, root)."""
    root = get_root()
    real, display = _resolve(path, root)
    if not real.exists():
        raise _missing(display, (root / display).parent, root)
    if real.is_dir():
        raise IsADirectoryError(f"{display!r} is a folder, not a file; use list_files on it")
    if not real.is_file():
        raise ValueError(f"{display!r} is not a regular file (a device, pipe or socket)")
    return real, display, root


def _open_inside(real: Path, root: Path, display: str) -> BinaryIO:
    """Open the regular file ``real`` (resolved, inside ``root``) for reading, safely.

    The path is walked from the root one component at a time, each opened relative to the
    folder before it without following symlinks, so a symlink swapped in after the checks
    (a race) cannot lead the open outside the root. A file with more than one hard link is
    refused: its other names may lie outside the root, and nothing says where.
    """
    if os.open not in os.supports_dir_fd or not hasattr(os, "O_NOFOLLOW"):
        handle = real.open("rb")  # no descriptor walk on this platform: the checks above hold
    else:
        handle = os.fdopen(_walk_open(real.relative_to(root).parts, root, display), "rb")
    info = os.fstat(handle.fileno())
    if not stat.S_ISREG(info.st_mode):
        handle.close()
        raise ValueError(f"{display!r} is not a regular file (a device, pipe or socket)")
    if info.st_nlink > 1:
        handle.close()
        raise PathOutsideRootError(
            f"{display!r} has {info.st_nlink} hard links; its other names may lie outside the "
            "files root, so it is not read (copy the file into the root instead)"
        )
    return handle


def _walk_open(parts: tuple[str, ...], root: Path, display: str) -> int:
    """A descriptor of ``root/parts...``, opened component by component with O_NOFOLLOW."""
    flags = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0)
    folder = os.open(root, flags | os.O_DIRECTORY)
    try:
        for index, part in enumerate(parts):
            last = index == len(parts) - 1
            mode = flags | os.O_NOFOLLOW | (0 if last else os.O_DIRECTORY)
            try:
                opened = os.open(part, mode, dir_fd=folder)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise PathOutsideRootError(
                        f"path {display!r} changed while it was being opened (a symlink "
                        f"appeared at {part!r}); only files under the files root can be used"
                    ) from None
                raise
            os.close(folder)
            folder = opened
        return folder
    except BaseException:
        os.close(folder)
        raise


def _open_folder(folder: str) -> tuple[Path, str, Path]:
    root = get_root()
    real, display = _resolve(folder, root)
    if not real.exists():
        raise FileNotFoundError(f"no folder {display!r} under the files root {root}")
    if not real.is_dir():
        raise NotADirectoryError(f"{display!r} is a file, not a folder")
    return real, display, root


# -- content -----------------------------------------------------------------------------------


def _is_binary(sample: bytes) -> bool:
    """NUL bytes or mostly control characters: not text worth showing."""
    if not sample:
        return False
    if b"\x00" in sample:
        return True
    control = sum(1 for byte in sample if byte < 32 and byte not in b"\t\n\r\f\b\x1b")
    return control / len(sample) > 0.3


def _sniff(file: BinaryIO) -> bool:
    sample = file.read(SNIFF_BYTES)
    file.seek(0)
    return _is_binary(sample)


def _binary_note(display: str, size: int) -> str:
    return f"[binary file {display!r}: {size:,} bytes, not shown]"


def _lines(file: BinaryIO, cap: int) -> Iterator[tuple[int, bytes]]:
    """(1-based line number, bytes) pieces; a line longer than ``cap`` comes in pieces."""
    number = 1
    while True:
        piece = file.readline(cap)
        if not piece:
            return
        yield number, piece
        if piece.endswith(b"\n"):
            number += 1


def _decode(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


def _decode_prefix(data: bytes) -> str:
    """Decode bytes that may end in the middle of a character (dropping that part)."""
    return codecs.getincrementaldecoder("utf-8")("replace").decode(data, final=False)


def _shorten(text: str) -> str:
    return text if len(text) <= MAX_HIT_CHARS else text[: MAX_HIT_CHARS - 3] + "..."


# -- choices: what plan grammars offer a small model ------------------------------------------


def files_under_root() -> list[str]:
    """Every file under the files root (hidden folders skipped), as a relative path: the
    choices of the tools' ``path`` parameters, so a small model cannot invent a file.
    Past ``MAX_CHOICES`` files the list is too long to offer and the parameter stays free."""
    root = get_root()
    found: list[str] = []
    for file in _walk(root, root, recursive=True):
        found.append(file.relative_to(root).as_posix())
        if len(found) > MAX_CHOICES:
            break
    return found


def folders_under_root() -> list[str]:
    """ "." and every folder under the files root that holds a file: the ``folder`` choices."""
    folders = {str(PurePosixPath(path).parent) for path in files_under_root()}
    return sorted(folders | {"."}, key=lambda folder: (folder != ".", folder))


def patterns_under_root() -> list[str]:
    """ "*" and "*.EXT" for each file extension under the files root: the ``pattern`` choices
    of list_files (a small model otherwise writes a file name it made up as the pattern)."""
    suffixes = {PurePosixPath(path).suffix for path in files_under_root()}
    return ["*", *sorted(f"*{suffix}" for suffix in suffixes if suffix)]


# -- tools -------------------------------------------------------------------------------------


@llmc.tool(pure=True, choices={"pattern": patterns_under_root, "folder": folders_under_root})
def list_files(
    pattern: str = "*", folder: str = ".", recursive: bool = False, max_results: int = 200
) -> list[str]:
    """List files whose name matches a glob pattern, as paths relative to the files root.

    Example: list_files("*.py", "src", recursive=True) -> ["src/app.py", "src/util/io.py"].
    Folders themselves are not listed, and recursion skips hidden folders such as .git.
    When more files match than max_results, the last entry is a note "... N more files not
    listed".

    Args:
        pattern: a glob on file names, e.g. "*.md" or "report_202?.csv"; a pattern with "/"
            is matched against the end of the relative path, e.g. "docs/*.md".
        folder: the folder to look in, relative to the files root.
        recursive: also look in every subfolder.
        max_results: the most paths to return.
    """
    if max_results < 1:
        raise ValueError("max_results must be at least 1")
    base, _, root = _open_folder(folder)
    matcher = _name_matcher(pattern)
    found: list[str] = []
    extra = 0
    for file in _walk(base, root, recursive):
        relative = file.relative_to(root).as_posix()
        if not matcher(relative):
            continue
        if len(found) < max_results:
            found.append(relative)
        else:
            extra += 1
    if extra:
        found.append(f"... {extra} more files not listed (raise max_results or narrow the pattern)")
    return found


def _name_matcher(pattern: str) -> Callable[[str], bool]:
    """A test on root-relative paths: the glob on the file name, or on the path's end."""
    text = pattern.strip() or "*"
    if text.startswith("/") or ".." in PurePosixPath(text).parts:
        raise ValueError(
            f"pattern {pattern!r} must be a glob on names inside the folder, "
            "without '..' or a leading '/'"
        )
    if "/" in text:
        return lambda relative: PurePosixPath(relative).match(text)
    return lambda relative: fnmatch.fnmatchcase(relative.rsplit("/", 1)[-1], text)


def _walk(base: Path, root: Path, recursive: bool) -> Iterator[Path]:
    """Regular files under ``base`` that really lie inside ``root``, sorted by path.

    Symlinked folders are not followed, symlinks leading outside the root are skipped,
    hidden folders (".git", ".venv", ...) are not entered and unreadable folders are passed
    over.
    """
    try:
        with os.scandir(base) as scan:
            entries = sorted(scan, key=lambda entry: entry.name)
    except OSError:
        return
    for entry in entries:
        path = Path(entry.path)
        if entry.is_symlink():
            target = path.resolve()
            if _inside(target, root) and target.is_file():
                yield path
        elif entry.is_dir():
            if recursive and not entry.name.startswith("."):
                yield from _walk(path, root, recursive)
        elif entry.is_file():
            yield path


@llmc.tool(pure=True, choices={"path": files_under_root})
def read_file(path: str, start_line: int | None = None, end_line: int | None = None) -> str:
    """Read a text file under the files root, whole or a range of lines.

    Example: read_file("notes/todo.txt", start_line=10, end_line=20) returns lines 10 to 20.
    Output longer than the byte limit (default 1 MB) is cut at a line boundary and ends with
    a "[truncated: ...]" line saying which lines were shown and where to read on. Binary
    files are described in one line, not shown.

    Args:
        path: the file, relative to the files root, e.g. "docs/readme.md".
        start_line: first line to return, counting from 1 (default: the first line).
        end_line: last line to return, inclusive (default: the last line).
    """
    if start_line is not None and start_line < 1:
        raise ValueError(f"start_line counts from 1, got {start_line}")
    if end_line is not None and end_line < 1:
        raise ValueError(f"end_line counts from 1, got {end_line}")
    if start_line is not None and end_line is not None and end_line < start_line:
        raise ValueError(f"end_line {end_line} comes before start_line {start_line}")
    real, display, root = _open_file(path)
    limit = get_max_bytes()
    first = start_line or 1
    taken: list[bytes] = []
    size = 0
    lines_seen = 0
    with _open_inside(real, root, display) as file:
        if _sniff(file):
            return _binary_note(display, real.stat().st_size)
        for number, piece in _lines(file, limit + 1):
            lines_seen = number
            if number < first:
                continue
            if end_line is not None and number > end_line:
                break
            if size + len(piece) > limit:
                return _truncated(display, taken, piece, first, limit, real.stat().st_size)
            taken.append(piece)
            size += len(piece)
    if first > lines_seen and first > 1:
        raise ValueError(
            f"start_line {first} is past the end of {display!r}, which has {lines_seen} lines"
        )
    return _decode(b"".join(taken))


def _truncated(
    display: str, taken: list[bytes], piece: bytes, first: int, limit: int, size: int
) -> str:
    """What fits in ``limit`` bytes, cut at a line boundary, and a marker saying the rest.

    ``taken`` holds whole lines from ``first`` on; ``piece`` is the start of the line that
    did not fit.
    """
    if not taken:  # one line longer than the limit on its own: show its start
        return (
            f"{_decode_prefix(piece[:limit])}\n[truncated: line {first} of {display!r} is "
            f"longer than the {limit:,}-byte read limit; only its first {limit:,} bytes "
            "are shown]"
        )
    last = first + len(taken) - 1
    text = _decode(b"".join(taken))
    newline = "" if text.endswith("\n") else "\n"
    return (
        f"{text}{newline}[truncated: showed lines {first}-{last} of {display!r} "
        f"({size:,} bytes in all, read limit {limit:,} bytes); read on with "
        f"start_line={last + 1}]"
    )


@llmc.tool(pure=True, choices={"pattern": QUESTION_SPANS, "folder": folders_under_root})
def grep(
    pattern: str,
    folder: str = ".",
    regex: bool = False,
    file_pattern: str = "*",
    ignore_case: bool = False,
    max_hits: int = 50,
) -> list[str]:
    """Search the text files under a folder (recursively) for a substring or a regex.

    Example: grep("TODO", "src", file_pattern="*.py") -> ["src/app.py:12: # TODO: retry"].
    Each hit is "path:line: text". Binary files and hidden folders such as .git are
    skipped. When there are more than max_hits hits, the last entry is a note "... more
    hits not shown".

    Args:
        pattern: the text to find; a Python regular expression when regex is true.
        folder: the folder to search, relative to the files root.
        regex: treat pattern as a regular expression instead of plain text.
        file_pattern: only search files whose name matches this glob, e.g. "*.md".
        ignore_case: match regardless of upper/lower case.
        max_hits: the most hits to return.
    """
    if not pattern:
        raise ValueError("pattern is empty; give the text to search for")
    if max_hits < 1:
        raise ValueError("max_hits must be at least 1")
    compiled = _compile(pattern, regex=regex, ignore_case=ignore_case)
    base, _, root = _open_folder(folder)
    matcher = _name_matcher(file_pattern)
    limit = get_max_bytes()
    hits: list[str] = []
    for file in _walk(base, root, recursive=True):
        relative = file.relative_to(root).as_posix()
        if not matcher(relative):
            continue
        try:
            handle = _open_inside(file.resolve(), root, relative)
        except (OSError, ValueError):  # swapped, hard-linked or gone: not searched
            continue
        with handle:
            if _sniff(handle):
                continue
            for number, piece in _lines(handle, limit):
                text = _decode(piece).rstrip("\r\n")
                if compiled.search(text):
                    if len(hits) == max_hits:
                        hits.append(
                            f"... more hits not shown (max_hits={max_hits}); narrow the "
                            "pattern or the folder"
                        )
                        return hits
                    hits.append(f"{relative}:{number}: {_shorten(text.strip())}")
    return hits


def _compile(pattern: str, *, regex: bool, ignore_case: bool) -> "re2._Regexp":
    """The pattern for RE2: linear time, so no pattern can stall a search."""
    options = re2.Options()
    options.case_sensitive = not ignore_case
    options.log_errors = False  # (RE2 would also print each bad pattern to stderr)
    try:
        return re2.compile(pattern if regex else re.escape(pattern), options)
    except re2.error as exc:
        reason = exc.args[0].decode(errors="replace") if exc.args else "invalid pattern"
        if isinstance(exc.args[0], str):
            reason = exc.args[0]
        raise ValueError(
            f"invalid regular expression {pattern!r}: {reason}; the regex engine (RE2) has no "
            "backreferences or lookarounds; pass regex=False to search for the text as written"
        ) from None


# version 2: the count of characters is under "characters" (it was "chars"), so cached
# outputs of the first version are not reused.
@llmc.tool(pure=True, choices={"path": files_under_root}, version="2")
def count_file(path: str) -> dict[str, int]:
    """Count the lines, words, characters and bytes of a text file under the files root.

    Example: count_file("essay.txt") -> {"lines": 40, "words": 812, "characters": 4630,
    "bytes": 4702}. A last line without a newline still counts as a line; words are runs
    of non-space characters. Binary files are refused with their size.

    Args:
        path: the file, relative to the files root.
    """
    real, display, root = _open_file(path)
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    lines = words = chars = size = 0
    in_word = False
    last = b"\n"
    with _open_inside(real, root, display) as file:
        if _sniff(file):
            raise ValueError(
                f"{_binary_note(display, real.stat().st_size)}; lines, words and characters "
                "only make sense for text files"
            )
        while chunk := file.read(1 << 20):
            size += len(chunk)
            lines += chunk.count(b"\n")
            last = chunk
            text = decoder.decode(chunk)
            chars += len(text)
            words += len(text.split())
            if in_word and text and not text[0].isspace():
                words -= 1  # a word cut in two by the chunk boundary
            if text:
                in_word = not text[-1].isspace()
        chars += len(decoder.decode(b"", final=True))
    if size and not last.endswith(b"\n"):
        lines += 1
    return {"lines": lines, "words": words, "characters": chars, "bytes": size}
