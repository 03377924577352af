"""What a file that is not a picture is: video, audio, document, sidecar, archive or other.

A scan skips such a file quietly and counts it by kind; only files whose name or first bytes
claim a picture go to the failure ledger when they cannot be read.
"""

from __future__ import annotations

import codecs
import stat

VIDEO, AUDIO, DOCUMENT, SIDECAR, ARCHIVE, OTHER = (
    "video", "audio", "document", "sidecar", "archive", "other",
)  # fmt: skip
# What the walk skips besides files: hidden or excluded names, FIFOs/sockets/devices, and
# folders reached a second time through a symlink.
HIDDEN, SPECIAL, LOOP = "hidden", "special", "loop"
# A RAW camera file while rawpy (the [raw] extra) is not installed: skipped, with a hint.
RAW = "raw"

_SUFFIXES = {
    VIDEO: ".mp4 .m4v .mov .qt .avi .mkv .webm .mts .m2ts .3gp .3g2 .wmv .asf .flv .f4v "
    ".mpg .mpeg .m2v .vob .ogv .mxf .dv .insv .braw .r3d",
    AUDIO: ".mp3 .wav .m4a .m4b .aac .flac .ogg .oga .opus .wma .aif .aiff .amr .mid .midi",
    DOCUMENT: ".pdf .txt .md .rst .nfo .log .csv .tsv .doc .docx .odt .rtf .html .htm .xls "
    ".xlsx .ods .ppt .pptx .odp .epub .pages .key .numbers .tex",
    SIDECAR: ".xmp .aae .thm .json .db .ini .ds_store .lrv .pp3 .dop .on1 .xml .url .lnk",
    ARCHIVE: ".zip .7z .rar .tar .gz .tgz .bz2 .xz .zst .dmg .iso",
}
# suffix -> kind: a name that says "not a picture" (checked before the image suffixes PIL
# registers, which include .pdf and .mpg that it can only write, not decode as photos)
SUFFIX_KINDS: dict[str, str] = {s: k for k, text in _SUFFIXES.items() for s in text.split()}
SIDECAR_SUFFIXES = frozenset(s for s, k in SUFFIX_KINDS.items() if k == SIDECAR)
# RAW camera files: decoded by LibRaw (indexer.raw), never by Pillow (which would read a
# DNG's or a NEF's small first page as the picture).
RAW_SUFFIXES = frozenset(
    ".cr2 .cr3 .crw .nef .nrw .arw .srf .sr2 .raf .orf .rw2 .pef .dng .rwl .srw .3fr .iiq .x3f "
    ".erf .mef .mos .kdc .dcr .mrw .raw".split()
)
# Pictures PIL may not decode: they claim to be pictures, so a failure is ledgered.
PICTURE_SUFFIXES = frozenset(".heic .heif .avif .jxl".split()) | RAW_SUFFIXES

_FTYP_AUDIO = frozenset({b"M4A ", b"M4B ", b"M4P ", b"F4A ", b"F4B "})
_FTYP_VIDEO = frozenset(
    {b"isom", b"iso2", b"iso4", b"iso5", b"iso6", b"mp41", b"mp42", b"qt  ", b"M4V ", b"M4VH"}
    | {b"M4VP", b"3gp4", b"3gp5", b"3gp6", b"3g2a", b"avc1", b"dash", b"msnv", b"MSNV", b"XAVC"}
    | {b"f4v ", b"mqt ", b"MQT "}
)
_SIGNATURES: tuple[tuple[bytes, str], ...] = (  # (first bytes, kind)
    (b"\x1a\x45\xdf\xa3", VIDEO),  # Matroska / WebM (EBML)
    (b"\x30\x26\xb2\x75\x8e\x66\xcf\x11", VIDEO),  # ASF / WMV
    (b"\x00\x00\x01\xba", VIDEO),  # MPEG program stream
    (b"FLV\x01", VIDEO),
    (b"ID3", AUDIO),
    (b"fLaC", AUDIO),
    (b"OggS", AUDIO),
    (b"#!AMR", AUDIO),
    (b"%PDF", DOCUMENT),
    (b"{\\rtf", DOCUMENT),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", DOCUMENT),  # OLE2: .doc .xls .ppt
    (b"PK\x03\x04", ARCHIVE),  # zip (also .docx/.odt, named as documents above)
    (b"7z\xbc\xaf\x27\x1c", ARCHIVE),
    (b"Rar!\x1a\x07", ARCHIVE),
    (b"\x1f\x8b", ARCHIVE),  # gzip
    (b"BZh", ARCHIVE),
    (b"\xfd7zXZ\x00", ARCHIVE),
    (b"\x28\xb5\x2f\xfd", ARCHIVE),  # zstd
)
_RIFF = {b"AVI ": VIDEO, b"WAVE": AUDIO}
_MP3_SYNC = (b"\xff\xfb", b"\xff\xf3", b"\xff\xf2", b"\xff\xfa")


def content_kind(head: bytes) -> str:
    """The kind the first bytes of a file say it is (call only when they are no picture)."""
    if not head:
        return OTHER
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        return AUDIO if brand in _FTYP_AUDIO else VIDEO if brand in _FTYP_VIDEO else OTHER
    if head[:4] == b"RIFF":
        return _RIFF.get(head[8:12], OTHER)
    for magic, kind in _SIGNATURES:
        if head.startswith(magic):
            return kind
    if head[:2] in _MP3_SYNC:
        return AUDIO
    return DOCUMENT if looks_like_text(head) else OTHER


def looks_like_text(head: bytes) -> bool:
    """UTF-8 (a character cut at the end of `head` allowed) with no control bytes but tabs and
    line breaks."""
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError:
        return False
    return all(b >= 32 or b in b"\t\r\n\f" for b in head)


_NOUNS = {
    VIDEO: ("video", "videos"),
    AUDIO: ("audio file", "audio files"),
    DOCUMENT: ("document", "documents"),
    SIDECAR: ("sidecar", "sidecars"),
    ARCHIVE: ("archive", "archives"),
    OTHER: ("other file", "other files"),
    HIDDEN: ("hidden or excluded name", "hidden or excluded names"),
    SPECIAL: ("special file", "special files"),
    LOOP: ("folder seen twice", "folders seen twice"),
    RAW: (
        "RAW file (pip install 'photo-index[raw]' to index it)",
        "RAW files (pip install 'photo-index[raw]' to index them)",
    ),
}


def describe(counts: dict[str, int]) -> str:
    """ "3 videos, 1 document, 2 sidecars": skipped counts for people, in a fixed order."""
    order = [k for k in _NOUNS if counts.get(k)] + sorted(set(counts) - set(_NOUNS))
    parts = []
    for kind in order:
        n = counts.get(kind, 0)
        if n:
            one, many = _NOUNS.get(kind, (kind, kind))
            parts.append(f"{n} {one if n == 1 else many}")
    return ", ".join(parts)


_FILE_TYPES = {
    stat.S_IFREG: "regular file",
    stat.S_IFDIR: "folder",
    stat.S_IFLNK: "symbolic link",
    stat.S_IFIFO: "FIFO",
    stat.S_IFSOCK: "socket",
    stat.S_IFCHR: "character device",
    stat.S_IFBLK: "block device",
}


def file_type(mode: int) -> str:
    """What a file mode (st_mode) names, in words: "FIFO", "symbolic link", "folder"..."""
    return _FILE_TYPES.get(stat.S_IFMT(mode), "special file")
