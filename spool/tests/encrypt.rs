//! Encryption at rest (docs/FORMAT.md §6.2.1, §6.16): sealed entries
//! verify without any key, no plaintext reaches the segment files, the
//! right identity opens every line byte for byte, a wrong one is refused
//! clearly, an entry's own key opens it and no other, a reopened spool
//! seals its segment and starts a new data key, and a changed ciphertext
//! byte is caught at its record without any key.

mod common;

use common::{TempDir, keygen, open, options, verify};
use std::collections::BTreeMap;
use wormlog_spool::crypt::{Identities, Opener};
use wormlog_spool::record::Payload;
use wormlog_spool::verify::verify_spool;
use wormlog_spool::{Position, Spool};

/// Flips bits `mask` of the first ciphertext byte of record `rec` (its
/// sealed part starts at `split`) in segment 0, and fixes the frame's CRC
/// as a careful attacker would.
fn flip_sealed_byte(t: &TempDir, rec: &[u8], split: usize, mask: u8) {
    let seg = common::segments(&t.spool())[0].clone();
    let mut bytes = std::fs::read(&seg).unwrap();
    let at = memchr::memmem::find(&bytes, &rec[split..split + 16]).unwrap();
    bytes[at] ^= mask;
    let frame_start = memchr::memmem::find(&bytes, &rec[..24]).unwrap() - 8;
    let len =
        u32::from_le_bytes(bytes[frame_start + 4..frame_start + 8].try_into().unwrap()) as usize;
    let crc = crc32c::crc32c(&bytes[frame_start + 4..frame_start + 8 + len]);
    bytes[frame_start..frame_start + 4].copy_from_slice(&crc.to_le_bytes());
    wormlog_spool::worm::clear_flags(&seg).unwrap();
    std::fs::write(&seg, &bytes).unwrap();
}

/// A sealed entry's associated data from its clear part.
fn aad(clear: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    wormlog_spool::crypt::entry_aad(clear, &mut out);
    out
}

fn identity() -> (String, String) {
    let id = age::x25519::Identity::generate();
    (
        age::secrecy::ExposeSecret::expose_secret(&id.to_string()).to_owned(),
        id.to_public().to_string(),
    )
}

/// The lines the tests write: text, invalid UTF-8, a NUL, and one of 10 MiB.
fn lines() -> Vec<Vec<u8>> {
    let mut big = vec![b'x'; 10 << 20];
    big[5] = 0;
    vec![
        b"patient MRN-0042 chart opened by dr.house".to_vec(),
        b"\xff\xfe not UTF-8 \x00 with a NUL".to_vec(),
        b"SSN 078-05-1120".to_vec(),
        big,
    ]
}

fn append_all(s: &mut Spool, from: u64) {
    for (i, l) in lines().iter().enumerate() {
        let fields: &[(&str, &[u8])] = &[("_PID", b"4242"), ("PATIENT", b"Jane Roe")];
        s.append_entry("app", &Position::Counter(from + i as u64), 0, fields, l, 1)
            .unwrap();
    }
}

/// An entry's fields and body.
type Opened = (Vec<(String, Vec<u8>)>, Vec<u8>);

/// Every entry opened with `ids`, by seq (or why it did not open).
fn open_all(dir: &std::path::Path, ids: Identities) -> BTreeMap<u64, Result<Opened, String>> {
    let mut opener = Opener::new(ids);
    let mut out = BTreeMap::new();
    let r = verify_spool(dir, None, &mut |loc, rec, bytes| match &rec.payload {
        Payload::DataKey {
            recipients,
            wrapped,
        } => opener.data_key(loc.segment, recipients, wrapped),
        Payload::Entry(e) => {
            let v = match e.sealed {
                Some(s) => opener
                    .open(loc.segment, rec.seq, bytes, s.len())
                    .map(|o| (o.fields, o.body)),
                None => Err("in clear".into()),
            };
            out.insert(rec.seq, v);
        }
        _ => {}
    })
    .unwrap();
    assert!(r.ok(), "{:?}", r.failure);
    out
}

#[test]
fn sealed_entries_verify_without_a_key_and_open_with_the_identity() {
    let t = TempDir::new();
    let pk = keygen(&t);
    let (secret, recipient) = identity();
    let mut o = options(&t.spool());
    o.encrypt_to = vec![recipient.clone()];
    let mut s = open(&t, o.clone());
    append_all(&mut s, 0);
    s.close("done").unwrap();
    // Again: the reopened spool seals its segment (the data key is gone)
    // and the new one has its own.
    let mut s = open(&t, o);
    append_all(&mut s, 100);
    s.close("done").unwrap();

    let r = verify(&t.spool(), Some(pk));
    assert!(r.ok(), "{:?}", r.failure);
    assert!(r.segments >= 2, "{} segments", r.segments);
    // No line and no field value anywhere in the files.
    let mut all = Vec::new();
    for e in std::fs::read_dir(t.spool()).unwrap() {
        all.extend(std::fs::read(e.unwrap().path()).unwrap());
    }
    for needle in [
        &b"MRN-0042"[..],
        b"078-05-1120",
        b"Jane Roe",
        b"not UTF-8",
        &[b'x'; 64],
    ] {
        assert!(
            memchr::memmem::find(&all, needle).is_none(),
            "{:?} is in the spool in clear",
            String::from_utf8_lossy(needle)
        );
    }
    // The right identity opens every entry, byte for byte.
    let ids = Identities::from_bytes(format!("{secret}\n").as_bytes(), "test").unwrap();
    let opened = open_all(&t.spool(), ids);
    let want = lines();
    let bodies: Vec<&Vec<u8>> = opened.values().map(|v| &v.as_ref().unwrap().1).collect();
    assert_eq!(bodies.len(), 2 * want.len());
    for (i, b) in bodies.iter().enumerate() {
        assert_eq!(**b, want[i % want.len()], "entry {i}");
    }
    let fields = &opened.values().next().unwrap().as_ref().unwrap().0;
    assert_eq!(fields[1], ("PATIENT".to_owned(), b"Jane Roe".to_vec()));
    // A wrong identity: every entry refused, with a clear reason.
    let (other, _) = identity();
    let wrong = Identities::from_bytes(other.as_bytes(), "wrong").unwrap();
    for v in open_all(&t.spool(), wrong).values() {
        let e = v.as_ref().unwrap_err();
        assert!(
            e.contains("no identity given opens") && e.contains(&recipient),
            "{e}"
        );
    }
}

#[test]
fn an_entry_key_opens_its_entry_only_and_a_changed_byte_is_caught() {
    let t = TempDir::new();
    let pk = keygen(&t);
    let (secret, recipient) = identity();
    let mut o = options(&t.spool());
    o.encrypt_to = vec![recipient];
    let mut s = open(&t, o);
    append_all(&mut s, 0);
    s.close("done").unwrap();
    // The per-entry key of the first entry, from its segment's data key.
    let ids = Identities::from_bytes(secret.as_bytes(), "test").unwrap();
    let mut records: Vec<(u64, Vec<u8>, usize)> = Vec::new();
    let mut data_key = None;
    verify_spool(&t.spool(), None, &mut |_, rec, bytes| match &rec.payload {
        Payload::DataKey { wrapped, .. } => data_key = Some(wrapped.to_vec()),
        Payload::Entry(e) => records.push((rec.seq, bytes.to_vec(), e.sealed.unwrap().len())),
        _ => {}
    })
    .unwrap();
    let d = wormlog_spool::crypt::DataKey::unwrap(&data_key.unwrap(), &ids, &[]).unwrap();
    let (seq, rec, n) = &records[0];
    let k = d.entry_keys().key(*seq);
    let split = rec.len() - n;
    let plain = k.open(&aad(&rec[..split]), &rec[split..]).unwrap();
    assert!(plain.ends_with(b"dr.house"));
    let (_, rec2, n2) = &records[1];
    let split2 = rec2.len() - n2;
    assert!(
        k.open(&aad(&rec2[..split2]), &rec2[split2..]).is_err(),
        "another entry"
    );
    // Flip one ciphertext byte of the first entry and fix its CRC: verify,
    // with no key, names that record.
    flip_sealed_byte(&t, rec, split, 1);
    let r = verify(&t.spool(), Some(pk));
    let f = r.failure.expect("a changed ciphertext byte");
    // The changed record still decodes; its leaf no longer matches the
    // `prev` of the record after it, which is where the chain breaks.
    assert_eq!(f.seq, seq + 1, "{f:?}");
}

/// The independent Python verifier (tests/pyverify) and the real `age`
/// tool agree with this crate on an encrypted spool: integrity without a
/// key, every line with the identity, a wrapped data key opened by `age -d`,
/// and a changed ciphertext byte named at the same record.
#[test]
fn the_python_verifier_and_the_age_tool_agree() {
    let t = TempDir::new();
    let pk = keygen(&t);
    let (secret, recipient) = identity();
    let id_file = t.path().join("identity.txt");
    std::fs::write(&id_file, format!("# test\n{secret}\n")).unwrap();
    let mut o = options(&t.spool());
    o.encrypt_to = vec![recipient];
    let mut s = open(&t, o.clone());
    append_all(&mut s, 0);
    s.close("done").unwrap();
    let mut s = open(&t, o);
    append_all(&mut s, 100);
    s.close("done").unwrap();
    // Integrity, no key, both verifiers.
    let py = common::pyverify(&t.spool(), Some(pk));
    assert_eq!(py["ok"], true, "{py}");
    // Every line, byte for byte, from the Python verifier with the identity.
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/pyverify/wormlog_verify.py");
    let python = std::env::var("WORMLOG_PYTHON").unwrap_or_else(|_| "python3".into());
    let out = std::process::Command::new(&python)
        .arg(&script)
        .arg("--spool")
        .arg(t.spool())
        .arg("--identity")
        .arg(&id_file)
        .arg("--cat")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let want = lines();
    let got: Vec<Vec<u8>> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["source"] == "app")
        .map(|v| {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD
                .decode(v["body"]["b64"].as_str().unwrap())
                .unwrap()
        })
        .collect();
    assert_eq!(got.len(), 2 * want.len());
    for (i, b) in got.iter().enumerate() {
        assert_eq!(*b, want[i % want.len()], "entry {i}");
    }
    // `age -d -i` opens a segment's wrapped data key: the same 32 bytes.
    let mut wrapped = None;
    verify_spool(&t.spool(), None, &mut |_, rec, _| {
        if let Payload::DataKey { wrapped: w, .. } = &rec.payload
            && wrapped.is_none()
        {
            wrapped = Some(w.to_vec());
        }
    })
    .unwrap();
    let wrapped = wrapped.unwrap();
    let wfile = t.path().join("data-key.age");
    std::fs::write(&wfile, &wrapped).unwrap();
    let out = std::process::Command::new("age")
        .arg("-d")
        .arg("-i")
        .arg(&id_file)
        .arg(&wfile)
        .output()
        .expect("the age tool (Debian package age) is needed");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ids = Identities::from_file(&id_file).unwrap();
    let d = wormlog_spool::crypt::DataKey::unwrap(&wrapped, &ids, &[]).unwrap();
    assert_eq!(out.stdout.len(), 32);
    // The same key: an entry key derived from age's output opens an entry.
    let mut first = None;
    verify_spool(&t.spool(), None, &mut |_, rec, bytes| {
        if let Payload::Entry(e) = &rec.payload
            && first.is_none()
        {
            first = Some((rec.seq, bytes.to_vec(), e.sealed.unwrap().len()));
        }
    })
    .unwrap();
    let (seq, rec, n) = first.unwrap();
    let d_age = wormlog_spool::crypt::DataKey::from_bytes(out.stdout.try_into().unwrap());
    let split = rec.len() - n;
    let a = d_age
        .entry_keys()
        .key(seq)
        .open(&aad(&rec[..split]), &rec[split..])
        .unwrap();
    let b = d
        .entry_keys()
        .key(seq)
        .open(&aad(&rec[..split]), &rec[split..])
        .unwrap();
    assert_eq!(a, b);
    // A changed ciphertext byte: both verifiers fail at the same record.
    flip_sealed_byte(&t, &rec, split, 0x80);
    let r = verify(&t.spool(), Some(pk));
    let f = r.failure.expect("caught");
    let py = common::pyverify(&t.spool(), Some(pk));
    assert_eq!(py["ok"], false, "{py}");
    assert_eq!(py["failure"]["seq"], f.seq, "{py} vs {f:?}");
    assert_eq!(py["failure"]["segment"], f.segment, "{py} vs {f:?}");
}

/// A deterministic mix of entry sizes (1 byte to 3 KiB, and now and then
/// one of 300 KiB: larger than a sealing chunk).
fn batch_bodies(n: usize) -> Vec<Vec<u8>> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..n)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let len = if i % 997 == 500 {
                300 << 10
            } else {
                1 + (x % 3072) as usize
            };
            let mut b = format!("line {i} ").into_bytes();
            b.resize(len.max(b.len()), b'a' + (i % 26) as u8);
            b
        })
        .collect()
}

/// Appends `bodies` in one batch; returns the seq of each.
fn append_batch(s: &mut Spool, bodies: &[Vec<u8>]) -> Vec<u64> {
    s.append_entries(|sink| {
        let mut seqs = Vec::new();
        for (i, b) in bodies.iter().enumerate() {
            let fields: &[(&str, &[u8])] = if i % 3 == 0 {
                &[("_PID", b"4242")]
            } else {
                &[]
            };
            seqs.push(sink.push("app", &Position::Counter(i as u64), 0, fields, b, 7)?);
        }
        Ok::<_, wormlog_spool::SpoolError>(seqs)
    })
    .unwrap()
}

/// Checks that the spool verifies and that its entries, opened, are
/// exactly `bodies` at `seqs`, in order.
fn assert_batch_kept(t: &TempDir, pk: [u8; 32], id: &str, bodies: &[Vec<u8>], seqs: &[u64]) {
    let r = verify(&t.spool(), Some(pk));
    assert!(r.ok(), "{:?}", r.failure);
    let ids = Identities::from_bytes(id.as_bytes(), "test").unwrap();
    let opened = open_all(&t.spool(), ids);
    let got: Vec<(u64, Vec<u8>)> = opened
        .into_iter()
        .map(|(seq, o)| (seq, o.expect("every entry opens").1))
        .collect();
    let want: Vec<(u64, Vec<u8>)> = seqs.iter().copied().zip(bodies.iter().cloned()).collect();
    assert_eq!(got.len(), want.len(), "each entry exactly once");
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(g.0, w.0, "the seq push returned is the entry's");
        assert!(g.1 == w.1, "entry {} opens to its own line", g.0);
    }
}

#[test]
fn a_batch_sealed_on_the_second_core_crosses_checkpoints_and_segments() {
    let t = TempDir::new();
    let pk = keygen(&t);
    let (id, to) = identity();
    let mut o = options(&t.spool());
    o.encrypt_to = vec![to];
    o.checkpoint_bytes = 8 << 10;
    o.segment_max_bytes = 1 << 20;
    o.commit_bytes = 64 << 10;
    let mut s = open(&t, o);
    let bodies = batch_bodies(6000);
    let seqs = append_batch(&mut s, &bodies);
    let stats = s.stats();
    assert!(
        stats.segment_no >= 5,
        "several segments: {}",
        stats.segment_no
    );
    assert!(
        stats.checkpoints >= 100,
        "many checkpoints: {}",
        stats.checkpoints
    );
    assert_eq!(
        stats.resealed, 0,
        "every seq given out ahead was the one the entry got"
    );
    assert_eq!(
        s.positions()["app"].values().next(),
        Some(&Position::Counter(5999)),
        "the position moved with the last entry"
    );
    s.close("x").unwrap();
    assert_batch_kept(&t, pk, &id, &bodies, &seqs);
}

#[test]
fn entries_sealed_ahead_are_sealed_again_when_a_failed_fsync_rewrites_the_segment() {
    use std::sync::Arc;
    use std::sync::atomic::Ordering;
    use wormlog_spool::writer::flusher::FaultInjector;
    let t = TempDir::new();
    let pk = keygen(&t);
    let (id, to) = identity();
    let fault = Arc::new(FaultInjector::default());
    let mut o = options(&t.spool());
    o.encrypt_to = vec![to];
    o.commit_bytes = 4 << 10;
    o.fault = Some(fault.clone());
    let mut s = open(&t, o);
    s.sync().unwrap();
    // The next fsync fails: the writer learns it while chaining, with
    // entries already sealed ahead under the abandoned segment's key.
    fault
        .fail_sync_at
        .store(fault.syncs() + 1, Ordering::SeqCst);
    let bodies = batch_bodies(20_000);
    append_batch(&mut s, &bodies);
    s.sync().unwrap();
    let stats = s.stats();
    assert!(
        stats.resealed > 0,
        "the failure came while entries were ahead of the chain"
    );
    s.close("x").unwrap();
    let r = verify(&t.spool(), Some(pk));
    assert_eq!(r.recoveries.len(), 1, "one fsync failure, one recovery");
    // The entries rewritten after the failure got new seqs: compare bodies
    // in order, each exactly once.
    let ids = Identities::from_bytes(id.as_bytes(), "test").unwrap();
    let got: Vec<Vec<u8>> = open_all(&t.spool(), ids)
        .into_values()
        .map(|o| o.expect("every entry opens").1)
        .collect();
    assert_eq!(got.len(), bodies.len(), "each entry exactly once");
    assert!(got == bodies, "in order, byte for byte");
}
