#!/usr/bin/env python3
"""Independent verifier for wormlog spools (format version 1).

This file was written from docs/FORMAT.md alone, without reading the Rust
implementation, so that agreement between it and `wormlog verify` shows that
the specification is complete. Section numbers in comments refer to that
document.

A spool whose oldest segments were pruned is verified from the first
segment present, with the key ledger `keys.wlledger` (sections 2.1, 6.13 and
7, step 0).

Only the Python standard library and the `cryptography` package (for Ed25519)
are used; CRC32C is implemented here, table-driven.

Encryption at rest (sections 6.2.1 and 6.16) needs no key to verify: the
chain and the signatures cover the ciphertext, and the rules on `data_key`
records and sealed entries are checked without opening anything. The
verdict never depends on a key. To read what sealed entries hold, this file
implements age v1 (X25519 recipients, bech32) and the per-entry keys itself,
with the primitives of `cryptography` (X25519, HKDF, HMAC, ChaCha20-Poly1305).

Usage:

    python3 wormlog_verify.py --spool DIR [--pubkey ed25519:<base64>] [--json]
        [--identity FILE]... [--cat [--show-entry-keys]] [--seq N [--entry-key HEX]]

    --identity FILE  an age identity file: `AGE-SECRET-KEY-1…` lines, `#`
                     comments and blank lines ignored, several identities
                     allowed; the option may be repeated. Each segment's
                     data key is opened with them, and every sealed entry
                     with its K_seq. The report gains a `decryption` object
                     (identities, data_keys_opened, entries,
                     entries_opened, problems: [{segment, seq, reason}]).
    --cat            print each entry, once it passed verification, as one
                     JSON line on stdout:
                       {"seq", "ts", "segment", "source", "entry_flags",
                        "sealed": bool,
                        "fields": [{"key", "value": {"text", "b64"}}],
                        "body": {"text", "b64"}}
                     `b64` is the exact bytes (standard base64); `text` is
                     the same bytes as a string when they are UTF-8, else
                     null. A sealed entry that is not opened has no fields
                     and body but `sealed_bytes` (and `error` when a key was
                     given and failed). The report (text, or --json) then
                     goes to stderr, not stdout.
    --show-entry-keys  with --cat and --identity: each opened sealed entry's
                     line gains "entry_key", its K_seq in hex (section
                     6.2.1: what to hand over to disclose that entry alone).
    --seq N          print only the entry with seq N (implies --cat).
    --entry-key HEX  K_seq of the entry --seq N (64 hex digits): opens that
                     one entry without any identity (what disclosing one
                     entry hands over, section 6.2.1).

Exit codes (section 8): 0 intact, 1 tampering or loss found, 2 usage or I/O
error, or not a spool (also: --seq N names no entry of an intact log); and,
with --identity or --entry-key only, 3: intact, but a data key or a sealed
entry did not open (no identity matches, a wrong key, or a plaintext that
is not field_count, fields, body), as listed in `problems`.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import datetime
import hashlib
import hmac
import json
import os
import re
import struct
import sys
from dataclasses import dataclass, field
from typing import Any, Callable

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import (X25519PrivateKey,
                                                              X25519PublicKey)
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

# ---------------------------------------------------------------------------
# Constants (sections 1, 3, 5, 6)
# ---------------------------------------------------------------------------

MAGIC = b"WORMLOG\x00"
FORMAT_VERSION = 1
RECORD_VERSION = 1
HEADER_FIXED_LEN = 65  # bytes before agent_id's end: [0, 65) then n, then CRC
RECORD_HEADER_LEN = 52  # version, kind, flags, seq, ts, prev (section 3.3)
MIN_RECORD_LEN = RECORD_HEADER_LEN  # section 3.2: 52 <= len
MAX_RECORD_LEN = 64 * 1024 * 1024
FRAME_HEADER_LEN = 8
SIGNATURE_LEN = 64
ZERO32 = bytes(32)
U64_MASK = (1 << 64) - 1
DEFAULT_HEARTBEAT_NS = 60 * 1_000_000_000

SEGMENT_NAME_RE = re.compile(r"^([0-9a-f]{16})\.wlseg$")
LOCK_FILE = "lock"

# The key ledger (section 2.1): magic, version u16, flags u16, then frames.
LEDGER_FILE = "keys.wlledger"
LEDGER_MAGIC = b"WLLEDGR\x00"
LEDGER_VERSION = 1
LEDGER_HEADER_LEN = 12

CTX_CHECKPOINT = b"wormlog checkpoint v1\x00"
CTX_EPOCH_KEY = b"wormlog epoch-key v1\x00"
CTX_RECEIPT = b"wormlog receipt v1\x00"

GENESIS, ENTRY, CHECKPOINT, EPOCH_KEY, START, STOP, CONFIG, HEARTBEAT = range(1, 9)
CLOCK_STEP, GAP, RECOVERY, RECEIPT, PRUNE, SEAL, ALERT, DATA_KEY = range(9, 17)

KIND_NAMES = {
    GENESIS: "genesis", ENTRY: "entry", CHECKPOINT: "checkpoint",
    EPOCH_KEY: "epoch_key", START: "start", STOP: "stop", CONFIG: "config",
    HEARTBEAT: "heartbeat", CLOCK_STEP: "clock_step", GAP: "gap",
    RECOVERY: "recovery", RECEIPT: "receipt", PRUNE: "prune", SEAL: "seal",
    ALERT: "alert", DATA_KEY: "data_key",
}

CAUSE_TORN_TAIL, CAUSE_FSYNC_FAILED, CAUSE_CORRUPTION = 1, 2, 3
CAUSE_NAMES = {
    CAUSE_TORN_TAIL: "torn_tail",
    CAUSE_FSYNC_FAILED: "fsync_failed",
    CAUSE_CORRUPTION: "corruption",
}

ENTRY_FLAGS_KNOWN = 0b111  # no_newline, more_parts, continuation
RECORD_FLAG_SEALED = 0x0001  # section 3.3: bit 0, on entries only (6.2.1)
AGE_PREFIX = b"age-encryption.org/v1\n"  # how `wrapped` starts (6.16)

GAP_STOPPED = "agent stopped"
GAP_NOT_RUNNING = "agent not running (no stop record)"
GAP_NO_RECORDS = "no records"


# ---------------------------------------------------------------------------
# CRC32C (section 1): reflected Castagnoli, table-driven (slicing-by-8)
# ---------------------------------------------------------------------------

_CRC32C_POLY_REFLECTED = 0x82F63B78  # 0x1EDC6F41 bit-reversed


def _crc32c_tables() -> list[list[int]]:
    """T[0] is the classic byte table; T[k][b] is the CRC of byte b then k zeros."""
    base = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ (_CRC32C_POLY_REFLECTED if crc & 1 else 0)
        base.append(crc)
    tables = [base]
    for _ in range(7):
        prev = tables[-1]
        tables.append([(v >> 8) ^ base[v & 0xFF] for v in prev])
    return tables


_CRC_T = _crc32c_tables()


def crc32c_bytewise(data: bytes | memoryview, crc: int = 0) -> int:
    """Reference one-byte-at-a-time CRC32C; `crc` continues a previous result."""
    table = _CRC_T[0]
    c = crc ^ 0xFFFFFFFF
    for byte in bytes(data):
        c = table[(c ^ byte) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def crc32c(data: bytes | memoryview, crc: int = 0) -> int:
    """CRC32C of `data`; pass a previous result as `crc` to continue it."""
    t0, t1, t2, t3, t4, t5, t6, t7 = _CRC_T
    mv = memoryview(data).cast("B")
    whole = len(mv) - len(mv) % 8
    c = crc ^ 0xFFFFFFFF
    for (word,) in struct.iter_unpack("<Q", mv[:whole]):
        x = word ^ c
        c = (t7[x & 0xFF] ^ t6[(x >> 8) & 0xFF] ^ t5[(x >> 16) & 0xFF]
             ^ t4[(x >> 24) & 0xFF] ^ t3[(x >> 32) & 0xFF]
             ^ t2[(x >> 40) & 0xFF] ^ t1[(x >> 48) & 0xFF] ^ t0[x >> 56])
    for byte in mv[whole:]:
        c = t0[(c ^ byte) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


# ---------------------------------------------------------------------------
# Hashes: chain and RFC 9162 Merkle tree (section 4)
#
# head_i = leaf_i = H(0x00 || r_i); the link is each record's `prev` field
# (section 3.3), which must equal head_{i-1} (ZERO32 before seq 0).
# ---------------------------------------------------------------------------

def sha256(*parts: bytes | memoryview) -> bytes:
    h = hashlib.sha256()
    for part in parts:
        h.update(part)
    return h.digest()


EMPTY_ROOT = sha256(b"")


def leaf_hash(record: bytes | memoryview) -> bytes:
    return sha256(b"\x00", record)


def node_hash(left: bytes, right: bytes) -> bytes:
    return sha256(b"\x01", left, right)


def mth(leaves: list[bytes]) -> bytes:
    """Recursive Merkle Tree Hash of RFC 9162 over already-hashed leaves."""
    n = len(leaves)
    if n == 0:
        return EMPTY_ROOT
    if n == 1:
        return leaves[0]
    k = 1
    while k * 2 < n:
        k *= 2
    return node_hash(mth(leaves[:k]), mth(leaves[k:]))


class Frontier:
    """Compact Merkle tree: roots of the perfect subtrees, largest first."""

    def __init__(self) -> None:
        self.size = 0
        self.nodes: list[bytes] = []

    def append(self, leaf: bytes) -> None:
        self.nodes.append(leaf)
        pending = self.size  # each low set bit of the old size is a merge
        while pending & 1:
            right = self.nodes.pop()
            left = self.nodes.pop()
            self.nodes.append(node_hash(left, right))
            pending >>= 1
        self.size += 1

    def root(self) -> bytes:
        if not self.nodes:
            return EMPTY_ROOT
        acc = self.nodes[-1]
        for node in reversed(self.nodes[:-1]):
            acc = node_hash(node, acc)
        return acc


# ---------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------

class UsageError(Exception):
    """Usage or I/O error, or not a spool: exit code 2."""


class Malformed(Exception):
    """A record or header that cannot be decoded."""


class FrameError(Exception):
    """A frame that is not well-formed; `incomplete` marks a cut-short tail."""

    def __init__(self, reason: str, incomplete: bool = False) -> None:
        super().__init__(reason)
        self.incomplete = incomplete


@dataclass
class Failure(Exception):
    """Tampering or loss, at the location defined in section 7."""

    segment: int
    offset: int
    seq: int
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {"segment": self.segment, "offset": self.offset,
                "seq": self.seq, "reason": self.reason}


# ---------------------------------------------------------------------------
# Byte reader (section 1 encodings)
# ---------------------------------------------------------------------------

class Reader:
    """Sequential little-endian reader that raises Malformed when short."""

    def __init__(self, buf: bytes, pos: int = 0) -> None:
        self.buf = buf
        self.pos = pos

    def take(self, n: int) -> bytes:
        end = self.pos + n
        if end > len(self.buf):
            raise Malformed(f"payload truncated: need {n} bytes at record offset "
                            f"{self.pos}, have {len(self.buf) - self.pos}")
        out = self.buf[self.pos:end]
        self.pos = end
        return out

    def _int(self, fmt: str, size: int) -> int:
        return struct.unpack(fmt, self.take(size))[0]

    def u8(self) -> int:
        return self._int("<B", 1)

    def u16(self) -> int:
        return self._int("<H", 2)

    def u32(self) -> int:
        return self._int("<I", 4)

    def u64(self) -> int:
        return self._int("<Q", 8)

    def i64(self) -> int:
        return self._int("<q", 8)

    def bytes8(self) -> bytes:
        return self.take(self.u8())

    def bytes16(self) -> bytes:
        return self.take(self.u16())

    def bytes32(self) -> bytes:
        return self.take(self.u32())

    def text8(self) -> str:
        return decode_text(self.bytes8())

    def text16(self) -> str:
        return decode_text(self.bytes16())

    def position(self) -> tuple[int, bytes]:
        """Section 6: positions are opaque (any pos_kind is accepted)."""
        pos_kind = self.u8()
        return pos_kind, self.bytes16()

    def rest(self) -> bytes:
        return self.take(len(self.buf) - self.pos)

    def finish(self) -> None:
        if self.pos != len(self.buf):
            raise Malformed(f"{len(self.buf) - self.pos} trailing bytes in payload")

    def read(self, ftype: str | int) -> Any:
        """Read one field of a schema type: an int is a fixed byte count."""
        if isinstance(ftype, int):
            return self.take(ftype)
        return getattr(self, ftype)()


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def decode_text(raw: bytes) -> str:
    try:
        return raw.decode("utf-8", errors="strict")
    except UnicodeDecodeError as exc:
        raise Malformed(f"text field is not valid UTF-8: {exc.reason}") from None


# ---------------------------------------------------------------------------
# Records (sections 3.3 and 6)
# ---------------------------------------------------------------------------

@dataclass
class Record:
    kind: int
    seq: int
    ts: int
    prev: bytes  # head_{seq-1}, the leaf hash of the record before (section 3.3)
    raw: bytes
    p: dict[str, Any]  # the decoded payload
    flags: int = 0  # record flags (section 3.3)

    @property
    def name(self) -> str:
        return KIND_NAMES[self.kind]

    @property
    def sealed(self) -> bool:
        """A sealed entry (section 6.2.1): p["sealed"] holds the ciphertext."""
        return bool(self.flags & RECORD_FLAG_SEALED)


# Payloads that are a plain sequence of fields. Types are Reader methods, or
# an int for a fixed number of bytes. ENTRY and CHECKPOINT have loops and are
# decoded by their own functions below.
SIMPLE_SCHEMAS: dict[int, tuple[tuple[str, str | int], ...]] = {
    GENESIS: (("agent_id", "text8"), ("first_pubkey", 32)),
    EPOCH_KEY: (("from_epoch", "u64"), ("to_epoch", "u64"), ("new_pubkey", 32),
                ("tree_size", "u64"), ("head", 32), ("signature", SIGNATURE_LEN)),
    START: (("boot_id", 16), ("mono_ns", "u64"), ("pid", "u32"),
            ("config_sha256", 32), ("heartbeat_ns", "u64"), ("append_only", "u8"),
            ("append_only_active", "u8"), ("program", "text8")),
    STOP: (("boot_id", 16), ("mono_ns", "u64"), ("reason", "text16")),
    CONFIG: (("boot_id", 16), ("mono_ns", "u64"), ("config_sha256", 32)),
    HEARTBEAT: (("boot_id", 16), ("mono_ns", "u64")),
    CLOCK_STEP: (("boot_id", 16), ("mono_ns", "u64"), ("expected_ts", "i64"),
                 ("observed_ts", "i64")),
    # A gap's source is `bytes8`, text (section 6.10): UTF-8.
    GAP: (("source", "text8"), ("position", "position"), ("reason", "u16"),
          ("lost_bytes", "u64"), ("lost_records", "u64"), ("detail", "text16")),
    RECOVERY: (("cause", "u8"), ("segment_no", "u64"), ("last_good_seq", "u64"),
               ("region_offset", "u64"), ("region_len", "u64"),
               ("region_sha256", 32), ("detail", "text16")),
    RECEIPT: (("collector_id", "text8"), ("tree_size", "u64"), ("root", 32),
              ("collector_ts", "i64"), ("collector_pubkey", 32),
              ("signature", SIGNATURE_LEN)),
    PRUNE: (("first_kept_segment", "u64"), ("first_kept_seq", "u64"),
            ("anchor_head", 32), ("detail", "text16")),
    SEAL: (("next_segment", "u64"),),
    ALERT: (("code", "u16"), ("detail", "text16")),
}

# Enumerated fields: any value outside the defined set is malformed.
ENUM_VALUES: dict[tuple[int, str], range] = {
    (START, "append_only"): range(0, 3),
    (START, "append_only_active"): range(0, 2),
    (GAP, "reason"): range(1, 12),
    (RECOVERY, "cause"): range(1, 4),
    (ALERT, "code"): range(1, 7),
}


def decode_simple(kind: int, r: Reader) -> dict[str, Any]:
    payload = {name: r.read(ftype) for name, ftype in SIMPLE_SCHEMAS[kind]}
    for (enum_kind, name), allowed in ENUM_VALUES.items():
        if enum_kind == kind and payload[name] not in allowed:
            raise Malformed(f"{KIND_NAMES[kind]}: {name} {payload[name]} is not defined")
    return payload


def decode_entry(r: Reader, sealed: bool = False) -> dict[str, Any]:
    """Section 6.2; a sealed entry (6.2.1) ends with `sealed` (all remaining
    bytes, at least the 16-byte tag) instead of field_count, fields, body."""
    source = r.bytes8()
    if not source:
        raise Malformed("entry: empty source name")
    payload: dict[str, Any] = {"source": decode_text(source), "position": r.position()}
    flags = r.u8()
    if flags & ~ENTRY_FLAGS_KNOWN:
        raise Malformed(f"entry: undefined entry_flags bits 0x{flags:02x}")
    payload["entry_flags"] = flags
    if sealed:
        payload["sealed"] = r.rest()
        if len(payload["sealed"]) < SEALED_MIN_LEN:
            raise Malformed(f"sealed entry: sealed is {len(payload['sealed'])} bytes, "
                            f"shorter than its {SEALED_MIN_LEN}-byte tag")
        return payload
    payload.update(decode_entry_content(r))
    return payload


def decode_entry_content(r: Reader) -> dict[str, Any]:
    """What an entry holds after entry_flags: field_count u16, the fields
    (key bytes8 text, value bytes32), the body (all remaining bytes). The
    plaintext of a sealed entry is exactly this (section 6.2.1)."""
    fields = []
    for _ in range(r.u16()):
        key = r.text8()
        fields.append((key, r.bytes32()))
    return {"fields": fields, "body": r.rest()}


def decode_data_key(r: Reader) -> dict[str, Any]:
    """Section 6.16: recipients (u16 count, then bytes8 text each), wrapped
    (bytes32). The rules on their values are step 4's (Verifier)."""
    recipients = [r.text8() for _ in range(r.u16())]
    return {"recipients": recipients, "wrapped": r.bytes32()}


def decode_checkpoint(r: Reader) -> dict[str, Any]:
    p: dict[str, Any] = {
        "epoch": r.u64(), "tree_size": r.u64(), "root": r.take(32),
        "head": r.take(32), "boot_id": r.take(16), "mono_ns": r.u64(),
    }
    # Section 6.3: every checkpoint carries the frontier of its tree_size.
    frontier_count = r.u8()
    if frontier_count != p["tree_size"].bit_count():
        raise Malformed(f"checkpoint: frontier_count {frontier_count} is not the "
                        f"number of set bits of tree_size {p['tree_size']} "
                        f"({p['tree_size'].bit_count()})")
    p["frontier"] = [r.take(32) for _ in range(frontier_count)]
    # The source table is not interpreted (section 6.3): it only has to be
    # well-formed. Source names are `bytes8` text (UTF-8), positions opaque,
    # and source_count is not checked against the anchor rule.
    sources = []
    for _ in range(r.u32()):
        name = decode_text(r.bytes8())
        sources.append((name, r.position()))
    p["sources"] = sources
    p["signature"] = r.take(SIGNATURE_LEN)
    return p


def decode_record(raw: bytes) -> Record:
    """Decode and check a record's header and payload (strict, section 3.3)."""
    if len(raw) < RECORD_HEADER_LEN:
        raise Malformed(f"record of {len(raw)} bytes is shorter than its header")
    version, kind, flags, seq, ts, prev = struct.unpack_from("<BBHQq32s", raw, 0)
    if version != RECORD_VERSION:
        raise Malformed(f"record version {version}, expected {RECORD_VERSION}")
    # Section 3.3: bit 0 (sealed) on an entry alone; every other bit 0.
    allowed = RECORD_FLAG_SEALED if kind == ENTRY else 0
    if flags & ~allowed:
        if flags & ~RECORD_FLAG_SEALED == 0 and kind in KIND_NAMES:
            raise Malformed(f"record flags 0x{flags:04x}: the sealed flag on a "
                            f"{KIND_NAMES[kind]} record (entries only)")
        raise Malformed(f"record flags 0x{flags:04x}, expected 0")
    if kind not in KIND_NAMES:
        raise Malformed(f"unknown record kind {kind}")
    r = Reader(raw, RECORD_HEADER_LEN)
    try:
        if kind == ENTRY:
            payload = decode_entry(r, sealed=bool(flags & RECORD_FLAG_SEALED))
        elif kind == CHECKPOINT:
            payload = decode_checkpoint(r)
        elif kind == DATA_KEY:
            payload = decode_data_key(r)
        else:
            payload = decode_simple(kind, r)
        r.finish()
    except Malformed as exc:
        raise Malformed(f"{KIND_NAMES[kind]} record: {exc}") from None
    return Record(kind=kind, seq=seq, ts=ts, prev=prev, raw=raw, p=payload, flags=flags)


def signed_message(context: bytes, raw: bytes) -> bytes:
    """Section 5.2: context, 0x00 (in `context`), record without its signature."""
    return context + raw[:-SIGNATURE_LEN]


def receipt_message(agent_id: bytes, p: dict[str, Any]) -> bytes:
    return (CTX_RECEIPT + bytes([len(agent_id)]) + agent_id
            + struct.pack("<Q", p["tree_size"]) + p["root"]
            + struct.pack("<q", p["collector_ts"]))


# Section 5.3: strict verification. p is the field prime, L the group order.
ED25519_P = 2**255 - 19
ED25519_L = 2**252 + 27742317777372353535851937790883648493
ED25519_Y8 = int.from_bytes(bytes.fromhex(
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05"), "little")
# The y coordinates of the eight points of small order (section 5.3).
ED25519_SMALL_ORDER_Y = frozenset({0, 1, ED25519_P - 1, ED25519_Y8, ED25519_P - ED25519_Y8})


def point_acceptable(encoding: bytes) -> bool:
    """A key or R: canonical (y below p) and not a point of small order."""
    y = int.from_bytes(encoding, "little") & ((1 << 255) - 1)  # sign bit aside
    return y < ED25519_P and y not in ED25519_SMALL_ORDER_Y


def ed25519_valid(pubkey: bytes, signature: bytes, message: bytes) -> bool:
    """Section 5.3: the checks on A, R and S, then the cofactorless
    equation (encode([S]B - [k]A) == R), which is what OpenSSL computes."""
    if len(pubkey) != 32 or len(signature) != SIGNATURE_LEN:
        return False
    if not point_acceptable(pubkey) or not point_acceptable(signature[:32]):
        return False
    if int.from_bytes(signature[32:], "little") >= ED25519_L:
        return False
    try:
        Ed25519PublicKey.from_public_bytes(pubkey).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True


# ---------------------------------------------------------------------------
# Encryption at rest (sections 6.2.1 and 6.16): age v1 (X25519 recipients),
# bech32, and the per-entry keys. Only used with --identity / --entry-key:
# integrity never needs a key, and the verdict does not depend on one.
#
# age-encryption.org/v1, written from what is known of that format (the age
# tool is the reference the self-checks compare against):
#
#   age-encryption.org/v1\n
#   -> X25519 <base64 ephemeral share>\n      a stanza: "-> " type args,
#   <base64 body, 64 columns a line>\n        then its body, the last body
#   ...                                       line shorter than 64 (maybe empty)
#   --- <base64 MAC>\n
#   payload: 16-byte nonce, then STREAM chunks
#
# base64 is the standard alphabet without padding, canonical. The file key
# (16 bytes) is wrapped for an X25519 recipient under
# HKDF-SHA256(ikm = X25519(e, recipient), salt = share || recipient,
# info = "age-encryption.org/v1/X25519") with ChaCha20-Poly1305, zero nonce.
# The MAC is HMAC-SHA256 under HKDF(ikm = file key, salt = empty,
# info = "header") over the header up to and including "---". The payload
# key is HKDF(ikm = file key, salt = nonce, info = "payload"); each chunk
# holds 64 KiB of plaintext (the last one less, empty only if all is
# empty), nonce = 11-byte big-endian counter || 0x01 for the last chunk,
# 0x00 otherwise.
# ---------------------------------------------------------------------------

AGE_VERSION_LINE = AGE_PREFIX  # the version line of an age v1 header
AGE_X25519_INFO = b"age-encryption.org/v1/X25519"
AGE_CHUNK = 64 * 1024
AGE_TAG = 16
AGE_FILE_KEY_LEN = 16
AGE_MAX_HEADER = 1 << 20  # far more than any header this format writes
AGE_IDENTITY_PREFIX = "AGE-SECRET-KEY-1"
AGE_IDENTITY_HRP = "age-secret-key-"
AGE_RECIPIENT_HRP = "age"

DATA_KEY_LEN = 32  # section 6.16: the plaintext of `wrapped`
ENTRY_KEY_SALT = b"wormlog entry key v1"  # section 6.2.1: 20 ASCII bytes
SEALED_NONCE = bytes(12)
SEALED_MIN_LEN = 16  # the Poly1305 tag alone


class AgeError(Exception):
    """An age file that cannot be opened (malformed, or no identity fits)."""


# bech32 (BIP 173), without its 90-character limit (age keys are longer).
_BECH32_CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_BECH32_GEN = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)


def _bech32_polymod(values: list[int]) -> int:
    chk = 1
    for value in values:
        top = chk >> 25
        chk = (chk & 0x1FFFFFF) << 5 ^ value
        for i, gen in enumerate(_BECH32_GEN):
            if (top >> i) & 1:
                chk ^= gen
    return chk


def _bech32_hrp_expand(hrp: str) -> list[int]:
    return [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]


def _convert_bits(data: list[int] | bytes, from_bits: int, to_bits: int,
                  pad: bool) -> bytes:
    acc, bits, out = 0, 0, []
    maxv = (1 << to_bits) - 1
    for value in data:
        acc = (acc << from_bits) | value
        bits += from_bits
        while bits >= to_bits:
            bits -= to_bits
            out.append((acc >> bits) & maxv)
    if pad:
        if bits:
            out.append((acc << (to_bits - bits)) & maxv)
    elif bits >= from_bits or (acc << (to_bits - bits)) & maxv:
        raise ValueError("invalid padding")
    return bytes(out)


def bech32_decode(text: str) -> tuple[str, bytes]:
    """(hrp, data bytes) of a bech32 string; raises ValueError."""
    if text.lower() != text and text.upper() != text:
        raise ValueError("mixed case")
    text = text.lower()
    sep = text.rfind("1")
    if sep < 1 or sep + 7 > len(text):
        raise ValueError("no separator, or too short")
    hrp, rest = text[:sep], text[sep + 1:]
    if any(not 33 <= ord(c) <= 126 for c in hrp):
        raise ValueError("invalid human-readable part")
    try:
        values = [_BECH32_CHARSET.index(c) for c in rest]
    except ValueError:
        raise ValueError("character outside the bech32 alphabet") from None
    if _bech32_polymod(_bech32_hrp_expand(hrp) + values) != 1:
        raise ValueError("bad checksum")
    return hrp, _convert_bits(values[:-6], 5, 8, pad=False)


def bech32_encode(hrp: str, data: bytes) -> str:
    values = list(_convert_bits(data, 8, 5, pad=True))
    polymod = _bech32_polymod(_bech32_hrp_expand(hrp) + values + [0] * 6) ^ 1
    checksum = [(polymod >> 5 * (5 - i)) & 31 for i in range(6)]
    return hrp + "1" + "".join(_BECH32_CHARSET[v] for v in values + checksum)


def parse_age_recipient(text: str) -> bytes:
    """The X25519 public key of an `age1…` recipient; raises ValueError."""
    hrp, key = bech32_decode(text)
    if hrp != AGE_RECIPIENT_HRP or text != text.lower() or len(key) != 32:
        raise ValueError("not an age X25519 recipient")
    return key


@dataclass
class AgeIdentity:
    secret: X25519PrivateKey
    public: bytes  # the recipient's X25519 key
    recipient: str  # age1…

    @classmethod
    def from_text(cls, text: str) -> "AgeIdentity":
        if not text.startswith(AGE_IDENTITY_PREFIX):
            raise ValueError(f"not an age X25519 identity (it does not start "
                             f"with {AGE_IDENTITY_PREFIX})")
        hrp, secret = bech32_decode(text)
        if hrp != AGE_IDENTITY_HRP or len(secret) != 32:
            raise ValueError("not an age X25519 identity")
        key = X25519PrivateKey.from_private_bytes(secret)
        public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        return cls(secret=key, public=public,
                   recipient=bech32_encode(AGE_RECIPIENT_HRP, public))


def parse_identity_file(text: str, name: str = "identity file") -> list[AgeIdentity]:
    """Lines `AGE-SECRET-KEY-1…`; `#` comments and blank lines are ignored."""
    identities = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            identities.append(AgeIdentity.from_text(line))
        except ValueError as exc:
            raise UsageError(f"{name}, line {number}: {exc}") from None
    if not identities:
        raise UsageError(f"{name}: no identity in it")
    return identities


def load_identities(paths: list[str]) -> list[AgeIdentity]:
    identities = []
    for path in paths:
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"cannot read identity file {path}: {exc}") from None
        identities += parse_identity_file(text, path)
    return identities


def hkdf_sha256(ikm: bytes, salt: bytes, info: bytes, length: int = 32) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt,
                info=info).derive(ikm)


def age_b64decode(text: bytes) -> bytes:
    """Standard base64 without padding, canonical only (age's encoding)."""
    if b"=" in text or re.fullmatch(rb"[A-Za-z0-9+/]*", text) is None:
        raise AgeError("invalid base64 in the header")
    try:
        out = base64.b64decode(text + b"=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise AgeError("invalid base64 in the header") from None
    if base64.b64encode(out).rstrip(b"=") != text:
        raise AgeError("non-canonical base64 in the header")
    return out


@dataclass
class AgeStanza:
    type: str
    args: list[bytes]
    body: bytes


def parse_age_header(data: bytes) -> tuple[list[AgeStanza], bytes, bytes, int]:
    """(stanzas, the header bytes the MAC covers, the MAC, payload offset)."""
    if not data.startswith(AGE_VERSION_LINE):
        raise AgeError("not an age v1 file (no age-encryption.org/v1 line)")
    pos, stanzas = len(AGE_VERSION_LINE), []

    def line() -> bytes:
        nonlocal pos
        end = data.find(b"\n", pos, pos + AGE_MAX_HEADER)
        if end < 0:
            raise AgeError("header truncated")
        out, pos = data[pos:end], end + 1
        return out

    while True:
        start = pos
        text = line()
        if text.startswith(b"---"):
            if not text.startswith(b"--- "):
                raise AgeError("malformed MAC line")
            mac = age_b64decode(text[4:])
            if len(mac) != 32:
                raise AgeError("the header MAC is not 32 bytes")
            return stanzas, data[:start + 3], mac, pos
        if not text.startswith(b"-> "):
            raise AgeError("malformed header line (neither a stanza nor the MAC)")
        args = text[3:].split(b" ")
        if any(not arg or re.fullmatch(rb"[\x21-\x7e]+", arg) is None for arg in args):
            raise AgeError("malformed stanza arguments")
        body = b""
        while True:
            chunk = line()
            if len(chunk) > 64:
                raise AgeError("stanza body line longer than 64 columns")
            body += age_b64decode(chunk)
            if len(chunk) < 64:
                break
        stanzas.append(AgeStanza(type=args[0].decode("ascii"), args=args[1:], body=body))


def _x25519_unwrap(stanza: AgeStanza, identity: AgeIdentity) -> bytes | None:
    """The file key if `stanza` is for `identity`, else None."""
    if len(stanza.args) != 1:
        raise AgeError("malformed X25519 stanza (it needs one argument)")
    share = age_b64decode(stanza.args[0])
    if len(share) != 32 or len(stanza.body) != AGE_FILE_KEY_LEN + AGE_TAG:
        raise AgeError("malformed X25519 stanza (share or body length)")
    try:
        shared = identity.secret.exchange(X25519PublicKey.from_public_bytes(share))
    except ValueError:  # an all-zero shared secret: a share of small order
        raise AgeError("X25519 stanza with a share of small order") from None
    wrap_key = hkdf_sha256(shared, share + identity.public, AGE_X25519_INFO)
    try:
        return ChaCha20Poly1305(wrap_key).decrypt(bytes(12), stanza.body, None)
    except InvalidTag:
        return None


def age_decrypt(data: bytes, identities: list[AgeIdentity]) -> bytes:
    """Open an age v1 file (binary) with one of `identities`; raises AgeError."""
    stanzas, mac_input, mac, payload_at = parse_age_header(data)
    if not stanzas:
        raise AgeError("the header has no recipient stanza")
    x25519 = [s for s in stanzas if s.type == "X25519"]
    file_key = None
    for stanza in x25519:
        for identity in identities:
            file_key = _x25519_unwrap(stanza, identity)
            if file_key is not None:
                break
        if file_key is not None:
            break
    if file_key is None:
        types = sorted({s.type for s in stanzas})
        raise AgeError(f"no identity matches: the file has "
                       f"{plural(len(x25519), 'X25519 stanza')} "
                       f"(stanza types {', '.join(types)}), none opens with "
                       f"{', '.join(i.recipient for i in identities)}")
    header_key = hkdf_sha256(file_key, b"", b"header")
    if not hmac.compare_digest(hmac.new(header_key, mac_input, hashlib.sha256).digest(), mac):
        raise AgeError("header MAC mismatch")
    payload = data[payload_at:]
    if len(payload) < 16:
        raise AgeError("payload truncated (no nonce)")
    aead = ChaCha20Poly1305(hkdf_sha256(file_key, payload[:16], b"payload"))
    out, pos, counter, size = [], 16, 0, AGE_CHUNK + AGE_TAG
    while True:
        chunk = payload[pos:pos + size]
        last = pos + size >= len(payload)
        if len(chunk) < AGE_TAG:
            raise AgeError("payload truncated")
        nonce = counter.to_bytes(11, "big") + (b"\x01" if last else b"\x00")
        try:
            plain = aead.decrypt(nonce, chunk, None)
        except InvalidTag:
            raise AgeError(f"payload chunk {counter} does not authenticate") from None
        if not plain and (not last or counter > 0):
            raise AgeError("empty payload chunk after the first")
        out.append(plain)
        if last:
            return b"".join(out)
        pos += size
        counter += 1


def entry_key(data_key: bytes, seq: int) -> bytes:
    """K_seq (section 6.2.1)."""
    return hkdf_sha256(data_key, ENTRY_KEY_SALT, struct.pack("<Q", seq))


def open_sealed(rec: Record, key: bytes) -> dict[str, Any]:
    """The fields and body of a sealed entry under its K_seq; raises AgeError
    (the tag does not authenticate) or Malformed (the plaintext is not
    field_count, fields, body)."""
    sealed = rec.p["sealed"]
    # FORMAT.md 6.2.1: the record's bytes before `sealed`, without `prev`.
    clear = rec.raw[:len(rec.raw) - len(sealed)]
    aad = clear[:20] + clear[52:]
    try:
        plain = ChaCha20Poly1305(key).decrypt(SEALED_NONCE, sealed, aad)
    except InvalidTag:
        raise AgeError(f"sealed entry (seq {rec.seq}) does not open with this "
                       f"key") from None
    r = Reader(plain)
    out = decode_entry_content(r)
    return out


# ---------------------------------------------------------------------------
# Reading entries (--cat, --identity, --entry-key)
# ---------------------------------------------------------------------------

def bytes_json(raw: bytes) -> dict[str, Any]:
    """Bytes for JSON: the text when they are UTF-8 (None otherwise), and
    always their base64, which is byte-exact."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    return {"text": text, "b64": base64.b64encode(raw).decode("ascii")}


class EntryReader:
    """What verified entries hold, opened with age identities (a segment's
    data key, 6.16) or with one entry's own key (K_seq, 6.2.1).

    Called by the Verifier for each data_key and entry record after it passed
    its checks. Nothing here changes the verdict: a data key or an entry that
    does not open is a `problem` (exit code 3 when the log is intact).
    """

    def __init__(self, identities: list[AgeIdentity] | None = None,
                 key: bytes | None = None, only_seq: int | None = None,
                 emit: Callable[[dict[str, Any]], None] | None = None,
                 show_keys: bool = False) -> None:
        self.identities = identities or []
        self.show_keys = show_keys  # --show-entry-keys
        self.key = key            # --entry-key: K_seq of entry only_seq
        self.only_seq = only_seq  # --seq
        self.emit = emit
        self.data_keys: dict[int, bytes | None] = {}  # segment -> D (None: not opened)
        self.data_keys_opened = 0
        self.entries = 0          # entries emitted
        self.entries_opened = 0   # sealed entries among them that opened
        self.found: Record | None = None  # the entry at only_seq
        self.problems: list[dict[str, Any]] = []

    @property
    def opening(self) -> bool:
        return bool(self.identities) or self.key is not None

    def _problem(self, segment: int, seq: int, reason: str) -> None:
        self.problems.append({"segment": segment, "seq": seq, "reason": reason})

    def data_key(self, segment: int, rec: Record) -> None:
        if not self.identities:
            return
        try:
            data_key = age_decrypt(rec.p["wrapped"], self.identities)
        except AgeError as exc:
            self.data_keys[segment] = None
            self._problem(segment, rec.seq, f"data key not opened: {exc}")
            return
        if len(data_key) != DATA_KEY_LEN:
            self.data_keys[segment] = None
            self._problem(segment, rec.seq, f"data key not opened: the wrapped "
                                            f"plaintext is {len(data_key)} bytes, "
                                            f"not {DATA_KEY_LEN}")
            return
        self.data_keys[segment] = data_key
        self.data_keys_opened += 1
        listed = set(rec.p["recipients"])
        unlisted = [i.recipient for i in self.identities if i.recipient not in listed]
        if len(unlisted) == len(self.identities):
            self._problem(segment, rec.seq, "data key opened, but by an identity "
                                            "whose recipient the record does not list")

    def _entry_key(self, segment: int, rec: Record) -> tuple[bytes | None, str]:
        if self.key is not None:
            return self.key, ""
        if not self.identities:
            return None, ""
        data_key = self.data_keys.get(segment)
        if data_key is None:
            return None, f"segment {segment}'s data key was not opened"
        return entry_key(data_key, rec.seq), ""

    def entry(self, segment: int, rec: Record) -> None:
        if self.only_seq is not None and rec.seq != self.only_seq:
            return
        self.found = rec
        p = rec.p
        out: dict[str, Any] = {"seq": rec.seq, "ts": rec.ts, "segment": segment,
                               "source": p["source"], "entry_flags": p["entry_flags"],
                               "sealed": rec.sealed}
        content: dict[str, Any] | None = p if not rec.sealed else None
        if rec.sealed:
            key, why = self._entry_key(segment, rec)
            if key is not None:
                try:
                    content = open_sealed(rec, key)
                    self.entries_opened += 1
                    if self.show_keys:
                        out["entry_key"] = key.hex()
                except AgeError as exc:
                    why = str(exc)
                except Malformed as exc:
                    why = f"sealed entry (seq {rec.seq}) opened, but its plaintext " \
                          f"is malformed: {exc}"
            if content is None:
                if why:
                    self._problem(segment, rec.seq, why)
                    out["error"] = why
                out["sealed_bytes"] = len(p["sealed"])
        if content is not None:
            out["fields"] = [{"key": key, "value": bytes_json(value)}
                             for key, value in content["fields"]]
            out["body"] = bytes_json(content["body"])
        self.entries += 1
        if self.emit is not None:
            self.emit(out)

    def summary(self) -> dict[str, Any]:
        return {"identities": [i.recipient for i in self.identities],
                "entry_key_seq": self.only_seq if self.key is not None else None,
                "data_keys_opened": self.data_keys_opened,
                "entries": self.entries, "entries_opened": self.entries_opened,
                "problems": self.problems}



# ---------------------------------------------------------------------------
# Segment header and frames (section 3)
# ---------------------------------------------------------------------------

@dataclass
class Header:
    header_len: int
    segment_no: int
    first_seq: int
    prev_head: bytes
    agent_id: str


def parse_header(data: bytes) -> Header:
    """Every check of a header that needs nothing but the header itself
    (sections 3.1 and 7, step 2): magic, format_version, header_flags,
    header_len, header_crc, and an agent id of 1..255 bytes of text. Raises
    Malformed. segment_no, first_seq, prev_head and the agent id's value
    are checked against the log by the caller (step 1)."""
    if len(data) < HEADER_FIXED_LEN:
        raise Malformed(f"header truncated: file has {len(data)} bytes")
    magic, version, hflags, header_len, segment_no, first_seq = struct.unpack_from(
        "<8sHHIQQ", data, 0)
    if magic != MAGIC:
        raise Malformed("bad magic")
    if version != FORMAT_VERSION:
        raise Malformed(f"format_version {version}, expected {FORMAT_VERSION}")
    if hflags != 0:
        raise Malformed(f"header_flags 0x{hflags:04x}, expected 0")
    n = data[64]
    if header_len != 69 + n:
        raise Malformed(f"header_len {header_len}, expected {69 + n}")
    if len(data) < header_len:
        raise Malformed(f"header truncated: file has {len(data)} bytes, "
                        f"header_len {header_len}")
    (stored_crc,) = struct.unpack_from("<I", data, 65 + n)
    if crc32c(data[:65 + n]) != stored_crc:
        raise Malformed("header_crc mismatch")
    if n == 0:
        raise Malformed("agent id length 0")
    return Header(header_len=header_len, segment_no=segment_no, first_seq=first_seq,
                  prev_head=bytes(data[32:64]), agent_id=decode_text(bytes(data[65:65 + n])))


def frame_length_ok(length: int) -> bool:
    return MIN_RECORD_LEN <= length <= MAX_RECORD_LEN


def read_frame(data: bytes, pos: int, end: int) -> tuple[bytes, int]:
    """Return (record bytes, next frame offset) of the frame at `pos`.

    `end` is where the segment's log ends; frames must fit before it (and
    within the file). Raises FrameError; `incomplete` is set for the two
    shapes section 7.5 calls a tail in progress.
    """
    limit = min(end, len(data))
    if limit - pos < FRAME_HEADER_LEN:
        raise FrameError(f"incomplete frame header ({max(limit - pos, 0)} bytes)",
                         incomplete=True)
    stored_crc, length = struct.unpack_from("<II", data, pos)  # crc first (3.2)
    if not frame_length_ok(length):
        raise FrameError(f"frame length {length} out of bounds")
    body_start = pos + FRAME_HEADER_LEN
    if body_start + length > limit:
        raise FrameError(f"frame length {length} runs past the end "
                         f"({limit - body_start} bytes left)", incomplete=True)
    record = bytes(data[body_start:body_start + length])
    # The CRC covers frame bytes [4, 8 + len): the length field, then the record.
    if crc32c(data[pos + 4:body_start + length]) != stored_crc:
        raise FrameError("frame CRC mismatch")
    return record, body_start + length


def starts_with_valid_frame(data: bytes, pos: int) -> bool:
    try:
        read_frame(data, pos, len(data))
    except FrameError:
        return False
    return True


SEQ_WINDOW = 1 << 20  # section 7.5: how far a later frame's seq may run ahead
SEQ_AT = FRAME_HEADER_LEN + 4  # a frame's record seq, from the frame's start


def later_frame(data: bytes, pos: int, expected_seq: int) -> tuple[int, int] | None:
    """Section 7.5: the first offset p > pos (with p + 60 <= the end) where a
    well-formed frame starts whose record's seq is in [expected_seq,
    expected_seq + 2^20); returns (p, seq) or None.

    Candidates are found by the five high bytes of such a seq (at most two
    patterns), so that a long region is not read offset by offset in Python.
    """
    upper = min(expected_seq + SEQ_WINDOW, U64_MASK)  # seq < upper
    last_p = len(data) - FRAME_HEADER_LEN - MIN_RECORD_LEN
    best = None
    for high in sorted({expected_seq >> 24, (upper - 1) >> 24}):
        pattern = high.to_bytes(5, "little")
        at = data.find(pattern, pos + 1 + SEQ_AT + 3)
        while at != -1:
            p = at - SEQ_AT - 3
            if p > last_p or (best is not None and p >= best[0]):
                break
            (seq,) = struct.unpack_from("<Q", data, p + SEQ_AT)
            if expected_seq <= seq < upper and starts_with_valid_frame(data, p):
                best = (p, seq)
                break
            at = data.find(pattern, at + 1)
    return best


def completed_write(data: bytes, pos: int, expected_seq: int) -> str | None:
    """Section 7.5: why the bytes from `pos` to the end of the file `data`,
    which do not end on a frame boundary, are not a write cut short; None
    when they may be one. Used for a tail in progress and for the region of
    a torn_tail recovery."""
    if starts_with_valid_frame(data, pos):
        return "a whole, valid frame starts there"
    length = len(data) - pos - FRAME_HEADER_LEN
    if length >= 0 and frame_length_ok(length):
        (stored_crc,) = struct.unpack_from("<I", data, pos)
        rest = memoryview(data)[pos + FRAME_HEADER_LEN:]
        if crc32c(rest, crc32c(struct.pack("<I", length))) == stored_crc:
            return (f"the frame is whole with length {length}, which its CRC "
                    f"confirms: its length was altered")
    found = later_frame(data, pos, expected_seq)
    if found is not None:
        return (f"a whole, valid frame of seq {found[1]} follows at offset "
                f"{found[0]}: the length was altered")
    return None


def parse_ledger(data: bytes) -> list[Record]:
    """The records of a key ledger file (section 2.1), in file order.

    Raises Malformed for a bad magic, version or flags, a frame that is not
    well-formed (a cut-short last frame included: the ledger is written as a
    whole, so it has no tail in progress) or a record that does not decode.
    Which records may appear, and what they must say, is checked by the
    caller (section 7, step 0).
    """
    if len(data) < LEDGER_HEADER_LEN:
        raise Malformed(f"header truncated: file has {len(data)} bytes")
    magic, version, flags = struct.unpack_from("<8sHH", data, 0)
    if magic != LEDGER_MAGIC:
        raise Malformed("bad magic")
    if version != LEDGER_VERSION:
        raise Malformed(f"version {version}, expected {LEDGER_VERSION}")
    if flags != 0:
        raise Malformed(f"flags 0x{flags:04x}, expected 0")
    records, pos = [], LEDGER_HEADER_LEN
    while pos < len(data):
        try:
            raw, next_pos = read_frame(data, pos, len(data))
            records.append(decode_record(raw))
        except (FrameError, Malformed) as exc:
            raise Malformed(f"frame at offset {pos}: {exc}") from None
        pos = next_pos
    return records


def read_first_record(path: str) -> Record | None:
    """The first record of a segment, or None if it cannot be read cleanly.

    Used for the recovery look-ahead (section 7.2); reads only the header and
    the first frame. The header must pass the checks section 7.2 lists (those
    of the header alone; not segment_no, first_seq, prev_head or whether the
    agent id is the log's, which are checked when the segment itself is
    read), the frame must be well-formed and the record must decode
    (including its closed enumerations).
    """
    with open(path, "rb") as f:
        head = f.read(HEADER_FIXED_LEN)
        if len(head) < HEADER_FIXED_LEN:
            return None
        head += f.read(head[64] + 4)
        try:
            header = parse_header(head)
        except Malformed:
            return None
        f.seek(header.header_len)
        frame_head = f.read(FRAME_HEADER_LEN)
        if len(frame_head) < FRAME_HEADER_LEN:
            return None
        length = struct.unpack_from("<I", frame_head, 4)[0]  # after the crc
        if not frame_length_ok(length):
            return None
        frame = frame_head + f.read(length)
    try:
        record, _ = read_frame(frame, 0, len(frame))
        return decode_record(record)
    except (FrameError, Malformed):
        return None


# ---------------------------------------------------------------------------
# The spool directory (section 2)
# ---------------------------------------------------------------------------

@dataclass
class SpoolListing:
    segments: list[tuple[int, str]]  # (number, path), by number
    temporary: list[str]
    ignored: list[str]
    ledger: str | None = None  # path of keys.wlledger, if present (section 2.1)


def list_spool(spool_dir: str) -> SpoolListing:
    try:
        names = sorted(os.listdir(spool_dir))
    except OSError as exc:
        raise UsageError(f"cannot read spool directory {spool_dir}: {exc}") from None
    segments, temporary, ignored, ledger = [], [], [], None
    for name in names:
        match = SEGMENT_NAME_RE.match(name)
        if match:
            segments.append((int(match.group(1), 16), os.path.join(spool_dir, name)))
        elif name.endswith(".tmp"):  # keys.wlledger.tmp included
            temporary.append(name)
        elif name == LEDGER_FILE:  # part of the spool, not ignored (section 2)
            ledger = os.path.join(spool_dir, name)
        elif name != LOCK_FILE:
            ignored.append(name)
    if not segments:
        raise UsageError(f"{spool_dir} is not a spool: no *.wlseg segment files")
    segments.sort()
    return SpoolListing(segments=segments, temporary=temporary, ignored=ignored,
                        ledger=ledger)


def read_segment_file(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc}") from None


# ---------------------------------------------------------------------------
# Verification (section 7)
# ---------------------------------------------------------------------------

@dataclass
class ChainState:
    """What the verifier keeps from record to record (section 7)."""

    next_seq: int = 0
    head: bytes = ZERO32
    frontier: Frontier = field(default_factory=Frontier)
    agent_id: str | None = None
    epoch: int | None = None
    key: bytes | None = None
    checkpoint_roots: dict[int, bytes] = field(default_factory=dict)
    heartbeat_ns: int = DEFAULT_HEARTBEAT_NS
    prev_ts: int | None = None
    prev_kind: int | None = None

    def append(self, raw: bytes) -> None:
        leaf = leaf_hash(raw)
        self.head = leaf  # section 4: head_i = leaf_i
        self.frontier.append(leaf)
        self.next_seq += 1


@dataclass
class SegmentCursor:
    """Per-segment state while its records are checked."""

    number: int
    offset: int = 0          # offset of the frame being checked
    records: int = 0         # records of this segment accepted so far
    checkpoints: int = 0
    sealed: bool = False
    anchor_seq: int | None = None   # seq of the anchor checkpoint (6.3)
    data_key_seq: int | None = None  # seq of its data_key record (6.16)


@dataclass
class DamagedSegment:
    """What a recovery record in the next segment is checked against.

    The region (bytes from `log_end` to the end of the file) is only read
    for the causes that check it (section 7.4: not for `fsync_failed`).
    """

    number: int
    data: bytes
    log_end: int
    last_seq: int

    @property
    def file_size(self) -> int:
        return len(self.data)

    @property
    def region_len(self) -> int:
        return self.file_size - self.log_end

    def region_sha256(self) -> bytes:
        return sha256(self.data[self.log_end:])

    def region_completed_write(self) -> str | None:
        return completed_write(self.data, self.log_end, (self.last_seq + 1) & U64_MASK)


@dataclass
class PrunedStart:
    """Where a pruned spool starts (section 7, step 0).

    The ledger's records are not counted in the report's `records` or
    `epoch_transitions`, which count the log read from the segments present.
    """

    first_segment: int       # S, the first segment present
    first_seq: int           # S's first_seq
    ledger_records: int      # ledger records taken: genesis + epoch_keys below first_seq
    recorded_at: int | None = None  # seq of the newest prune record naming S or later

    def as_dict(self) -> dict[str, Any]:
        return {"first_segment": self.first_segment, "first_seq": self.first_seq,
                "ledger_records": self.ledger_records, "recorded_at": self.recorded_at}


@dataclass
class Report:
    segments: int = 0
    records: int = 0
    checkpoints: int = 0
    epoch_transitions: int = 0
    last_checkpoint_seq: int | None = None
    recoveries: list[dict[str, Any]] = field(default_factory=list)
    tail_in_progress_bytes: int = 0
    time_gaps: list[dict[str, Any]] = field(default_factory=list)
    clock_steps: list[dict[str, Any]] = field(default_factory=list)
    alerts: list[dict[str, Any]] = field(default_factory=list)
    first_ts: int | None = None
    last_ts: int | None = None
    first_pubkey: bytes | None = None
    key_authenticated: bool = False
    prunes: int = 0
    pruned: PrunedStart | None = None
    failure: Failure | None = None


class Verifier:
    def __init__(self, spool_dir: str, trusted_key: bytes | None,
                 reader: EntryReader | None = None) -> None:
        self.listing = list_spool(spool_dir)
        self.trusted_key = trusted_key
        self.reader = reader  # --cat, --identity, --entry-key: not verification
        self.state = ChainState()
        self.report = Report(key_authenticated=trusted_key is not None)
        self.damaged: DamagedSegment | None = None
        self.seg = SegmentCursor(number=0)
        self.headers: dict[int, Header] = {}  # segments read so far (for prune)
        self.max_receipt = -1  # the largest tree_size a receipt named so far
        self.checks: dict[int, Callable[[Record], None]] = {
            GENESIS: self._check_genesis, CHECKPOINT: self._check_checkpoint,
            EPOCH_KEY: self._check_epoch_key, RECOVERY: self._check_recovery,
            SEAL: self._check_seal, RECEIPT: self._check_receipt,
            PRUNE: self._check_prune, DATA_KEY: self._check_data_key,
            ENTRY: self._check_entry,
        }

    @property
    def first_present(self) -> int:
        return self.listing.segments[0][0]

    # -- driver ------------------------------------------------------------

    def run(self) -> Report:
        try:
            for index in range(len(self.listing.segments)):
                self._verify_segment(index)
            self._check_prune_recorded()
        except Failure as failure:
            self.report.failure = failure
        return self.report

    def _fail(self, reason: str, offset: int | None = None) -> Failure:
        """A failure in the current segment (default: at the current frame)."""
        return Failure(self.seg.number, self.seg.offset if offset is None else offset,
                       self.state.next_seq, reason)

    def _verify_segment(self, index: int) -> None:
        number, path = self.listing.segments[index]
        self.seg = SegmentCursor(number=number)
        self._check_numbering(index)
        data = read_segment_file(path)
        self.report.segments += 1
        recovery = self._look_ahead(index)
        log_end = recovery.p["region_offset"] if recovery else len(data)
        if index == 0 and number != 0:
            self._pruned_start(data, log_end)
        header = self._check_header(data)
        is_last = index == len(self.listing.segments) - 1
        self._check_frames(data, header.header_len, log_end, is_last)
        if self.seg.sealed and log_end < len(data):
            # Section 7.5: any byte after a seal is a failure, even bytes a
            # recovery record declares void.
            raise self._fail(f"{plural(len(data) - log_end, 'byte')} after the seal",
                             offset=log_end)
        if not is_last and not self.seg.sealed and recovery is None:
            raise self._fail("segment ends without a seal and no recovery names it",
                             offset=log_end)
        self.damaged = self._describe_damage(data, log_end) if recovery else None

    # -- step 1: header ----------------------------------------------------

    def _check_numbering(self, index: int) -> None:
        segments = self.listing.segments
        if index == 0:
            # The first is 0, or S after a pruned start (step 0), which needs
            # a key ledger: without one the start is a missing segment.
            if self.seg.number != 0 and self.listing.ledger is None:
                raise self._fail(f"missing segment {0:016x} (first present is "
                                 f"{self.seg.number:016x}) and no key ledger", offset=0)
            return
        expected = segments[index - 1][0] + 1
        if self.seg.number != expected:
            raise self._fail(f"missing segment {expected:016x} "
                             f"(next present is {self.seg.number:016x})", offset=0)

    def _check_header(self, data: bytes) -> Header:
        number = self.seg.number
        try:
            header = parse_header(data)
        except Malformed as exc:
            raise self._fail(f"segment header: {exc}", offset=0) from None
        problems = []
        if header.segment_no != number:
            problems.append(f"segment_no {header.segment_no} does not match "
                            f"file name ({number})")
        if header.first_seq != self.state.next_seq:
            problems.append(f"first_seq {header.first_seq}, expected {self.state.next_seq}")
        if header.prev_head != self.state.head:
            problems.append("prev_head is not the chain head")
        if self.state.agent_id is None:
            self.state.agent_id = header.agent_id
        elif header.agent_id != self.state.agent_id:
            problems.append(f"agent_id {header.agent_id!r} differs from "
                            f"{self.state.agent_id!r}")
        if problems:
            raise self._fail("segment header: " + problems[0], offset=0)
        self.headers[number] = header
        return header

    # -- step 0: a pruned start ------------------------------------------------

    def _pruned_start(self, data: bytes, log_end: int) -> None:
        """Take the state from the ledger, S's header and S's first record.

        Any failure here is reported at segment S, offset 0, seq 0 (section 7
        location rules). The first checkpoint is then checked as any record
        when segment S is read (step 4), which authenticates all three.
        """
        number = self.seg.number
        try:
            self.report.pruned = self._take_pruned_state(data, log_end)
        except Failure as exc:
            raise Failure(number, 0, 0, f"pruned start: {exc.reason}") from None

    def _take_pruned_state(self, data: bytes, log_end: int) -> PrunedStart:
        def fail(reason: str) -> Failure:
            return Failure(self.seg.number, 0, 0, reason)

        try:
            header = parse_header(data)
        except Malformed as exc:
            raise fail(f"segment header: {exc}") from None
        assert self.listing.ledger is not None
        try:
            records = parse_ledger(read_segment_file(self.listing.ledger))
        except Malformed as exc:
            raise fail(f"key ledger: {exc}") from None
        state = self.state
        state.agent_id = header.agent_id

        # The ledger: genesis (checked as in step 4), then the epoch_keys
        # below S's first_seq, each signed by the key before it.
        if not records or records[0].kind != GENESIS or records[0].seq != 0:
            raise fail("key ledger: the first record is not the genesis record (seq 0)")
        genesis = records[0]
        if genesis.prev != ZERO32:  # "as in step 4": prev is head_{-1}
            raise fail("key ledger: genesis prev is not ZERO32")
        self._check_genesis(genesis)
        taken, last_seq = 1, genesis.seq
        for rec in records[1:]:
            if rec.kind != EPOCH_KEY:
                raise fail(f"key ledger: a {rec.name} record (seq {rec.seq}); only "
                           f"genesis and epoch_key records belong there")
            # "seq strictly increasing" holds for every ledger record, the
            # skipped ones too.
            if rec.seq <= last_seq:
                raise fail(f"key ledger: epoch_key seq {rec.seq} after seq {last_seq}")
            last_seq = rec.seq
            if rec.seq >= header.first_seq:
                continue  # of a segment still present (section 2.1)
            p = rec.p
            if p["from_epoch"] != state.epoch:
                raise fail(f"key ledger: epoch_key (seq {rec.seq}) from_epoch "
                           f"{p['from_epoch']}, current epoch {state.epoch}")
            if p["to_epoch"] != p["from_epoch"] + 1:
                raise fail(f"key ledger: epoch_key (seq {rec.seq}) to_epoch "
                           f"{p['to_epoch']} is not from_epoch + 1")
            if not ed25519_valid(state.key, p["signature"],
                                 signed_message(CTX_EPOCH_KEY, rec.raw)):
                raise fail(f"key ledger: epoch_key (seq {rec.seq}) signature invalid "
                           f"under epoch {state.epoch}'s key")
            state.epoch, state.key = p["to_epoch"], p["new_pubkey"]
            taken += 1

        # Segment S's header.
        state.next_seq, state.head = header.first_seq, header.prev_head

        # Segment S's first record: a checkpoint whose frontier fits first_seq.
        try:
            raw, _ = read_frame(data, header.header_len, log_end)
            first = decode_record(raw)
        except (FrameError, Malformed) as exc:
            raise fail(f"segment's first record: {exc}") from None
        if first.kind != CHECKPOINT:
            raise fail(f"segment's first record is a {first.name}, not a checkpoint")
        frontier = first.p["frontier"]
        if len(frontier) != header.first_seq.bit_count():
            raise fail(f"first checkpoint's frontier has {plural(len(frontier), 'node')}, "
                       f"a tree of size {header.first_seq} has "
                       f"{header.first_seq.bit_count()}")
        state.frontier = Frontier()
        state.frontier.size, state.frontier.nodes = header.first_seq, list(frontier)
        return PrunedStart(first_segment=self.seg.number, first_seq=header.first_seq,
                           ledger_records=taken)

    def _check_prune_recorded(self) -> None:
        """A spool not starting at 0 must hold a prune record naming S or a
        later segment; checked after everything else (section 7)."""
        pruned = self.report.pruned
        if pruned is not None and pruned.recorded_at is None:
            raise Failure(pruned.first_segment, 0, pruned.first_seq,
                          f"the log starts at segment {pruned.first_segment:016x} but no "
                          f"prune record names it or a later segment")

    # -- step 2: where the log ends ------------------------------------------

    def _look_ahead(self, index: int) -> Record | None:
        """The next segment's first record if it is a recovery naming this one.

        "The next segment" is the next segment file present (section 7.2 sets
        no condition on its number; a gap in the numbering is reported when
        that segment is read, section 7 location rules).
        """
        segments = self.listing.segments
        number = self.seg.number
        if index + 1 >= len(segments):
            return None
        try:
            first = read_first_record(segments[index + 1][1])
        except OSError as exc:
            raise UsageError(f"cannot read {segments[index + 1][1]}: {exc}") from None
        if first and first.kind == RECOVERY and first.p["segment_no"] == number:
            return first
        return None

    def _describe_damage(self, data: bytes, log_end: int) -> DamagedSegment:
        # The frames reached log_end exactly, so log_end <= len(data) here.
        return DamagedSegment(number=self.seg.number, data=data, log_end=log_end,
                              last_seq=(self.state.next_seq - 1) & U64_MASK)

    # -- steps 3 and 5: frames and the end of the segment ----------------------

    def _check_frames(self, data: bytes, header_len: int, log_end: int,
                      is_last: bool) -> None:
        pos = header_len
        if log_end < header_len:
            self.seg.offset = header_len
            raise self._fail(f"log end {log_end} (recovery region_offset) lies "
                             f"inside the header")
        while pos < log_end:
            self.seg.offset = pos
            if self.seg.sealed:  # any byte after a seal, even a torn tail (7.5)
                raise self._fail("seal is not the last record of its segment "
                                 f"({plural(log_end - pos, 'byte')} follow it)")
            try:
                record, next_pos = read_frame(data, pos, log_end)
            except FrameError as exc:
                if is_last and exc.incomplete and log_end == len(data):
                    # Section 7.5: only the unfinished last write may end the
                    # log like this.
                    complete = completed_write(data, pos, self.state.next_seq)
                    if complete is not None:
                        raise self._fail(f"damaged frame: {exc}, but it is not a write "
                                         f"in progress: {complete}") from None
                    self.report.tail_in_progress_bytes = len(data) - pos
                    return
                raise self._fail(f"damaged frame: {exc}") from None
            self._accept(record)
            pos = next_pos

    # -- step 4: records -----------------------------------------------------

    def _accept(self, raw: bytes) -> None:
        try:
            rec = decode_record(raw)
        except Malformed as exc:
            raise self._fail(str(exc)) from None
        if rec.seq != self.state.next_seq:
            raise self._fail(f"{rec.name} record has seq {rec.seq}, "
                             f"expected {self.state.next_seq}")
        # Section 7.4: right after the seq check, before the kind's own checks.
        if rec.prev != self.state.head:
            raise self._fail(f"{rec.name} record's prev {rec.prev.hex()} is not the "
                             f"chain head {self.state.head.hex()}")
        if (rec.seq == 0) != (rec.kind == GENESIS):
            raise self._fail("the record with seq 0, and only it, must be genesis "
                             f"(found {rec.name} at seq {rec.seq})")
        self._check_anchor_place(rec)
        check = self.checks.get(rec.kind)
        if check:
            check(rec)
        if self.reader is not None:
            # Only after the record passed every check; never changes the verdict.
            if rec.kind == DATA_KEY:
                self.reader.data_key(self.seg.number, rec)
            elif rec.kind == ENTRY:
                self.reader.entry(self.seg.number, rec)
        self._note(rec)
        self.state.append(raw)
        self.seg.records += 1
        self.report.records += 1

    def _check_genesis(self, rec: Record) -> None:
        if rec.p["agent_id"] != self.state.agent_id:
            raise self._fail(f"genesis agent_id {rec.p['agent_id']!r} differs from "
                             f"the header's {self.state.agent_id!r}")
        pub = rec.p["first_pubkey"]
        if self.trusted_key is not None and pub != self.trusted_key:
            raise self._fail("genesis first_pubkey is not the trusted public key")
        self.state.epoch, self.state.key = 0, pub
        self.report.first_pubkey = pub

    def _check_checkpoint(self, rec: Record) -> None:
        p, state = rec.p, self.state
        if p["epoch"] != state.epoch:
            raise self._fail(f"checkpoint epoch {p['epoch']}, current epoch {state.epoch}")
        if p["tree_size"] != rec.seq:
            raise self._fail(f"checkpoint tree_size {p['tree_size']} is not its seq")
        if p["root"] != state.frontier.root():
            raise self._fail("checkpoint root is not the Merkle root of the log")
        if p["head"] != state.head:
            raise self._fail("checkpoint head is not the chain head")
        if p["frontier"] != state.frontier.nodes:
            raise self._fail("checkpoint frontier differs from the log's")
        if not ed25519_valid(state.key, p["signature"], signed_message(CTX_CHECKPOINT, rec.raw)):
            raise self._fail(f"checkpoint signature invalid under epoch {state.epoch}'s key")
        if self.seg.checkpoints == 0:
            self.seg.anchor_seq = rec.seq
        self.seg.checkpoints += 1
        state.checkpoint_roots[rec.seq] = p["root"]
        self.report.checkpoints += 1
        self.report.last_checkpoint_seq = rec.seq

    def _check_anchor_place(self, rec: Record) -> None:
        """Section 6.3: the first record of a segment other than its genesis or
        recovery record is the anchor checkpoint. (Its frontier is checked like
        every checkpoint's; its source table is not interpreted.)"""
        if self.seg.checkpoints == 0 and rec.kind not in (CHECKPOINT, GENESIS, RECOVERY):
            raise self._fail(f"a {rec.name} record where the segment's anchor "
                             "checkpoint must be (its first record, after genesis "
                             "or recovery)")

    def _check_data_key(self, rec: Record) -> None:
        """Sections 6.16 and 7, step 4. The wrapped key is not opened here."""
        p, seg = rec.p, self.seg
        if seg.data_key_seq is not None:
            raise self._fail(f"a second data_key record in segment {seg.number} "
                             f"(the first is seq {seg.data_key_seq})")
        if seg.anchor_seq is None or rec.seq != seg.anchor_seq + 1:
            raise self._fail("data_key record is not the record right after its "
                             "segment's anchor checkpoint")
        if not p["recipients"]:
            raise self._fail("data_key record without a recipient")
        for recipient in p["recipients"]:
            if not recipient.startswith("age1"):
                raise self._fail(f"data_key recipient {recipient!r} does not start "
                                 f"with age1")
        if not p["wrapped"].startswith(AGE_PREFIX):
            raise self._fail("data_key wrapped does not start with "
                             "age-encryption.org/v1 and a newline")
        seg.data_key_seq = rec.seq

    def _check_entry(self, rec: Record) -> None:
        """Section 7, step 4: an entry is sealed if and only if its segment
        has a data_key record before it."""
        if rec.sealed and self.seg.data_key_seq is None:
            raise self._fail(f"sealed entry in segment {self.seg.number}, which has no "
                             f"data_key record before it")
        if not rec.sealed and self.seg.data_key_seq is not None:
            raise self._fail(f"clear entry in segment {self.seg.number}, whose entries "
                             f"are sealed (data_key record at seq "
                             f"{self.seg.data_key_seq})")

    def _check_epoch_key(self, rec: Record) -> None:
        p, state = rec.p, self.state
        if p["from_epoch"] != state.epoch:
            raise self._fail(f"epoch_key from_epoch {p['from_epoch']}, "
                             f"current epoch {state.epoch}")
        if p["to_epoch"] != p["from_epoch"] + 1:
            raise self._fail(f"epoch_key to_epoch {p['to_epoch']} is not from_epoch + 1")
        if p["tree_size"] != rec.seq:
            raise self._fail(f"epoch_key tree_size {p['tree_size']} is not its seq")
        if p["head"] != state.head:
            raise self._fail("epoch_key head is not the chain head")
        if not ed25519_valid(state.key, p["signature"], signed_message(CTX_EPOCH_KEY, rec.raw)):
            raise self._fail(f"epoch_key signature invalid under epoch {state.epoch}'s key")
        state.epoch, state.key = p["to_epoch"], p["new_pubkey"]
        self.report.epoch_transitions += 1

    def _check_recovery(self, rec: Record) -> None:
        p, damaged = rec.p, self.damaged
        if self.seg.records != 0:
            raise self._fail("recovery record is not the first record of its segment")
        if damaged is None or p["segment_no"] != damaged.number:
            raise self._fail(f"recovery names segment {p['segment_no']}, not the "
                             f"previous segment")
        if p["last_good_seq"] != damaged.last_seq:
            raise self._fail(f"recovery last_good_seq {p['last_good_seq']}, "
                             f"expected {damaged.last_seq}")
        if p["region_offset"] != damaged.log_end:
            raise self._fail("recovery region_offset is not where the damaged log ends")
        # fsync_failed: region_len is informational (the size on disk after a
        # failed fsync cannot be known) and is not checked.
        if p["cause"] != CAUSE_FSYNC_FAILED and p["region_len"] != damaged.region_len:
            raise self._fail(f"recovery region_len {p['region_len']}, the region is "
                             f"{damaged.region_len} bytes")
        self.report.recoveries.append({
            "segment": damaged.number, "cause": CAUSE_NAMES[p["cause"]],
            "offset": p["region_offset"], "len": p["region_len"]})
        if p["cause"] == CAUSE_TORN_TAIL:
            if p["region_sha256"] != damaged.region_sha256():
                raise self._fail("torn_tail recovery: region_sha256 does not match "
                                 "the region")
            complete = damaged.region_completed_write()
            if complete is not None:
                raise self._fail("torn_tail recovery, but the region is not a write "
                                 f"cut short: {complete}")
        elif p["cause"] == CAUSE_FSYNC_FAILED:
            if p["region_sha256"] != ZERO32:
                raise self._fail("fsync_failed recovery: region_sha256 is not ZERO32")
        else:
            # Section 7.4: a corruption recovery is a failure, reported at the
            # recovery record itself; the reason names the damaged segment and
            # region_offset. (Its region_sha256 is not checked: step 4 lists
            # that check for torn_tail only, and the verdict is failure anyway.)
            raise self._fail(f"corruption recovered: segment {damaged.number} is "
                             f"damaged at offset {p['region_offset']} "
                             f"({p['detail']!r})")

    def _check_seal(self, rec: Record) -> None:
        if rec.p["next_segment"] != self.seg.number + 1:
            raise self._fail(f"seal next_segment {rec.p['next_segment']}, "
                             f"expected {self.seg.number + 1}")
        self.seg.sealed = True

    def _check_receipt(self, rec: Record) -> None:
        p = rec.p
        agent_id = self.state.agent_id.encode()
        if not ed25519_valid(p["collector_pubkey"], p["signature"],
                             receipt_message(agent_id, p)):
            raise self._fail("receipt signature invalid under its collector_pubkey")
        self.max_receipt = max(self.max_receipt, p["tree_size"])
        pruned = self.report.pruned
        if pruned is not None and p["tree_size"] < pruned.first_seq:
            return  # its checkpoint was pruned: the signature only (step 0)
        if self.state.checkpoint_roots.get(p["tree_size"]) != p["root"]:
            raise self._fail(f"receipt tree_size {p['tree_size']} and root are not "
                             f"those of an earlier checkpoint")

    def _check_prune(self, rec: Record) -> None:
        p = rec.p
        named = p["first_kept_segment"]
        if named >= self.first_present:
            header = self.headers.get(named)
            if header is None:
                raise self._fail(f"prune names segment {named}, which is not a segment "
                                 f"already read")
            if p["first_kept_seq"] != header.first_seq:
                raise self._fail(f"prune first_kept_seq {p['first_kept_seq']}, segment "
                                 f"{named} starts at seq {header.first_seq}")
            if p["anchor_head"] != header.prev_head:
                raise self._fail(f"prune anchor_head is not segment {named}'s prev_head")
            if self.max_receipt < p["first_kept_seq"]:
                raise self._fail(f"prune removes records below seq {p['first_kept_seq']} "
                                 f"that no earlier receipt acknowledges")
            pruned = self.report.pruned
            if pruned is not None and named >= pruned.first_segment:
                pruned.recorded_at = rec.seq
        self.report.prunes += 1

    # -- what is reported besides the verdict ---------------------------------

    def _note(self, rec: Record) -> None:
        state, report = self.state, self.report
        if state.prev_ts is not None and rec.ts - state.prev_ts > 2 * state.heartbeat_ns:
            report.time_gaps.append({
                "from_seq": rec.seq - 1, "to_seq": rec.seq,
                "seconds": (rec.ts - state.prev_ts) / 1e9,
                "cause": self._gap_cause(rec)})
        if rec.kind == START:
            state.heartbeat_ns = rec.p["heartbeat_ns"]
        elif rec.kind == CLOCK_STEP:
            report.clock_steps.append({"seq": rec.seq, "expected_ts": rec.p["expected_ts"],
                                       "observed_ts": rec.p["observed_ts"]})
        elif rec.kind == ALERT:
            report.alerts.append({"seq": rec.seq, "code": rec.p["code"],
                                  "detail": rec.p["detail"]})
        if report.first_ts is None:
            report.first_ts = rec.ts
        report.last_ts = rec.ts
        state.prev_ts, state.prev_kind = rec.ts, rec.kind

    def _gap_cause(self, rec: Record) -> str:
        if self.state.prev_kind == STOP:
            return GAP_STOPPED
        if rec.kind == START:
            return GAP_NOT_RUNNING
        return GAP_NO_RECORDS


# ---------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------

def format_pubkey(key: bytes) -> str:
    return "ed25519:" + base64.b64encode(key).decode("ascii")


def parse_pubkey(text: str) -> bytes:
    """Section 5.1 text form: `ed25519:` and standard base64 of 32 bytes."""
    text = text.strip()
    if not text.startswith("ed25519:"):
        raise UsageError("public key must be of the form ed25519:<base64>")
    try:
        key = base64.b64decode(text[len("ed25519:"):], validate=True)
    except (binascii.Error, ValueError):
        raise UsageError("public key: invalid base64") from None
    if len(key) != 32:
        raise UsageError(f"public key: {len(key)} bytes, expected 32")
    return key


def unsigned_tail(report: Report, tree_size: int) -> int:
    """Records after the last checkpoint; `tree_size` is the expected next
    seq (in a pruned spool the records checked start at S's first_seq)."""
    if report.last_checkpoint_seq is None:
        return report.records
    return tree_size - report.last_checkpoint_seq - 1


def report_json(verifier: Verifier) -> dict[str, Any]:
    report, state = verifier.report, verifier.state
    return {
        "ok": report.failure is None,
        "segments": report.segments,
        "records": report.records,
        "checkpoints": report.checkpoints,
        "epoch_transitions": report.epoch_transitions,
        "unsigned_tail": unsigned_tail(report, state.next_seq),
        "recoveries": report.recoveries,
        "tail_in_progress_bytes": report.tail_in_progress_bytes,
        "failure": report.failure.as_dict() if report.failure else None,
        "pruned": report.pruned.as_dict() if report.pruned else None,
        "prunes": report.prunes,
        "time_gaps": report.time_gaps,
        "clock_steps": report.clock_steps,
        "alerts": report.alerts,
        "first_ts": report.first_ts,
        "last_ts": report.last_ts,
        "agent_id": state.agent_id,
        "first_pubkey": format_pubkey(report.first_pubkey) if report.first_pubkey else None,
        "key_authenticated": report.key_authenticated,
        "epoch": state.epoch,
        "tree_size": state.next_seq,
        "root": state.frontier.root().hex(),
        "head": state.head.hex(),
        "temporary_files": verifier.listing.temporary,
        "ignored_files": verifier.listing.ignored,
    }


def format_ts(ts: int | None) -> str:
    if ts is None:
        return "-"
    try:
        moment = datetime.datetime.fromtimestamp(ts / 1e9, tz=datetime.timezone.utc)
    except (OverflowError, OSError, ValueError):
        return f"{ts} ns"
    return moment.isoformat()


def report_text(summary: dict[str, Any]) -> str:
    lines = []
    failure = summary["failure"]
    if failure:
        lines.append(f"TAMPERING OR LOSS: segment {failure['segment']}, offset "
                     f"{failure['offset']}, seq {failure['seq']}: {failure['reason']}")
    else:
        lines.append("intact")
    key = summary["first_pubkey"] or "-"
    auth = "trusted" if summary["key_authenticated"] else "UNAUTHENTICATED"
    lines += [
        f"agent: {summary['agent_id']}  key: {key} ({auth})",
        f"segments: {summary['segments']}  records: {summary['records']}  "
        f"checkpoints: {summary['checkpoints']}  "
        f"epoch transitions: {summary['epoch_transitions']}",
        f"first ts: {format_ts(summary['first_ts'])}  "
        f"last ts: {format_ts(summary['last_ts'])}",
        f"unsigned tail: {summary['unsigned_tail']} records",
    ]
    pruned = summary["pruned"]
    if pruned:
        recorded = pruned["recorded_at"]
        lines.append(f"pruned: the log starts at segment {pruned['first_segment']}, "
                     f"seq {pruned['first_seq']} ({pruned['ledger_records']} key ledger "
                     f"records; prune record at seq "
                     f"{'-' if recorded is None else recorded})")
    if summary["tail_in_progress_bytes"]:
        lines.append(f"tail in progress: {summary['tail_in_progress_bytes']} bytes")
    for rec in summary["recoveries"]:
        lines.append(f"recovery: segment {rec['segment']} {rec['cause']}, "
                     f"{rec['len']} bytes at offset {rec['offset']} not in the log")
    for gap in summary["time_gaps"]:
        lines.append(f"time gap: seq {gap['from_seq']} -> {gap['to_seq']}, "
                     f"{gap['seconds']:.1f} s ({gap['cause']})")
    for step in summary["clock_steps"]:
        lines.append(f"clock step at seq {step['seq']}: expected "
                     f"{format_ts(step['expected_ts'])}, observed "
                     f"{format_ts(step['observed_ts'])}")
    for alert in summary["alerts"]:
        lines.append(f"alert at seq {alert['seq']}: code {alert['code']} {alert['detail']}")
    for name in summary["ignored_files"]:
        lines.append(f"ignored file: {name}")
    decryption = summary.get("decryption")
    if decryption:
        lines.append(f"decryption: {plural(decryption['data_keys_opened'], 'data key')} "
                     f"opened, {decryption['entries_opened']} sealed entries opened")
        problems = decryption["problems"]
        for problem in problems[:10]:
            lines.append(f"NOT OPENED: segment {problem['segment']}, seq "
                         f"{problem['seq']}: {problem['reason']}")
        if len(problems) > 10:
            lines.append(f"... and {len(problems) - 10} more not opened")
    return "\n".join(lines)


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Verify a wormlog spool (format version 1).")
    parser.add_argument("--spool", required=True, help="spool directory")
    parser.add_argument("--pubkey", help="trusted first public key, ed25519:<base64>")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--identity", action="append", metavar="FILE",
                        help="age identity file (AGE-SECRET-KEY-1... lines) that "
                             "opens the data keys of sealed segments; repeatable")
    parser.add_argument("--cat", action="store_true",
                        help="print every verified entry as one JSON line on "
                             "stdout (the report goes to stderr)")
    parser.add_argument("--entry-key", metavar="HEX",
                        help="open the sealed entry --seq N with its own key "
                             "K_seq (64 hex digits); no identity needed")
    parser.add_argument("--show-entry-keys", action="store_true",
                        help="with --cat and --identity: add each opened sealed "
                             "entry's own key K_seq (hex), to disclose that entry alone")
    parser.add_argument("--seq", type=int, metavar="N",
                        help="print only the entry with this seq (implies --cat)")
    return parser.parse_args(argv)


def parse_entry_key(text: str | None) -> bytes | None:
    if text is None:
        return None
    try:
        key = bytes.fromhex(text.strip())
    except ValueError:
        raise UsageError("--entry-key: not hexadecimal") from None
    if len(key) != 32:
        raise UsageError(f"--entry-key: {len(key)} bytes, expected 32")
    return key


def make_reader(args: argparse.Namespace) -> EntryReader | None:
    if args.entry_key is not None and args.seq is None:
        raise UsageError("--entry-key needs --seq (the entry it opens)")
    if args.seq is not None and args.seq < 0:
        raise UsageError("--seq must not be negative")
    catting = args.cat or args.seq is not None
    if args.show_entry_keys and not (catting and args.identity):
        raise UsageError("--show-entry-keys needs --cat (or --seq) and --identity")
    if not (catting or args.identity or args.entry_key is not None):
        return None
    key = parse_entry_key(args.entry_key)
    identities = load_identities(args.identity or [])

    def emit(out: dict[str, Any]) -> None:
        print(json.dumps(out), flush=True)

    return EntryReader(identities, key, args.seq, emit if catting else None,
                       show_keys=args.show_entry_keys)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)  # exits with code 2 on usage errors
    try:
        trusted = parse_pubkey(args.pubkey) if args.pubkey is not None else None
        reader = make_reader(args)
        verifier = Verifier(args.spool, trusted, reader)
        verifier.run()
    except UsageError as exc:
        if args.json:
            print(json.dumps({"ok": False, "error": str(exc), "failure": None}))
        print(f"wormlog_verify: {exc}", file=sys.stderr)
        return 2
    summary = report_json(verifier)
    if reader is not None and reader.opening:
        summary["decryption"] = reader.summary()
    # With --cat, stdout carries the entries alone; the report goes to stderr.
    out = sys.stderr if reader is not None and reader.emit is not None else sys.stdout
    print(json.dumps(summary) if args.json else report_text(summary), file=out)
    if not summary["ok"]:
        return 1
    if reader is not None and args.seq is not None and reader.found is None:
        print(f"wormlog_verify: seq {args.seq} is not an entry of this log", file=sys.stderr)
        return 2
    if reader is not None and reader.problems:
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
