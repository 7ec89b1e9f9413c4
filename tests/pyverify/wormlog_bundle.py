#!/usr/bin/env python3
"""Independent verifier for wormlog bundles (docs/FORMAT.md, section 12).

Written from docs/FORMAT.md alone (sections 1, 2.1, 3.3, 4, 5, 6, 7 step 4
and 12), without reading the Rust implementation, so that agreement between
it and `wormlog verify --bundle` shows that section 12 is complete. It reuses
the primitives of the independent spool verifier `wormlog_verify.py` (record
decoding, leaf and node hashes, the frontier, strict Ed25519, the receipt
message, age and the per-entry keys); everything about bundles is here.

Usage:

    python3 wormlog_bundle.py --bundle FILE --pubkey ed25519:<b64>
        [--collector-pubkey ed25519:<b64>] [--identity FILE]... [--json]

    --pubkey            the agent's first public key K (required)
    --collector-pubkey  the collector's receipt key R: the final `signature`
                        line and every receipt must be by it. Without it the
                        bundle's own key is taken as written and the result
                        says the collector is not authenticated.
    --identity FILE     age identity file(s): for an export, each data key
                        (the `data_key` line and `data_key` records) is opened
                        with them and every sealed entry with its K_seq. What
                        opens is reported ("decryption"); it never changes
                        the verdict.
    --json              one JSON object on stdout (see `result_json`).

Without --json the verdict is one line on stderr, "OK: ..." or
"BUNDLE DOES NOT VERIFY: line N: reason"; a verified disclosure's entry body
is printed on stdout (its exact bytes, then a newline) when it is readable
(clear, or sealed and opened with the bundle's entry_key).

Exit codes: 0 the bundle proves what it says; 1 it does not (any failure of
section 12.3, malformed lines included); 2 usage or I/O error.

What section 12.3 asks, and where it leaves a choice, the reading taken:

* Step 1: duplicate keys, NaN/Infinity and non-integer numbers are refused;
  every key of every object is required (entry_key may be null), none other
  allowed. `created` must be an RFC 3339 date-time (section 5.6's grammar:
  `T` or `t` between date and time, `Z`/`z` or a numeric offset). No record
  is longer than section 3.2 allows.
* Line order: ledger+, data_key?, record+, receipt*, consistency?, signature
  (export); ledger+, entry, checkpoint, receipt*, signature (disclosure).
* Step 3, the ledger: genesis first, then only epoch_key records, all in
  strictly increasing seq; those below the first proven seq are checked
  (epoch, signature), those at or after it are skipped as in section 2.1
  (decoded, ordered, nothing else). When an export starts at genesis, the
  ledger's genesis must be the same bytes as that record.
* Step 4, export: only the rules of section 7 step 4 that need no segment
  (those 12.3 lists): version, flags, kind, the payload decoded and consumed
  exactly with its enumerations closed, seq, prev, genesis at seq 0 only,
  checkpoints, epoch transitions, receipts. Nothing about segments: not the
  anchor's place, not where a seal, recovery or data_key record stands (nor
  how many data_key records a segment has), not whether an entry is sealed;
  a recovery record is only decoded, a seal and a prune too. The values of a
  data_key record (a recipient at least, each `age1…`, `wrapped` an age
  file) are checked, since they need no segment. from_seq <= to_seq (the
  header's line). The data_key line is optional.
* Opening sealed entries (--identity) never changes the verdict: the data
  key in effect is the data_key line's, replaced by each data_key record
  among the records; a seal or a recovery record (a new segment) drops it.
  A sealed entry without a data key opened is shown encrypted (listed under
  "problems").
* A receipt record (kind 12) naming a tree below the first record is checked
  by its signature only (under its own collector_pubkey, as in a spool).
* Step 7: at most one consistency line, after the receipts; its receipt's
  tree must be strictly larger (RFC 9162's 0 < first < second).
* Disclosure: an entry_key that opens the entry to a plaintext that is not
  field_count, fields, body is a failure.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import os
import re
import sys
from dataclasses import dataclass, field
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import wormlog_verify as wv  # noqa: E402  (the independent spool verifier)
from wormlog_verify import (CHECKPOINT, CTX_CHECKPOINT, CTX_EPOCH_KEY,  # noqa: E402
                            DATA_KEY, ENTRY, EPOCH_KEY, GENESIS, RECEIPT,
                            RECOVERY, SEAL, ZERO32, AgeError, Frontier,
                            Malformed, Record, UsageError, decode_record,
                            ed25519_valid, leaf_hash, node_hash,
                            receipt_message, signed_message)

BUNDLE_VERSION = 1
CTX_BUNDLE = b"wormlog bundle v1\x00"  # section 12.1: the `signature` line
U64_MAX = (1 << 64) - 1
I64_MIN, I64_MAX = -(1 << 63), (1 << 63) - 1
KEY_PREFIX = "ed25519:"

# Section 12.1: line 1, then each later line's one key and the keys of its value.
HEADER_KEYS = frozenset({"wormlog_bundle", "kind", "agent", "collector_id",
                         "collector_pubkey", "created", "from_seq", "to_seq"})
RECEIPT_KEYS = frozenset({"collector_id", "collector_pubkey", "tree_size", "root",
                          "collector_ts", "signature"})
LINE_KEYS: dict[str, frozenset[str]] = {
    "ledger": frozenset({"record"}),
    "data_key": frozenset({"record", "tree_size", "proof"}),
    "record": frozenset({"record"}),
    "entry": frozenset({"record", "entry_key"}),
    "checkpoint": frozenset({"record", "proof"}),
    "receipt": RECEIPT_KEYS,
    "consistency": frozenset({"from_size", "proof", "receipt"}),
    "signature": frozenset({"collector_pubkey", "signature"}),
}

# The order of the lines (section 12.1): (name, may repeat, required).
ORDER: dict[str, list[tuple[str, bool, bool]]] = {
    "export": [("ledger", True, True), ("data_key", False, False),
               ("record", True, True), ("receipt", True, False),
               ("consistency", False, False), ("signature", False, True)],
    "disclosure": [("ledger", True, True), ("entry", False, True),
                   ("checkpoint", False, True), ("receipt", True, False),
                   ("signature", False, True)],
}

RFC3339_RE = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d+)?"
    r"(?:[Zz]|([+-])(\d{2}):(\d{2}))")
B64_RE = re.compile(r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")


# ---------------------------------------------------------------------------
# RFC 9162 proofs (sections 2.1.3.2 and 2.1.4.2 of the RFC; FORMAT.md 4)
# ---------------------------------------------------------------------------

def verify_inclusion(leaf: bytes, index: int, size: int, proof: list[bytes],
                     root: bytes) -> bool:
    """RFC 9162 2.1.3.2: does `proof` (the audit path) lead from `leaf` at
    `index` in the tree of `size` leaves to `root`?"""
    if index >= size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def verify_consistency(first: int, second: int, first_root: bytes,
                       second_root: bytes, proof: list[bytes]) -> bool:
    """RFC 9162 2.1.4.2, for 0 < first < second (the RFC's precondition; a
    proof between equal sizes or from the empty tree is refused here)."""
    if not 0 < first < second or not proof:
        return False
    path = list(proof)
    if first & (first - 1) == 0:  # an exact power of two
        path.insert(0, first_root)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return fr == first_root and sr == second_root and sn == 0


# ---------------------------------------------------------------------------
# Parsing the text forms of section 12.1
# ---------------------------------------------------------------------------

class BundleFailure(Exception):
    """The bundle does not prove what it says (exit code 1), at `line`."""

    def __init__(self, line: int, reason: str) -> None:
        super().__init__(f"line {line}: {reason}")
        self.line = line
        self.reason = reason


class Bad(Exception):
    """A value that does not parse; turned into a BundleFailure at its line."""


def canonical_b64(text: Any, what: str) -> bytes:
    """Standard base64 with padding, canonical (the padding bits zero)."""
    if not isinstance(text, str):
        raise Bad(f"{what} is not a string")
    if B64_RE.fullmatch(text) is None:
        raise Bad(f"{what} is not standard base64 with padding")
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise Bad(f"{what} is not valid base64") from None
    if base64.b64encode(raw).decode("ascii") != text:
        raise Bad(f"{what} is not canonical base64")
    return raw


def lower_hex(text: Any, nbytes: int, what: str) -> bytes:
    """Lowercase hex of exactly `nbytes` bytes (an upper-case digit is refused)."""
    if not isinstance(text, str):
        raise Bad(f"{what} is not a string")
    if re.fullmatch(r"[0-9a-f]*", text) is None:
        raise Bad(f"{what} is not lowercase hex")
    if len(text) != 2 * nbytes:
        raise Bad(f"{what} has {len(text)} hex digits, expected {2 * nbytes}")
    return bytes.fromhex(text)


def key_text(text: Any, what: str) -> bytes:
    """`ed25519:` and the canonical standard base64 of 32 bytes (section 5.1)."""
    if not isinstance(text, str) or not text.startswith(KEY_PREFIX):
        raise Bad(f"{what} is not of the form ed25519:<base64>")
    key = canonical_b64(text[len(KEY_PREFIX):], what)
    if len(key) != 32:
        raise Bad(f"{what} is {len(key)} bytes, expected 32")
    return key


def integer(value: Any, what: str, low: int = 0, high: int = U64_MAX) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise Bad(f"{what} is not an integer")
    if not low <= value <= high:
        raise Bad(f"{what} {value} is out of range")
    return value


def text_value(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise Bad(f"{what} is not a string")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise Bad(f"{what} is not valid text (a lone surrogate)") from None
    return value


def proof_list(value: Any, what: str) -> list[bytes]:
    if not isinstance(value, list):
        raise Bad(f"{what} is not a list")
    return [lower_hex(item, 32, f"{what}[{i}]") for i, item in enumerate(value)]


def rfc3339(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise Bad(f"{what} is not a string")
    m = RFC3339_RE.fullmatch(value)
    if m is None:
        raise Bad(f"{what} {value!r} is not an RFC 3339 date-time")
    year, month, day, hour, minute, second = (int(m.group(i)) for i in range(1, 7))
    leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
    days = [31, 29 if leap else 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]
    ok = 1 <= month <= 12 and 1 <= day <= days[month - 1] and hour <= 23 \
        and minute <= 59 and second <= 60
    if m.group(8) is not None:
        ok = ok and int(m.group(9)) <= 23 and int(m.group(10)) <= 59
    if not ok:
        raise Bad(f"{what} {value!r} is not an RFC 3339 date-time")
    return value


def exact_keys(obj: Any, keys: frozenset[str], what: str) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise Bad(f"{what} is not a JSON object")
    unknown = sorted(set(obj) - keys)
    if unknown:
        raise Bad(f"{what}: unknown key {unknown[0]!r}")
    missing = sorted(keys - set(obj))
    if missing:
        raise Bad(f"{what}: missing key {missing[0]!r}")
    return obj


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise Bad(f"duplicate key {key!r}")
        out[key] = value
    return out


def _no_constant(name: str) -> Any:
    raise Bad(f"{name} is not JSON")


def parse_json_line(raw: bytes) -> Any:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise Bad("not UTF-8") from None
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates,
                          parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise Bad(f"not JSON: {exc.msg} at column {exc.colno}") from None
    except RecursionError:
        raise Bad("not JSON: nested too deeply") from None


@dataclass
class Receipt:
    collector_id: str
    collector_pubkey: bytes
    tree_size: int
    root: bytes
    collector_ts: int
    signature: bytes


def parse_receipt(obj: Any, what: str) -> Receipt:
    obj = exact_keys(obj, RECEIPT_KEYS, what)
    return Receipt(
        collector_id=text_value(obj["collector_id"], f"{what} collector_id"),
        collector_pubkey=key_text(obj["collector_pubkey"], f"{what} collector_pubkey"),
        tree_size=integer(obj["tree_size"], f"{what} tree_size"),
        root=lower_hex(obj["root"], 32, f"{what} root"),
        collector_ts=integer(obj["collector_ts"], f"{what} collector_ts", I64_MIN, I64_MAX),
        signature=lower_hex(obj["signature"], 64, f"{what} signature"))


def parse_record(value: Any, what: str) -> Record:
    raw = canonical_b64(value, what)
    if len(raw) > wv.MAX_RECORD_LEN:
        raise Bad(f"{what}: {len(raw)} bytes, longer than any record (section 3.2)")
    try:
        return decode_record(raw)
    except Malformed as exc:
        raise Bad(f"{what}: {exc}") from None


@dataclass
class Line:
    number: int          # 1-based
    name: str            # the line's one key
    value: dict[str, Any]
    record: Record | None = None
    proof: list[bytes] = field(default_factory=list)
    receipt: Receipt | None = None


@dataclass
class Header:
    kind: str
    agent: str
    collector_id: str
    collector_pubkey: bytes
    created: str
    from_seq: int
    to_seq: int


def parse_header(obj: Any) -> Header:
    if not isinstance(obj, dict):
        raise Bad("the header is not a JSON object")
    version = obj.get("wormlog_bundle")
    if version is not None and (type(version) is not int or version != BUNDLE_VERSION):
        raise Bad(f"wormlog_bundle is {version!r}, this verifier reads version "
                  f"{BUNDLE_VERSION}")
    obj = exact_keys(obj, HEADER_KEYS, "header")
    if obj["wormlog_bundle"] is None:
        raise Bad("wormlog_bundle is null")
    kind = obj["kind"]
    if kind not in ("export", "disclosure"):
        raise Bad(f"kind {kind!r} is neither \"export\" nor \"disclosure\"")
    agent = text_value(obj["agent"], "agent")
    if not 1 <= len(agent.encode("utf-8")) <= 255:
        raise Bad("agent is not 1 to 255 bytes of text")
    header = Header(kind=kind, agent=agent,
                    collector_id=text_value(obj["collector_id"], "collector_id"),
                    collector_pubkey=key_text(obj["collector_pubkey"], "collector_pubkey"),
                    created=rfc3339(obj["created"], "created"),
                    from_seq=integer(obj["from_seq"], "from_seq"),
                    to_seq=integer(obj["to_seq"], "to_seq"))
    return header


def parse_line(number: int, obj: Any) -> Line:
    """A later line: an object with exactly one key, which names it."""
    if not isinstance(obj, dict):
        raise Bad("not a JSON object")
    if len(obj) != 1:
        raise Bad(f"an object with {len(obj)} keys (a line has exactly one)")
    (name, value), = obj.items()
    if name not in LINE_KEYS:
        raise Bad(f"unknown line {name!r}")
    if name in ("receipt",):
        line = Line(number, name, value)
        line.receipt = parse_receipt(value, "receipt")
        return line
    value = exact_keys(value, LINE_KEYS[name], name)
    line = Line(number, name, value)
    if "record" in value:
        line.record = parse_record(value["record"], f"{name} record")
    if name == "data_key":
        integer(value["tree_size"], "data_key tree_size")
    if name == "entry" and value["entry_key"] is not None:
        lower_hex(value["entry_key"], 32, "entry_key")
    if name == "consistency":
        integer(value["from_size"], "consistency from_size")
        line.receipt = parse_receipt(value["receipt"], "consistency receipt")
    if name == "signature":
        key_text(value["collector_pubkey"], "signature collector_pubkey")
        lower_hex(value["signature"], 64, "signature signature")
    if "proof" in value:
        line.proof = proof_list(value["proof"], f"{name} proof")
    return line


# ---------------------------------------------------------------------------
# The checks of section 12.3
# ---------------------------------------------------------------------------

@dataclass
class Result:
    ok: bool = False
    kind: str | None = None
    agent: str | None = None
    records: int = 0
    entries: int = 0
    checkpoints: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    tree_size: int = 0
    receipts: int = 0
    consistent_to: int | None = None
    collector_authenticated: bool = False
    failure: BundleFailure | None = None
    entry: dict[str, Any] | None = None
    decryption: dict[str, Any] | None = None


@dataclass
class Chain:
    """What the verifier keeps from record to record (section 7, step 4)."""

    next_seq: int = 0
    head: bytes = ZERO32
    frontier: Frontier = field(default_factory=Frontier)
    epoch: int = 0
    key: bytes = b""
    roots: dict[int, bytes] = field(default_factory=dict)  # proven checkpoints

    def append(self, raw: bytes) -> None:
        leaf = leaf_hash(raw)
        self.head = leaf
        self.frontier.append(leaf)
        self.next_seq += 1


def frontier_of(rec: Record) -> Frontier:
    """A checkpoint's frontier as the verifier's state (section 12.3, 4).
    decode_record already required frontier_count = popcount(tree_size)."""
    f = Frontier()
    f.size = rec.p["tree_size"]
    f.nodes = list(rec.p["frontier"])
    return f


class BundleVerifier:
    def __init__(self, data: bytes, first_key: bytes, collector_key: bytes | None,
                 identities: list[wv.AgeIdentity] | None = None) -> None:
        self.data = data
        self.K = first_key
        self.R = collector_key
        self.identities = identities or []
        self.result = Result()
        self.header: Header | None = None
        self.lines: list[Line] = []
        self.line_starts: list[int] = []  # byte offset of each line (index 0: line 1)
        self.chain = Chain()
        # Segments, as far as a bundle shows them (see _segment_boundary).
        self.seg_data_key: Record | None = None  # the data key in effect, if any
        self.data_key_open: bytes | None = None  # the current segment's D, opened
        self.decrypt = {"data_keys": 0, "data_keys_opened": 0, "sealed_entries": 0,
                        "entries_opened": 0, "problems": []}

    # -- driver ------------------------------------------------------------

    def run(self) -> Result:
        try:
            self._parse()                       # 12.1, 12.3 step 1
            self._check_signature()             # step 2
            if self.header.kind == "export":
                self._check_export()            # steps 3, 4, 6, 7
            else:
                self._check_disclosure()        # steps 3, 5, 6
            self.result.ok = True
        except BundleFailure as failure:
            self.result.failure = failure
            self.result.entry = None
        if self.identities and self.header is not None and self.header.kind == "export":
            self.result.decryption = {
                "identities": [i.recipient for i in self.identities],
                "data_keys": self.decrypt["data_keys"],
                "data_keys_opened": self.decrypt["data_keys_opened"],
                "sealed_entries": self.decrypt["sealed_entries"],
                "entries_opened": self.decrypt["entries_opened"],
                "problems": self.decrypt["problems"]}
        return self.result

    # -- step 1: every line parses -------------------------------------------

    def _parse(self) -> None:
        data = self.data
        pieces = data.split(b"\n")
        # A file ending with "\n" splits into the lines and one empty piece.
        if not data.endswith(b"\n"):
            raise BundleFailure(max(1, len(pieces)), "the file does not end with a "
                                "newline: it was cut")
        pieces.pop()
        pos = 0
        for piece in pieces:
            self.line_starts.append(pos)
            pos += len(piece) + 1
        try:
            self.header = parse_header(parse_json_line(pieces[0]))
        except Bad as exc:
            raise BundleFailure(1, str(exc)) from None
        self.result.kind = self.header.kind
        self.result.agent = self.header.agent
        order = ORDER[self.header.kind]
        phase = -1  # index in `order` of the last line's kind
        seen_signature = False
        for index, piece in enumerate(pieces[1:], start=2):
            if seen_signature:
                raise BundleFailure(index, "a line after the signature line (it "
                                    "must be the last)")
            try:
                line = parse_line(index, parse_json_line(piece))
            except Bad as exc:
                raise BundleFailure(index, str(exc)) from None
            names = [name for name, _, _ in order]
            if line.name not in names:
                raise BundleFailure(index, f"a {line.name} line in a {self.header.kind} "
                                    f"bundle")
            at = names.index(line.name)
            if at < phase or (at == phase and not order[at][1]):
                raise BundleFailure(index, f"a {line.name} line out of place (the "
                                    f"order is {', '.join(names)})")
            for skipped in range(phase + 1, at):
                if order[skipped][2]:
                    raise BundleFailure(index, f"a {line.name} line where a "
                                        f"{order[skipped][0]} line must come first")
            phase = at
            seen_signature = line.name == "signature"
            self.lines.append(line)
        if not seen_signature:
            raise BundleFailure(len(pieces), "the last line is not a signature line")

    def _of(self, name: str) -> list[Line]:
        return [line for line in self.lines if line.name == name]

    # -- step 2: the collector's signature over the file -----------------------

    def _check_signature(self) -> None:
        line = self.lines[-1]
        key = key_text(line.value["collector_pubkey"], "")
        signature = lower_hex(line.value["signature"], 64, "")
        if self.R is not None and key != self.R:
            raise BundleFailure(line.number, "the bundle is signed by "
                                f"{wv.format_pubkey(key)}, not by the collector key "
                                "given")
        signed = self.data[:self.line_starts[line.number - 1]]
        if not ed25519_valid(key, signature, CTX_BUNDLE + signed):
            raise BundleFailure(line.number, "the bundle's signature does not hold "
                                f"under {wv.format_pubkey(key)}")
        self.result.collector_authenticated = self.R is not None

    # -- step 3: the key ledger ----------------------------------------------

    def _check_ledger(self, first_proven: int) -> None:
        """Genesis with K and the header's agent, then each epoch_key record
        below `first_proven`, in seq order, each following the epoch before it
        and signed by its key (section 2.1 rules: tree_size and head are not
        checked). Records at or after `first_proven` are skipped (2.1): they
        must still be epoch_key records (decoded when the line was parsed) in
        seq order, and nothing else of them is checked. Leaves the key in
        force at `first_proven` in self.chain."""
        ledger = self._of("ledger")
        first = ledger[0]
        rec = first.record
        if rec.kind != GENESIS:
            raise BundleFailure(first.number, f"the ledger's first record is a "
                                f"{rec.name} record, not the genesis record")
        if rec.seq != 0 or rec.prev != ZERO32:
            raise BundleFailure(first.number, "the ledger's genesis record does not "
                                "have seq 0 and a zero prev")
        if rec.p["agent_id"] != self.header.agent:
            raise BundleFailure(first.number, f"the genesis agent_id "
                                f"{rec.p['agent_id']!r} is not the header's agent "
                                f"{self.header.agent!r}")
        if rec.p["first_pubkey"] != self.K:
            raise BundleFailure(first.number, "the genesis first_pubkey is not the "
                                "agent's first public key given")
        epoch, key, last_seq = 0, self.K, 0
        for line in ledger[1:]:
            rec = line.record
            if rec.kind != EPOCH_KEY:
                raise BundleFailure(line.number, f"a {rec.name} record in the ledger "
                                    "(after genesis only epoch_key records)")
            if rec.seq <= last_seq:
                raise BundleFailure(line.number, f"ledger record seq {rec.seq} is not "
                                    f"after the one before it ({last_seq})")
            last_seq = rec.seq
            if rec.seq >= first_proven:
                continue  # skipped (section 2.1): checked where it stands in the log
            p = rec.p
            if p["from_epoch"] != epoch:
                raise BundleFailure(line.number, f"ledger epoch_key from_epoch "
                                    f"{p['from_epoch']}, the current epoch is {epoch}")
            if p["to_epoch"] != epoch + 1:
                raise BundleFailure(line.number, f"ledger epoch_key to_epoch "
                                    f"{p['to_epoch']} is not from_epoch + 1")
            if not ed25519_valid(key, p["signature"], signed_message(CTX_EPOCH_KEY, rec.raw)):
                raise BundleFailure(line.number, f"ledger epoch_key signature invalid "
                                    f"under epoch {epoch}'s key")
            epoch, key = p["to_epoch"], p["new_pubkey"]
        self.chain.epoch, self.chain.key = epoch, key

    # -- step 4: export --------------------------------------------------------

    def _check_export(self) -> None:
        records = self._of("record")
        first = records[0].record
        self._check_ledger(first.seq)
        if self.header.from_seq > self.header.to_seq:
            raise BundleFailure(1, f"from_seq {self.header.from_seq} is after to_seq "
                                f"{self.header.to_seq}")
        ledger_genesis = self._of("ledger")[0]
        if first.kind == GENESIS:
            # Start as in section 7 at seq 0 (the ledger is the genesis alone).
            if first.raw != ledger_genesis.record.raw:
                raise BundleFailure(records[0].number, "the genesis record differs "
                                    "from the ledger's")
            self.chain.next_seq, self.chain.head = 0, ZERO32
        elif first.kind == CHECKPOINT:
            self.chain.next_seq = first.seq
            self.chain.head = first.p["head"]
            self.chain.frontier = frontier_of(first)
        else:
            raise BundleFailure(records[0].number, f"the first record is a "
                                f"{first.name} record, neither genesis nor a checkpoint")
        self.result.first_seq = first.seq
        data_key_lines = self._of("data_key")
        for i, line in enumerate(records):
            self._accept(line)
            if i == 0 and data_key_lines:
                self._check_data_key_line(data_key_lines[0], line)
        last = records[-1]
        if last.record.kind != CHECKPOINT:
            raise BundleFailure(last.number, f"the last record is a {last.record.name} "
                                "record, not a checkpoint (records after the last "
                                "checkpoint are under no signature)")
        if first.seq > self.header.from_seq:
            raise BundleFailure(records[0].number, f"the records start at seq "
                                f"{first.seq}, after from_seq {self.header.from_seq}")
        if last.record.seq < self.header.to_seq:
            raise BundleFailure(last.number, f"the records end at seq "
                                f"{last.record.seq}, before to_seq {self.header.to_seq}")
        self._check_receipts(last)
        consistency = self._of("consistency")
        if consistency:
            self._check_consistency(consistency[0], last.record)

    def _check_data_key_line(self, line: Line, first: Line) -> None:
        """Section 12.3, 4: a data_key record below the first record, proven in
        the tree of size = the first checkpoint's seq."""
        rec, n = line.record, line.value["tree_size"]
        if rec.kind != DATA_KEY:
            raise BundleFailure(line.number, f"the data_key line holds a {rec.name} "
                                "record")
        self._data_key_rules(line.number, rec)
        if first.record.kind != CHECKPOINT:
            raise BundleFailure(line.number, "a data_key line, but the export starts "
                                "at the genesis record")
        if rec.seq >= first.record.seq:
            raise BundleFailure(line.number, f"the data_key record's seq {rec.seq} is "
                                f"not below the first record's ({first.record.seq})")
        if n != first.record.seq:
            raise BundleFailure(line.number, f"data_key tree_size {n} is not the first "
                                f"checkpoint's seq {first.record.seq}")
        if not verify_inclusion(leaf_hash(rec.raw), rec.seq, n, line.proof,
                                first.record.p["root"]):
            raise BundleFailure(line.number, "the data_key record's inclusion proof "
                                "does not lead to the first checkpoint's root")
        # The data key of the segment the export starts in: it opens the
        # sealed entries until a data_key record or a new segment replaces it.
        self.seg_data_key = rec
        self._open_data_key(rec)

    def _data_key_rules(self, number: int, rec: Record) -> None:
        """Section 6.16 and step 4: the values of a data_key record."""
        if not rec.p["recipients"]:
            raise BundleFailure(number, "data_key record without a recipient")
        for recipient in rec.p["recipients"]:
            if not recipient.startswith("age1"):
                raise BundleFailure(number, f"data_key recipient {recipient!r} does "
                                    "not start with age1")
        if not rec.p["wrapped"].startswith(wv.AGE_PREFIX):
            raise BundleFailure(number, "data_key wrapped does not start with "
                                "age-encryption.org/v1 and a newline")

    def _segment_boundary(self) -> None:
        """A new segment starts (after a `seal`, or at a `recovery`): the data
        key in effect is dropped. Used only to open sealed entries; no rule
        about segments is checked (section 12.3, 4)."""
        self.seg_data_key = None
        self.data_key_open = None

    def _accept(self, line: Line) -> None:
        """Section 7, step 4, for one `record` line."""
        rec, chain, n = line.record, self.chain, line.number
        if rec.seq != chain.next_seq:
            raise BundleFailure(n, f"{rec.name} record has seq {rec.seq}, expected "
                                f"{chain.next_seq}")
        if rec.prev != chain.head:
            raise BundleFailure(n, f"{rec.name} record's prev {rec.prev.hex()} is not "
                                f"the chain head {chain.head.hex()}")
        if (rec.seq == 0) != (rec.kind == GENESIS):
            raise BundleFailure(n, f"the record with seq 0, and only it, must be "
                                f"genesis (found {rec.name} at seq {rec.seq})")
        if rec.kind == RECOVERY:
            self._segment_boundary()  # for opening sealed entries only
        p = rec.p
        if rec.kind == GENESIS:
            if p["agent_id"] != self.header.agent:
                raise BundleFailure(n, f"genesis agent_id {p['agent_id']!r} is not the "
                                    f"header's agent")
            if p["first_pubkey"] != self.K:
                raise BundleFailure(n, "genesis first_pubkey is not the agent's first "
                                    "public key given")
            chain.epoch, chain.key = 0, p["first_pubkey"]
        elif rec.kind == CHECKPOINT:
            self._checkpoint_rules(n, rec)
            self.result.checkpoints += 1
            self.result.tree_size = p["tree_size"]
        elif rec.kind == EPOCH_KEY:
            if p["from_epoch"] != chain.epoch:
                raise BundleFailure(n, f"epoch_key from_epoch {p['from_epoch']}, "
                                    f"current epoch {chain.epoch}")
            if p["to_epoch"] != p["from_epoch"] + 1:
                raise BundleFailure(n, f"epoch_key to_epoch {p['to_epoch']} is not "
                                    "from_epoch + 1")
            if p["tree_size"] != rec.seq:
                raise BundleFailure(n, f"epoch_key tree_size {p['tree_size']} is not "
                                    "its seq")
            if p["head"] != chain.head:
                raise BundleFailure(n, "epoch_key head is not the chain head")
            if not ed25519_valid(chain.key, p["signature"],
                                 signed_message(CTX_EPOCH_KEY, rec.raw)):
                raise BundleFailure(n, f"epoch_key signature invalid under epoch "
                                    f"{chain.epoch}'s key")
            chain.epoch, chain.key = p["to_epoch"], p["new_pubkey"]
        elif rec.kind == DATA_KEY:
            # Its values only: where it stands, and how many a segment has, are
            # rules about segments, not applied to a bundle (section 12.3, 4).
            self._data_key_rules(n, rec)
            self.seg_data_key = rec
            self._open_data_key(rec)
        elif rec.kind == ENTRY:
            # Sealed or clear, whatever data key is in effect: whether an entry
            # must be sealed is a rule about segments (section 12.3, 4). The
            # non-empty source and entry_flags were checked when it decoded.
            self.result.entries += 1
            if rec.sealed:
                self._open_entry(rec)
        elif rec.kind == RECEIPT:
            if not ed25519_valid(p["collector_pubkey"], p["signature"],
                                 receipt_message(self.header.agent.encode(), p)):
                raise BundleFailure(n, "receipt signature invalid under its "
                                    "collector_pubkey")
            first_seq = self.result.first_seq
            if p["tree_size"] >= first_seq and chain.roots.get(p["tree_size"]) != p["root"]:
                raise BundleFailure(n, f"receipt tree_size {p['tree_size']} and root "
                                    "are not those of an earlier checkpoint")
        # Other kinds need nothing beyond decoding (their enumerations closed):
        # start, stop, config, heartbeat, clock_step, gap, alert; and recovery,
        # seal and prune, whose rules are about segments and files, which a
        # bundle does not have (section 12.3, 4).
        chain.append(rec.raw)
        self.result.records += 1
        self.result.last_seq = rec.seq
        if rec.kind == SEAL:
            self._segment_boundary()  # for opening sealed entries only

    def _checkpoint_rules(self, n: int, rec: Record) -> None:
        p, chain = rec.p, self.chain
        if p["epoch"] != chain.epoch:
            raise BundleFailure(n, f"checkpoint epoch {p['epoch']}, current epoch "
                                f"{chain.epoch}")
        if p["tree_size"] != rec.seq:
            raise BundleFailure(n, f"checkpoint tree_size {p['tree_size']} is not its seq")
        if p["root"] != chain.frontier.root():
            raise BundleFailure(n, "checkpoint root is not the Merkle root of the log")
        if p["head"] != chain.head:
            raise BundleFailure(n, "checkpoint head is not the chain head")
        if p["frontier"] != chain.frontier.nodes or chain.frontier.size != rec.seq:
            raise BundleFailure(n, "checkpoint frontier differs from the log's")
        if not ed25519_valid(chain.key, p["signature"],
                             signed_message(CTX_CHECKPOINT, rec.raw)):
            raise BundleFailure(n, f"checkpoint signature invalid under epoch "
                                f"{chain.epoch}'s key")
        chain.roots[rec.seq] = p["root"]

    # -- reading sealed entries of an export (never changes the verdict) -------

    def _open_data_key(self, rec: Record) -> None:
        self.data_key_open = None
        if not self.identities:
            return
        self.decrypt["data_keys"] += 1
        try:
            key = wv.age_decrypt(rec.p["wrapped"], self.identities)
        except AgeError as exc:
            self.decrypt["problems"].append({"seq": rec.seq,
                                             "reason": f"data key not opened: {exc}"})
            return
        if len(key) != wv.DATA_KEY_LEN:
            self.decrypt["problems"].append({"seq": rec.seq, "reason": "data key not "
                                             f"opened: {len(key)} bytes, not 32"})
            return
        self.data_key_open = key
        self.decrypt["data_keys_opened"] += 1

    def _open_entry(self, rec: Record) -> None:
        if not self.identities:
            return
        self.decrypt["sealed_entries"] += 1
        if self.data_key_open is None:
            reason = ("its segment's data key was not opened"
                      if self.seg_data_key is not None else
                      "no data key for its segment in the bundle: shown encrypted")
            self.decrypt["problems"].append({"seq": rec.seq, "reason": reason})
            return
        try:
            wv.open_sealed(rec, wv.entry_key(self.data_key_open, rec.seq))
        except (AgeError, Malformed) as exc:
            self.decrypt["problems"].append({"seq": rec.seq, "reason": str(exc)})
            return
        self.decrypt["entries_opened"] += 1

    # -- step 5: disclosure ----------------------------------------------------

    def _check_disclosure(self) -> None:
        entry_line = self._of("entry")[0]
        cp_line = self._of("checkpoint")[0]
        entry, cp = entry_line.record, cp_line.record
        self._check_ledger(cp.seq)  # step 3: the key in force at the checkpoint
        if entry.kind != ENTRY:
            raise BundleFailure(entry_line.number, f"the entry line holds a "
                                f"{entry.name} record")
        if not entry.seq == self.header.from_seq == self.header.to_seq:
            raise BundleFailure(entry_line.number, f"the entry's seq {entry.seq} is not "
                                f"the header's from_seq {self.header.from_seq} and "
                                f"to_seq {self.header.to_seq}")
        if cp.kind != CHECKPOINT:
            raise BundleFailure(cp_line.number, f"the checkpoint line holds a "
                                f"{cp.name} record")
        # Take the state from the checkpoint, then check it as a record.
        chain = self.chain
        chain.next_seq, chain.head = cp.seq, cp.p["head"]
        chain.frontier = frontier_of(cp)
        if cp.prev != chain.head:
            raise BundleFailure(cp_line.number, f"checkpoint's prev {cp.prev.hex()} is "
                                f"not its head {chain.head.hex()}")
        if cp.seq == 0:
            raise BundleFailure(cp_line.number, "a checkpoint at seq 0 (only genesis "
                                "stands there)")
        self._checkpoint_rules(cp_line.number, cp)
        self.result.tree_size = cp.p["tree_size"]
        if entry.seq >= cp.p["tree_size"]:
            raise BundleFailure(entry_line.number, f"the entry's seq {entry.seq} is not "
                                f"below the checkpoint's tree_size {cp.p['tree_size']}")
        if not verify_inclusion(leaf_hash(entry.raw), entry.seq, cp.p["tree_size"],
                                cp_line.proof, cp.p["root"]):
            raise BundleFailure(cp_line.number, "the entry's inclusion proof does not "
                                "lead to the checkpoint's root")
        content, opened = None, False
        key_hex = entry_line.value["entry_key"]
        if key_hex is not None:
            if not entry.sealed:
                raise BundleFailure(entry_line.number, "an entry_key for an entry that "
                                    "is not sealed")
            try:
                content = wv.open_sealed(entry, bytes.fromhex(key_hex))
            except AgeError:
                raise BundleFailure(entry_line.number, "the entry_key does not open the "
                                    "sealed entry") from None
            except Malformed as exc:
                raise BundleFailure(entry_line.number, f"the sealed entry opened, but "
                                    f"its plaintext is malformed: {exc}") from None
            opened = True
        elif not entry.sealed:
            content = entry.p
        self.result.records = self.result.entries = self.result.checkpoints = 1
        self.result.first_seq = self.result.last_seq = entry.seq
        self._check_receipts(cp_line)
        self.result.entry = {
            "seq": entry.seq, "ts": entry.ts, "source": entry.p["source"],
            "sealed": entry.sealed, "opened": opened,
            "fields": [] if content is None else
            [{"key": k, "value": wv.bytes_json(v)} for k, v in content["fields"]],
            "body": None if content is None else wv.bytes_json(content["body"]),
        }

    # -- steps 6 and 7: receipts and the consistency proof ---------------------

    def _receipt_signed(self, number: int, r: Receipt, what: str) -> None:
        if self.R is not None and r.collector_pubkey != self.R:
            raise BundleFailure(number, f"{what} is by "
                                f"{wv.format_pubkey(r.collector_pubkey)}, not by the "
                                "collector key given")
        p = {"tree_size": r.tree_size, "root": r.root, "collector_ts": r.collector_ts}
        if not ed25519_valid(r.collector_pubkey, r.signature,
                             receipt_message(self.header.agent.encode(), p)):
            raise BundleFailure(number, f"{what} signature invalid under "
                                f"{wv.format_pubkey(r.collector_pubkey)}")

    def _check_receipts(self, last: Line) -> None:
        """Step 6; `last` is the line of the last checkpoint (export) or of the
        checkpoint (disclosure)."""
        covered = False
        last_cp = last.record
        for line in self._of("receipt"):
            r = line.receipt
            self._receipt_signed(line.number, r, "receipt")
            if self.chain.roots.get(r.tree_size) != r.root:
                raise BundleFailure(line.number, f"receipt tree_size {r.tree_size} and "
                                    "root are not those of a checkpoint the bundle "
                                    "proves")
            covered = covered or r.tree_size == last_cp.p["tree_size"]
            self.result.receipts += 1
        if not covered:
            raise BundleFailure(last.number, "no receipt for this checkpoint (tree_size "
                                f"{last_cp.p['tree_size']}), the bundle's "
                                f"{'last' if self.header.kind == 'export' else 'own'}")

    def _check_consistency(self, line: Line, last_cp: Record) -> None:
        from_size, r = line.value["from_size"], line.receipt
        if from_size != last_cp.p["tree_size"]:
            raise BundleFailure(line.number, f"consistency from_size {from_size} is not "
                                f"the last checkpoint's tree_size "
                                f"{last_cp.p['tree_size']}")
        self._receipt_signed(line.number, r, "consistency receipt")
        if r.tree_size <= from_size:
            raise BundleFailure(line.number, f"consistency receipt tree_size "
                                f"{r.tree_size} is not a later tree than {from_size}")
        if not verify_consistency(from_size, r.tree_size, last_cp.p["root"], r.root,
                                  line.proof):
            raise BundleFailure(line.number, "the consistency proof does not lead from "
                                "the last checkpoint's root to the receipt's root")
        self.result.consistent_to = r.tree_size


# ---------------------------------------------------------------------------
# Output and command line
# ---------------------------------------------------------------------------

def result_json(result: Result) -> dict[str, Any]:
    out = {
        "ok": result.ok, "kind": result.kind, "agent": result.agent,
        "records": result.records, "entries": result.entries,
        "checkpoints": result.checkpoints, "first_seq": result.first_seq,
        "last_seq": result.last_seq, "tree_size": result.tree_size,
        "receipts": result.receipts, "consistent_to": result.consistent_to,
        "collector_authenticated": result.collector_authenticated,
        "failure": str(result.failure) if result.failure else None,
        "entry": result.entry if result.ok else None,
    }
    if result.decryption is not None:
        out["decryption"] = result.decryption
    return out


def verdict_text(result: Result) -> str:
    if not result.ok:
        return f"BUNDLE DOES NOT VERIFY: {result.failure}"
    auth = ("collector authenticated" if result.collector_authenticated
            else "collector NOT authenticated (no --collector-pubkey)")
    if result.kind == "export":
        text = (f"OK: export of agent {result.agent}, seq {result.first_seq}.."
                f"{result.last_seq}: {result.records} records ({result.entries} "
                f"entries, {result.checkpoints} checkpoints), tree size "
                f"{result.tree_size}, {wv.plural(result.receipts, 'receipt')}")
        if result.consistent_to is not None:
            text += f", consistent to tree size {result.consistent_to}"
        if result.decryption is not None:
            d = result.decryption
            text += (f", {d['data_keys_opened']}/{d['data_keys']} data keys and "
                     f"{d['entries_opened']}/{d['sealed_entries']} sealed entries opened")
    else:
        e = result.entry
        state = ("sealed, opened" if e["opened"] else
                 "sealed, not opened" if e["sealed"] else "clear")
        text = (f"OK: disclosure of entry seq {e['seq']} ({state}) of agent "
                f"{result.agent}, in the tree of size {result.tree_size}, "
                f"{wv.plural(result.receipts, 'receipt')}")
    return f"{text}; {auth}"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Verify a wormlog bundle (FORMAT.md section 12).")
    parser.add_argument("--bundle", required=True, metavar="FILE")
    parser.add_argument("--pubkey", required=True,
                        help="the agent's first public key, ed25519:<base64>")
    parser.add_argument("--collector-pubkey",
                        help="the collector's receipt key, ed25519:<base64>")
    parser.add_argument("--identity", action="append", metavar="FILE",
                        help="age identity file opening an export's data keys; "
                             "repeatable")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)  # exits with code 2 on usage errors
    try:
        first_key = wv.parse_pubkey(args.pubkey)
        collector_key = (wv.parse_pubkey(args.collector_pubkey)
                         if args.collector_pubkey is not None else None)
        identities = wv.load_identities(args.identity or [])
        try:
            with open(args.bundle, "rb") as f:
                data = f.read()
        except OSError as exc:
            raise UsageError(f"cannot read {args.bundle}: {exc}") from None
    except UsageError as exc:
        if args.json:
            out = result_json(Result())
            out["error"] = str(exc)
            print(json.dumps(out))
        print(f"wormlog_bundle: {exc}", file=sys.stderr)
        return 2
    result = BundleVerifier(data, first_key, collector_key, identities).run()
    if args.json:
        print(json.dumps(result_json(result)))
    else:
        print(verdict_text(result), file=sys.stderr)
        if result.ok and result.entry is not None and result.entry["body"] is not None:
            body = base64.b64decode(result.entry["body"]["b64"]) + b"\n"
            sys.stdout.flush()
            raw_out = getattr(sys.stdout, "buffer", None)
            if raw_out is not None:
                raw_out.write(body)
                raw_out.flush()
            else:  # a text stream (tests): the bytes, undecodable ones escaped
                sys.stdout.write(body.decode("utf-8", "backslashreplace"))
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
