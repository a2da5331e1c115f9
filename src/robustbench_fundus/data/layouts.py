"""Readers that recognise the layout of a data-set folder and list its labelled images.

Layouts (``detect_layout`` tries them in this order; ``labels=FILE`` names the labels file and
the layout then follows from its columns):

=============== ===================================================== ==========================
layout          labels                                                images
=============== ===================================================== ==========================
``fundus-real`` ``labels.csv`` with ``image,level,subject`` (+ others) ``images/<image>`` (or root)
``eyepacs``     ``trainLabels.csv`` with ``image,level``               ``train/<image>.jpeg`` or
                                                                      ``<image>.jpeg`` in the root
``aptos``       ``train.csv`` with ``id_code,diagnosis``               ``train_images/<id>.png``,
                                                                      ``train/`` or the root
``manifest``    a CSV with ``path,label[,subject]`` (``--labels``, or  ``path`` relative to the
                ``manifest.csv`` / ``labels.csv`` in the root)         CSV's folder (or absolute)
``folders``     none: subfolders ``0/`` ... ``4/`` hold the images     ``<grade>/<any name>``
=============== ===================================================== ==========================

Subjects: ``fundus-real`` and ``manifest`` name them in a column; Kaggle EyePACS names images
``<patient>_left`` / ``<patient>_right`` and the subject is ``<patient>`` (also applied to the
``folders`` layout when file names follow that pattern); APTOS has no subjects (each image is its
own group when splitting).

Problems with the labels (missing columns, a grade outside 0-4, a duplicate row, an empty
folder) raise :class:`~robustbench_fundus.errors.DataError` naming the file and line. A row naming
a file that does not exist is a per-image problem: it is skipped and listed in
``RecordSet.unreadable`` (``strict=True`` raises instead), as are files that fail to decode when
``verify=True`` and image names that cannot be opened at all (a symbolic-link loop, a dangling
link named by a labels row).

Encoding: a labels file is read as UTF-8 (a UTF-8 byte-order mark is dropped; a UTF-16 or UTF-32
file with its byte-order mark, as some spreadsheet programs save "Unicode text", is read as
such). Any other encoding is refused, not guessed: a byte that is not UTF-8 (a Latin-1 or
Windows-1252 ``é``, say) raises a :class:`DataError` naming the file, the line, the column and
the byte, and saying to re-save the file as UTF-8. (A silent Latin-1 fallback would turn names
into other names without a word.)
"""
from __future__ import annotations

import codecs
import csv
import errno
import io
import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from ..errors import DataError
from ..grades import GRADES
from .io import IMAGE_EXTENSIONS, check_image, is_image_name

LAYOUTS = ("fundus-real", "eyepacs", "aptos", "manifest", "folders")

_EYE_RE = re.compile(r"^(?P<subject>.+)_(left|right)$", re.IGNORECASE)

# Columns by layout: (image column, label column, subject column or None)
_COLUMNS = {
    "fundus-real": ("image", "level", "subject"),
    "eyepacs": ("image", "level", None),
    "aptos": ("id_code", "diagnosis", None),
    "manifest": ("path", "label", "subject"),
}
_DEFAULT_LABEL_FILES = {"eyepacs": "trainLabels.csv", "aptos": "train.csv"}


@dataclass(frozen=True)
class Record:
    """One labelled image."""

    image_id: str
    path: Path
    label: int
    subject: str | None = None

    @property
    def group(self) -> str:
        """Key that must not be split across train/validation (the subject, else the image)."""
        return f"s:{self.subject}" if self.subject else f"i:{self.image_id}"


@dataclass
class RecordSet:
    """The usable records of a data set, its layout, and the images that were skipped."""

    records: list[Record]
    layout: str
    root: Path
    labels_file: Path | None = None
    unreadable: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self):
        return iter(self.records)

    def per_grade(self) -> dict[int, int]:
        counts = {g: 0 for g in GRADES}
        for r in self.records:
            counts[r.label] += 1
        return counts


def subject_from_name(image_id: str) -> str | None:
    """EyePACS convention: ``10_left`` / ``10_right`` belong to subject ``10``."""
    m = _EYE_RE.match(Path(image_id).name if "/" in image_id else image_id)
    return m.group("subject") if m else None


# --------------------------------------------------------------------------- CSV helpers

#: Byte-order marks and the codec that reads the text after them (UTF-32 before UTF-16: the
#: UTF-32 LE mark starts with the UTF-16 LE one).
_BOMS = ((codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF32_LE, "utf-32-le"),
         (codecs.BOM_UTF32_BE, "utf-32-be"), (codecs.BOM_UTF16_LE, "utf-16-le"),
         (codecs.BOM_UTF16_BE, "utf-16-be"))


def _read_text(path: Path) -> str:
    """The text of a labels file (UTF-8, or UTF-16/32 with a byte-order mark); DataError naming
    the line and byte when it is not, or when it cannot be read."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read labels file ({exc.strerror or exc})") from None
    codec, start = "utf-8", 0
    for bom, name in _BOMS:
        if data.startswith(bom):
            codec, start = name, len(bom)
            break
    try:
        text = data[start:].decode(codec)
    except UnicodeDecodeError as exc:
        if codec != "utf-8":
            raise DataError(f"{path}: not valid {codec.upper()} text although it starts with a "
                            f"{codec.upper()} byte-order mark; re-save it as UTF-8") from None
        at = start + exc.start
        line = data.count(b"\n", 0, at) + 1
        col = at - (data.rfind(b"\n", 0, at) + 1) + 1
        raise DataError(f"{path} line {line}: byte 0x{data[at]:02x} (column {col}) is not UTF-8 "
                        f"text (the file is probably Latin-1 or Windows-1252); re-save it as "
                        f"UTF-8, e.g. iconv -f latin1 -t utf-8 {path.name} > utf8.csv") from None
    if "\x00" in text:
        line = text.count("\n", 0, text.index("\x00")) + 1
        raise DataError(f"{path} line {line}: contains a NUL character, which a CSV labels file "
                        f"cannot have; re-save it as plain UTF-8 CSV text")
    return text


def _reader(text: str):
    sample = text[:4096]
    dialect: Any = csv.excel
    if sample:
        try:
            dialect = csv.Sniffer().sniff(sample, delimiters=",;\t")
        except csv.Error:
            dialect = csv.excel
    try:
        return csv.reader(io.StringIO(text, newline=""), dialect)
    except (csv.Error, TypeError):  # a sniffed dialect the reader does not accept
        return csv.reader(io.StringIO(text, newline=""), csv.excel)


def _read_csv(path: Path) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """Header (stripped, lower-case) and (line number, row) pairs; DataError if unreadable."""
    reader = _reader(_read_text(path))
    try:
        try:
            header = next(reader)
        except StopIteration:
            raise DataError(f"{path}: labels file is empty; it needs a header row and one "
                            f"row per image") from None
        header = [h.strip().lower() for h in header]
        rows = []
        for row in reader:
            if not row or all(not c.strip() for c in row):
                continue
            rows.append((reader.line_num, {h: (row[i].strip() if i < len(row) else "")
                                           for i, h in enumerate(header)}))
    except csv.Error as exc:
        raise DataError(f"{path} line {reader.line_num}: not readable as CSV ({exc}); check its "
                        f"quotes and separators") from None
    return header, rows


def _header(path: Path) -> list[str]:
    """The column names of a labels file, read as :func:`_read_csv` reads them."""
    text = _read_text(path)
    try:
        first = next(_reader(text), [])
    except csv.Error:  # reported with its line when the rows are read
        line = text.splitlines()[0] if text else ""
        first = next((line.split(sep) for sep in (",", ";", "\t") if sep in line), [line])
    return [h.strip().lower() for h in first if h.strip()] if any(h.strip() for h in first) \
        else []


def _printable(text: object) -> str:
    """``text`` for a one-line message: control and format characters escaped."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(text))


def _shown(names: Sequence[str]) -> str:
    """Column names for a one-line message: control characters escaped, long names cut."""
    out = []
    for n in names:
        t = _printable(n)
        out.append(t if len(t) <= 40 else t[:37] + "...")
    return ", ".join(out)


def _layout_from_columns(header: Sequence[str]) -> str | None:
    cols = set(header)
    if {"image", "level", "subject"} <= cols:
        return "fundus-real"
    if {"image", "level"} <= cols:
        return "eyepacs"
    if {"id_code", "diagnosis"} <= cols:
        return "aptos"
    if {"path", "label"} <= cols:
        return "manifest"
    return None


_EXPECTED = ("path,label[,subject] (manifest), image,level[,subject] (EyePACS / fundus-real) "
             "or id_code,diagnosis (APTOS)")


def _parse_label(value: str, labels_file: Path, line: int, column: str) -> int:
    try:
        f = float(value)
        g = int(f)
        if g != f:
            raise ValueError
    except (ValueError, OverflowError):  # "nan", "inf", "1e400"
        raise DataError(f"{labels_file} line {line}: {column} {value!r} is not an integer grade; "
                        f"use 0-4") from None
    if g not in GRADES:
        raise DataError(f"{labels_file} line {line}: {column} {g} is outside 0-4; fix or remove "
                        f"the row")
    return g


# --------------------------------------------------------------------------- detection

def _has_grade_folders(root: Path) -> bool:
    return any((root / str(g)).is_dir() for g in GRADES)


def _resolve_root(root, labels) -> tuple[Path, Path | None]:
    try:
        return _resolve_root_unchecked(root, labels)
    except (OSError, ValueError, RuntimeError) as exc:  # a name too long, a NUL byte, "~nouser"
        what = getattr(exc, "strerror", None) or " ".join(str(exc).split())
        raise DataError(f"{root}: cannot use this path ({what}); pass the data-set folder") \
            from None


def _resolve_root_unchecked(root, labels) -> tuple[Path, Path | None]:
    root = Path(root).expanduser()
    if not root.exists():
        raise DataError(f"{root}: no such folder; pass the data-set folder")
    if root.is_file():
        if root.suffix.lower() == ".csv" and labels is None:
            return root.parent, root
        raise DataError(f"{root}: is a file; pass the data-set folder (and --labels FILE for a "
                        f"CSV manifest)")
    lab = None
    if labels is not None:
        lab = Path(labels).expanduser()
        if not lab.is_absolute() and not lab.exists() and (root / lab).exists():
            lab = root / lab
        if not lab.is_file():
            raise DataError(f"--labels {labels}: no such file; pass the CSV that lists the images")
    return root, lab


def _detect(root: Path, labels: Path | None) -> tuple[str, Path | None]:
    if labels is not None:
        header = _header(labels)
        layout = _layout_from_columns(header)
        if layout is None:
            raise DataError(f"{labels}: missing the expected columns; need {_EXPECTED} "
                            f"(found: {_shown(header) or 'nothing'})")
        return layout, labels
    for name, layout_hint in (("labels.csv", None), ("trainLabels.csv", "eyepacs"),
                              ("train.csv", "aptos"), ("manifest.csv", "manifest")):
        p = root / name
        if not _is_file(p):
            continue
        header = _header(p)
        layout = _layout_from_columns(header)
        if layout is None:
            raise DataError(f"{p}: missing the expected columns; need {_EXPECTED} "
                            f"(found: {_shown(header) or 'nothing'}); or pass --labels FILE")
        return layout, p
    if _has_grade_folders(root):
        return "folders", None
    has_images = any(is_image_name(e.name) for e in _scandir(root))
    if not has_images and not any((root / d).is_dir() for d in ("train", "images", "train_images")):
        raise DataError(f"{root}: empty folder (no images, no labels file); pass the folder that "
                        f"holds the data set")
    raise DataError(f"{root}: no labels found (trainLabels.csv, train.csv, labels.csv, "
                    f"manifest.csv, or grade folders 0/-4/); pass --labels FILE")


def detect_layout(root, labels=None) -> str:
    """The layout name of the data set in ``root``: one of :data:`LAYOUTS`."""
    root, lab = _resolve_root(root, labels)
    return _detect(root, lab)[0]


# --------------------------------------------------------------------------- reading

def _scandir(d: Path) -> list[os.DirEntry]:
    try:
        with os.scandir(d) as it:
            return [e for e in it]
    except (FileNotFoundError, NotADirectoryError):
        return []
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # a symbolic-link loop where a folder is looked for
            return []
        raise DataError(f"{d}: cannot list the folder ({exc.strerror or exc}); check its "
                        f"permissions") from None


def _entry_kind(e: os.DirEntry) -> tuple[str, str | None]:
    """('file' | 'dir' | 'other' | 'broken', reason): what a folder entry is, following
    symbolic links; 'broken' for a link that cannot be followed (a loop, a dangling link)."""
    try:
        if e.is_file():
            return "file", None
        if e.is_dir():
            return "dir", None
    except OSError as exc:
        why = ("a symbolic-link loop" if exc.errno == errno.ELOOP
               else f"cannot be opened ({exc.strerror or exc})")
        return "broken", why
    try:
        if e.is_symlink():
            return "broken", "a dangling symbolic link (its target does not exist)"
    except OSError:
        pass
    return "other", None


def _is_file(p: Path) -> bool:
    try:
        return p.is_file()
    except (OSError, ValueError):  # a name too long, a NUL byte in the name
        return False


def _index_files(dirs: Iterable[Path]) -> tuple[dict[str, Path], dict[str, tuple[Path, str]]]:
    """Map both file name and stem (lower-case) to path, first directory wins; and the image
    names that cannot be opened (symbolic-link loops, dangling links) to (path, reason)."""
    idx: dict[str, Path] = {}
    broken: dict[str, tuple[Path, str]] = {}
    for d in dirs:
        for e in _scandir(d):
            if not is_image_name(e.name):
                continue
            kind, why = _entry_kind(e)
            p = Path(e.path)
            if kind == "file":
                idx.setdefault(e.name.lower(), p)
                idx.setdefault(p.stem.lower(), p)
            elif kind == "broken":
                broken.setdefault(e.name.lower(), (p, why or "cannot be opened"))
                broken.setdefault(p.stem.lower(), (p, why or "cannot be opened"))
    return idx, broken


def _read_table(root: Path, labels_file: Path, layout: str) -> tuple[list[Record], list[tuple[str, str]]]:
    header, rows = _read_csv(labels_file)
    img_col, lab_col, subj_col = _COLUMNS[layout]
    missing = [c for c in (img_col, lab_col) if c not in header]
    if missing:
        raise DataError(f"{labels_file}: missing column(s) {', '.join(missing)}; need {_EXPECTED} "
                        f"(found: {_shown(header)})")
    if not rows:
        raise DataError(f"{labels_file}: no rows; it must list at least one image")
    base = labels_file.parent
    broken: dict[str, tuple[Path, str]] = {}
    if layout == "manifest":
        idx = None
    else:
        dirs = {"fundus-real": [base / "images", base],
                "eyepacs": [base / "train", base, base / "images"],
                "aptos": [base / "train_images", base / "train", base, base / "images"]}[layout]
        if root != base:
            dirs += [root / "train", root, root / "images"]
        idx, broken = _index_files(dirs)
    records: list[Record] = []
    missing_files: list[tuple[str, str]] = []
    seen: dict[str, int] = {}
    for line, row in rows:
        name = row.get(img_col, "")
        if not name:
            raise DataError(f"{labels_file} line {line}: empty {img_col}; fill it or remove the row")
        label = _parse_label(row.get(lab_col, ""), labels_file, line, lab_col)
        if name in seen:
            raise DataError(f"{labels_file} line {line}: {img_col} {name!r} repeats line "
                            f"{seen[name]}; remove the duplicate row")
        seen[name] = line
        where = f"named in {labels_file.name} line {line}"
        if layout == "manifest":
            try:
                p = Path(name).expanduser()
            except RuntimeError:  # "~user/..." of a user who does not exist
                p = Path(name)
            if not p.is_absolute():
                p = base / p
            image_id = name
            if not _is_file(p):
                missing_files.append((str(p), f"{_why_not_file(p)} ({where})"))
                continue
        else:
            p = idx.get(name.lower()) or idx.get(Path(name).stem.lower()) if idx else None
            image_id = Path(name).stem if is_image_name(name) else name
            if p is None:
                bad = broken.get(name.lower()) or broken.get(Path(name).stem.lower())
                if bad is not None:
                    missing_files.append((str(bad[0]), f"{bad[1]} ({where})"))
                    continue
                guess = base / ("train" if layout == "eyepacs" else "images") / name
                missing_files.append((str(guess), f"file not found ({where})"))
                continue
        subject = row.get(subj_col) if subj_col else None
        subject = subject or None
        if subject is None and layout == "eyepacs":
            subject = subject_from_name(image_id)
        records.append(Record(image_id=image_id, path=p, label=label, subject=subject))
    if not records:
        raise DataError(f"{labels_file}: none of the {len(rows)} images it lists was found "
                        f"(first: {_printable(missing_files[0][0])}); check PATH or --labels")
    return records, missing_files


def _why_not_file(p: Path) -> str:
    try:
        os.stat(p)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "a symbolic-link loop"
        if exc.errno == errno.ENOENT and os.path.islink(p):
            return "a dangling symbolic link (its target does not exist)"
        if exc.errno not in (errno.ENOENT, errno.ENOTDIR):
            return f"cannot be opened ({exc.strerror or exc})"
    except ValueError:
        return "not a usable file name"
    return "file not found"


def _read_folders(root: Path) -> tuple[list[Record], list[tuple[str, str]]]:
    bad = [e.name for e in _scandir(root) if e.name.isdigit() and int(e.name) not in GRADES
           and _entry_kind(e)[0] == "dir"]
    if bad:
        raise DataError(f"{root / bad[0]}: grade folder {bad[0]} is outside 0-4; rename or remove it")
    records = []
    skipped: list[tuple[str, str]] = []
    for g in GRADES:
        d = root / str(g)
        for e in sorted(_scandir(d), key=lambda e: e.name):
            if not is_image_name(e.name):
                continue
            kind, why = _entry_kind(e)
            if kind == "file":
                stem = Path(e.name).stem
                records.append(Record(image_id=f"{g}/{stem}", path=Path(e.path), label=g,
                                      subject=subject_from_name(stem)))
            elif kind == "broken":
                skipped.append((e.path, why or "cannot be opened"))
    if not records and skipped:
        raise DataError(f"{root}: none of the {len(skipped)} images in the grade folders can be "
                        f"opened (first: {_printable(skipped[0][0])}: {skipped[0][1]})")
    if not records:
        raise DataError(f"{root}: grade folders 0/-4/ hold no images "
                        f"({', '.join(IMAGE_EXTENSIONS)}); add images or pass --labels FILE")
    ids = [r.image_id for r in records]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise DataError(f"{root}: two files share the name {dup!r} (different extensions); "
                        f"keep one")
    return records, skipped


def check_records(records: Sequence[Record], workers: int | None = None, progress: bool | None = None,
                  desc: str = "checking images") -> tuple[list[Record], list[tuple[str, str]]]:
    """Decode every image on a thread pool; (readable records, [(path, reason)] of the others).

    ``progress``: a tqdm bar on stderr (``None``: only when stderr is a terminal).
    """
    from tqdm import tqdm

    workers = workers or min(8, (os.cpu_count() or 1) + 2)
    reasons: list[str | None] = [None] * len(records)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        it = pool.map(check_image, [r.path for r in records], chunksize=4)
        bar = tqdm(it, total=len(records), desc=desc, unit="img", disable=None if progress is None else not progress,
                   leave=False)
        for i, reason in enumerate(bar):
            reasons[i] = reason
    ok = [r for r, why in zip(records, reasons) if why is None]
    bad = [(str(r.path), why) for r, why in zip(records, reasons) if why is not None]
    return ok, bad


def read_records(root, labels=None, strict: bool = False, verify: bool = False,
                 workers: int | None = None, progress: bool | None = None) -> RecordSet:
    """Read the labelled images of the data set in ``root`` (layout detected).

    ``labels``: a labels CSV (any supported columns), overriding detection. ``verify``: decode
    every image and move unreadable ones to ``.unreadable`` (a thread pool, progress on stderr).
    ``strict``: raise :class:`DataError` on the first missing or unreadable image instead of
    skipping it.
    """
    root, lab = _resolve_root(root, labels)
    layout, lab = _detect(root, lab)
    if layout == "folders":
        records, skipped = _read_folders(root)
    else:
        records, skipped = _read_table(root, lab, layout)
    if strict and skipped:
        raise DataError(f"{_printable(skipped[0][0])}: {skipped[0][1]}; fix it or run without "
                        f"--strict to skip it ({len(skipped)} such)")
    if verify:
        records, bad = check_records(records, workers=workers, progress=progress)
        if strict and bad:
            raise DataError(f"{_printable(bad[0][0])}: {_printable(bad[0][1])}; fix it or run "
                            f"without --strict to skip it ({len(bad)} unreadable)")
        skipped += bad
        if not records:
            raise DataError(f"{root}: none of the images could be decoded (first: "
                            f"{_printable(bad[0][0])}: {_printable(bad[0][1])})")
    return RecordSet(records=records, layout=layout, root=root, labels_file=lab,
                     unreadable=skipped)
