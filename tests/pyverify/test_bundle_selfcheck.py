"""Self-checks for wormlog_bundle.py (run: python3 tests/pyverify/test_bundle_selfcheck.py).

Without the Rust tools: RFC 9162 inclusion and consistency proofs checked
against proofs computed here (RFC 9162 2.1.3.1 PATH and 2.1.4.1 PROOF) over
every tree of 1 to 40 leaves; the text forms of section 12.1 (canonical
base64, lowercase hex, keys, the final newline, unknown keys); and whole
bundles made here from a log written by `Log` below (which follows
docs/FORMAT.md; the same log is also written as a spool and checked by
wormlog_verify.py, so that the two verifiers agree on what a log is), with
one defect each, re-signed by the collector key so that only the defect
under test can fail.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import io
import json
import os
import struct
import sys
import tempfile
import unittest
from unittest import mock

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import (X25519PrivateKey,
                                                              X25519PublicKey)
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import wormlog_bundle as wb  # noqa: E402
import wormlog_verify as wv  # noqa: E402

SECOND = 1_000_000_000
T0 = 1_700_000_000 * SECOND


# ---------------------------------------------------------------------------
# RFC 9162 proofs, computed the way the RFC defines them
# ---------------------------------------------------------------------------

def largest_pow2_below(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def rfc_path(m: int, leaves: list[bytes]) -> list[bytes]:
    """RFC 9162 2.1.3.1: PATH(m, D[n]), the audit path of leaf m."""
    n = len(leaves)
    if n == 1:
        return []
    k = largest_pow2_below(n)
    if m < k:
        return rfc_path(m, leaves[:k]) + [wv.mth(leaves[k:])]
    return rfc_path(m - k, leaves[k:]) + [wv.mth(leaves[:k])]


def rfc_subproof(m: int, leaves: list[bytes], b: bool) -> list[bytes]:
    n = len(leaves)
    if m == n:
        return [] if b else [wv.mth(leaves)]
    k = largest_pow2_below(n)
    if m <= k:
        return rfc_subproof(m, leaves[:k], b) + [wv.mth(leaves[k:])]
    return rfc_subproof(m - k, leaves[k:], False) + [wv.mth(leaves[:k])]


def rfc_proof(m: int, leaves: list[bytes]) -> list[bytes]:
    """RFC 9162 2.1.4.1: PROOF(m, D[n]) for 0 < m < n."""
    return rfc_subproof(m, leaves, True)


def flip(b: bytes, i: int = 0) -> bytes:
    return b[:i] + bytes([b[i] ^ 1]) + b[i + 1:]


LEAVES = [wv.leaf_hash(b"leaf %d" % i) for i in range(40)]


class InclusionProofTest(unittest.TestCase):
    def test_every_index_of_every_size(self):
        for n in range(1, 41):
            leaves = LEAVES[:n]
            root = wv.mth(leaves)
            for m in range(n):
                proof = rfc_path(m, leaves)
                self.assertTrue(wb.verify_inclusion(leaves[m], m, n, proof, root), (n, m))
                # Any change makes it fail.
                self.assertFalse(wb.verify_inclusion(flip(leaves[m]), m, n, proof, root))
                self.assertFalse(wb.verify_inclusion(leaves[m], m, n, proof, flip(root)))
                for i in range(len(proof)):
                    bad = proof[:i] + [flip(proof[i], 5)] + proof[i + 1:]
                    self.assertFalse(wb.verify_inclusion(leaves[m], m, n, bad, root))
                if proof:
                    self.assertFalse(wb.verify_inclusion(leaves[m], m, n, proof[:-1], root))
                self.assertFalse(wb.verify_inclusion(leaves[m], m, n, proof + [root], root))
                self.assertFalse(wb.verify_inclusion(leaves[m], m, n, [root] + proof, root))
                for other in range(n):
                    if other != m:
                        ok = wb.verify_inclusion(leaves[m], other, n, proof, root)
                        self.assertFalse(ok, (n, m, other))
                self.assertFalse(wb.verify_inclusion(leaves[m], m + n, n, proof, root))
                self.assertFalse(wb.verify_inclusion(leaves[m], n, n, proof, root))
                # The same path does not prove the leaf in another tree size
                # (unless the two trees' shapes agree and the root is the same,
                # which cannot be with a different root).
                if n < 40:
                    bigger_root = wv.mth(LEAVES[:n + 1])
                    self.assertFalse(wb.verify_inclusion(leaves[m], m, n + 1, proof,
                                                         bigger_root), (n, m))

    def test_single_leaf(self):
        self.assertTrue(wb.verify_inclusion(LEAVES[0], 0, 1, [], LEAVES[0]))
        self.assertFalse(wb.verify_inclusion(LEAVES[0], 0, 1, [LEAVES[1]], LEAVES[0]))
        self.assertFalse(wb.verify_inclusion(LEAVES[0], 0, 0, [], wv.EMPTY_ROOT))


class ConsistencyProofTest(unittest.TestCase):
    def test_every_pair_of_sizes(self):
        for n in range(2, 41):
            second_root = wv.mth(LEAVES[:n])
            for m in range(1, n):
                first_root = wv.mth(LEAVES[:m])
                proof = rfc_proof(m, LEAVES[:n])
                self.assertTrue(wb.verify_consistency(m, n, first_root, second_root,
                                                      proof), (m, n))
                self.assertFalse(wb.verify_consistency(m, n, flip(first_root),
                                                       second_root, proof))
                self.assertFalse(wb.verify_consistency(m, n, first_root,
                                                       flip(second_root), proof))
                for i in range(len(proof)):
                    bad = proof[:i] + [flip(proof[i], 7)] + proof[i + 1:]
                    self.assertFalse(wb.verify_consistency(m, n, first_root,
                                                           second_root, bad), (m, n, i))
                self.assertFalse(wb.verify_consistency(m, n, first_root, second_root,
                                                       proof[:-1]))
                self.assertFalse(wb.verify_consistency(m, n, first_root, second_root,
                                                       proof + [second_root]))
                # Wrong sizes.
                if m + 1 < n:
                    self.assertFalse(wb.verify_consistency(
                        m + 1, n, wv.mth(LEAVES[:m + 1]), second_root, proof), (m, n))
                if n < 40:
                    self.assertFalse(wb.verify_consistency(
                        m, n + 1, first_root, wv.mth(LEAVES[:n + 1]), proof), (m, n))

    def test_degenerate_sizes_refused(self):
        root = wv.mth(LEAVES[:5])
        self.assertFalse(wb.verify_consistency(5, 5, root, root, []))
        self.assertFalse(wb.verify_consistency(5, 5, root, root, [root]))
        self.assertFalse(wb.verify_consistency(0, 5, wv.EMPTY_ROOT, root, []))
        self.assertFalse(wb.verify_consistency(6, 5, wv.mth(LEAVES[:6]), root,
                                               rfc_proof(5, LEAVES[:6])))


# ---------------------------------------------------------------------------
# Text forms (section 12.1)
# ---------------------------------------------------------------------------

class TextFormsTest(unittest.TestCase):
    def test_canonical_base64(self):
        for raw in (b"", b"a", b"ab", b"abc", bytes(range(256))):
            text = base64.b64encode(raw).decode()
            self.assertEqual(wb.canonical_b64(text, "x"), raw)
        for bad in ("YQ", "YQ=", "YR==", "YWJ=", "YW Jj", "YWJj\n", "YW-j", "YW_j",
                    "=YWJ", "YWJj====", 123, None, "Y", "YWJjZA"):
            with self.assertRaises(wb.Bad, msg=repr(bad)):
                wb.canonical_b64(bad, "x")

    def test_lowercase_hex(self):
        self.assertEqual(wb.lower_hex("00ff" * 16, 32, "x"), bytes.fromhex("00ff" * 16))
        for bad in ("00FF" * 16, "00fF" * 16, "00ff" * 15, "00ff" * 17, "0g" * 32,
                    " " + "00" * 31 + "0", 0, None, ["00"] * 32):
            with self.assertRaises(wb.Bad, msg=repr(bad)):
                wb.lower_hex(bad, 32, "x")

    def test_keys(self):
        key = bytes(range(32))
        text = "ed25519:" + base64.b64encode(key).decode()
        self.assertEqual(wb.key_text(text, "k"), key)
        for bad in (text[8:], "ED25519:" + text[8:], text[:-1], text + "=",
                    "ed25519:" + base64.b64encode(key[:31]).decode(),
                    text[:-2] + "F=",  # padding bits not zero: not canonical
                    "ed25519: " + text[8:]):
            with self.assertRaises(wb.Bad, msg=repr(bad)):
                wb.key_text(bad, "k")

    def test_integers(self):
        self.assertEqual(wb.integer(0, "n"), 0)
        self.assertEqual(wb.integer(2**64 - 1, "n"), 2**64 - 1)
        for bad in (-1, 2**64, 1.0, True, "1", None):
            with self.assertRaises(wb.Bad, msg=repr(bad)):
                wb.integer(bad, "n")

    def test_rfc3339(self):
        for good in ("2025-01-02T03:04:05Z", "2025-01-02T03:04:05.123456789Z",
                     "2024-02-29T23:59:60+01:00", "2025-12-31t00:00:00-05:30"):
            wb.rfc3339(good, "created")
        for bad in ("2025-01-02 03:04:05Z", "2025-13-02T03:04:05Z",
                    "2025-02-29T00:00:00Z", "2025-01-02T03:04:05", "yesterday",
                    "2025-01-02T24:00:00Z", 1700000000):
            with self.assertRaises(wb.Bad, msg=repr(bad)):
                wb.rfc3339(bad, "created")

    def test_json_strictness(self):
        for bad in (b'{"a":1,"a":2}', b'{"a":NaN}', b'{"a":Infinity}', b'{"a":1',
                    b'\xff{"a":1}', b''):
            with self.assertRaises(wb.Bad, msg=repr(bad)):
                wb.parse_json_line(bad)


# ---------------------------------------------------------------------------
# A log written from FORMAT.md, and bundles of it (section 12.2)
# ---------------------------------------------------------------------------

def h(*parts: bytes) -> bytes:
    return hashlib.sha256(b"".join(parts)).digest()


def b8(x: bytes) -> bytes:
    return bytes([len(x)]) + x


def b16(x: bytes) -> bytes:
    return struct.pack("<H", len(x)) + x


def b32(x: bytes) -> bytes:
    return struct.pack("<I", len(x)) + x


def raw_public(private) -> bytes:
    return private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def public_key(secret: bytes) -> bytes:
    return raw_public(Ed25519PrivateKey.from_private_bytes(secret))


def pubkey_text(key: bytes) -> str:
    return "ed25519:" + base64.b64encode(key).decode()


def hkdf(ikm: bytes, salt: bytes, info: bytes, length: int = 32) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt,
                info=info).derive(ikm)


def b64_nopad(raw: bytes) -> bytes:
    return base64.b64encode(raw).rstrip(b"=")


def age_encrypt(plaintext: bytes, recipient_pub: bytes) -> bytes:
    """age v1 to one X25519 recipient (binary); plaintext < 64 KiB."""
    file_key = os.urandom(16)
    eph = X25519PrivateKey.generate()
    share = raw_public(eph)
    shared = eph.exchange(X25519PublicKey.from_public_bytes(recipient_pub))
    wrap = hkdf(shared, share + recipient_pub, b"age-encryption.org/v1/X25519")
    body = ChaCha20Poly1305(wrap).encrypt(bytes(12), file_key, None)
    header = (b"age-encryption.org/v1\n-> X25519 " + b64_nopad(share) + b"\n"
              + b64_nopad(body) + b"\n---")
    mac = hmac.new(hkdf(file_key, b"", b"header"), header, hashlib.sha256).digest()
    nonce = os.urandom(16)
    payload_key = hkdf(file_key, nonce, b"payload")
    chunk = ChaCha20Poly1305(payload_key).encrypt(bytes(11) + b"\x01", plaintext, None)
    return header + b" " + b64_nopad(mac) + b"\n" + nonce + chunk


BOOT = b"0123456789abcdef"
POS_NONE = b"\x00" + struct.pack("<H", 0)


class Log:
    """A log (records and segments) written as FORMAT.md says."""

    def __init__(self, agent: bytes = b"web-01", seed: bytes = b"\x05" * 32) -> None:
        self.agent = agent
        self.seed = seed
        self.epoch = 0
        self.pub0 = public_key(self._secret())
        self.records: list[bytes] = []
        self.leaves: list[bytes] = []
        self.head = wv.ZERO32
        self.frontier = wv.Frontier()
        self.ts = T0
        self.segments: list[list[int]] = [[]]
        self.seg_headers: list[tuple[int, bytes]] = [(0, wv.ZERO32)]
        self.data_keys: dict[int, tuple[int, bytes]] = {}  # segment -> (seq, D)
        self.checkpoints: list[int] = []
        self.epoch_keys: list[int] = []
        self.collector = Ed25519PrivateKey.from_private_bytes(b"\x09" * 32)
        self.collector_pub = raw_public(self.collector)

    @property
    def seq(self) -> int:
        return len(self.records)

    def _secret(self) -> bytes:
        return h(b"wormlog key v1\x00", self.seed)

    def append(self, kind: int, payload: bytes, signer: bytes | None = None,
               flags: int = 0, seal: tuple[bytes, bytes] | None = None) -> int:
        self.ts += SECOND
        record = struct.pack("<BBHQq", 1, kind, flags, self.seq, self.ts) + self.head + payload
        if seal is not None:
            data_key, plaintext = seal
            k = hkdf(data_key, b"wormlog entry key v1", struct.pack("<Q", self.seq))
            record += ChaCha20Poly1305(k).encrypt(bytes(12), plaintext,
                                                  record[:20] + record[52:])
        if signer is not None:
            key = Ed25519PrivateKey.from_private_bytes(self._secret())
            record += key.sign(signer + b"\x00" + record)
        seq = self.seq
        self.records.append(record)
        self.segments[-1].append(seq)
        leaf = wv.leaf_hash(record)
        self.leaves.append(leaf)
        self.head = leaf
        self.frontier.append(leaf)
        return seq

    def segment_of(self, seq: int) -> int:
        return next(i for i, seqs in enumerate(self.segments) if seq in seqs)

    # records
    def genesis(self) -> int:
        return self.append(wv.GENESIS, b8(self.agent) + self.pub0)

    def entry(self, line: bytes, source: bytes = b"syslog") -> int:
        payload = b8(source) + POS_NONE + b"\x00" + struct.pack("<H", 1)
        payload += b8(b"PRIORITY") + b32(b"6") + line
        return self.append(wv.ENTRY, payload)

    def sealed_entry(self, line: bytes, source: bytes = b"syslog",
                     data_key: bytes | None = None) -> int:
        if data_key is None:
            _, data_key = self.data_keys[len(self.segments) - 1]
        plaintext = struct.pack("<H", 1) + b8(b"PRIORITY") + b32(b"6") + line
        return self.append(wv.ENTRY, b8(source) + POS_NONE + b"\x00",
                           flags=wv.RECORD_FLAG_SEALED, seal=(data_key, plaintext))

    def checkpoint(self, anchor: bool = False) -> int:
        sources = [(b"syslog", POS_NONE)] if anchor else []
        payload = (struct.pack("<QQ", self.epoch, self.seq) + self.frontier.root()
                   + self.head + BOOT + struct.pack("<Q", 123)
                   + bytes([len(self.frontier.nodes)]) + b"".join(self.frontier.nodes)
                   + struct.pack("<I", len(sources))
                   + b"".join(b8(name) + pos for name, pos in sources))
        seq = self.append(wv.CHECKPOINT, payload, signer=b"wormlog checkpoint v1")
        self.checkpoints.append(seq)
        return seq

    def epoch_key(self) -> int:
        next_seed = h(b"wormlog seed v1\x00", self.seed)
        new_pub = public_key(h(b"wormlog key v1\x00", next_seed))
        payload = (struct.pack("<QQ", self.epoch, self.epoch + 1) + new_pub
                   + struct.pack("<Q", self.seq) + self.head)
        seq = self.append(wv.EPOCH_KEY, payload, signer=b"wormlog epoch-key v1")
        self.seed, self.epoch = next_seed, self.epoch + 1
        self.epoch_keys.append(seq)
        return seq

    def data_key(self, recipient: str, recipient_pub: bytes) -> int:
        data_key = os.urandom(32)
        wrapped = age_encrypt(data_key, recipient_pub)
        payload = struct.pack("<H", 1) + b8(recipient.encode()) + b32(wrapped)
        seq = self.append(wv.DATA_KEY, payload)
        self.data_keys[len(self.segments) - 1] = (seq, data_key)
        return seq

    def start(self) -> int:
        payload = (BOOT + struct.pack("<QI", 1, 4242) + bytes(32)
                   + struct.pack("<QBB", 60 * SECOND, 1, 0) + b8(b"wormlog 0.1.0 run"))
        return self.append(wv.START, payload)

    def gap(self) -> int:
        payload = (b8(b"syslog") + POS_NONE + struct.pack("<HQQ", 1, 10, 1)
                   + b16(b"truncated"))
        return self.append(wv.GAP, payload)

    def heartbeat(self) -> int:
        return self.append(wv.HEARTBEAT, BOOT + struct.pack("<Q", 9))

    def receipt_message(self, tree_size: int, root: bytes, ts: int = T0) -> bytes:
        return (b"wormlog receipt v1\x00" + b8(self.agent) + struct.pack("<Q", tree_size)
                + root + struct.pack("<q", ts))

    def receipt_record(self, tree_size: int) -> int:
        root = wv.mth(self.leaves[:tree_size])
        signature = self.collector.sign(self.receipt_message(tree_size, root))
        payload = (b8(b"collector-1") + struct.pack("<Q", tree_size) + root
                   + struct.pack("<q", T0) + self.collector_pub + signature)
        return self.append(wv.RECEIPT, payload)

    def seal(self) -> int:
        seq = self.append(wv.SEAL, struct.pack("<Q", len(self.segments)))
        self.segments.append([])
        self.seg_headers.append((self.seq, self.head))
        return seq

    def recovery(self, cause: int, digest: bytes | None = None,
                 last_good_seq: int | None = None) -> int:
        """Open a new segment whose first record is a recovery record for the
        current one (section 6.11); the region itself is not modelled."""
        damaged = len(self.segments) - 1
        self.segments.append([])
        self.seg_headers.append((self.seq, self.head))
        if digest is None:
            digest = bytes(32) if cause == wv.CAUSE_FSYNC_FAILED else b"\x07" * 32
        last_good_seq = self.seq - 1 if last_good_seq is None else last_good_seq
        payload = (bytes([cause]) + struct.pack("<QQQQ", damaged, last_good_seq, 1000, 10)
                   + digest + b16(b"found at open"))
        return self.append(wv.RECOVERY, payload)

    def write_spool(self, directory: str) -> None:
        for number, seqs in enumerate(self.segments):
            first_seq, prev_head = self.seg_headers[number]
            body = (b"WORMLOG\x00" + struct.pack("<HHI", 1, 0, 69 + len(self.agent))
                    + struct.pack("<QQ", number, first_seq) + prev_head + b8(self.agent))
            data = body + struct.pack("<I", wv.crc32c(body))
            for seq in seqs:
                rec = self.records[seq]
                len_field = struct.pack("<I", len(rec))
                data += struct.pack("<I", wv.crc32c(len_field + rec)) + len_field + rec
            with open(os.path.join(directory, f"{number:016x}.wlseg"), "wb") as f:
                f.write(data)

    # bundle parts
    def receipt_obj(self, tree_size: int, root: bytes | None = None,
                    signer: Ed25519PrivateKey | None = None) -> dict:
        root = wv.mth(self.leaves[:tree_size]) if root is None else root
        signer = self.collector if signer is None else signer
        return {"collector_id": "collector-1",
                "collector_pubkey": pubkey_text(raw_public(signer)),
                "tree_size": tree_size, "root": root.hex(), "collector_ts": T0,
                "signature": signer.sign(self.receipt_message(tree_size, root)).hex()}

    def header(self, kind: str, from_seq: int, to_seq: int) -> dict:
        return {"wormlog_bundle": 1, "kind": kind, "agent": self.agent.decode(),
                "collector_id": "collector-1",
                "collector_pubkey": pubkey_text(self.collector_pub),
                "created": "2025-06-01T12:00:00.5Z", "from_seq": from_seq,
                "to_seq": to_seq}

    def b64(self, seq: int) -> str:
        return base64.b64encode(self.records[seq]).decode()

    def export(self, from_seq: int, to_seq: int, consistency_to: int | None = None) -> list:
        """Section 12.2, with every checkpoint countersigned."""
        before = [c for c in self.checkpoints if c <= from_seq]
        start = before[-1] if before else 0
        end = min(c for c in self.checkpoints if c >= to_seq)
        objs = [self.header("export", from_seq, to_seq)]
        for seq in [0] + [s for s in self.epoch_keys if s < start]:
            objs.append({"ledger": {"record": self.b64(seq)}})
        dk = self.data_keys.get(self.segment_of(start))
        if dk is not None and dk[0] < start:
            proof = rfc_path(dk[0], self.leaves[:start])
            objs.append({"data_key": {"record": self.b64(dk[0]), "tree_size": start,
                                      "proof": [p.hex() for p in proof]}})
        for seq in range(start, end + 1):
            objs.append({"record": {"record": self.b64(seq)}})
        for c in self.checkpoints:
            if start <= c <= end:
                objs.append({"receipt": self.receipt_obj(c)})
        if consistency_to is not None:
            proof = rfc_proof(end, self.leaves[:consistency_to])
            objs.append({"consistency": {"from_size": end,
                                         "proof": [p.hex() for p in proof],
                                         "receipt": self.receipt_obj(consistency_to)}})
        return objs

    def disclosure(self, s: int, with_key: bool = True) -> list:
        c = min(c for c in self.checkpoints if c > s)
        objs = [self.header("disclosure", s, s)]
        for seq in [0] + [e for e in self.epoch_keys if e < c]:
            objs.append({"ledger": {"record": self.b64(seq)}})
        key = None
        if self.records[s][2] & 1 and with_key:
            _, data_key = self.data_keys[self.segment_of(s)]
            key = hkdf(data_key, b"wormlog entry key v1", struct.pack("<Q", s)).hex()
        objs.append({"entry": {"record": self.b64(s), "entry_key": key}})
        objs.append({"checkpoint": {"record": self.b64(c), "proof": [
            p.hex() for p in rfc_path(s, self.leaves[:c])]}})
        objs.append({"receipt": self.receipt_obj(c)})
        return objs


def line_bytes(obj) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode() + b"\n"


def sign_bundle(objs: list, signer: Ed25519PrivateKey) -> bytes:
    """`objs` are JSON values, or bytes: a line as it is (without its newline)."""
    body = b"".join(o + b"\n" if isinstance(o, bytes) else line_bytes(o) for o in objs)
    signature = signer.sign(wb.CTX_BUNDLE + body)
    return body + line_bytes({"signature": {
        "collector_pubkey": pubkey_text(raw_public(signer)),
        "signature": signature.hex()}})


def build_log() -> tuple[Log, dict[str, int], str, str]:
    """Three segments: clear, sealed, clear; two epoch transitions."""
    age_secret = X25519PrivateKey.from_private_bytes(b"\x11" * 32)
    age_pub = raw_public(age_secret)
    recipient = wv.bech32_encode("age", age_pub)
    identity = wv.bech32_encode("age-secret-key-", b"\x11" * 32).upper()
    log, at = Log(), {}
    log.genesis()
    at["cp1"] = log.checkpoint(anchor=True)
    log.start()
    at["e3"] = log.entry(b"first line")
    log.entry(b"second line")
    at["cp5"] = log.checkpoint()
    log.receipt_record(at["cp5"])
    at["rc_old"] = log.receipt_record(at["cp1"])
    at["e8"] = log.entry(b"\xff\xfe not utf-8")
    at["ek1"] = log.epoch_key()
    log.entry(b"after the first epoch")
    at["cp_seg0"] = log.checkpoint()
    log.seal()
    at["anchor1"] = log.checkpoint(anchor=True)
    at["dk1"] = log.data_key(recipient, age_pub)
    at["s1"] = log.sealed_entry(b"secret one")
    log.sealed_entry(b"secret two")
    at["cp_s1"] = log.checkpoint()
    at["s3"] = log.sealed_entry(b"secret three")
    at["s4"] = log.sealed_entry(b"secret four")
    at["cp_s2"] = log.checkpoint()
    at["s5"] = log.sealed_entry(b"secret five")
    log.checkpoint()
    log.seal()
    at["anchor2"] = log.checkpoint(anchor=True)
    at["c1"] = log.entry(b"clear again")
    log.gap()
    at["cp_c1"] = log.checkpoint()
    at["ek2"] = log.epoch_key()
    at["c2"] = log.entry(b"in epoch two")
    at["cp_c2"] = log.checkpoint()
    log.heartbeat()
    at["last"] = log.checkpoint()
    return log, at, identity, recipient


LOG, AT, IDENTITY, RECIPIENT = build_log()
K = LOG.pub0
R = LOG.collector_pub


def run_bundle(data: bytes, *, pubkey: bytes = K, collector: bytes | None = R,
               extra: tuple[str, ...] = (), json_out: bool = True) -> tuple[int, dict | str, str]:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "bundle.jsonl")
        with open(path, "wb") as f:
            f.write(data)
        argv = ["--bundle", path, "--pubkey", pubkey_text(pubkey), *extra]
        if collector is not None:
            argv += ["--collector-pubkey", pubkey_text(collector)]
        if json_out:
            argv.append("--json")
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = wb.main(argv)
    text = out.getvalue()
    return code, (json.loads(text) if json_out else text), err.getvalue()


class LogIsASpoolTest(unittest.TestCase):
    """The log the bundles are made of passes the independent spool verifier."""

    def test_spool_verifies(self):
        with tempfile.TemporaryDirectory() as tmp:
            LOG.write_spool(tmp)
            verifier = wv.Verifier(tmp, K)
            report = verifier.run()
            self.assertIsNone(report.failure, report.failure)
            self.assertEqual(report.records, LOG.seq)


class BundleCase(unittest.TestCase):
    def assertVerifies(self, objs, **kw) -> dict:
        code, out, err = run_bundle(sign_bundle(objs, LOG.collector), **kw)
        self.assertEqual(code, 0, (out, err))
        self.assertTrue(out["ok"])
        self.assertIsNone(out["failure"])
        return out

    def assertRefused(self, data_or_objs, fragment: str, line: int | None = None,
                      **kw) -> dict:
        data = (data_or_objs if isinstance(data_or_objs, bytes)
                else sign_bundle(data_or_objs, LOG.collector))
        code, out, err = run_bundle(data, **kw)
        self.assertEqual(code, 1, (out, err))
        self.assertFalse(out["ok"])
        self.assertIn(fragment, out["failure"])
        if line is not None:
            self.assertTrue(out["failure"].startswith(f"line {line}: "), out["failure"])
        self.assertIsNone(out["entry"])
        return out


def index_of(objs: list, name: str, nth: int = 0) -> int:
    found = [i for i, o in enumerate(objs) if i > 0 and name in o]
    return found[nth]


def set_record(objs: list, i: int, raw: bytes) -> None:
    (name, value), = objs[i].items()
    value["record"] = base64.b64encode(raw).decode()


def get_record(objs: list, i: int) -> bytes:
    (name, value), = objs[i].items()
    return base64.b64decode(value["record"])


class ExportTest(BundleCase):
    def test_exports_verify(self):
        cases = [
            (AT["e3"], AT["e3"] + 1, 0), (0, 2, 0), (AT["e8"], AT["e8"], 0),
            (AT["s3"], AT["s4"], 1), (AT["anchor1"], AT["s1"], 1),
            (AT["s5"], AT["c1"], 1), (AT["c2"], AT["c2"], 1),
            (0, LOG.seq - 1, 0),
        ]
        for from_seq, to_seq, epoch_keys_in_ledger in cases:
            with self.subTest(from_seq=from_seq, to_seq=to_seq):
                objs = LOG.export(from_seq, to_seq)
                out = self.assertVerifies(objs)
                records = [o for o in objs if "record" in o]
                self.assertEqual(out["kind"], "export")
                self.assertEqual(out["agent"], "web-01")
                self.assertEqual(out["records"], len(records))
                first = wv.decode_record(get_record(objs, index_of(objs, "record")))
                self.assertEqual(out["first_seq"], first.seq)
                self.assertEqual(out["last_seq"], first.seq + len(records) - 1)
                self.assertEqual(out["tree_size"], out["last_seq"])
                self.assertLessEqual(out["first_seq"], from_seq)
                self.assertGreaterEqual(out["last_seq"], to_seq)
                self.assertEqual(out["receipts"], len([o for o in objs if "receipt" in o]))
                self.assertTrue(out["collector_authenticated"])
                self.assertIsNone(out["consistent_to"])
                self.assertIsNone(out["entry"])
                ledger = [o for o in objs if "ledger" in o]
                self.assertEqual(len(ledger), 1 + epoch_keys_in_ledger)

    def test_counts(self):
        objs = LOG.export(AT["e3"], AT["e3"])
        out = self.assertVerifies(objs)
        # cp1 .. cp5: checkpoint, start, entry, entry, checkpoint.
        self.assertEqual((out["records"], out["entries"], out["checkpoints"]), (5, 2, 2))
        self.assertEqual((out["first_seq"], out["last_seq"], out["tree_size"]),
                         (AT["cp1"], AT["cp5"], AT["cp5"]))

    def test_with_data_key_line_and_consistency(self):
        objs = LOG.export(AT["s3"], AT["s4"], consistency_to=AT["last"])
        self.assertTrue(any("data_key" in o for o in objs))
        out = self.assertVerifies(objs)
        self.assertEqual(out["consistent_to"], AT["last"])

    def test_without_collector_key(self):
        out = self.assertVerifies(LOG.export(AT["e3"], AT["e3"]), collector=None)
        self.assertFalse(out["collector_authenticated"])
        other = Ed25519PrivateKey.from_private_bytes(b"\x42" * 32)
        # Signed by another key: fine without R (taken as written), refused with R.
        data = sign_bundle(LOG.export(AT["e3"], AT["e3"]), other)
        code, out, _ = run_bundle(data, collector=None)
        self.assertEqual(code, 0, out)
        self.assertFalse(out["collector_authenticated"])
        self.assertRefused(data, "not by the collector key given")

    def test_identity_opens_sealed_entries(self):
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "key.txt")
            with open(path, "w") as f:
                f.write("# test\n" + IDENTITY + "\n")
            out = self.assertVerifies(LOG.export(AT["s3"], AT["c1"]),
                                      extra=("--identity", path))
        d = out["decryption"]
        self.assertEqual((d["data_keys_opened"], d["entries_opened"]), (1, 3), d)
        self.assertEqual(d["problems"], [])

    def test_text_verdict(self):
        code, out, err = run_bundle(sign_bundle(LOG.export(AT["e3"], AT["e3"]),
                                                LOG.collector), json_out=False)
        self.assertEqual(code, 0)
        self.assertTrue(err.startswith("OK: export"), err)
        data = sign_bundle(LOG.export(AT["e3"], AT["e3"]), LOG.collector)[:-1]
        code, out, err = run_bundle(data, json_out=False)
        self.assertEqual(code, 1)
        self.assertTrue(err.startswith("BUNDLE DOES NOT VERIFY: line "), err)

    # -- step 1: form -------------------------------------------------------

    def test_cut_file_refused(self):
        data = sign_bundle(LOG.export(AT["e3"], AT["e3"]), LOG.collector)
        lines = data.count(b"\n")
        self.assertRefused(data[:-1], "cut", line=lines)
        self.assertRefused(data[:-10], "cut", line=lines)
        self.assertRefused(b"", "cut", line=1)
        cut_mid = data[:data.index(b"\n", 10) + 20]
        self.assertRefused(cut_mid, "cut", line=2)

    def test_unknown_keys_refused(self):
        objs = LOG.export(AT["e3"], AT["e3"])
        objs[0]["comment"] = "hello"
        self.assertRefused(objs, "unknown key 'comment'", line=1)
        for name in ("ledger", "record", "receipt"):
            objs = LOG.export(AT["e3"], AT["e3"])
            i = index_of(objs, name)
            objs[i][name]["extra"] = 1
            self.assertRefused(objs, "unknown key 'extra'", line=i + 1)
        objs = LOG.export(AT["s3"], AT["s4"], consistency_to=AT["last"])
        i = index_of(objs, "consistency")
        objs[i]["consistency"]["receipt"]["note"] = "x"
        self.assertRefused(objs, "unknown key 'note'", line=i + 1)
        objs = LOG.export(AT["e3"], AT["e3"])
        objs.insert(2, {"ledger": {"record": objs[1]["ledger"]["record"]},
                        "record": {"record": objs[1]["ledger"]["record"]}})
        self.assertRefused(objs, "exactly one", line=3)
        objs = LOG.export(AT["e3"], AT["e3"])
        objs.insert(2, {"note": {}})
        self.assertRefused(objs, "unknown line 'note'", line=3)
        # A signature line with an extra key.
        data = sign_bundle(LOG.export(AT["e3"], AT["e3"]), LOG.collector)
        last = data[:-1].rsplit(b"\n", 1)[1]
        obj = json.loads(last)
        obj["signature"]["x"] = 1
        data = data[:len(data) - len(last) - 1] + line_bytes(obj)
        self.assertRefused(data, "unknown key 'x'", line=data.count(b"\n"))

    def test_duplicate_keys_refused(self):
        """Section 12.3, 1: a JSON object with a key given twice is refused,
        even when both values are the same."""
        objs = LOG.export(AT["e3"], AT["e3"])
        i = index_of(objs, "record", 1)
        b64 = json.dumps(objs[i]["record"]["record"])
        objs[i] = f'{{"record":{{"record":{b64},"record":{b64}}}}}'.encode()
        self.assertRefused(objs, "duplicate key 'record'", line=i + 1)
        objs = LOG.export(AT["e3"], AT["e3"])
        head = line_bytes(objs[0])[:-2]  # without the closing brace and newline
        objs[0] = head + b',"kind":"export"}'
        self.assertRefused(objs, "duplicate key 'kind'", line=1)
        objs = LOG.export(AT["e3"], AT["e3"])
        j = index_of(objs, "receipt")
        text = line_bytes(objs[j])[:-1]
        objs[j] = text[:-2] + b',"collector_ts":' + str(T0).encode() + b"}}"
        self.assertRefused(objs, "duplicate key 'collector_ts'", line=j + 1)
        objs = LOG.export(AT["e3"], AT["e3"])
        objs[j] = text[:-1] + b',"receipt":' + json.dumps(objs[j]["receipt"]).encode() + b"}"
        self.assertRefused(objs, "duplicate key 'receipt'", line=j + 1)

    def test_record_longer_than_a_frame_allows(self):
        """Section 12.3, 1 and section 3.2: no record is longer than 64 MiB. A
        64 MiB record is too big for a quick test: the limit is lowered."""
        objs = LOG.export(AT["e3"], AT["e3"])
        sizes = {j: len(get_record(objs, j)) for j, o in enumerate(objs)
                 if "ledger" in o or "record" in o}
        size = max(sizes.values())
        i = min(j for j, n in sizes.items() if n == size)
        self.assertEqual(wv.MAX_RECORD_LEN, 67_108_864)
        with mock.patch.object(wv, "MAX_RECORD_LEN", size):
            self.assertVerifies(objs)
        with mock.patch.object(wv, "MAX_RECORD_LEN", size - 1):
            self.assertRefused(objs, "longer than any record", line=i + 1)

    def test_missing_keys_refused(self):
        objs = LOG.export(AT["e3"], AT["e3"])
        del objs[0]["created"]
        self.assertRefused(objs, "missing key 'created'", line=1)
        objs = LOG.disclosure(AT["e3"])
        del objs[index_of(objs, "entry")]["entry"]["entry_key"]
        self.assertRefused(objs, "missing key 'entry_key'")

    def test_header_refused(self):
        for key, value, fragment in (("wormlog_bundle", 2, "version"),
                                     ("wormlog_bundle", True, "version"),
                                     ("wormlog_bundle", "1", "version"),
                                     ("kind", "dump", "neither"),
                                     ("created", "now", "RFC 3339"),
                                     ("from_seq", -1, "out of range"),
                                     ("collector_pubkey", "ed25519:AAAA", "32"),
                                     ("agent", "", "1 to 255")):
            objs = LOG.export(AT["e3"], AT["e3"])
            objs[0][key] = value
            self.assertRefused(objs, fragment, line=1)
        objs = LOG.export(AT["e3"], AT["e3"])
        objs[0]["agent"] = "web-02"
        self.assertRefused(objs, "agent_id", line=2)

    def test_non_canonical_base64_refused(self):
        objs = LOG.export(AT["e3"], AT["e3"])
        i = index_of(objs, "record", 2)
        raw = get_record(objs, i)
        text = base64.b64encode(raw).decode()
        if text.endswith("="):
            # Set a padding bit: the same bytes, another (non-canonical) text.
            alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
            body = text.rstrip("=")
            last = alphabet.index(body[-1])
            mutated = body[:-1] + alphabet[last | 1] + text[len(body):]
            if mutated != text:
                self.assertEqual(base64.b64decode(mutated), raw)
                objs[i]["record"]["record"] = mutated
                self.assertRefused(objs, "not canonical base64", line=i + 1)
                objs = LOG.export(AT["e3"], AT["e3"])
            objs[i]["record"]["record"] = text.rstrip("=")
            self.assertRefused(objs, "base64", line=i + 1)
            objs = LOG.export(AT["e3"], AT["e3"])
        objs[i]["record"]["record"] = text.replace("+", "-").replace("/", "_") + " "
        self.assertRefused(objs, "base64", line=i + 1)
        # A key in base64 with non-zero padding bits.
        objs = LOG.export(AT["e3"], AT["e3"])
        j = index_of(objs, "receipt")
        key = objs[j]["receipt"]["collector_pubkey"]
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
        c = key[-2]
        objs[j]["receipt"]["collector_pubkey"] = key[:-2] + alphabet[alphabet.index(c) ^ 1] + "="
        self.assertEqual(base64.b64decode(objs[j]["receipt"]["collector_pubkey"][8:]),
                         base64.b64decode(key[8:]))
        self.assertRefused(objs, "not canonical base64", line=j + 1)

    def test_every_record_base64_variant_found(self):
        """Every record has a canonical text; non-canonical ones (possible when
        the length is not a multiple of 3) decode to the same bytes."""
        found = 0
        for seq in range(LOG.seq):
            text = LOG.b64(seq)
            if text.endswith("=="):
                alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
                mutated = text[:-3] + alphabet[alphabet.index(text[-3]) | 1] + "=="
                if mutated != text:
                    found += 1
                    with self.assertRaises(wb.Bad):
                        wb.canonical_b64(mutated, "r")
        self.assertGreater(found, 0)

    def test_uppercase_hex_refused(self):
        objs = LOG.export(AT["e3"], AT["e3"])
        j = index_of(objs, "receipt")
        objs[j]["receipt"]["root"] = objs[j]["receipt"]["root"].upper()
        self.assertRefused(objs, "lowercase hex", line=j + 1)
        objs = LOG.export(AT["s3"], AT["s4"], consistency_to=AT["last"])
        j = index_of(objs, "data_key")
        objs[j]["data_key"]["proof"][0] = objs[j]["data_key"]["proof"][0].upper()
        self.assertRefused(objs, "lowercase hex", line=j + 1)
        objs = LOG.export(AT["s3"], AT["s4"], consistency_to=AT["last"])
        j = index_of(objs, "consistency")
        objs[j]["consistency"]["receipt"]["signature"] = \
            objs[j]["consistency"]["receipt"]["signature"].upper()
        self.assertRefused(objs, "lowercase hex", line=j + 1)
        data = sign_bundle(LOG.export(AT["e3"], AT["e3"]), LOG.collector)
        head, last = data[:-1].rsplit(b"\n", 1)
        obj = json.loads(last)
        obj["signature"]["signature"] = obj["signature"]["signature"].upper()
        self.assertRefused(head + b"\n" + line_bytes(obj), "lowercase hex")

    def test_line_order_refused(self):
        objs = LOG.export(AT["e3"], AT["e3"])
        i = index_of(objs, "receipt")
        objs.insert(index_of(objs, "record"), objs.pop(i))
        self.assertRefused(objs, "where a record line must come first")
        objs = LOG.export(AT["s3"], AT["s4"])
        i = index_of(objs, "receipt")
        objs.insert(i, objs.pop(index_of(objs, "ledger", 1)))
        self.assertRefused(objs, "a ledger line out of place", line=i + 1)
        objs = LOG.export(AT["e3"], AT["e3"])
        objs.insert(3, {"entry": {"record": LOG.b64(AT["e3"]), "entry_key": None}})
        self.assertRefused(objs, "entry line in a export bundle", line=4)
        objs = LOG.export(AT["s3"], AT["s4"], consistency_to=AT["last"])
        objs.append(objs[index_of(objs, "receipt")])  # a receipt after consistency
        self.assertRefused(objs, "out of place")
        # Only a header and a signature.
        objs = LOG.export(AT["e3"], AT["e3"])[:1]
        self.assertRefused(objs, "must come first", line=2)
        # Nothing after the signature line.
        data = sign_bundle(LOG.export(AT["e3"], AT["e3"]), LOG.collector)
        self.assertRefused(data + line_bytes({"receipt": LOG.receipt_obj(AT["cp5"])}),
                           "after the signature line")
        # No signature line at all.
        body = b"".join(line_bytes(o) for o in LOG.export(AT["e3"], AT["e3"]))
        self.assertRefused(body, "not a signature line")

    # -- step 2: the signature ----------------------------------------------

    def test_signature_covers_every_byte(self):
        data = sign_bundle(LOG.export(AT["e3"], AT["e3"]), LOG.collector)
        # A space added inside the first line: still the same JSON, other bytes.
        tampered = data.replace(b'"kind":', b'"kind": ', 1)
        self.assertRefused(tampered, "signature does not hold")
        sig_line = tampered.count(b"\n")
        out = self.assertRefused(tampered, "signature", line=sig_line)
        self.assertFalse(out["collector_authenticated"])

    # -- step 3: the ledger -------------------------------------------------

    def test_ledger(self):
        other = Log(seed=b"\x06" * 32)
        other.genesis()
        self.assertRefused(LOG.export(AT["e3"], AT["e3"]), "first_pubkey",
                           pubkey=other.pub0, line=2)
        objs = LOG.export(AT["s3"], AT["s4"])
        del objs[index_of(objs, "ledger", 1)]  # the epoch_key it needs
        self.assertRefused(objs, "checkpoint epoch 1, current epoch 0")
        objs = LOG.export(AT["s3"], AT["s4"])
        objs[1], objs[2] = objs[2], objs[1]
        self.assertRefused(objs, "not the genesis record", line=2)
        objs = LOG.export(AT["s3"], AT["s4"])
        objs.insert(2, {"ledger": {"record": LOG.b64(AT["cp1"])}})
        self.assertRefused(objs, "a checkpoint record in the ledger", line=3)
        objs = LOG.export(AT["s3"], AT["s4"])
        objs.insert(2, objs[2])
        self.assertRefused(objs, "not after the one before it", line=4)
        objs = LOG.export(AT["s3"], AT["s4"])
        j = index_of(objs, "ledger", 1)
        raw = get_record(objs, j)
        set_record(objs, j, raw[:-1] + bytes([raw[-1] ^ 1]))
        self.assertRefused(objs, "ledger epoch_key signature invalid", line=j + 1)

    def test_ledger_records_at_or_after_the_first_proven_are_skipped(self):
        """Section 12.3, 3 and section 2.1: ledger records at or after the
        first proven seq are skipped (not refused); they must still be
        epoch_key records that decode, in seq order; nothing else is checked."""
        ek2 = LOG.records[AT["ek2"]]
        tampered = ek2[:-1] + bytes([ek2[-1] ^ 1])  # its signature
        wrong_epoch = ek2[:52] + struct.pack("<QQ", 7, 9) + ek2[68:]
        for raw in (ek2, tampered, wrong_epoch):
            objs = LOG.export(AT["s3"], AT["s4"])
            objs.insert(index_of(objs, "ledger", 1) + 1,
                        {"ledger": {"record": base64.b64encode(raw).decode()}})
            out = self.assertVerifies(objs)
            self.assertEqual(out["first_seq"], AT["cp_s1"])
        # A disclosure: skipped at or after its checkpoint.
        objs = LOG.disclosure(AT["e3"])
        j = index_of(objs, "ledger")
        objs.insert(j + 1, {"ledger": {"record": LOG.b64(AT["ek1"])}})
        objs.insert(j + 2, {"ledger": {"record": base64.b64encode(tampered).decode()}})
        self.assertVerifies(objs)
        # An export from genesis: every epoch_key record is skipped.
        objs = LOG.export(0, 2)
        j = index_of(objs, "ledger")
        objs.insert(j + 1, {"ledger": {"record": LOG.b64(AT["ek1"])}})
        self.assertVerifies(objs)
        # Skipped, yet out of seq order.
        objs = LOG.export(AT["s3"], AT["s4"])
        j = index_of(objs, "ledger", 1)
        objs.insert(j + 1, {"ledger": {"record": LOG.b64(AT["ek2"])}})
        objs.insert(j + 2, {"ledger": {"record": LOG.b64(AT["ek2"])}})
        self.assertRefused(objs, "not after the one before it", line=j + 3)
        # Skipped, yet not an epoch_key record.
        objs = LOG.export(AT["s3"], AT["s4"])
        j = index_of(objs, "ledger", 1)
        objs.insert(j + 1, {"ledger": {"record": LOG.b64(AT["last"])}})
        self.assertRefused(objs, "a checkpoint record in the ledger", line=j + 2)
        # Skipped, yet not a record that decodes.
        objs = LOG.export(AT["s3"], AT["s4"])
        j = index_of(objs, "ledger", 1)
        objs.insert(j + 1, {"ledger": {"record": base64.b64encode(ek2 + b"\x00").decode()}})
        self.assertRefused(objs, "epoch_key record", line=j + 2)

    def test_genesis_start_must_be_the_ledgers_genesis(self):
        objs = LOG.export(0, 2)
        genesis = LOG.records[0]
        other = genesis[:12] + struct.pack("<q", T0 - SECOND) + genesis[20:]
        self.assertEqual(wv.decode_record(other).p, wv.decode_record(genesis).p)
        objs[index_of(objs, "ledger")]["ledger"]["record"] = \
            base64.b64encode(other).decode()
        j = index_of(objs, "record")
        self.assertRefused(objs, "differs from the ledger's", line=j + 1)

    # -- step 4: the records ------------------------------------------------

    def test_record_tampering(self):
        objs = LOG.export(AT["e3"], AT["e3"])
        i = index_of(objs, "record", 2)  # entry e3
        raw = bytearray(get_record(objs, i))
        raw[-1] ^= 0x20
        set_record(objs, i, bytes(raw))
        self.assertRefused(objs, "prev", line=i + 2)
        objs = LOG.export(AT["e3"], AT["e3"])
        del objs[index_of(objs, "record", 2)]
        self.assertRefused(objs, "expected")
        objs = LOG.export(AT["e3"], AT["e3"])
        i = index_of(objs, "record", 1)
        objs[i], objs[i + 1] = objs[i + 1], objs[i]
        self.assertRefused(objs, "expected", line=i + 1)

    def test_first_and_last_record(self):
        objs = LOG.export(AT["e3"], AT["e3"])
        del objs[index_of(objs, "record")]  # starts at `start`, not a checkpoint
        objs[0]["from_seq"] = AT["cp1"] + 1
        self.assertRefused(objs, "neither genesis nor a checkpoint")
        objs = LOG.export(AT["e3"], AT["e3"])
        i = index_of(objs, "record")
        last = max(j for j, o in enumerate(objs) if "record" in o)
        del objs[last]  # the last checkpoint
        objs = [o for o in objs if not ("receipt" in o and o["receipt"]["tree_size"] == AT["cp5"])]
        self.assertRefused(objs, "not a checkpoint", line=last)
        self.assertTrue(i > 0)

    def test_coverage(self):
        objs = LOG.export(AT["e3"], AT["e3"])
        objs[0]["from_seq"] = 0
        self.assertRefused(objs, "after from_seq")
        objs = LOG.export(AT["e3"], AT["e3"])
        objs[0]["to_seq"] = AT["cp5"] + 1
        self.assertRefused(objs, "before to_seq")
        objs = LOG.export(AT["e3"], AT["e3"])
        objs[0]["from_seq"], objs[0]["to_seq"] = AT["e3"] + 1, AT["e3"]
        self.assertRefused(objs, "after to_seq", line=1)
        # Even when the records cover both.
        objs = LOG.export(AT["e3"], AT["e3"] + 1)
        objs[0]["from_seq"], objs[0]["to_seq"] = AT["e3"] + 1, AT["e3"]
        self.assertRefused(objs, "after to_seq", line=1)

    def test_first_checkpoint_state(self):
        objs = LOG.export(AT["e3"], AT["e3"])
        i = index_of(objs, "record")
        raw = bytearray(get_record(objs, i))
        raw[52 + 16] ^= 1  # its root: no longer that of its frontier
        set_record(objs, i, bytes(raw))
        self.assertRefused(objs, "root", line=i + 1)

    def test_receipt_record_before_the_first(self):
        # The receipt record for cp1 is checked by its signature only when the
        # export starts after cp1.
        objs = LOG.export(AT["rc_old"], AT["rc_old"])
        self.assertVerifies(objs)
        i = [j for j, o in enumerate(objs) if "record" in o
             and get_record(objs, j) == LOG.records[AT["rc_old"]]][0]
        raw = bytearray(get_record(objs, i))
        raw[-1] ^= 1  # its collector signature
        set_record(objs, i, bytes(raw))
        self.assertRefused(objs, "receipt signature invalid", line=i + 1)

    def test_data_key_line(self):
        objs = LOG.export(AT["s3"], AT["s4"])
        i = index_of(objs, "data_key")
        objs[i]["data_key"]["proof"][0] = "00" * 32
        self.assertRefused(objs, "inclusion proof", line=i + 1)
        objs = LOG.export(AT["s3"], AT["s4"])
        objs[i]["data_key"]["tree_size"] += 1
        self.assertRefused(objs, "tree_size", line=i + 1)
        objs = LOG.export(AT["s3"], AT["s4"])
        objs[i]["data_key"]["record"] = LOG.b64(AT["s1"])
        self.assertRefused(objs, "holds a entry record", line=i + 1)
        # A data_key line for an export that starts at genesis.
        objs = LOG.export(0, 2)
        dk = LOG.export(AT["s3"], AT["s4"])[i]
        j = index_of(objs, "record")
        objs.insert(j, dk)
        self.assertRefused(objs, "starts at the genesis record", line=j + 1)
        # A data_key line where the export's segment has its own data_key record.
        objs = LOG.export(AT["anchor1"], AT["s1"])
        dk = LOG.export(AT["s3"], AT["s4"])[i]
        dk["data_key"]["tree_size"] = AT["anchor1"]
        dk["data_key"]["proof"] = [p.hex() for p in rfc_path(AT["dk1"],
                                                             LOG.leaves[:AT["anchor1"]])]
        objs.insert(index_of(objs, "record"), dk)
        self.assertRefused(objs, "not below the first record")

    def test_data_key_line_is_optional(self):
        """Section 12.3, 4: without the data_key line the first segment's
        sealed entries are shown encrypted, which is not a failure."""
        objs = LOG.export(AT["s3"], AT["c1"])
        del objs[index_of(objs, "data_key")]
        out = self.assertVerifies(objs)
        self.assertNotIn("decryption", out)
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "key.txt")
            with open(path, "w") as f:
                f.write(IDENTITY + "\n")
            out = self.assertVerifies(objs, extra=("--identity", path))
        d = out["decryption"]
        self.assertEqual((d["data_keys"], d["data_keys_opened"], d["sealed_entries"],
                          d["entries_opened"]), (0, 0, 3, 0), d)
        self.assertEqual([p["seq"] for p in d["problems"]],
                         [AT["s3"], AT["s4"], AT["s5"]])
        self.assertTrue(all("shown encrypted" in p["reason"] for p in d["problems"]))

    def test_data_key_record_among_the_records_opens(self):
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "key.txt")
            with open(path, "w") as f:
                f.write(IDENTITY + "\n")
            objs = LOG.export(AT["anchor1"], AT["s1"])
            self.assertFalse(any("data_key" in o for o in objs))
            out = self.assertVerifies(objs, extra=("--identity", path))
        d = out["decryption"]
        self.assertEqual((d["data_keys"], d["data_keys_opened"], d["sealed_entries"],
                          d["entries_opened"]), (1, 1, 2, 2), d)
        self.assertEqual(d["problems"], [])

    def test_sealed_rule_across_a_seal(self):
        # Clear entries after the seal, sealed ones before it.
        self.assertVerifies(LOG.export(AT["s5"], AT["c1"]))

    def test_segment_rules_not_applied(self):
        """Section 12.3, 4: the rules of section 7 step 4 about segments are
        not applied to a bundle (it has no segments): logs that break them
        (which the agent never writes), signed with the agent's key all the
        same, make bundles that verify. A data_key record's own values need
        no segment, and are still checked."""

        def export_of(steps):
            log = Log()
            log.genesis()
            log.checkpoint(anchor=True)
            log.entry(b"x")
            log.checkpoint()
            log.seal()
            marks = steps(log)
            log.checkpoint()
            objs = log.export(log.checkpoints[1], log.seq - 1)
            return log, objs, marks

        def holds(steps):
            log, objs, _ = export_of(steps)
            code, out, err = run_bundle(sign_bundle(objs, log.collector),
                                        pubkey=log.pub0)
            self.assertEqual(code, 0, (steps.__name__, out))
            self.assertEqual(out["last_seq"], log.seq - 1)
            self.assertEqual(out["first_seq"], log.checkpoints[1])

        def refused(steps, fragment):
            log, objs, mark = export_of(steps)
            code, out, err = run_bundle(sign_bundle(objs, log.collector),
                                        pubkey=log.pub0)
            self.assertEqual(code, 1, (fragment, out))
            self.assertIn(fragment, out["failure"])
            target = [i + 1 for i, o in enumerate(objs) if "record" in o
                      and base64.b64decode(o["record"]["record"]) == log.records[mark]]
            self.assertTrue(out["failure"].startswith(f"line {target[0]}: "),
                            (out["failure"], target))

        age_pub = b"\x22" * 32

        # Whether an entry must be sealed.
        def clear_in_sealed(log):
            log.checkpoint(anchor=True)
            log.data_key("age1test", age_pub)
            log.sealed_entry(b"a")
            return log.entry(b"b")
        holds(clear_in_sealed)

        def sealed_without_key(log):
            log.checkpoint(anchor=True)
            return log.sealed_entry(b"a", data_key=b"\x01" * 32)
        holds(sealed_without_key)

        def sealed_after_recovery(log):
            log.checkpoint(anchor=True)
            dk = log.data_key("age1test", age_pub)
            log.sealed_entry(b"a")
            log.recovery(wv.CAUSE_FSYNC_FAILED)
            log.checkpoint(anchor=True)
            return log.sealed_entry(b"b", data_key=log.data_keys[log.segment_of(dk)][1])
        holds(sealed_after_recovery)

        # Where a data_key record stands, and how many a segment has.
        def late_data_key(log):
            log.checkpoint(anchor=True)
            log.entry(b"a")
            return log.data_key("age1test", age_pub)
        holds(late_data_key)

        def after_second_checkpoint(log):
            log.checkpoint(anchor=True)
            log.entry(b"a")
            log.checkpoint()
            return log.data_key("age1test", age_pub)
        holds(after_second_checkpoint)

        def two_data_keys(log):
            log.checkpoint(anchor=True)
            log.data_key("age1test", age_pub)
            log.checkpoint()
            return log.data_key("age1test", age_pub)
        holds(two_data_keys)

        # The anchor's place, and where a seal or a recovery stands.
        def no_anchor(log):
            return log.entry(b"first record of the segment, not a checkpoint")
        holds(no_anchor)

        def seal_in_the_middle(log):
            log.checkpoint(anchor=True)
            seq = log.append(wv.SEAL, struct.pack("<Q", 99))  # not the segment's end
            log.entry(b"after the seal, same segment")
            return seq
        holds(seal_in_the_middle)

        def recovery_not_first(log):
            log.checkpoint(anchor=True)
            log.entry(b"a")
            return log.append(wv.RECOVERY, bytes([wv.CAUSE_TORN_TAIL])
                              + struct.pack("<QQQQ", 7, 1, 1000, 10) + b"\x07" * 32
                              + b16(b"misplaced"))
        holds(recovery_not_first)

        # A recovery record's region and segment rules (it is only decoded).
        def corruption(log):
            log.entry(b"a")
            return log.recovery(wv.CAUSE_CORRUPTION)
        holds(corruption)

        def fsync_digest(log):
            log.entry(b"a")
            return log.recovery(wv.CAUSE_FSYNC_FAILED, digest=b"\x01" * 32)
        holds(fsync_digest)

        def last_good(log):
            log.entry(b"a")
            return log.recovery(wv.CAUSE_TORN_TAIL, last_good_seq=log.seq - 2)
        holds(last_good)

        # A data_key record's own values.
        def bad_recipient(log):
            log.checkpoint(anchor=True)
            return log.data_key("AGE1TEST", age_pub)
        refused(bad_recipient, "does not start with age1")

        def no_recipient(log):
            log.checkpoint(anchor=True)
            return log.append(wv.DATA_KEY, struct.pack("<H", 0)
                              + b32(age_encrypt(b"\x00" * 32, age_pub)))
        refused(no_recipient, "without a recipient")

        def not_age(log):
            log.checkpoint(anchor=True)
            return log.append(wv.DATA_KEY, struct.pack("<H", 1) + b8(b"age1test")
                              + b32(b"age-encryption.org/v2\n..."))
        refused(not_age, "age-encryption.org/v1")

        # What step 4 still checks: a gap reason outside 1...11 does not
        # decode (the line is refused at step 1).
        def bad_gap(log):
            log.checkpoint(anchor=True)
            return log.append(wv.GAP, b8(b"syslog") + POS_NONE
                              + struct.pack("<HQQ", 12, 0, 0) + b16(b""))
        refused(bad_gap, "reason")

    def test_recoveries_that_hold(self):
        log = Log()
        log.genesis()
        log.checkpoint(anchor=True)
        log.entry(b"x")
        log.recovery(wv.CAUSE_TORN_TAIL)
        log.checkpoint(anchor=True)
        log.entry(b"y")
        log.recovery(wv.CAUSE_FSYNC_FAILED)
        log.checkpoint(anchor=True)
        data = sign_bundle(log.export(0, log.seq - 1), log.collector)
        code, out, err = run_bundle(data, pubkey=log.pub0)
        self.assertEqual(code, 0, out)
        self.assertEqual(out["records"], log.seq)

    def test_receipts(self):
        objs = LOG.export(AT["e3"], AT["e3"])
        objs = [o for o in objs if not ("receipt" in o and o["receipt"]["tree_size"] == AT["cp5"])]
        self.assertRefused(objs, "no receipt for this checkpoint")
        objs = LOG.export(AT["e3"], AT["e3"])
        j = index_of(objs, "receipt")
        objs[j]["receipt"]["collector_ts"] += 1
        self.assertRefused(objs, "signature invalid", line=j + 1)
        objs = LOG.export(AT["e3"], AT["e3"])
        objs.insert(j, {"receipt": LOG.receipt_obj(AT["e3"])})
        self.assertRefused(objs, "not those of a checkpoint the bundle proves", line=j + 1)
        objs = LOG.export(AT["e3"], AT["e3"])
        other = Ed25519PrivateKey.from_private_bytes(b"\x43" * 32)
        objs[j] = {"receipt": LOG.receipt_obj(AT["cp5"], signer=other)}
        self.assertRefused(objs, "not by the collector key given", line=j + 1)
        self.assertVerifies(objs, collector=None)

    def test_consistency(self):
        objs = LOG.export(AT["s3"], AT["s4"], consistency_to=AT["last"])
        j = index_of(objs, "consistency")
        objs[j]["consistency"]["from_size"] -= 1
        self.assertRefused(objs, "from_size", line=j + 1)
        objs = LOG.export(AT["s3"], AT["s4"], consistency_to=AT["last"])
        objs[j]["consistency"]["proof"].pop()
        self.assertRefused(objs, "consistency proof", line=j + 1)
        objs = LOG.export(AT["s3"], AT["s4"], consistency_to=AT["last"])
        objs[j]["consistency"]["receipt"] = LOG.receipt_obj(AT["last"], root=b"\x01" * 32)
        self.assertRefused(objs, "consistency proof", line=j + 1)
        objs = LOG.export(AT["s3"], AT["s4"], consistency_to=AT["last"])
        objs[j]["consistency"]["receipt"]["tree_size"] = AT["cp_s2"]
        self.assertRefused(objs, "signature invalid", line=j + 1)
        # Section 12.3, 7: a receipt for a larger tree (not the same, not smaller).
        end = objs[j]["consistency"]["from_size"]
        for size in (end, end - 1, AT["cp_s1"]):
            objs = LOG.export(AT["s3"], AT["s4"], consistency_to=AT["last"])
            objs[j]["consistency"]["receipt"] = LOG.receipt_obj(size)
            objs[j]["consistency"]["proof"] = []
            self.assertRefused(objs, "is not a later tree", line=j + 1)
        # At most one consistency line, after the receipts.
        objs = LOG.export(AT["s3"], AT["s4"], consistency_to=AT["last"])
        objs.insert(j, objs[j])
        self.assertRefused(objs, "a consistency line out of place", line=j + 2)
        objs = LOG.export(AT["s3"], AT["s4"], consistency_to=AT["last"])
        objs.insert(index_of(objs, "receipt"), objs.pop(j))
        self.assertRefused(objs, "out of place")


class DisclosureTest(BundleCase):
    def test_clear_entry(self):
        out = self.assertVerifies(LOG.disclosure(AT["e3"]))
        self.assertEqual(out["kind"], "disclosure")
        self.assertEqual((out["records"], out["entries"], out["checkpoints"]), (1, 1, 1))
        self.assertEqual((out["first_seq"], out["last_seq"]), (AT["e3"], AT["e3"]))
        self.assertEqual(out["tree_size"], AT["cp5"])
        self.assertEqual(out["receipts"], 1)
        e = out["entry"]
        self.assertEqual((e["seq"], e["source"], e["sealed"], e["opened"]),
                         (AT["e3"], "syslog", False, False))
        self.assertEqual(e["body"], {"text": "first line",
                                     "b64": base64.b64encode(b"first line").decode()})
        self.assertEqual(e["fields"], [{"key": "PRIORITY",
                                        "value": {"text": "6", "b64": "Ng=="}}])

    def test_non_utf8_body(self):
        out = self.assertVerifies(LOG.disclosure(AT["e8"]))
        self.assertIsNone(out["entry"]["body"]["text"])
        self.assertEqual(base64.b64decode(out["entry"]["body"]["b64"]), b"\xff\xfe not utf-8")

    def test_sealed_entry_opened(self):
        out = self.assertVerifies(LOG.disclosure(AT["s3"]))
        e = out["entry"]
        self.assertTrue(e["sealed"] and e["opened"])
        self.assertEqual(e["body"]["text"], "secret three")
        self.assertEqual(out["tree_size"], AT["cp_s2"])
        code, text, err = run_bundle(sign_bundle(LOG.disclosure(AT["s3"]), LOG.collector),
                                     json_out=False)
        self.assertEqual(code, 0, err)
        self.assertEqual(text, "secret three\n")
        self.assertTrue(err.startswith("OK: disclosure"), err)

    def test_sealed_entry_without_key(self):
        out = self.assertVerifies(LOG.disclosure(AT["s3"], with_key=False))
        e = out["entry"]
        self.assertTrue(e["sealed"])
        self.assertFalse(e["opened"])
        self.assertIsNone(e["body"])
        self.assertEqual(e["fields"], [])

    def test_after_epoch_transitions(self):
        out = self.assertVerifies(LOG.disclosure(AT["c2"]))
        self.assertEqual(out["tree_size"], AT["cp_c2"])

    def test_wrong_key(self):
        objs = LOG.disclosure(AT["s3"])
        i = index_of(objs, "entry")
        objs[i]["entry"]["entry_key"] = LOG.disclosure(AT["s4"])[i]["entry"]["entry_key"]
        self.assertRefused(objs, "does not open", line=i + 1)
        objs = LOG.disclosure(AT["e3"])
        i = index_of(objs, "entry")
        objs[i]["entry"]["entry_key"] = "00" * 32
        self.assertRefused(objs, "not sealed", line=i + 1)
        objs[i]["entry"]["entry_key"] = "AB" * 32
        self.assertRefused(objs, "lowercase hex", line=i + 1)

    def test_proof_and_checkpoint(self):
        objs = LOG.disclosure(AT["s3"])
        c = index_of(objs, "checkpoint")
        objs[c]["checkpoint"]["proof"][0] = "11" * 32
        self.assertRefused(objs, "inclusion proof", line=c + 1)
        # Another entry, with this entry's proof.
        objs = LOG.disclosure(AT["s3"])
        i = index_of(objs, "entry")
        objs[i]["entry"] = {"record": LOG.b64(AT["s4"]), "entry_key": None}
        objs[0]["from_seq"] = objs[0]["to_seq"] = AT["s4"]
        self.assertRefused(objs, "inclusion proof", line=c + 1)
        objs = LOG.disclosure(AT["s3"])
        objs[0]["from_seq"] = objs[0]["to_seq"] = AT["s4"]
        self.assertRefused(objs, "from_seq", line=i + 1)
        objs = LOG.disclosure(AT["s3"])
        objs[0]["from_seq"] = AT["s3"] + 1
        self.assertRefused(objs, "from_seq", line=i + 1)
        objs = LOG.disclosure(AT["s3"])
        objs[c]["checkpoint"]["record"] = LOG.b64(AT["s4"])
        self.assertRefused(objs, "holds a entry record", line=c + 1)
        objs = LOG.disclosure(AT["s3"])
        objs[i]["entry"]["record"] = LOG.b64(AT["dk1"])
        objs[0]["from_seq"] = objs[0]["to_seq"] = AT["dk1"]
        self.assertRefused(objs, "holds a data_key record", line=i + 1)
        # A checkpoint before the entry.
        objs = LOG.disclosure(AT["s3"])
        objs[c]["checkpoint"]["record"] = LOG.b64(AT["cp_s1"])
        self.assertRefused(objs, "not below the checkpoint's tree_size", line=i + 1)
        # The ledger lacks the epoch key.
        objs = LOG.disclosure(AT["s3"])
        del objs[index_of(objs, "ledger", 1)]
        self.assertRefused(objs, "checkpoint epoch")
        objs = LOG.disclosure(AT["s3"])
        objs = [o for o in objs if "receipt" not in o]
        self.assertRefused(objs, "no receipt")

    def test_export_lines_refused(self):
        objs = LOG.disclosure(AT["e3"])
        objs.insert(index_of(objs, "checkpoint") + 1, {"record": {"record": LOG.b64(AT["e3"])}})
        self.assertRefused(objs, "a record line in a disclosure bundle")
        objs = LOG.disclosure(AT["e3"])
        objs.insert(index_of(objs, "entry"), objs[index_of(objs, "checkpoint")])
        self.assertRefused(objs, "must come first")


class UsageTest(unittest.TestCase):
    def test_usage_errors(self):
        data = sign_bundle(LOG.export(AT["e3"], AT["e3"]), LOG.collector)
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "b")
            with open(path, "wb") as f:
                f.write(data)
            for argv in (["--bundle", os.path.join(tmp, "none"), "--pubkey", pubkey_text(K)],
                         ["--bundle", path, "--pubkey", "ed25519:AAAA"],
                         ["--bundle", path, "--pubkey", "rsa:AAAA"],
                         ["--bundle", path, "--pubkey", pubkey_text(K),
                          "--collector-pubkey", "nope"],
                         ["--bundle", tmp, "--pubkey", pubkey_text(K)],
                         ["--bundle", path]):
                err = io.StringIO()
                with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
                    try:
                        code = wb.main(argv + ["--json"])
                    except SystemExit as exc:  # argparse
                        code = exc.code
                self.assertEqual(code, 2, argv)


if __name__ == "__main__":
    unittest.main()
