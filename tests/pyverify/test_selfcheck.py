"""Self-checks for wormlog_verify.py (run: python3 -m unittest in this folder).

Pure-Python checks of the primitives (CRC32C, RFC 9162 Merkle tree) and
end-to-end checks against small spools written by `SpoolWriter` below, which,
like the verifier, follows docs/FORMAT.md only.

The encryption self-checks (AgeTest, EncryptedSpoolTest) wrap data keys with
the real `age` tool (Debian package `age`) and are skipped, saying so, when
it is not installed; CI installs it (.ci/run).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import json
import os
import random
import shutil
import struct
import subprocess
import tempfile
import unittest

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import (Ed25519PrivateKey,
                                                                  Ed25519PublicKey)
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

import wormlog_verify as wv

SECOND = 1_000_000_000
T0 = 1_700_000_000 * SECOND


# ---------------------------------------------------------------------------
# Primitives
# ---------------------------------------------------------------------------

class Crc32cTest(unittest.TestCase):
    def test_check_value(self):
        self.assertEqual(wv.crc32c(b"123456789"), 0xE3069283)
        self.assertEqual(wv.crc32c_bytewise(b"123456789"), 0xE3069283)

    def test_empty(self):
        self.assertEqual(wv.crc32c(b""), 0)

    def test_sliced_matches_bytewise_and_continues(self):
        rng = random.Random(7)
        for n in list(range(0, 40)) + [1000, 4097]:
            data = bytes(rng.randrange(256) for _ in range(n))
            self.assertEqual(wv.crc32c(data), wv.crc32c_bytewise(data), n)
            cut = n // 3
            self.assertEqual(wv.crc32c(data[cut:], wv.crc32c(data[:cut])), wv.crc32c(data))


CT_LEAVES = ["", "00", "10", "2021", "3031", "40414243", "5051525354555657",
             "606162636465666768696a6b6c6d6e6f"]


class MerkleTest(unittest.TestCase):
    def leaves(self):
        return [wv.leaf_hash(bytes.fromhex(x)) for x in CT_LEAVES]

    def test_rfc9162_vectors(self):
        leaves = self.leaves()
        self.assertEqual(wv.mth(leaves).hex(),
                         "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328")
        self.assertEqual(wv.mth(leaves[:1]).hex(),
                         "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d")
        self.assertEqual(wv.mth([]), hashlib.sha256(b"").digest())

    def test_frontier_vectors(self):
        frontier = wv.Frontier()
        for leaf in self.leaves():
            frontier.append(leaf)
        self.assertEqual(frontier.root().hex(),
                         "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328")

    def test_frontier_matches_mth(self):
        rng = random.Random(42)
        leaves = [wv.leaf_hash(rng.randbytes(rng.randrange(0, 50))) for _ in range(40)]
        frontier = wv.Frontier()
        for n in range(0, 41):
            self.assertEqual(frontier.root(), wv.mth(leaves[:n]), n)
            self.assertEqual(len(frontier.nodes), n.bit_count(), n)
            if n < 40:
                frontier.append(leaves[n])

    def test_frontier_is_perfect_subtree_roots(self):
        leaves = [wv.leaf_hash(bytes([i])) for i in range(6)]
        frontier = wv.Frontier()
        for leaf in leaves:
            frontier.append(leaf)
        self.assertEqual(frontier.nodes, [wv.mth(leaves[0:4]), wv.mth(leaves[4:6])])


# ---------------------------------------------------------------------------
# A minimal spool writer, from docs/FORMAT.md
# ---------------------------------------------------------------------------

def h(*parts: bytes) -> bytes:
    return hashlib.sha256(b"".join(parts)).digest()


def b8(x: bytes) -> bytes:
    return bytes([len(x)]) + x


def b16(x: bytes) -> bytes:
    return struct.pack("<H", len(x)) + x


def position_none() -> bytes:
    return b"\x00" + struct.pack("<H", 0)


def frame(record: bytes) -> bytes:
    """Section 3.2: crc (offset 0) = CRC32C of frame bytes [4, 8 + len), i.e.
    of the length field and the record; len (offset 4); the record (offset 8)."""
    len_field = struct.pack("<I", len(record))
    return struct.pack("<I", wv.crc32c(len_field + record)) + len_field + record


def frame_start(length: int, crc: int = 0) -> bytes:
    """The 8-byte frame header alone (for torn or hand-made frames)."""
    return struct.pack("<II", crc, length)


FRAME_LEN_AT = 4  # offset of `len` within a frame; `crc` is at 0


def public_key(secret: bytes) -> bytes:
    return Ed25519PrivateKey.from_private_bytes(secret).public_key().public_bytes(
        Encoding.Raw, PublicFormat.Raw)


BOOT = b"0123456789abcdef"

# Ed25519 points (section 5.3): the identity (small order) and the base point B.
IDENTITY = (1).to_bytes(32, "little")
BASE_POINT = bytes([0x58]) + bytes([0x66]) * 31


def small_order_r_signature(secret: bytes, message: bytes) -> bytes:
    """An RFC 8032 signature by `secret` whose R is the identity, a point of
    small order: S = k * a, so that [S]B - [k]A = O = R. Only the key's
    owner can make one; a permissive verifier accepts it."""
    h = hashlib.sha512(secret).digest()
    a = int.from_bytes(h[:32], "little") & ((1 << 254) - 8) | (1 << 254)
    k = int.from_bytes(hashlib.sha512(IDENTITY + public_key(secret) + message).digest(),
                       "little") % wv.ED25519_L
    return IDENTITY + (k * a % wv.ED25519_L).to_bytes(32, "little")


def permissive_ed25519_valid(key: bytes, signature: bytes, message: bytes) -> bool:
    """OpenSSL's verification alone, without the checks of section 5.3."""
    try:
        Ed25519PublicKey.from_public_bytes(key).verify(signature, message)
    except Exception:  # noqa: BLE001 - any refusal
        return False
    return True


class SpoolWriter:
    def __init__(self, directory: str, agent_id: bytes = b"host-1",
                 seed: bytes = b"\x05" * 32) -> None:
        self.dir = directory
        self.agent_id = agent_id
        self.seed = seed
        self.epoch = 0
        self.pub0 = public_key(self._secret())
        self.seq = 0
        self.ts = T0
        self.head = wv.ZERO32
        self.frontier = wv.Frontier()
        self.segment = -1
        self.offsets: dict[int, tuple[int, int]] = {}  # seq -> (segment, offset)
        self.headers: dict[int, tuple[int, bytes]] = {}  # segment -> (first_seq, prev_head)
        self.key_records: list[tuple[int, bytes]] = []  # (seq, raw) of genesis, epoch_keys
        self.collector = Ed25519PrivateKey.from_private_bytes(b"\x09" * 32)
        self.open_segment()

    # keys (section 5.1)
    def _secret(self) -> bytes:
        return h(b"wormlog key v1\x00", self.seed)

    def _sign(self, context: bytes, message: bytes) -> bytes:
        key = Ed25519PrivateKey.from_private_bytes(self._secret())
        return key.sign(context + b"\x00" + message)

    # files
    def path(self, number: int | None = None) -> str:
        number = self.segment if number is None else number
        return os.path.join(self.dir, f"{number:016x}.wlseg")

    def open_segment(self) -> None:
        self.segment += 1
        self.headers[self.segment] = (self.seq, self.head)
        body = (b"WORMLOG\x00" + struct.pack("<HHI", 1, 0, 69 + len(self.agent_id))
                + struct.pack("<QQ", self.segment, self.seq) + self.head
                + b8(self.agent_id))
        with open(self.path(), "wb") as f:
            f.write(body + struct.pack("<I", wv.crc32c(body)))

    def raw_append(self, data: bytes) -> None:
        with open(self.path(), "ab") as f:
            f.write(data)

    def append(self, kind: int, payload: bytes, signer: bytes | None = None,
               ts_step: int = SECOND, flags: int = 0, prev: bytes | None = None,
               seal: tuple[bytes, bytes] | None = None) -> int:
        """Frame and write one record; `prev` overrides the chain head it
        carries (section 3.3). The writer's own chain continues from the
        record as written. `seal` = (D, plaintext): `payload` is the clear
        part, and `sealed` follows it (section 6.2.1)."""
        self.ts += ts_step
        prev = self.head if prev is None else prev
        record = struct.pack("<BBHQq", 1, kind, flags, self.seq, self.ts) + prev + payload
        if seal is not None:
            data_key, plaintext = seal
            # The associated data: the clear part without `prev` (6.2.1).
            record += ChaCha20Poly1305(entry_key_of(data_key, self.seq)).encrypt(
                bytes(12), plaintext, record[:20] + record[52:])
        if signer is not None:
            record += self._sign(signer, record)
        offset = os.path.getsize(self.path())
        self.raw_append(frame(record))
        self.offsets[self.seq] = (self.segment, offset)
        if kind in (wv.GENESIS, wv.EPOCH_KEY):
            self.key_records.append((self.seq, record))
        leaf = wv.leaf_hash(record)
        self.head = leaf  # section 4: head_i = leaf_i
        self.frontier.append(leaf)
        self.seq += 1
        return offset

    # records (section 6)
    def genesis(self):
        return self.append(wv.GENESIS, b8(self.agent_id) + self.pub0)

    def entry(self, line: bytes, source: bytes = b"syslog", entry_flags: int = 0, **kw):
        payload = b8(source) + position_none() + bytes([entry_flags]) + struct.pack("<H", 1)
        payload += b8(b"PRIORITY") + struct.pack("<I", 1) + b"6" + line
        return self.append(wv.ENTRY, payload, **kw)

    def sealed_entry(self, data_key: bytes, line: bytes, source: bytes = b"syslog",
                     fields: list[tuple[bytes, bytes]] | None = None, **kw):
        """Section 6.2.1: source, position, entry_flags in clear; field_count,
        fields and body sealed under K_seq, the clear part as AAD."""
        fields = [(b"PRIORITY", b"6")] if fields is None else fields
        clear = b8(source) + position_none() + b"\x00"
        plaintext = struct.pack("<H", len(fields)) + b"".join(
            b8(k) + struct.pack("<I", len(v)) + v for k, v in fields) + line
        kw.setdefault("flags", wv.RECORD_FLAG_SEALED)
        return self.append(wv.ENTRY, clear, seal=(data_key, plaintext), **kw)

    def data_key(self, recipients: list[bytes], wrapped: bytes, **kw):
        """Section 6.16: u16 count, bytes8 recipients, bytes32 wrapped."""
        payload = struct.pack("<H", len(recipients)) + b"".join(b8(r) for r in recipients)
        payload += struct.pack("<I", len(wrapped)) + wrapped
        return self.append(wv.DATA_KEY, payload, **kw)

    def checkpoint(self, anchor: bool = False, frontier: list[bytes] | None = None,
                   sources: list[tuple[bytes, bytes]] | None = None,
                   head: bytes | None = None, tree_size: int | None = None):
        """Every checkpoint carries the frontier; the anchor also the sources."""
        frontier = self.frontier.nodes if frontier is None else frontier
        head = self.head if head is None else head
        tree_size = self.seq if tree_size is None else tree_size
        if sources is None:
            sources = [(b"syslog", position_none())] if anchor else []
        payload = (struct.pack("<QQ", self.epoch, tree_size) + self.frontier.root()
                   + head + BOOT + struct.pack("<Q", 123)
                   + bytes([len(frontier)]) + b"".join(frontier))
        payload += struct.pack("<I", len(sources))
        payload += b"".join(b8(name) + pos for name, pos in sources)
        return self.append(wv.CHECKPOINT, payload, signer=b"wormlog checkpoint v1")

    def epoch_key(self):
        next_seed = h(b"wormlog seed v1\x00", self.seed)
        new_pub = public_key(h(b"wormlog key v1\x00", next_seed))
        payload = struct.pack("<QQ", self.epoch, self.epoch + 1) + new_pub
        payload += struct.pack("<Q", self.seq) + self.head
        offset = self.append(wv.EPOCH_KEY, payload, signer=b"wormlog epoch-key v1")
        self.seed, self.epoch = next_seed, self.epoch + 1
        return offset

    def start(self, heartbeat_ns: int = 60 * SECOND, append_only: int = 1,
              append_only_active: int = 0, **kw):
        payload = (BOOT + struct.pack("<QI", 1, 4242) + bytes(32)
                   + struct.pack("<QBB", heartbeat_ns, append_only, append_only_active)
                   + b8(b"wormlog 0.1.0 run"))
        return self.append(wv.START, payload, **kw)

    def stop(self, **kw):
        return self.append(wv.STOP, BOOT + struct.pack("<Q", 5) + b16(b"signal"), **kw)

    def heartbeat(self, **kw):
        return self.append(wv.HEARTBEAT, BOOT + struct.pack("<Q", 9), **kw)

    def alert(self, code: int = 1):
        return self.append(wv.ALERT, struct.pack("<H", code) + b16(b"no chattr"))

    def gap(self, reason: int = 1, source: bytes = b"syslog"):
        payload = (b8(source) + position_none() + struct.pack("<HQQ", reason, 10, 1)
                   + b16(b"truncated"))
        return self.append(wv.GAP, payload)

    def receipt_message(self, tree_size: int, root: bytes) -> bytes:
        """Section 6.12: what the collector signs (not the record's bytes)."""
        return (b"wormlog receipt v1\x00" + b8(self.agent_id) + struct.pack("<Q", tree_size)
                + root + struct.pack("<q", T0))

    def receipt(self, tree_size: int, root: bytes, collector_pub: bytes | None = None,
                signature: bytes | None = None):
        """A receipt by self.collector, or with the key and signature given."""
        if collector_pub is None:
            collector_pub = self.collector.public_key().public_bytes(Encoding.Raw,
                                                                     PublicFormat.Raw)
        if signature is None:
            signature = self.collector.sign(self.receipt_message(tree_size, root))
        body = struct.pack("<Q", tree_size) + root + struct.pack("<q", T0)
        return self.append(wv.RECEIPT, b8(b"collector-1") + body + collector_pub + signature)

    def prune(self, first_kept: int, first_kept_seq: int | None = None,
              anchor_head: bytes | None = None):
        """Section 6.13; the fields default to segment first_kept's header."""
        seq, head = self.headers.get(first_kept, (0, bytes(32)))
        seq = seq if first_kept_seq is None else first_kept_seq
        head = head if anchor_head is None else anchor_head
        payload = (struct.pack("<QQ", first_kept, seq) + head
                   + b16(b"segments 0-%d: acknowledged" % (first_kept - 1)))
        return self.append(wv.PRUNE, payload)

    def ledger_path(self) -> str:
        return os.path.join(self.dir, wv.LEDGER_FILE)

    def write_ledger(self, records: list[bytes] | None = None,
                     head: bytes = b"WLLEDGR\x00" + struct.pack("<HH", 1, 0),
                     below_seq: int | None = None) -> None:
        """Section 2.1; by default genesis and every epoch_key so far (or
        those with seq below `below_seq`)."""
        if records is None:
            records = [raw for seq, raw in self.key_records
                       if below_seq is None or seq < below_seq]
        with open(self.ledger_path(), "wb") as f:
            f.write(head + b"".join(frame(raw) for raw in records))

    def prune_files(self, first_kept: int, record: bool = True) -> None:
        """What the agent does (section 6.13): the ledger, the prune record,
        then the files below first_kept go."""
        self.write_ledger(below_seq=self.headers[first_kept][0])
        if record:
            self.prune(first_kept)
        for number in range(first_kept):
            if os.path.exists(self.path(number)):  # earlier prunes took some
                os.remove(self.path(number))

    def seal(self):
        offset = self.append(wv.SEAL, struct.pack("<Q", self.segment + 1))
        self.open_segment()
        return offset

    def recover(self, cause: int, region_offset: int, last_good_seq: int,
                region_len: int | None = None, digest: bytes | None = None,
                segment_no: int | None = None):
        """Open a new segment starting with a recovery for the current one."""
        damaged = self.segment
        with open(self.path(), "rb") as f:
            data = f.read()
        region = data[region_offset:]
        if digest is None:
            digest = (bytes(32) if cause == wv.CAUSE_FSYNC_FAILED
                      else hashlib.sha256(region).digest())
        region_len = len(region) if region_len is None else region_len
        segment_no = damaged if segment_no is None else segment_no
        self.open_segment()
        payload = (bytes([cause]) + struct.pack("<QQQQ", segment_no, last_good_seq,
                                                region_offset, region_len)
                   + digest + b16(b"found at open"))
        return self.append(wv.RECOVERY, payload)

    def rewind_to(self, region_offset: int) -> None:
        """Forget the records of segment 0 from region_offset on (what the
        agent does after an fsync failure)."""
        assert self.segment == 0
        with open(self.path(), "rb") as f:
            data = f.read()
        self.seq, self.head, self.frontier = 0, wv.ZERO32, wv.Frontier()
        pos = 69 + len(self.agent_id)
        while pos < region_offset:
            length = struct.unpack_from("<I", data, pos + FRAME_LEN_AT)[0]
            leaf = wv.leaf_hash(data[pos + 8:pos + 8 + length])
            self.head = leaf
            self.frontier.append(leaf)
            self.seq += 1
            pos += 8 + length


def entry_key_of(data_key: bytes, seq: int) -> bytes:
    """Section 6.2.1: K_seq = HKDF-SHA256(salt "wormlog entry key v1", IKM D,
    info seq u64 LE, L 32)."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=b"wormlog entry key v1",
                info=struct.pack("<Q", seq)).derive(data_key)


def run_verifier(spool: str, *extra: str) -> tuple[int, dict]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        code = wv.main(["--spool", spool, "--json", *extra])
    return code, json.loads(out.getvalue())


def pubkey_text(key: bytes) -> str:
    return wv.format_pubkey(key)


# ---------------------------------------------------------------------------
# End-to-end checks
# ---------------------------------------------------------------------------

class SpoolTest(unittest.TestCase):
    def setUp(self):
        self._tmp = tempfile.TemporaryDirectory()
        self.dir = self._tmp.name
        self.w = SpoolWriter(self.dir)

    def tearDown(self):
        self._tmp.cleanup()

    def build_intact(self) -> None:
        w = self.w
        w.genesis()
        w.checkpoint(anchor=True)
        w.start()
        for i in range(5):
            w.entry(b"line %d" % i)
        w.checkpoint()
        w.epoch_key()
        w.entry(b"after epoch")
        w.checkpoint()
        w.seal()
        w.checkpoint(anchor=True)
        w.alert()
        w.entry(b"x" * 300)
        w.checkpoint()
        cp_seq = w.seq - 1
        w.receipt(cp_seq, self.checkpoint_root(cp_seq))
        w.entry(b"unsigned")

    def checkpoint_root(self, seq: int) -> bytes:
        segment, offset = self.w.offsets[seq]
        with open(self.w.path(segment), "rb") as f:
            f.seek(offset + 8 + wv.RECORD_HEADER_LEN + 16)
            return f.read(32)

    def corrupt(self, seq: int, delta: int, byte: int = 0xFF) -> None:
        segment, offset = self.w.offsets[seq]
        with open(self.w.path(segment), "r+b") as f:
            f.seek(offset + delta)
            old = f.read(1)[0]
            f.seek(offset + delta)
            f.write(bytes([old ^ byte]))

    def assertFailure(self, result, segment, offset, seq):
        code, report = result
        self.assertEqual(code, 1, report)
        self.assertFalse(report["ok"])
        failure = report["failure"]
        self.assertEqual((failure["segment"], failure["offset"], failure["seq"]),
                         (segment, offset, seq), failure["reason"])

    def test_intact(self):
        self.build_intact()
        code, report = run_verifier(self.dir, "--pubkey", pubkey_text(self.w.pub0))
        self.assertEqual(code, 0, report)
        self.assertTrue(report["ok"])
        self.assertEqual(report["segments"], 2)
        self.assertEqual(report["records"], self.w.seq)
        self.assertEqual(report["checkpoints"], 5)
        self.assertEqual(report["epoch_transitions"], 1)
        self.assertEqual(report["unsigned_tail"], 2)
        self.assertEqual(report["recoveries"], [])
        self.assertEqual(report["tail_in_progress_bytes"], 0)
        self.assertIsNone(report["failure"])
        self.assertTrue(report["key_authenticated"])
        self.assertEqual(len(report["alerts"]), 1)

    def test_human_output(self):
        self.build_intact()
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            code = wv.main(["--spool", self.dir])
        self.assertEqual(code, 0)
        self.assertIn("intact", out.getvalue())
        self.assertIn("UNAUTHENTICATED", out.getvalue())

    def test_wrong_pubkey(self):
        self.build_intact()
        other = pubkey_text(public_key(b"\x06" * 32))
        self.assertFailure(run_verifier(self.dir, "--pubkey", other), 0, 69 + 6, 0)

    def test_flipped_byte_is_a_damaged_frame(self):
        self.build_intact()
        seg, off = self.w.offsets[5]
        self.corrupt(5, 8 + 62)
        self.assertFailure(run_verifier(self.dir), seg, off, 5)

    def fix_crc(self, seq: int) -> None:
        """Recompute the frame CRC of record `seq` after an edit."""
        seg, off = self.w.offsets[seq]
        with open(self.w.path(seg), "r+b") as f:
            f.seek(off + FRAME_LEN_AT)
            covered = f.read(4)  # the length field, then the record: [4, 8 + len)
            covered += f.read(struct.unpack("<I", covered)[0])
            f.seek(off)
            f.write(struct.pack("<I", wv.crc32c(covered)))

    def test_recomputed_crc_breaks_the_chain(self):
        """Changing an entry and fixing its CRC is caught by the next record's
        prev (section 4), not only by the next checkpoint."""
        self.build_intact()
        self.corrupt(5, 8 + 80, byte=0x01)  # inside the body text
        self.fix_crc(5)
        seg, off = self.w.offsets[6]  # the record right after the edited one
        code, report = run_verifier(self.dir)
        self.assertFailure((code, report), seg, off, 6)
        self.assertIn("prev", report["failure"]["reason"])

    def test_edited_prev_with_fixed_crc(self):
        """A record whose prev was changed in place and its CRC recomputed."""
        self.build_intact()
        self.corrupt(6, 8 + 20 + 7, byte=0x40)  # a byte of seq 6's prev
        self.fix_crc(6)
        seg, off = self.w.offsets[6]
        code, report = run_verifier(self.dir)
        self.assertFailure((code, report), seg, off, 6)
        self.assertIn("prev", report["failure"]["reason"])

    def test_prev_mismatch(self):
        """A well-framed record (right CRC, right seq) whose prev is wrong."""
        w = self.w
        w.genesis()
        w.checkpoint(anchor=True)
        w.entry(b"a")
        off = w.entry(b"b", prev=b"\x11" * 32)
        w.entry(b"c")  # chained to the bad record: only the first mismatch counts
        code, report = run_verifier(self.dir)
        self.assertFailure((code, report), 0, off, 3)
        self.assertIn("prev", report["failure"]["reason"])

    def test_prev_mismatch_across_segments(self):
        """The first record of a segment links to the seal before it, not to
        the record before the seal (nor to anything else)."""
        w = self.w
        w.genesis()
        w.checkpoint(anchor=True)
        before_seal = w.head
        w.seal()
        self.assertNotEqual(before_seal, w.head)
        off = w.append(wv.HEARTBEAT, BOOT + struct.pack("<Q", 9), prev=before_seal)
        self.assertEqual(off, 69 + len(w.agent_id))
        self.assertFailure(run_verifier(self.dir), 1, off, 3)

    def test_genesis_prev_must_be_zero(self):
        off = self.w.append(wv.GENESIS, b8(self.w.agent_id) + self.w.pub0,
                            prev=b"\x01" + bytes(31))
        self.assertFailure(run_verifier(self.dir), 0, off, 0)

    def test_chain_head_is_the_last_leaf(self):
        """head_i = leaf_i: every prev, segment prev_head and the reported head
        are leaf hashes of the record before (section 4)."""
        self.build_intact()
        leaves = []
        for seq in range(self.w.seq):
            seg, off = self.w.offsets[seq]
            with open(self.w.path(seg), "rb") as f:
                f.seek(off + FRAME_LEN_AT)
                length = struct.unpack("<I", f.read(4))[0]
                f.seek(off + 8)
                record = f.read(length)
            self.assertEqual(record[20:52], leaves[-1] if leaves else bytes(32), seq)
            leaves.append(hashlib.sha256(b"\x00" + record).digest())
        with open(self.w.path(1), "rb") as f:
            header = f.read(64)
        first_of_1 = min(s for s, (g, _) in self.w.offsets.items() if g == 1)
        self.assertEqual(header[32:64], leaves[first_of_1 - 1])
        code, report = run_verifier(self.dir)
        self.assertEqual(code, 0, report)
        self.assertEqual(report["head"], leaves[-1].hex())
        self.assertEqual(report["root"], wv.mth(leaves).hex())

    def test_checkpoint_head_must_be_the_chain_head(self):
        """Right prev, validly signed, but a head field that is not head_{seq-1}."""
        w = self.w
        w.genesis()
        w.checkpoint(anchor=True)
        w.entry(b"a")
        off = w.checkpoint(head=bytes(32))
        code, report = run_verifier(self.dir)
        self.assertFailure((code, report), 0, off, 3)
        self.assertIn("head is not the chain head", report["failure"]["reason"])

    def test_old_minimum_record_length_is_out_of_bounds(self):
        """A well-formed frame of a 51-byte record: below the minimum of 52,
        a failure even at the end of the last segment."""
        w = self.w
        w.genesis()
        end = os.path.getsize(w.path())
        w.raw_append(frame(bytes(51)))
        code, report = run_verifier(self.dir)
        self.assertFailure((code, report), 0, end, 1)
        self.assertIn("out of bounds", report["failure"]["reason"])

    # -- section 3.2: frame layout (crc at 0, len at 4, record at 8) -----------

    def test_frame_layout_by_hand(self):
        record = bytes(range(60))
        data = (b"junk" + struct.pack("<I", wv.crc32c(struct.pack("<I", 60) + record))
                + struct.pack("<I", 60) + record + b"next")
        self.assertEqual(wv.read_frame(data, 4, len(data)), (record, 4 + 8 + 60))
        self.assertEqual(frame(record), data[4:-4])

    def test_flipped_crc_byte_is_a_damaged_frame(self):
        self.build_intact()
        seg, off = self.w.offsets[5]
        self.corrupt(5, 0)  # first byte of the frame: the CRC
        code, report = run_verifier(self.dir)
        self.assertFailure((code, report), seg, off, 5)
        self.assertIn("CRC", report["failure"]["reason"])

    def test_crc_must_cover_the_length_field(self):
        """A CRC over the record alone is wrong: it covers bytes [4, 8 + len)."""
        w = self.w
        w.genesis()
        end = os.path.getsize(w.path())
        w.seq, w.ts = 1, w.ts + SECOND
        record = (struct.pack("<BBHQq", 1, wv.HEARTBEAT, 0, 1, w.ts) + w.head
                  + BOOT + struct.pack("<Q", 9))
        w.raw_append(struct.pack("<I", wv.crc32c(record)) + struct.pack("<I", len(record))
                     + record)
        code, report = run_verifier(self.dir)
        self.assertFailure((code, report), 0, end, 1)
        self.assertIn("CRC", report["failure"]["reason"])

    def test_tail_in_progress_length_is_read_at_offset_4(self):
        """The CRC bytes (here 0xFFFFFFFF, out of bounds as a length) are not
        the length: len 60 at offset 4 runs past the end, a tail in progress."""
        self.build_intact()
        self.w.raw_append(frame_start(60, crc=0xFFFFFFFF) + b"\x00" * 20)
        code, report = run_verifier(self.dir)
        self.assertEqual(code, 0, report)
        self.assertEqual(report["tail_in_progress_bytes"], 28)

    def test_length_is_checked_before_the_crc(self):
        """Out-of-bounds len with a wrong CRC: reported as a bad length."""
        self.build_intact()
        end = os.path.getsize(self.w.path())
        self.w.raw_append(frame_start(51, crc=0x12345678) + bytes(51))
        code, report = run_verifier(self.dir)
        self.assertFailure((code, report), 1, end, self.w.seq)
        self.assertIn("out of bounds", report["failure"]["reason"])

    def test_header_tamper(self):
        self.build_intact()
        with open(self.w.path(1), "r+b") as f:
            f.seek(24)
            f.write(struct.pack("<Q", 99))
        first_seq_of_1 = min(seq for seq, (seg, _) in self.w.offsets.items() if seg == 1)
        self.assertFailure(run_verifier(self.dir), 1, 0, first_seq_of_1)

    def test_missing_segment(self):
        self.build_intact()
        self.w.seal()
        self.w.checkpoint(anchor=True)
        first_seq_of_2 = self.w.seq - 1
        os.rename(self.w.path(2), self.w.path(3))
        # segment 1 is sealed, so the gap is reported at the first segment after it
        self.assertFailure(run_verifier(self.dir), 3, 0, first_seq_of_2)

    def test_no_segment_zero(self):
        self.build_intact()
        os.remove(self.w.path(0))
        self.assertFailure(run_verifier(self.dir), 1, 0, 0)

    def test_unsealed_segment_that_is_not_last(self):
        self.w.genesis()
        self.w.checkpoint(anchor=True)
        self.w.entry(b"a")
        end = os.path.getsize(self.w.path())
        self.w.open_segment()
        self.w.checkpoint(anchor=True)
        self.assertFailure(run_verifier(self.dir), 0, end, 3)

    def test_record_after_seal(self):
        self.w.genesis()
        self.w.checkpoint(anchor=True)
        self.w.append(wv.SEAL, struct.pack("<Q", 1))
        end = os.path.getsize(self.w.path())
        self.w.entry(b"after seal")
        self.assertFailure(run_verifier(self.dir), 0, end, 3)

    def test_tail_in_progress(self):
        self.build_intact()
        self.w.raw_append(frame_start(500) + b"\x00" * 26)
        code, report = run_verifier(self.dir)
        self.assertEqual(code, 0, report)
        self.assertEqual(report["tail_in_progress_bytes"], 34)

    def test_short_tail_in_progress(self):
        self.build_intact()
        self.w.raw_append(b"\x10\x00\x00")
        code, report = run_verifier(self.dir)
        self.assertEqual(code, 0, report)
        self.assertEqual(report["tail_in_progress_bytes"], 3)

    def test_bad_length_tail_is_failure(self):
        self.build_intact()
        end = os.path.getsize(self.w.path())
        self.w.raw_append(b"\x00" * 12)
        self.assertFailure(run_verifier(self.dir), 1, end, self.w.seq)

    def flip_length(self, seq: int) -> tuple[int, int]:
        """Bit 22 of record `seq`'s frame length: within bounds, now running
        past the end of the file. Returns the frame's (segment, offset)."""
        self.corrupt(seq, FRAME_LEN_AT + 2, byte=0x40)
        seg, off = self.w.offsets[seq]
        with open(self.w.path(seg), "rb") as f:
            data = f.read()
        length = struct.unpack_from("<I", data, off + FRAME_LEN_AT)[0]
        self.assertTrue(off + 8 + length > len(data) and wv.frame_length_ok(length))
        return seg, off

    def test_flipped_length_with_frames_after_it_is_failure(self):
        """Section 7.5: whole frames continuing the sequence after it show
        that the frame is no write in progress; it is named."""
        self.build_intact()
        seq = self.w.seq - 3  # the checkpoint before the receipt
        seg, off = self.flip_length(seq)
        code, report = run_verifier(self.dir)
        self.assertFailure((code, report), seg, off, seq)
        self.assertIn("not a write in progress", report["failure"]["reason"])
        self.assertEqual(report["tail_in_progress_bytes"], 0)

    def test_flipped_length_of_the_last_frame_is_failure(self):
        """Nothing follows it, but with the length that ends it at the end of
        the file the frame is whole under its CRC."""
        self.build_intact()
        seq = self.w.seq - 1
        seg, off = self.flip_length(seq)
        code, report = run_verifier(self.dir)
        self.assertFailure((code, report), seg, off, seq)
        self.assertIn("length was altered", report["failure"]["reason"])

    def tail_holding(self, delta: int) -> tuple[int, int, tuple[int, dict]]:
        """build_intact(), then a tail in progress whose partial record holds
        a whole frame (hand-made, right CRC) of the expected seq + `delta`.
        Returns the tail's offset, the expected seq and the verdict."""
        self.build_intact()
        expected = self.w.seq
        inner = frame(struct.pack("<BBHQq", 1, wv.HEARTBEAT, 0, expected + delta, T0)
                      + bytes(32) + BOOT + struct.pack("<Q", 9))
        at = os.path.getsize(self.w.path())
        self.w.raw_append(frame_start(500) + b"\x01" * 7 + inner + b"\x02" * 5)
        return at, expected, run_verifier(self.dir)

    def test_tail_seq_window(self):
        """Section 7.5: a frame inside the tail counts when its seq is in
        [expected, expected + 2^20); outside that window (an old record, say,
        quoted in a log line) the tail is still in progress."""
        for delta, in_progress in ((-1, True), (0, False), (1, False),
                                   (2**20 - 1, False), (2**20, True)):
            with self.subTest(delta=delta):
                self.tearDown()
                self.setUp()
                at, expected, (code, report) = self.tail_holding(delta)
                if in_progress:
                    self.assertEqual(code, 0, report)
                    self.assertGreater(report["tail_in_progress_bytes"], 0)
                else:
                    self.assertFailure((code, report), 1, at, expected)

    def test_torn_tail_recovery(self):
        w = self.w
        w.genesis()
        w.checkpoint(anchor=True)
        w.entry(b"good")
        region_offset = os.path.getsize(w.path())
        w.raw_append(frame_start(400) + b"\x01" * 46)  # torn frame
        w.recover(wv.CAUSE_TORN_TAIL, region_offset, last_good_seq=2)
        w.checkpoint(anchor=True)
        code, report = run_verifier(self.dir)
        self.assertEqual(code, 0, report)
        self.assertEqual(report["recoveries"], [
            {"segment": 0, "cause": "torn_tail", "offset": region_offset, "len": 54}])

    def test_torn_tail_recovery_wrong_hash(self):
        w = self.w
        w.genesis()
        w.checkpoint(anchor=True)
        region_offset = os.path.getsize(w.path())
        w.raw_append(frame_start(400) + b"\x01" * 46)
        offset = w.recover(wv.CAUSE_TORN_TAIL, region_offset, last_good_seq=1)
        with open(w.path(0), "ab") as f:
            f.write(b"more")  # region changed after the recovery was written
        self.assertFailure(run_verifier(self.dir), 1, offset, 2)

    def test_fsync_failed_recovery_region_not_read(self):
        w = self.w
        w.genesis()
        w.checkpoint(anchor=True)
        w.entry(b"durable")
        region_offset = os.path.getsize(w.path())
        w.entry(b"not durable")  # a valid frame, but in the abandoned region
        w.rewind_to(region_offset)
        w.recover(wv.CAUSE_FSYNC_FAILED, region_offset, last_good_seq=2)
        w.checkpoint(anchor=True)
        w.entry(b"not durable")
        code, report = run_verifier(self.dir)
        self.assertEqual(code, 0, report)
        self.assertEqual(report["recoveries"][0]["cause"], "fsync_failed")

    def test_corruption_recovery_is_failure_at_the_recovery(self):
        w = self.w
        w.genesis()
        w.checkpoint(anchor=True)
        region_offset = os.path.getsize(w.path())
        w.raw_append(b"\xff" * 40)
        offset = w.recover(wv.CAUSE_CORRUPTION, region_offset, last_good_seq=1)
        code, report = run_verifier(self.dir)
        self.assertFailure((code, report), 1, offset, 2)
        self.assertEqual(report["recoveries"][0]["cause"], "corruption")

    def test_anchor_must_carry_frontier(self):
        w = self.w
        w.genesis()
        w.checkpoint(anchor=True)
        w.seal()  # segment 1 starts at seq 3: its anchor needs two frontier entries
        off = w.checkpoint(anchor=True, frontier=[])
        self.assertFailure(run_verifier(self.dir), 1, off, 3)

    # -- section 6.3 / 7.4: every checkpoint carries the frontier ------------

    def test_later_checkpoint_must_carry_frontier(self):
        w = self.w
        w.genesis()
        w.checkpoint(anchor=True)
        w.entry(b"a")
        off = w.checkpoint(frontier=[])  # seq 3: two set bits, none carried
        code, report = run_verifier(self.dir)
        self.assertFailure((code, report), 0, off, 3)
        self.assertIn("frontier_count", report["failure"]["reason"])

    def test_frontier_count_is_popcount_of_tree_size(self):
        w = self.w
        w.genesis()
        w.checkpoint(anchor=True)
        w.entry(b"a")
        off = w.checkpoint(frontier=w.frontier.nodes[:1])  # 1 of the 2 entries
        self.assertFailure(run_verifier(self.dir), 0, off, 3)

    def test_checkpoint_frontier_must_equal_the_logs(self):
        """Right count, right root and head, validly signed, wrong frontier."""
        w = self.w
        w.genesis()
        w.checkpoint(anchor=True)
        w.entry(b"a")
        wrong = [w.frontier.nodes[0], bytes(32)]
        off = w.checkpoint(frontier=wrong)
        code, report = run_verifier(self.dir)
        self.assertFailure((code, report), 0, off, 3)
        self.assertIn("frontier differs", report["failure"]["reason"])

    def test_source_table_is_not_interpreted(self):
        w = self.w
        w.genesis()
        w.checkpoint(anchor=True, sources=[])        # an anchor without sources
        w.entry(b"a")
        w.checkpoint(sources=[(b"app", b"\x63" + b16(b"opaque")),
                              (b"", position_none())])  # a later one with some
        w.seal()
        w.checkpoint(anchor=True, sources=[(b"syslog", b"\x01" + b16(b"\x00" * 32))])
        code, report = run_verifier(self.dir)
        self.assertEqual(code, 0, report)
        self.assertEqual(report["checkpoints"], 3)

    def test_source_names_in_the_table_are_text(self):
        """Section 6.3: the names are bytes8 text, so not-UTF-8 is malformed."""
        w = self.w
        w.genesis()
        off = w.checkpoint(anchor=True, sources=[(b"\xff\xfe not utf-8", position_none())])
        self.assertFailure(run_verifier(self.dir), 0, off, 1)

    def test_truncated_source_table_is_malformed(self):
        w = self.w
        w.genesis()
        off = w.checkpoint(anchor=True, sources=[(b"syslog", b"\x00\x05\x00ab")])
        self.assertFailure(run_verifier(self.dir), 0, off, 1)

    # -- section 7.4: recoveries, by cause -------------------------------------

    def torn_segment(self, frame: bytes | None = None) -> tuple[int, int]:
        """Segment 0 with genesis, anchor, one entry, then a torn frame.
        Returns (region_offset, last_good_seq)."""
        w = self.w
        w.genesis()
        w.checkpoint(anchor=True)
        w.entry(b"good")
        region_offset = os.path.getsize(w.path())
        w.raw_append(frame if frame is not None
                     else frame_start(400) + b"\x01" * 46)
        return region_offset, 2

    def test_torn_tail_region_sha256_is_checked(self):
        """The region changed in place (same length) after the recovery."""
        region_offset, last = self.torn_segment()
        off = self.w.recover(wv.CAUSE_TORN_TAIL, region_offset, last)
        with open(self.w.path(0), "r+b") as f:
            f.seek(region_offset + 20)
            f.write(b"\x02")
        code, report = run_verifier(self.dir)
        self.assertFailure((code, report), 1, off, 3)
        self.assertIn("region_sha256", report["failure"]["reason"])

    def test_torn_tail_region_len_is_checked(self):
        region_offset, last = self.torn_segment()
        off = self.w.recover(wv.CAUSE_TORN_TAIL, region_offset, last, region_len=53)
        self.assertFailure(run_verifier(self.dir), 1, off, 3)

    def test_torn_tail_region_must_not_start_with_a_valid_frame(self):
        w = self.w
        w.genesis()
        w.checkpoint(anchor=True)
        w.entry(b"good")
        region_offset = os.path.getsize(w.path())
        w.entry(b"a valid frame, declared torn")
        w.rewind_to(region_offset)
        off = w.recover(wv.CAUSE_TORN_TAIL, region_offset, last_good_seq=2)
        code, report = run_verifier(self.dir)
        self.assertFailure((code, report), 1, off, 3)
        self.assertIn("valid frame", report["failure"]["reason"])

    def test_torn_tail_region_must_not_hold_a_complete_write(self):
        """Sections 7.4 and 7.5: a torn region must be what a tail in progress
        may be. A frame whose length was altered, with whole frames after it
        or whole to the end of the file, is no write cut short."""
        for frames_in_region in (2, 1):
            with self.subTest(frames=frames_in_region):
                self.tearDown()
                self.setUp()
                w = self.w
                w.genesis()
                w.checkpoint(anchor=True)
                w.entry(b"good")
                region_offset = os.path.getsize(w.path())
                first = w.seq
                for i in range(frames_in_region):
                    w.entry(b"declared torn %d" % i)
                self.corrupt(first, FRAME_LEN_AT + 2, byte=0x40)  # runs past the end
                w.rewind_to(region_offset)
                off = w.recover(wv.CAUSE_TORN_TAIL, region_offset, last_good_seq=2)
                code, report = run_verifier(self.dir)
                self.assertFailure((code, report), 1, off, 3)
                self.assertIn("not a write cut short", report["failure"]["reason"])

    def test_fsync_failed_region_len_is_informational(self):
        """The agent's region_len need not match the file on disk."""
        w = self.w
        w.genesis()
        w.checkpoint(anchor=True)
        region_offset = os.path.getsize(w.path())
        w.entry(b"not durable")
        w.rewind_to(region_offset)
        w.recover(wv.CAUSE_FSYNC_FAILED, region_offset, last_good_seq=1, region_len=4096)
        w.checkpoint(anchor=True)
        code, report = run_verifier(self.dir)
        self.assertEqual(code, 0, report)
        self.assertEqual(report["recoveries"], [
            {"segment": 0, "cause": "fsync_failed", "offset": region_offset, "len": 4096}])

    def test_fsync_failed_region_may_be_gone(self):
        """Nothing of the region reached the disk: region_len still as seen."""
        w = self.w
        w.genesis()
        w.checkpoint(anchor=True)
        region_offset = os.path.getsize(w.path())
        w.recover(wv.CAUSE_FSYNC_FAILED, region_offset, last_good_seq=1, region_len=77)
        code, report = run_verifier(self.dir)
        self.assertEqual(code, 0, report)

    def test_fsync_failed_region_sha256_must_be_zero(self):
        region_offset, last = self.torn_segment()
        off = self.w.recover(wv.CAUSE_FSYNC_FAILED, region_offset, last,
                             digest=b"\x01" * 32)
        code, report = run_verifier(self.dir)
        self.assertFailure((code, report), 1, off, 3)
        self.assertIn("ZERO32", report["failure"]["reason"])

    def test_fsync_failed_log_must_reach_region_offset(self):
        """A region_offset past the end of the file: durable records are lost."""
        w = self.w
        w.genesis()
        w.checkpoint(anchor=True)
        end = os.path.getsize(w.path())
        w.recover(wv.CAUSE_FSYNC_FAILED, end + 100, last_good_seq=2)
        self.assertFailure(run_verifier(self.dir), 0, end, 2)

    def test_corruption_is_reported_at_the_recovery_even_with_a_wrong_hash(self):
        region_offset, last = self.torn_segment(b"\xff" * 40)
        off = self.w.recover(wv.CAUSE_CORRUPTION, region_offset, last,
                             digest=bytes(32))
        code, report = run_verifier(self.dir)
        self.assertFailure((code, report), 1, off, 3)
        reason = report["failure"]["reason"]
        self.assertIn("corruption", reason)
        self.assertIn("segment 0", reason)
        self.assertIn(f"offset {region_offset}", reason)

    def test_corruption_recovery_with_wrong_last_good_seq(self):
        region_offset, _ = self.torn_segment(b"\xff" * 40)
        off = self.w.recover(wv.CAUSE_CORRUPTION, region_offset, last_good_seq=1)
        self.assertFailure(run_verifier(self.dir), 1, off, 3)

    # -- section 7.2: what counts as the next segment's recovery --------------

    def test_lookahead_ignores_a_recovery_with_an_undefined_cause(self):
        region_offset, last = self.torn_segment()
        self.w.recover(4, region_offset, last)
        # ignored: segment 0 is read to its end and its torn frame is damage
        self.assertFailure(run_verifier(self.dir), 0, region_offset, 3)

    def test_lookahead_ignores_a_next_header_with_a_bad_crc(self):
        region_offset, last = self.torn_segment()
        self.w.recover(wv.CAUSE_TORN_TAIL, region_offset, last)
        with open(self.w.path(1), "r+b") as f:
            f.seek(69 + len(self.w.agent_id) - 1)  # last byte of the CRC
            old = f.read(1)[0]
            f.seek(-1, os.SEEK_CUR)
            f.write(bytes([old ^ 1]))
        self.assertFailure(run_verifier(self.dir), 0, region_offset, 3)

    def test_lookahead_ignores_a_damaged_first_frame(self):
        region_offset, last = self.torn_segment()
        off = self.w.recover(wv.CAUSE_TORN_TAIL, region_offset, last)
        self.corrupt(self.w.seq - 1, 8 + 57)  # inside the recovery payload
        self.assertEqual(self.w.offsets[self.w.seq - 1], (1, off))
        self.assertFailure(run_verifier(self.dir), 0, region_offset, 3)

    def test_lookahead_ignores_a_recovery_naming_another_segment(self):
        region_offset, last = self.torn_segment()
        off = self.w.recover(wv.CAUSE_TORN_TAIL, region_offset, last, segment_no=7)
        self.assertFailure(run_verifier(self.dir), 0, region_offset, 3)

    def test_lookahead_does_not_check_first_seq(self):
        """A header with a wrong first_seq still passes the look-ahead's checks;
        the problem is found when that segment is read."""
        region_offset, last = self.torn_segment()
        self.w.recover(wv.CAUSE_TORN_TAIL, region_offset, last)
        path = self.w.path(1)
        with open(path, "r+b") as f:
            data = bytearray(f.read())
            struct.pack_into("<Q", data, 24, 99)
            n = data[64]
            struct.pack_into("<I", data, 65 + n, wv.crc32c(bytes(data[:65 + n])))
            f.seek(0)
            f.write(data)
        self.assertFailure(run_verifier(self.dir), 1, 0, 3)

    def test_lookahead_uses_the_next_file_present(self):
        """Segments 0 and 2, segment 2 starting with a recovery naming 0: the
        recovery counts for segment 0, and the gap is reported at segment 2."""
        region_offset, last = self.torn_segment()
        self.w.recover(wv.CAUSE_TORN_TAIL, region_offset, last)
        os.rename(self.w.path(1), self.w.path(2))
        self.assertFailure(run_verifier(self.dir), 2, 0, 3)

    def test_lookahead_ignores_a_next_header_whose_agent_id_is_not_text(self):
        """Section 7.2: the next header must pass every check of the header
        alone, the agent id's included (CRC recomputed here)."""
        region_offset, last = self.torn_segment()
        self.w.recover(wv.CAUSE_TORN_TAIL, region_offset, last)
        with open(self.w.path(1), "r+b") as f:
            data = bytearray(f.read())
            n = data[64]
            data[65] = 0xFF
            struct.pack_into("<I", data, 65 + n, wv.crc32c(bytes(data[:65 + n])))
            f.seek(0)
            f.write(data)
        self.assertFailure(run_verifier(self.dir), 0, region_offset, 3)

    # -- section 7.5 and the location rules ------------------------------------

    def test_torn_tail_after_seal_in_last_segment_is_failure(self):
        w = self.w
        w.genesis()
        w.checkpoint(anchor=True)
        w.append(wv.SEAL, struct.pack("<Q", 1))
        end = os.path.getsize(w.path())
        w.raw_append(frame_start(500) + b"\x00" * 26)  # would be in progress
        self.assertFailure(run_verifier(self.dir), 0, end, 3)

    def test_short_bytes_after_seal_in_last_segment_are_failure(self):
        w = self.w
        w.genesis()
        w.checkpoint(anchor=True)
        w.append(wv.SEAL, struct.pack("<Q", 1))
        end = os.path.getsize(w.path())
        w.raw_append(b"\x00")
        self.assertFailure(run_verifier(self.dir), 0, end, 3)

    def test_region_after_seal_is_failure(self):
        """Bytes after a seal fail even when a recovery declares them void."""
        w = self.w
        w.genesis()
        w.checkpoint(anchor=True)
        w.append(wv.SEAL, struct.pack("<Q", 1))
        end = os.path.getsize(w.path())
        w.raw_append(b"\x01" * 20)
        w.recover(wv.CAUSE_TORN_TAIL, end, last_good_seq=2)
        self.assertFailure(run_verifier(self.dir), 0, end, 3)

    def test_sealed_segment_named_by_recovery_with_empty_region(self):
        w = self.w
        w.genesis()
        w.checkpoint(anchor=True)
        w.append(wv.SEAL, struct.pack("<Q", 1))
        end = os.path.getsize(w.path())
        w.recover(wv.CAUSE_TORN_TAIL, end, last_good_seq=2)
        code, report = run_verifier(self.dir)
        self.assertEqual(code, 0, report)

    def test_one_pass_reports_the_first_problem_in_the_file(self):
        """A bad record before a damaged frame: the record is reported."""
        w = self.w
        w.genesis()
        w.checkpoint(anchor=True)
        w.entry(b"a")
        bad_cp = w.checkpoint()
        w.entry(b"b")
        self.corrupt(w.seq - 1, 8 + 62)           # damaged frame, later in file
        self.corrupt(w.seq - 2, 8 + 52)           # checkpoint epoch: record check
        self.fix_crc(w.seq - 2)  # the corrupted checkpoint's CRC is wrong too
        self.assertFailure(run_verifier(self.dir), 0, bad_cp, 3)

    def test_spool_with_header_only_segment_zero(self):
        code, report = run_verifier(self.dir)
        self.assertEqual(code, 0, report)
        self.assertEqual(report["records"], 0)

    def test_torn_genesis_is_tail_in_progress(self):
        self.w.raw_append(frame_start(60) + b"\x00" * 6)
        code, report = run_verifier(self.dir)
        self.assertEqual(code, 0, report)
        self.assertEqual((report["records"], report["tail_in_progress_bytes"]), (0, 14))

    # -- section 7.4: closed enumerations ---------------------------------------

    def enum_case(self, write) -> None:
        w = self.w
        w.genesis()
        w.checkpoint(anchor=True)
        off = write(w)
        self.assertFailure(run_verifier(self.dir), 0, off, 2)

    def test_enumerations_are_closed(self):
        cases = {
            "empty entry source": lambda w: w.entry(b"x", source=b""),
            "entry flag bit 3": lambda w: w.entry(b"x", entry_flags=0b1000),
            "entry flag bit 7": lambda w: w.entry(b"x", entry_flags=0x80),
            "gap reason 0": lambda w: w.gap(reason=0),
            "gap reason 12": lambda w: w.gap(reason=12),
            "alert code 0": lambda w: w.alert(code=0),
            "alert code 7": lambda w: w.alert(code=7),
            "append_only 3": lambda w: w.start(append_only=3),
            "append_only_active 2": lambda w: w.start(append_only_active=2),
        }
        for name, write in cases.items():
            with self.subTest(name):
                self.tearDown()
                self.setUp()
                self.enum_case(write)

    def test_enumerations_accept_every_defined_value(self):
        w = self.w
        w.genesis()
        w.checkpoint(anchor=True)
        for flags in range(8):
            w.entry(b"x", entry_flags=flags)
        for reason in range(1, 12):
            w.gap(reason=reason)
        for code in range(1, 5):
            w.alert(code=code)
        for mode in range(3):
            for active in range(2):
                w.start(append_only=mode, append_only_active=active)
        code, report = run_verifier(self.dir)
        self.assertEqual(code, 0, report)

    def test_gap_source_is_text(self):
        """Section 6.10 types a gap's source as bytes8, text: UTF-8 (may be empty)."""
        w = self.w
        w.genesis()
        w.checkpoint(anchor=True)
        w.gap(source=b"")
        code, report = run_verifier(self.dir)
        self.assertEqual(code, 0, report)
        off = w.gap(source=b"\xff")
        self.assertFailure(run_verifier(self.dir), 0, off, 3)

    def test_recovery_with_undefined_cause_is_failure_where_read(self):
        """Not the first record of its segment's look-ahead: it fails where read."""
        w = self.w
        w.genesis()
        w.checkpoint(anchor=True)
        off = w.append(wv.RECOVERY, b"\x04" + struct.pack("<QQQQ", 0, 1, 75, 0)
                       + bytes(32) + b16(b""))
        self.assertFailure(run_verifier(self.dir), 0, off, 2)

    def test_anchor_must_be_early(self):
        """Section 6.3: a record other than genesis or recovery where the
        anchor must be is the failure, not the late anchor."""
        w = self.w
        w.genesis()
        off = w.entry(b"a")
        w.entry(b"b")
        w.checkpoint(anchor=True)
        self.assertFailure(run_verifier(self.dir), 0, off, 1)

    # -- section 6.3: the anchor's place ------------------------------------------

    def test_anchor_is_the_first_record_of_a_later_segment(self):
        """Second after an entry is too late: only genesis or recovery may
        come before the anchor."""
        w = self.w
        w.genesis()
        w.checkpoint(anchor=True)
        w.seal()
        first = w.seq
        off = w.entry(b"before the anchor")
        w.checkpoint(anchor=True)
        code, report = run_verifier(self.dir)
        self.assertFailure((code, report), 1, off, first)
        self.assertIn("anchor", report["failure"]["reason"])

    def test_sealed_segment_without_an_anchor(self):
        w = self.w
        w.genesis()
        w.checkpoint(anchor=True)
        w.seal()
        first = w.seq
        off = w.entry(b"no checkpoint in this segment")
        w.seal()
        w.checkpoint(anchor=True)
        self.assertFailure(run_verifier(self.dir), 1, off, first)

    def test_logs_that_end_before_the_anchor(self):
        """The last segment (a genesis only: its write under way) and a
        segment whose log a recovery record ends before its anchor."""
        w = self.w
        w.genesis()
        code, report = run_verifier(self.dir)
        self.assertEqual(code, 0, report)
        region_offset = os.path.getsize(w.path())
        w.raw_append(frame_start(400) + b"\x01" * 46)  # the anchor, torn
        w.recover(wv.CAUSE_TORN_TAIL, region_offset, last_good_seq=0)
        w.checkpoint(anchor=True)
        code, report = run_verifier(self.dir)
        self.assertEqual(code, 0, report)
        self.assertEqual(report["checkpoints"], 1)

    # -- section 5.3: strict Ed25519 -------------------------------------------

    def test_point_acceptable(self):
        p = wv.ED25519_P
        self.assertTrue(wv.point_acceptable(BASE_POINT))
        self.assertTrue(wv.point_acceptable(public_key(b"\x05" * 32)))
        for y in (0, 1, p - 1, wv.ED25519_Y8, p - wv.ED25519_Y8):
            for sign in (0, 1 << 255):
                self.assertFalse(wv.point_acceptable((y | sign).to_bytes(32, "little")), y)
        for y in (p, p + 1, p + 2, 2**255 - 1):  # not reduced mod p
            self.assertFalse(wv.point_acceptable(y.to_bytes(32, "little")), y)

    def receipt_case(self, collector_pub: bytes, signature: bytes | None,
                     permissive_accepts: bool) -> None:
        w = self.w
        w.genesis()
        w.checkpoint(anchor=True)
        w.entry(b"countersigned")
        w.checkpoint()
        cp = w.seq - 1
        root = self.checkpoint_root(cp)
        if signature is None:  # S + L on a valid signature
            good = w.collector.sign(w.receipt_message(cp, root))
            s_value = int.from_bytes(good[32:], "little") + wv.ED25519_L
            signature = good[:32] + s_value.to_bytes(32, "little")
        self.assertEqual(permissive_ed25519_valid(
            collector_pub, signature, w.receipt_message(cp, root)), permissive_accepts)
        seq = w.seq
        off = w.receipt(cp, root, collector_pub=collector_pub, signature=signature)
        code, report = run_verifier(self.dir)
        self.assertFailure((code, report), 0, off, seq)
        self.assertIn("receipt signature", report["failure"]["reason"])

    def test_receipt_under_the_identity_as_key(self):
        """[S]B - [k]O = R whatever the message: anyone can sign."""
        self.receipt_case(IDENTITY, BASE_POINT + (1).to_bytes(32, "little"), True)

    def test_receipt_under_the_identity_not_reduced_mod_p(self):
        unreduced = (wv.ED25519_P + 1).to_bytes(32, "little")
        self.receipt_case(unreduced, BASE_POINT + (1).to_bytes(32, "little"), True)

    def test_receipt_with_s_not_reduced_mod_l(self):
        collector_pub = self.w.collector.public_key().public_bytes(Encoding.Raw,
                                                                   PublicFormat.Raw)
        self.receipt_case(collector_pub, None, False)

    def test_checkpoint_signature_with_an_r_of_small_order(self):
        w = self.w
        w.genesis()
        message = {}

        def sign(context: bytes, record: bytes) -> bytes:
            message["m"] = context + b"\x00" + record
            return small_order_r_signature(w._secret(), message["m"])

        w._sign = sign
        off = w.checkpoint(anchor=True)
        with open(w.path(), "rb") as f:
            signature = f.read()[-64:]
        self.assertTrue(permissive_ed25519_valid(w.pub0, signature, message["m"]))
        code, report = run_verifier(self.dir)
        self.assertFailure((code, report), 0, off, 1)
        self.assertIn("signature", report["failure"]["reason"])

    # -- section 6: positions are opaque -----------------------------------------

    def test_positions_are_opaque_even_where_text(self):
        """A journal cursor (pos_kind 2, text) that is not UTF-8 is not checked."""
        w = self.w
        w.genesis()
        w.checkpoint(anchor=True, sources=[(b"journal", b"\x02" + b16(b"s=\xff\xfe"))])
        w.append(wv.ENTRY, b8(b"journal") + b"\x02" + b16(b"s=\xff") + b"\x00"
                 + struct.pack("<H", 0) + b"line")
        code, report = run_verifier(self.dir)
        self.assertEqual(code, 0, report)

    def test_trailing_payload_byte(self):
        w = self.w
        w.genesis()
        w.checkpoint(anchor=True)
        off = w.append(wv.SEAL, struct.pack("<Q", 1) + b"\x00")
        self.assertFailure(run_verifier(self.dir), 0, off, 2)

    def test_unknown_kind(self):
        w = self.w
        w.genesis()
        off = w.append(99, b"")
        self.assertFailure(run_verifier(self.dir), 0, off, 1)

    def test_nonzero_record_flags(self):
        w = self.w
        w.genesis()
        off = w.heartbeat(flags=1)
        self.assertFailure(run_verifier(self.dir), 0, off, 1)

    def test_old_epoch_key_rejected_after_transition(self):
        w = self.w
        w.genesis()
        w.checkpoint(anchor=True)
        old_seed = w.seed
        w.epoch_key()
        w.seed = old_seed  # a thief of the old seed signs for the new epoch
        off = w.checkpoint()
        self.assertFailure(run_verifier(self.dir), 0, off, 3)

    def test_wrong_receipt_root(self):
        w = self.w
        w.genesis()
        w.checkpoint(anchor=True)
        off = w.receipt(1, bytes(32))
        self.assertFailure(run_verifier(self.dir), 0, off, 2)

    def test_time_gaps(self):
        w = self.w
        w.genesis()
        w.checkpoint(anchor=True)
        w.start(heartbeat_ns=10 * SECOND)
        w.entry(b"a", ts_step=21 * SECOND)          # no records (> twice 10 s)
        w.stop()
        w.start(ts_step=100 * SECOND)               # agent stopped
        w.entry(b"b", ts_step=121 * SECOND)         # no records (twice 60 s in force now)
        w.start(ts_step=3600 * SECOND)              # not running, no stop record
        code, report = run_verifier(self.dir)
        self.assertEqual(code, 0, report)
        self.assertEqual([(g["from_seq"], g["to_seq"], g["cause"]) for g in report["time_gaps"]], [
            (2, 3, wv.GAP_NO_RECORDS), (4, 5, wv.GAP_STOPPED),
            (5, 6, wv.GAP_NO_RECORDS), (6, 7, wv.GAP_NOT_RUNNING)])
        self.assertEqual(report["time_gaps"][1]["seconds"], 100.0)

    def test_usage_errors(self):
        code, _ = run_verifier(os.path.join(self.dir, "nope"))
        self.assertEqual(code, 2)
        os.remove(self.w.path(0))
        code, report = run_verifier(self.dir)
        self.assertEqual(code, 2)
        self.assertFalse(report["ok"])
        self.w.open_segment()
        code, _ = run_verifier(self.dir, "--pubkey", "ed25519:AAAA")
        self.assertEqual(code, 2)



# ---------------------------------------------------------------------------
# Pruned spools: the key ledger and step 0 (sections 2.1, 6.13, 7)
# ---------------------------------------------------------------------------

class LedgerParseTest(unittest.TestCase):
    HEAD = b"WLLEDGR\x00" + struct.pack("<HH", 1, 0)

    def genesis(self) -> bytes:
        return (struct.pack("<BBHQq", 1, wv.GENESIS, 0, 0, T0) + wv.ZERO32
                + b8(b"host-1") + public_key(b"\x01" * 32))

    def test_records_in_file_order(self):
        raw = self.genesis()
        records = wv.parse_ledger(self.HEAD + frame(raw) + frame(raw))
        self.assertEqual([(r.kind, r.seq, r.raw) for r in records],
                         [(wv.GENESIS, 0, raw)] * 2)

    def test_header_only_is_no_records(self):
        self.assertEqual(wv.parse_ledger(self.HEAD), [])

    def test_bad_header(self):
        for data in (b"WLLEDGR", b"WORMLOG\x00" + self.HEAD[8:],
                     self.HEAD[:8] + struct.pack("<HH", 2, 0),
                     self.HEAD[:8] + struct.pack("<HH", 1, 1)):
            with self.assertRaises(wv.Malformed, msg=data):
                wv.parse_ledger(data + frame(self.genesis()))

    def test_bad_frames(self):
        good = frame(self.genesis())
        flipped = good[:-1] + bytes([good[-1] ^ 1])
        for data in (flipped, good[:-1], good[:5], frame_start(10) + bytes(10),
                     frame(self.genesis() + b"\x00")):  # trailing payload byte
            with self.assertRaises(wv.Malformed, msg=data.hex()):
                wv.parse_ledger(self.HEAD + good + data)


class PrunedSpoolTest(unittest.TestCase):
    """Segments 0 and 1 (epochs 0 and 1, two epoch_keys) pruned; the log
    starts at segment 2."""

    FIRST = 2

    # The fixture and helpers of SpoolTest (not its tests).
    setUp, tearDown = SpoolTest.setUp, SpoolTest.tearDown
    checkpoint_root, corrupt = SpoolTest.checkpoint_root, SpoolTest.corrupt
    fix_crc, assertFailure = SpoolTest.fix_crc, SpoolTest.assertFailure

    def build_prunable(self) -> None:
        w = self.w
        w.genesis()
        w.checkpoint(anchor=True)
        w.start()
        w.entry(b"a")
        w.checkpoint()
        w.epoch_key()
        w.entry(b"b")
        w.checkpoint()
        w.seal()                                     # segment 1
        w.checkpoint(anchor=True)
        w.entry(b"c")
        w.epoch_key()
        w.checkpoint()
        self.old_cp = w.seq - 1
        self.old_root = self.checkpoint_root(self.old_cp)
        w.seal()                                     # segment 2
        w.checkpoint(anchor=True)
        w.entry(b"d")
        w.checkpoint()
        # The collector acknowledges it: only then may segments 0 and 1 go.
        w.receipt(w.seq - 1, self.checkpoint_root(w.seq - 1))
        self.first_seq = w.headers[self.FIRST][0]
        self.present = w.seq - self.first_seq

    def build_pruned(self) -> None:
        self.build_prunable()
        w = self.w
        self.prune_seq = w.seq
        w.prune_files(self.FIRST)
        w.entry(b"after the prune")
        w.epoch_key()
        w.checkpoint()
        w.receipt(self.old_cp, self.old_root)        # its checkpoint was pruned
        w.entry(b"unsigned")
        self.present = w.seq - self.first_seq

    def verify(self, *extra: str):
        return run_verifier(self.dir, "--pubkey", pubkey_text(self.w.pub0), *extra)

    def assertStartFailure(self, result, reason_part: str):
        """Section 7: a pruned start failing step 0 is at S, offset 0, seq 0."""
        self.assertFailure(result, self.FIRST, 0, 0)
        self.assertIn(reason_part, result[1]["failure"]["reason"])

    def test_pruned_spool_verifies(self):
        self.build_pruned()
        open(self.w.ledger_path() + ".tmp", "wb").close()
        code, report = self.verify()
        self.assertEqual(code, 0, report)
        self.assertEqual(report["pruned"], {
            "first_segment": self.FIRST, "first_seq": self.first_seq,
            "ledger_records": 3, "recorded_at": self.prune_seq})
        self.assertEqual(report["prunes"], 1)
        self.assertEqual(report["segments"], 1)
        self.assertEqual(report["records"], self.present)
        self.assertEqual(report["tree_size"], self.w.seq)
        self.assertEqual(report["root"], self.w.frontier.root().hex())
        self.assertEqual(report["epoch"], 3)
        self.assertEqual(report["epoch_transitions"], 1)  # those in the log read
        self.assertEqual(report["checkpoints"], 3)
        self.assertEqual(report["unsigned_tail"], 2)
        self.assertTrue(report["key_authenticated"])
        self.assertEqual(report["first_pubkey"], pubkey_text(self.w.pub0))
        self.assertEqual(report["ignored_files"], [])
        self.assertEqual(report["temporary_files"], [wv.LEDGER_FILE + ".tmp"])

    def test_human_output_names_the_pruned_start(self):
        self.build_pruned()
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            code = wv.main(["--spool", self.dir])
        self.assertEqual(code, 0)
        self.assertIn(f"pruned: the log starts at segment {self.FIRST}", out.getvalue())

    def test_unpruned_spool_reports_no_pruned_start(self):
        self.build_prunable()
        self.w.prune(self.FIRST)  # written, the files not removed yet
        self.w.write_ledger(head=b"garbage")  # not read: the log starts at 0
        code, report = self.verify()
        self.assertEqual(code, 0, report)
        self.assertIsNone(report["pruned"])
        self.assertEqual(report["prunes"], 1)
        self.assertEqual(report["ignored_files"], [])

    def test_without_a_ledger_the_start_is_a_missing_segment(self):
        self.build_pruned()
        os.remove(self.w.ledger_path())
        self.assertStartFailure(self.verify(), "no key ledger")

    def test_ledger_bad_magic(self):
        self.build_pruned()
        self.w.write_ledger(head=b"WLLEDGX\x00" + struct.pack("<HH", 1, 0),
                            below_seq=self.first_seq)
        self.assertStartFailure(self.verify(), "bad magic")

    def test_ledger_flipped_byte(self):
        self.build_pruned()
        with open(self.w.ledger_path(), "r+b") as f:
            f.seek(-10, os.SEEK_END)
            byte = f.read(1)[0]
            f.seek(-10, os.SEEK_END)
            f.write(bytes([byte ^ 1]))
        self.assertStartFailure(self.verify(), "key ledger")

    def test_ledger_empty(self):
        self.build_pruned()
        self.w.write_ledger(records=[])
        self.assertStartFailure(self.verify(), "genesis")

    def test_ledger_without_an_epoch_key(self):
        self.build_pruned()
        records = [raw for seq, raw in self.w.key_records if seq < self.first_seq]
        del records[1]
        self.w.write_ledger(records=records)
        self.assertStartFailure(self.verify(), "epoch")

    def test_ledger_epoch_keys_must_be_in_seq_order(self):
        self.build_pruned()
        records = [raw for seq, raw in self.w.key_records if seq < self.first_seq]
        self.w.write_ledger(records=records[:2] + records[1:])
        self.assertStartFailure(self.verify(), "seq")

    def test_ledger_without_the_last_epoch_key_fails_at_the_anchor(self):
        """The ledger decodes, but arrives at the wrong key: the first
        checkpoint, checked as any record (step 4), fails where it is."""
        self.build_pruned()
        records = [raw for seq, raw in self.w.key_records if seq < self.first_seq]
        self.w.write_ledger(records=records[:-1])
        header_len = 69 + len(self.w.agent_id)
        self.assertFailure(self.verify(), self.FIRST, header_len, self.first_seq)

    def test_ledger_genesis_with_another_key(self):
        self.build_pruned()
        other = pubkey_text(public_key(b"\x06" * 32))
        self.assertStartFailure(run_verifier(self.dir, "--pubkey", other), "trusted")

    def test_ledger_genesis_of_another_agent(self):
        self.build_pruned()
        genesis = struct.pack("<BBHQq", 1, wv.GENESIS, 0, 0, T0) + wv.ZERO32
        genesis += b8(b"host-2") + self.w.pub0
        later = [raw for seq, raw in self.w.key_records if 0 < seq < self.first_seq]
        self.w.write_ledger(records=[genesis] + later)
        self.assertStartFailure(self.verify(), "agent_id")

    def test_ledger_holding_another_kind(self):
        self.build_pruned()
        records = [raw for seq, raw in self.w.key_records if seq < self.first_seq]
        with open(self.w.path(), "rb") as f:
            data = f.read()
        seg, off = self.w.offsets[self.first_seq]  # the anchor checkpoint
        length = struct.unpack_from("<I", data, off + FRAME_LEN_AT)[0]
        self.w.write_ledger(records=records + [data[off + 8:off + 8 + length]])
        self.assertStartFailure(self.verify(), "checkpoint")

    def test_ledger_records_of_present_segments_are_skipped(self):
        """A prune that did not finish leaves epoch_keys of segments still
        present in the ledger (section 2.1); they are not read."""
        self.build_pruned()
        records = [raw for _, raw in self.w.key_records]
        self.assertGreaterEqual(self.w.key_records[-1][0], self.first_seq)
        bogus = bytearray(records[-1])
        bogus[-1] ^= 1  # a bad signature: checked if it were read
        self.w.write_ledger(records=records[:-1] + [bytes(bogus)])
        code, report = self.verify()
        self.assertEqual(code, 0, report)
        self.assertEqual(report["pruned"]["ledger_records"], 3)

    def test_first_record_must_be_a_checkpoint(self):
        w = self.w
        w.genesis()
        w.checkpoint(anchor=True)
        w.seal()
        w.entry(b"not an anchor")
        w.checkpoint(anchor=True)
        w.prune_files(1)
        self.FIRST = 1
        self.assertStartFailure(self.verify(), "not a checkpoint")

    def test_damaged_first_frame_fails_step_0(self):
        self.build_pruned()
        self.corrupt(self.first_seq, 8 + 60)
        self.assertStartFailure(self.verify(), "first record")

    def test_first_frontier_must_fit_first_seq(self):
        w = self.w
        w.genesis()
        w.checkpoint(anchor=True)
        w.entry(b"a")
        w.seal()                      # segment 1 starts at seq 4 (one node)
        w.checkpoint(anchor=True, tree_size=3, frontier=[bytes(32)] * 2)
        w.prune_files(1)
        self.FIRST = 1
        self.assertStartFailure(self.verify(), "frontier")

    def test_first_checkpoint_is_checked_as_any_record(self):
        """A frontier that fits but is not the log's: the anchor's root,
        head and signature are checked in step 4, where the anchor is."""
        w = self.w
        w.genesis()
        w.checkpoint(anchor=True)
        w.entry(b"a")
        w.seal()
        first_seq = w.seq
        w.checkpoint(anchor=True, frontier=[bytes(32)])
        w.prune_files(1)
        code, report = run_verifier(self.dir)
        self.assertFailure((code, report), 1, 69 + len(w.agent_id), first_seq)
        self.assertIn("root", report["failure"]["reason"])

    def test_start_removed_without_a_prune_record(self):
        """Ledger present, files gone, no prune record: reported at S, offset
        0, S's first_seq, after everything else."""
        self.build_prunable()
        self.w.prune_files(self.FIRST, record=False)
        self.w.entry(b"more")
        self.assertFailure(self.verify(), self.FIRST, 0, self.first_seq)

    def test_other_failures_come_before_the_missing_prune_record(self):
        self.build_prunable()
        self.w.prune_files(self.FIRST, record=False)
        off = self.w.receipt(self.w.seq - 1, bytes(32))  # a wrong root
        self.assertFailure(self.verify(), self.FIRST, off, self.w.seq - 1)

    def test_one_segment_too_many_removed(self):
        """Segment 2 removed too: its epoch is not in the ledger, so segment
        3's anchor is signed by a key the ledger did not arrive at."""
        self.build_pruned()
        w = self.w
        w.seal()
        first_seq_3 = w.seq
        w.checkpoint(anchor=True)
        os.remove(w.path(self.FIRST))
        self.assertFailure(self.verify(), 3, 69 + len(w.agent_id), first_seq_3)

    def test_one_segment_too_many_removed_in_the_same_epoch(self):
        """Segment 3 removed too, in an epoch the ledger reaches: everything
        checks but no prune record names segment 4 or later."""
        self.build_prunable()
        w = self.w
        w.prune_files(self.FIRST)
        w.seal()                               # segment 3
        w.checkpoint(anchor=True)
        w.seal()                               # segment 4
        first_seq_4 = w.seq
        w.checkpoint(anchor=True)
        for number in (self.FIRST, 3):
            os.remove(w.path(number))
        self.assertFailure(self.verify(), 4, 0, first_seq_4)

    def test_a_later_prune_record_counts(self):
        self.build_pruned()
        w = self.w
        w.seal()                               # segment 3
        w.checkpoint(anchor=True)
        w.receipt(w.seq - 1, self.checkpoint_root(w.seq - 1))
        prune_seq = w.seq
        w.prune_files(3)
        self.FIRST = 3
        code, report = self.verify()
        self.assertEqual(code, 0, report)
        self.assertEqual(report["prunes"], 1)  # the first went with segment 2
        self.assertEqual(report["pruned"]["recorded_at"], prune_seq)
        self.assertEqual(report["pruned"]["ledger_records"], 4)

    def test_prune_without_a_receipt_covering_it_is_failure(self):
        """Section 7: only what a receipt acknowledged may be pruned."""
        w = self.w
        w.genesis()
        w.checkpoint(anchor=True)
        w.entry(b"a")
        w.seal()                               # segment 1
        w.checkpoint(anchor=True)
        w.entry(b"b")
        w.checkpoint()
        w.receipt(1, self.checkpoint_root(1))  # acknowledges segment 0 only in part
        seq = w.seq
        off = w.prune(1, first_kept_seq=w.headers[1][0], anchor_head=w.headers[1][1])
        self.assertFailure(self.verify(), 1, off, seq)

    def test_prune_record_naming_a_segment_not_read(self):
        self.build_prunable()
        seq = self.w.seq
        off = self.w.prune(self.FIRST + 1, first_kept_seq=seq, anchor_head=self.w.head)
        self.assertFailure(self.verify(), self.FIRST, off, seq)

    def test_prune_record_must_match_the_header(self):
        for field in ("first_kept_seq", "anchor_head"):
            with self.subTest(field=field):
                self.tearDown()
                self.setUp()
                self.build_prunable()
                seq = self.w.seq
                wrong = {"first_kept_seq": self.first_seq + 1} if field == "first_kept_seq" \
                    else {"anchor_head": bytes(32)}
                off = self.w.prune(self.FIRST, **wrong)
                self.assertFailure(self.verify(), self.FIRST, off, seq)

    def test_prune_record_naming_a_pruned_segment_is_not_checked(self):
        """Below the first segment present the named segment is gone."""
        self.build_pruned()
        self.w.prune(1, first_kept_seq=12345, anchor_head=bytes(32))
        code, report = self.verify()
        self.assertEqual(code, 0, report)
        self.assertEqual(report["prunes"], 2)
        self.assertEqual(report["pruned"]["recorded_at"], self.prune_seq)

    def test_receipt_for_a_pruned_checkpoint_needs_a_valid_signature(self):
        self.build_pruned()
        w = self.w
        w.collector = Ed25519PrivateKey.from_private_bytes(b"\x0a" * 32)
        seq = w.seq
        off = w.receipt(self.old_cp, bytes(32))  # any root: its checkpoint is gone
        code, report = self.verify()
        self.assertEqual(code, 0, report)
        self.corrupt(seq, 8 + wv.RECORD_HEADER_LEN + 20)  # inside the root
        self.fix_crc(seq)
        self.assertFailure(self.verify(), w.segment, off, seq)

    def test_receipt_at_first_seq_needs_the_anchor_root(self):
        self.build_pruned()
        off = self.w.receipt(self.first_seq, bytes(32))
        self.assertFailure(self.verify(), self.FIRST, off, self.w.seq - 1)


# ---------------------------------------------------------------------------
# Encryption at rest (sections 3.3, 6.2.1, 6.16, 7 step 4). The data keys
# are wrapped by the real `age` tool; the verifier opens them with its own
# age implementation.
# ---------------------------------------------------------------------------

AGE = shutil.which("age")
AGE_KEYGEN = shutil.which("age-keygen")
NEED_AGE = unittest.skipUnless(
    AGE and AGE_KEYGEN,
    "the age tool is not installed (apt-get install age): the age and "
    "encrypted-spool self-checks need it to make real age files")


def age_keygen(path: str) -> str:
    """A new identity file at `path` (age-keygen -o); returns its recipient."""
    subprocess.run([AGE_KEYGEN, "-o", path], check=True, capture_output=True)
    out = subprocess.run([AGE_KEYGEN, "-y", path], check=True, capture_output=True)
    return out.stdout.decode().strip()


def age_encrypt(plaintext: bytes, *recipients: str) -> bytes:
    """A binary age file made by the age tool."""
    args = [AGE]
    for recipient in recipients:
        args += ["-r", recipient]
    return subprocess.run(args, input=plaintext, check=True, capture_output=True).stdout


def run_cat(spool: str, *extra: str) -> tuple[int, list[dict], dict]:
    """--cat --json: (exit code, the entries from stdout, the report from stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = wv.main(["--spool", spool, "--json", "--cat", *extra])
    entries = [json.loads(line) for line in out.getvalue().splitlines()]
    report_line = [line for line in err.getvalue().splitlines() if line.startswith("{")]
    return code, entries, json.loads(report_line[0]) if report_line else {}


def body_of(entry: dict) -> bytes:
    return base64.b64decode(entry["body"]["b64"])


class Bech32Test(unittest.TestCase):
    def test_round_trip_and_checksum(self):
        data = bytes(range(32))
        text = wv.bech32_encode("age", data)
        self.assertEqual(wv.bech32_decode(text), ("age", data))
        self.assertEqual(wv.bech32_decode(text.upper()), ("age", data))
        bad = text[:-1] + ("q" if text[-1] != "q" else "p")
        with self.assertRaises(ValueError):
            wv.bech32_decode(bad)
        with self.assertRaises(ValueError):  # mixed case
            wv.bech32_decode(text[:5] + text[5:].upper())

    def test_bip173_vector(self):
        self.assertEqual(wv.bech32_decode("A12UEL5L"), ("a", b""))
        self.assertEqual(wv.bech32_decode(
            "abcdef1qpzry9x8gf2tvdw0s3jn54khce6mua7lmqqqxw")[0], "abcdef")

    def test_identity_file_syntax(self):
        with self.assertRaises(wv.UsageError):
            wv.parse_identity_file("# only a comment\n\n")
        with self.assertRaises(wv.UsageError):
            wv.parse_identity_file("AGE-SECRET-KEY-1QQQQ\n")
        with self.assertRaises(wv.UsageError):
            wv.parse_identity_file("age1qqqq\n")


@NEED_AGE
class AgeTest(unittest.TestCase):
    """The verifier's age v1 decryption against files the age tool made."""

    @classmethod
    def setUpClass(cls):
        cls._tmp = tempfile.TemporaryDirectory()
        cls.key1 = os.path.join(cls._tmp.name, "k1.txt")
        cls.key2 = os.path.join(cls._tmp.name, "k2.txt")
        cls.rcpt1, cls.rcpt2 = age_keygen(cls.key1), age_keygen(cls.key2)

    @classmethod
    def tearDownClass(cls):
        cls._tmp.cleanup()

    def ids(self, *paths):
        return wv.load_identities(list(paths))

    def test_recipient_derived_from_the_identity(self):
        self.assertEqual(self.ids(self.key1)[0].recipient, self.rcpt1)
        self.assertEqual(len(wv.parse_age_recipient(self.rcpt1)), 32)

    def test_opens_32_bytes(self):
        data = os.urandom(32)
        self.assertEqual(wv.age_decrypt(age_encrypt(data, self.rcpt1), self.ids(self.key1)),
                         data)

    def test_chunk_boundaries_and_several_recipients(self):
        for size in (0, 1, 65535, 65536, 65537, 2 * 65536, 200_000):
            data = os.urandom(size)
            wrapped = age_encrypt(data, self.rcpt1, self.rcpt2)
            for key in (self.key1, self.key2):
                self.assertEqual(wv.age_decrypt(wrapped, self.ids(key)), data, (size, key))

    def test_wrong_identity_is_a_clear_error(self):
        wrapped = age_encrypt(os.urandom(32), self.rcpt1)
        with self.assertRaisesRegex(wv.AgeError, "no identity matches.*" + self.rcpt2):
            wv.age_decrypt(wrapped, self.ids(self.key2))

    def test_identity_file_with_comments_and_several_keys(self):
        with open(self.key1) as f1, open(self.key2) as f2:
            text = "# two keys\n\n" + f2.read() + "\n   \n" + f1.read()
        ids = wv.parse_identity_file(text)
        self.assertEqual([i.recipient for i in ids], [self.rcpt2, self.rcpt1])
        data = os.urandom(32)
        self.assertEqual(wv.age_decrypt(age_encrypt(data, self.rcpt1), ids), data)

    def test_header_mac_covers_the_stanzas(self):
        wrapped = age_encrypt(os.urandom(32), self.rcpt1)
        at = wrapped.index(b"\n---") + 1
        grease = wrapped[:at] + b"-> grease x\n\n" + wrapped[at:]
        with self.assertRaisesRegex(wv.AgeError, "header MAC mismatch"):
            wv.age_decrypt(grease, self.ids(self.key1))

    def test_payload_tamper(self):
        wrapped = bytearray(age_encrypt(os.urandom(32), self.rcpt1))
        wrapped[-1] ^= 1
        with self.assertRaisesRegex(wv.AgeError, "does not authenticate"):
            wv.age_decrypt(bytes(wrapped), self.ids(self.key1))
        payload_at = wv.parse_age_header(bytes(wrapped))[3]
        for cut in (payload_at + 16, payload_at + 31, payload_at + 10):
            with self.assertRaisesRegex(wv.AgeError, "truncated"):
                wv.age_decrypt(bytes(wrapped[:cut]), self.ids(self.key1))

    def test_not_age(self):
        with self.assertRaisesRegex(wv.AgeError, "not an age v1 file"):
            wv.age_decrypt(b"-----BEGIN AGE ENCRYPTED FILE-----\n", self.ids(self.key1))


# Bodies and fields that must come back byte for byte.
SEALED_LINES = [b"hello", b"bad utf-8 \xff\xfe\xc3(", b"nul \x00 byte", b"",
                b"x" * 70_000]
SEALED_FIELDS = [(b"PRIORITY", b"6"), (b"RAW", b"\x00\xff\x80 not text")]


@NEED_AGE
class EncryptedSpoolTest(unittest.TestCase):
    """Segment 0: genesis, anchor, data_key (D0), sealed entries, seal.
    Segment 1: anchor, data_key (D1), sealed entries, checkpoint, seal.
    Segment 2: anchor, clear entries (encryption turned off)."""

    @classmethod
    def setUpClass(cls):
        AgeTest.setUpClass.__func__(cls)

    @classmethod
    def tearDownClass(cls):
        cls._tmp.cleanup()

    setUp, tearDown = SpoolTest.setUp, SpoolTest.tearDown
    corrupt, fix_crc, assertFailure = SpoolTest.corrupt, SpoolTest.fix_crc, SpoolTest.assertFailure

    def new_data_key(self, *recipients: str) -> bytes:
        """A data_key record wrapping a new D for the recipients; returns D
        (and leaves the record's offset in self.off)."""
        data_key = os.urandom(32)
        recipients = recipients or (self.rcpt1,)
        self.off = self.w.data_key([r.encode() for r in recipients],
                                   age_encrypt(data_key, *recipients))
        return data_key

    def build(self) -> None:
        w = self.w
        w.genesis()
        w.checkpoint(anchor=True)
        self.d0 = self.new_data_key()
        w.start()
        self.sealed_seqs = []
        for line in SEALED_LINES:
            self.sealed_seqs.append(w.seq)
            w.sealed_entry(self.d0, line, fields=SEALED_FIELDS)
        w.checkpoint()
        w.seal()
        w.checkpoint(anchor=True)
        self.d1 = self.new_data_key(self.rcpt1, self.rcpt2)
        self.seg1_seq = w.seq
        w.sealed_entry(self.d1, b"segment 1 \x00\xff")
        w.heartbeat()
        w.checkpoint()
        w.seal()
        w.checkpoint(anchor=True)
        self.clear_seq = w.seq
        w.entry(b"in clear")

    def verify(self, *extra):
        return run_verifier(self.dir, "--pubkey", pubkey_text(self.w.pub0), *extra)

    # -- integrity without any key -------------------------------------------

    def test_verifies_without_identity(self):
        self.build()
        code, report = self.verify()
        self.assertEqual(code, 0, report)
        self.assertEqual(report["records"], self.w.seq)
        self.assertNotIn("decryption", report)  # only with --identity / --entry-key

    def test_cat_without_identity_shows_no_content(self):
        self.build()
        code, entries, report = run_cat(self.dir)
        self.assertEqual(code, 0, report)
        self.assertTrue(report["ok"])
        sealed = [e for e in entries if e["sealed"]]
        self.assertEqual(len(sealed), len(SEALED_LINES) + 1)
        for e in sealed:
            self.assertNotIn("body", e)
            self.assertNotIn("error", e)
            self.assertGreaterEqual(e["sealed_bytes"], 18)
        self.assertEqual(body_of(entries[-1]), b"in clear")

    # -- opening with an identity --------------------------------------------

    def test_identity_opens_every_entry_byte_exact(self):
        self.build()
        code, entries, report = run_cat(self.dir, "--identity", self.key1)
        self.assertEqual(code, 0, report)
        self.assertEqual([body_of(e) for e in entries],
                         SEALED_LINES + [b"segment 1 \x00\xff", b"in clear"])
        self.assertEqual(entries[0]["seq"], self.sealed_seqs[0])
        self.assertEqual(entries[0]["source"], "syslog")
        self.assertEqual([(f["key"], base64.b64decode(f["value"]["b64"]))
                          for f in entries[0]["fields"]],
                         [(k.decode(), v) for k, v in SEALED_FIELDS])
        self.assertEqual(entries[0]["body"]["text"], "hello")
        self.assertIsNone(entries[1]["body"]["text"])  # not UTF-8: b64 only
        self.assertEqual(entries[2]["body"]["text"], "nul \x00 byte")
        dec = report["decryption"]
        self.assertEqual((dec["data_keys_opened"], dec["entries_opened"], dec["problems"]),
                         (2, len(SEALED_LINES) + 1, []))

    def test_second_recipient_opens_only_its_segment(self):
        self.build()
        code, entries, report = run_cat(self.dir, "--identity", self.key2)
        self.assertEqual(code, 3, report)
        self.assertTrue(report["ok"])  # the verdict does not depend on a key
        opened = [e["seq"] for e in entries if e["sealed"] and "body" in e]
        self.assertEqual(opened, [self.seg1_seq])
        reasons = [p["reason"] for p in report["decryption"]["problems"]]
        self.assertIn("no identity matches", reasons[0])

    def test_wrong_identity_is_a_clear_error(self):
        self.build()
        other = os.path.join(self.dir, "other.txt")
        other_rcpt = age_keygen(other)
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = wv.main(["--spool", self.dir, "--identity", other])
        self.assertEqual(code, 3)
        text = out.getvalue()
        self.assertIn("intact", text)
        self.assertIn("NOT OPENED: segment 0, seq 2: data key not opened: no identity "
                      "matches", text)
        self.assertIn(other_rcpt, text)

    def test_verify_with_identity_and_no_cat(self):
        self.build()
        code, report = self.verify("--identity", self.key2, "--identity", self.key1)
        self.assertEqual(code, 0, report)
        self.assertEqual(report["decryption"]["entries_opened"], len(SEALED_LINES) + 1)

    # -- one entry's own key ---------------------------------------------------

    def test_entry_key_opens_its_entry_and_not_the_next(self):
        self.build()
        seq = self.sealed_seqs[2]
        key = entry_key_of(self.d0, seq).hex()
        self.assertEqual(wv.entry_key(self.d0, seq).hex(), key)
        code, entries, report = run_cat(self.dir, "--entry-key", key, "--seq", str(seq))
        self.assertEqual(code, 0, report)
        self.assertEqual([(e["seq"], body_of(e)) for e in entries], [(seq, SEALED_LINES[2])])
        code, entries, report = run_cat(self.dir, "--entry-key", key, "--seq", str(seq + 1))
        self.assertEqual(code, 3, report)
        self.assertEqual(len(entries), 1)
        self.assertNotIn("body", entries[0])
        self.assertIn("does not open with this key", entries[0]["error"])

    def test_shown_entry_key_discloses_one_entry(self):
        self.build()
        _, entries, _ = run_cat(self.dir, "--identity", self.key1, "--show-entry-keys")
        shown = {e["seq"]: e.get("entry_key") for e in entries}
        self.assertIsNone(shown[self.clear_seq])  # a clear entry has no key
        seq = self.seg1_seq
        self.assertEqual(shown[seq], entry_key_of(self.d1, seq).hex())
        code, entries, report = run_cat(self.dir, "--entry-key", shown[seq], "--seq", str(seq))
        self.assertEqual(code, 0, report)
        self.assertEqual(body_of(entries[0]), b"segment 1 \x00\xff")
        code, _ = run_verifier(self.dir, "--show-entry-keys")  # needs --cat, --identity
        self.assertEqual(code, 2)

    def test_seq_that_is_no_entry(self):
        self.build()
        code, entries, _ = run_cat(self.dir, "--seq", "1")  # the anchor
        self.assertEqual((code, entries), (2, []))
        code, _ = run_verifier(self.dir, "--entry-key", "00" * 32)  # no --seq
        self.assertEqual(code, 2)

    # -- tampering, found without any key ------------------------------------

    def test_flipped_ciphertext_byte_breaks_the_chain(self):
        self.build()
        seq = self.sealed_seqs[0]
        self.corrupt(seq, 8 + wv.RECORD_HEADER_LEN + 12, byte=0x01)  # in `sealed`
        self.fix_crc(seq)
        seg, off = self.w.offsets[seq + 1]
        code, report = self.verify()
        self.assertFailure((code, report), seg, off, seq + 1)
        self.assertIn("prev", report["failure"]["reason"])

    def test_data_key_moved(self):
        w = self.w
        w.genesis()
        w.checkpoint(anchor=True)
        w.start()
        off = w.data_key([self.rcpt1.encode()], age_encrypt(bytes(32), self.rcpt1))
        code, report = self.verify()
        self.assertFailure((code, report), 0, off, 3)
        self.assertIn("right after", report["failure"]["reason"])

    def test_data_key_before_the_anchor(self):
        w = self.w
        w.genesis()
        off = w.data_key([self.rcpt1.encode()], age_encrypt(bytes(32), self.rcpt1))
        self.assertFailure(self.verify(), 0, off, 1)

    def test_data_key_duplicated(self):
        w = self.w
        w.genesis()
        w.checkpoint(anchor=True)
        self.new_data_key()
        self.new_data_key()
        off = self.off
        code, report = self.verify()
        self.assertFailure((code, report), 0, off, 3)
        self.assertIn("second data_key", report["failure"]["reason"])

    def test_data_key_after_a_later_checkpoint(self):
        w = self.w
        w.genesis()
        w.checkpoint(anchor=True)
        w.checkpoint()
        self.new_data_key()
        self.assertFailure(self.verify(), 0, self.off, 3)

    def test_data_key_after_recovery_and_anchor(self):
        w = self.w
        w.genesis()
        w.checkpoint(anchor=True)
        d0 = self.new_data_key()
        w.sealed_entry(d0, b"a")
        end = os.path.getsize(w.path())
        w.raw_append(frame_start(500) + b"torn")
        w.recover(wv.CAUSE_TORN_TAIL, end, 3)
        w.checkpoint(anchor=True)
        d1 = self.new_data_key()
        w.sealed_entry(d1, b"b")
        code, entries, report = run_cat(self.dir, "--identity", self.key1)
        self.assertEqual(code, 0, report)
        self.assertEqual([body_of(e) for e in entries], [b"a", b"b"])

    def test_sealed_entry_in_a_segment_without_data_key(self):
        self.build()  # segment 2 has none
        w = self.w
        seq = w.seq
        off = w.sealed_entry(self.d1, b"sealed, but no data key here")
        code, report = self.verify()
        self.assertFailure((code, report), 2, off, seq)
        self.assertIn("no data_key", report["failure"]["reason"])

    def test_clear_entry_in_a_segment_with_data_key(self):
        w = self.w
        w.genesis()
        w.checkpoint(anchor=True)
        d0 = self.new_data_key()
        w.sealed_entry(d0, b"a")
        off = w.entry(b"in clear")
        code, report = self.verify()
        self.assertFailure((code, report), 0, off, 4)
        self.assertIn("clear entry", report["failure"]["reason"])

    def test_sealed_flag_on_other_kinds(self):
        """Flag bit 0 on a heartbeat, a gap, a checkpoint or a data_key (in a
        segment with a data key, CRC right) is malformed."""
        for kind, make in (("heartbeat", lambda w: w.heartbeat(flags=1)),
                           ("gap", lambda w: w.append(wv.GAP, b8(b"syslog") + position_none()
                                                      + struct.pack("<HQQ", 1, 0, 0)
                                                      + b16(b""), flags=1)),
                           ("checkpoint", None), ("data_key", None)):
            with self.subTest(kind=kind):
                self.tearDown()
                self.setUp()
                w = self.w
                w.genesis()
                w.checkpoint(anchor=True)
                if kind == "data_key":
                    seq = w.seq
                    self.new_data_key()
                    self.corrupt(seq, 8 + 2, byte=0x01)
                    self.fix_crc(seq)
                else:
                    self.new_data_key()
                    seq = w.seq
                    if make is None:  # signed: the flag is set in the record signed
                        w.append(wv.CHECKPOINT, b"", flags=1)  # decoding stops first
                    else:
                        make(w)
                seg, off = w.offsets[seq]
                code, report = self.verify()
                self.assertFailure((code, report), seg, off, seq)
                self.assertIn("sealed flag on a", report["failure"]["reason"])

    def test_other_record_flags_on_a_sealed_entry(self):
        w = self.w
        w.genesis()
        w.checkpoint(anchor=True)
        d0 = self.new_data_key()
        off = w.sealed_entry(d0, b"a", flags=0x0003)
        self.assertFailure(self.verify(), 0, off, 3)

    def test_sealed_shorter_than_16_bytes(self):
        w = self.w
        w.genesis()
        w.checkpoint(anchor=True)
        self.new_data_key()
        clear = b8(b"syslog") + position_none() + b"\x00"
        off = w.append(wv.ENTRY, clear + bytes(15), flags=1)
        code, report = self.verify()
        self.assertFailure((code, report), 0, off, 3)
        self.assertIn("shorter than its 16-byte tag", report["failure"]["reason"])

    def test_sealed_of_16_bytes_verifies_but_does_not_open(self):
        w = self.w
        w.genesis()
        w.checkpoint(anchor=True)
        self.new_data_key()
        clear = b8(b"syslog") + position_none() + b"\x00"
        w.append(wv.ENTRY, clear + bytes(16), flags=1)
        code, report = self.verify()
        self.assertEqual(code, 0, report)
        code, report = self.verify("--identity", self.key1)
        self.assertEqual(code, 3, report)

    def test_data_key_field_rules(self):
        good = age_encrypt(bytes(32), self.rcpt1)
        cases = [
            ([], good, "without a recipient"),
            ([b"age2abc"], good, "does not start with age1"),
            ([self.rcpt1.encode(), b""], good, "does not start with age1"),
            ([self.rcpt1.encode()], b"age-encryption.org/v1", "wrapped"),
            ([self.rcpt1.encode()], b"-----BEGIN AGE ENCRYPTED FILE-----\n", "wrapped"),
        ]
        for recipients, wrapped, reason in cases:
            with self.subTest(reason=reason, recipients=recipients):
                self.tearDown()
                self.setUp()
                w = self.w
                w.genesis()
                w.checkpoint(anchor=True)
                off = w.data_key(recipients, wrapped)
                code, report = self.verify()
                self.assertFailure((code, report), 0, off, 2)
                self.assertIn(reason, report["failure"]["reason"])

    def test_recipient_must_be_text(self):
        w = self.w
        w.genesis()
        w.checkpoint(anchor=True)
        off = w.data_key([b"age1\xff"], age_encrypt(bytes(32), self.rcpt1))
        self.assertFailure(self.verify(), 0, off, 2)

    def test_data_key_listing_another_recipient(self):
        """Without a key the list cannot be checked against `wrapped`; an
        identity that opens it but is not listed is reported."""
        w = self.w
        w.genesis()
        w.checkpoint(anchor=True)
        w.data_key([self.rcpt2.encode()], age_encrypt(bytes(32), self.rcpt1))
        self.assertEqual(self.verify()[0], 0)
        code, report = self.verify("--identity", self.key1)
        self.assertEqual(code, 3, report)
        self.assertIn("does not list", report["decryption"]["problems"][0]["reason"])

    def test_wrapped_plaintext_must_be_32_bytes(self):
        w = self.w
        w.genesis()
        w.checkpoint(anchor=True)
        w.data_key([self.rcpt1.encode()], age_encrypt(bytes(31), self.rcpt1))
        code, report = self.verify("--identity", self.key1)
        self.assertEqual(code, 3, report)
        self.assertIn("31 bytes", report["decryption"]["problems"][0]["reason"])


if __name__ == "__main__":
    unittest.main()
