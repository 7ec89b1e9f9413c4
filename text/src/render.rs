//! Showing records to people and programs. Human output escapes control
//! and bidirectional-override characters so a hostile line cannot move the
//! cursor, recolour the terminal or reorder what is shown; JSON keeps bytes
//! that are not UTF-8 as base64.

use base64::Engine as _;
use serde_json::{Map, Value, json};
use wormlog_spool::clock::rfc3339;
use wormlog_spool::hash::hex;
use wormlog_spool::keys::format_pubkey;
use wormlog_spool::record::{AlertCode, GapReason, Payload, Record};

/// Characters that reorder text on screen (Trojan Source, CVE-2021-42574).
fn is_bidi(c: char) -> bool {
    matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Escapes bytes for a terminal: printable UTF-8 as is; `\\` doubled;
/// `\t`, `\r`, `\n` as such; other control and bidi characters as `\u{…}`;
/// bytes that are not UTF-8 as `\xNN`.
pub fn escape_bytes(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '\t' => out.push_str("\\t"),
                '\r' => out.push_str("\\r"),
                '\n' => out.push_str("\\n"),
                c if c.is_control() || is_bidi(c) => {
                    out.push_str(&format!("\\u{{{:04x}}}", c as u32))
                }
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

fn bytes_value(b: &[u8]) -> Value {
    match std::str::from_utf8(b) {
        Ok(s) => Value::String(s.to_owned()),
        Err(_) => json!({ "base64": b64(b) }),
    }
}

fn position_value(p: &wormlog_spool::position::PositionRef<'_>) -> Value {
    use wormlog_spool::Position;
    match p.to_position() {
        Ok(Position::None) => Value::Null,
        Ok(Position::File {
            dev,
            ino,
            fingerprint,
            offset,
        }) => {
            json!({"file": {"dev": dev, "ino": ino, "fingerprint": format!("{fingerprint:016x}"), "offset": offset}})
        }
        Ok(Position::Journal(c)) => json!({ "cursor": c }),
        Ok(Position::Counter(n)) => json!({ "counter": n }),
        _ => json!({ "kind": p.kind, "base64": b64(p.bytes) }),
    }
}

/// One record as a JSON object (`cat --json`).
pub fn record_json(rec: &Record<'_>, segment: u64, offset: u64) -> Value {
    let mut m = Map::new();
    m.insert("seq".into(), json!(rec.seq));
    m.insert("kind".into(), json!(rec.kind.name()));
    m.insert("ts".into(), json!(rfc3339(rec.ts)));
    m.insert("source".into(), Value::Null);
    m.insert("segment".into(), json!(segment));
    m.insert("offset".into(), json!(offset));
    match &rec.payload {
        Payload::Entry(e) => {
            m.insert("source".into(), json!(e.source));
            if let Some(sealed) = e.sealed {
                // Never ciphertext as if it were a line.
                m.insert("encrypted".into(), json!(true));
                m.insert("body".into(), Value::Null);
                m.insert(
                    "encrypted_bytes".into(),
                    json!(sealed.len().saturating_sub(16)),
                );
            } else {
                match std::str::from_utf8(e.body) {
                    Ok(s) => m.insert("body".into(), json!(s)),
                    Err(_) => m.insert("body_base64".into(), json!(b64(e.body))),
                };
            }
            m.insert("position".into(), position_value(&e.position));
            let mut flags = Vec::new();
            if e.flags & wormlog_spool::record::ENTRY_NO_NEWLINE != 0 {
                flags.push("no_newline");
            }
            if e.flags & wormlog_spool::record::ENTRY_MORE_PARTS != 0 {
                flags.push("more_parts");
            }
            if e.flags & wormlog_spool::record::ENTRY_CONTINUATION != 0 {
                flags.push("continuation");
            }
            if !flags.is_empty() {
                m.insert("flags".into(), json!(flags));
            }
            if !e.fields.is_empty() {
                m.insert("fields".into(), fields_value(&e.fields, e.body));
            }
        }
        Payload::DataKey {
            recipients,
            wrapped,
        } => {
            m.insert("recipients".into(), json!(recipients));
            m.insert("wrapped_bytes".into(), json!(wrapped.len()));
        }
        Payload::Genesis {
            agent_id,
            first_pubkey,
        } => {
            m.insert("agent_id".into(), json!(agent_id));
            m.insert("first_pubkey".into(), json!(format_pubkey(first_pubkey)));
        }
        Payload::Checkpoint(c) => {
            m.insert("epoch".into(), json!(c.epoch));
            m.insert("tree_size".into(), json!(c.tree_size));
            m.insert("root".into(), json!(hex(&c.root)));
            m.insert("head".into(), json!(hex(&c.head)));
            m.insert("boot_id".into(), json!(hex(&c.boot_id)));
            m.insert("mono_ns".into(), json!(c.mono_ns));
            if !c.sources.is_empty() {
                let s: Vec<Value> = c
                    .sources
                    .iter()
                    .map(|(n, p)| json!({"source": n, "position": position_value(p)}))
                    .collect();
                m.insert("sources".into(), Value::Array(s));
            }
        }
        Payload::EpochKey {
            from_epoch,
            to_epoch,
            new_pubkey,
            ..
        } => {
            m.insert("from_epoch".into(), json!(from_epoch));
            m.insert("to_epoch".into(), json!(to_epoch));
            m.insert("new_pubkey".into(), json!(format_pubkey(new_pubkey)));
        }
        Payload::Start {
            boot_id,
            mono_ns,
            pid,
            config_sha256,
            heartbeat_ns,
            append_only,
            append_only_active,
            program,
        } => {
            m.insert("boot_id".into(), json!(hex(boot_id)));
            m.insert("mono_ns".into(), json!(mono_ns));
            m.insert("pid".into(), json!(pid));
            m.insert("config_sha256".into(), json!(hex(config_sha256)));
            m.insert("heartbeat_ns".into(), json!(heartbeat_ns));
            m.insert(
                "append_only".into(),
                json!(
                    ["off", "try", "require"]
                        .get(*append_only as usize)
                        .unwrap_or(&"?")
                ),
            );
            m.insert("append_only_active".into(), json!(*append_only_active == 1));
            m.insert("program".into(), json!(program));
        }
        Payload::Stop {
            boot_id,
            mono_ns,
            reason,
        } => {
            m.insert("boot_id".into(), json!(hex(boot_id)));
            m.insert("mono_ns".into(), json!(mono_ns));
            m.insert("reason".into(), json!(reason));
        }
        Payload::Config {
            boot_id,
            mono_ns,
            config_sha256,
        } => {
            m.insert("boot_id".into(), json!(hex(boot_id)));
            m.insert("mono_ns".into(), json!(mono_ns));
            m.insert("config_sha256".into(), json!(hex(config_sha256)));
        }
        Payload::Heartbeat { boot_id, mono_ns } => {
            m.insert("boot_id".into(), json!(hex(boot_id)));
            m.insert("mono_ns".into(), json!(mono_ns));
        }
        Payload::ClockStep {
            boot_id,
            mono_ns,
            expected_ts,
            observed_ts,
        } => {
            m.insert("boot_id".into(), json!(hex(boot_id)));
            m.insert("mono_ns".into(), json!(mono_ns));
            m.insert("expected_ts".into(), json!(rfc3339(*expected_ts)));
            m.insert("observed_ts".into(), json!(rfc3339(*observed_ts)));
        }
        Payload::Gap {
            source,
            position,
            reason,
            lost_bytes,
            lost_records,
            detail,
        } => {
            m.insert("source".into(), json!(source));
            m.insert("position".into(), position_value(position));
            m.insert(
                "reason".into(),
                json!(GapReason::from_u16(*reason).map_or("unknown", GapReason::name)),
            );
            let known = |n: u64| if n == u64::MAX { Value::Null } else { json!(n) };
            m.insert("lost_bytes".into(), known(*lost_bytes));
            m.insert("lost_records".into(), known(*lost_records));
            m.insert("detail".into(), json!(detail));
        }
        Payload::Recovery {
            cause,
            segment_no,
            last_good_seq,
            region_offset,
            region_len,
            region_sha256,
            detail,
        } => {
            m.insert("cause".into(), json!(cause.name()));
            m.insert("damaged_segment".into(), json!(segment_no));
            m.insert("last_good_seq".into(), json!(last_good_seq));
            m.insert("region_offset".into(), json!(region_offset));
            m.insert("region_len".into(), json!(region_len));
            m.insert("region_sha256".into(), json!(hex(region_sha256)));
            m.insert("detail".into(), json!(detail));
        }
        Payload::Receipt {
            collector_id,
            tree_size,
            root,
            collector_ts,
            collector_pubkey,
            ..
        } => {
            m.insert("collector_id".into(), json!(collector_id));
            m.insert("tree_size".into(), json!(tree_size));
            m.insert("root".into(), json!(hex(root)));
            m.insert("collector_ts".into(), json!(rfc3339(*collector_ts)));
            m.insert(
                "collector_pubkey".into(),
                json!(format_pubkey(collector_pubkey)),
            );
        }
        Payload::Prune {
            first_kept_segment,
            first_kept_seq,
            anchor_head,
            detail,
        } => {
            m.insert("first_kept_segment".into(), json!(first_kept_segment));
            m.insert("first_kept_seq".into(), json!(first_kept_seq));
            m.insert("anchor_head".into(), json!(hex(anchor_head)));
            m.insert("detail".into(), json!(detail));
        }
        Payload::Seal { next_segment } => {
            m.insert("next_segment".into(), json!(next_segment));
        }
        Payload::Alert { code, detail } => {
            m.insert("code".into(), json!(AlertCode::name_of(*code)));
            m.insert("detail".into(), json!(detail));
        }
    }
    Value::Object(m)
}

/// One record as a line for people.
pub fn record_line(rec: &Record<'_>) -> String {
    let head = format!("{:>8} {} {:<10}", rec.seq, rfc3339(rec.ts), rec.kind.name());
    let rest = match &rec.payload {
        Payload::Entry(e) => {
            let mut s = match e.sealed {
                Some(sealed) => format!(
                    "[{}] (encrypted: {} bytes; `--identity` opens it)",
                    escape_bytes(e.source.as_bytes()),
                    sealed.len().saturating_sub(16)
                ),
                None => format!(
                    "[{}] {}",
                    escape_bytes(e.source.as_bytes()),
                    escape_bytes(e.body)
                ),
            };
            if e.flags & wormlog_spool::record::ENTRY_MORE_PARTS != 0 {
                s.push_str(" ⏎…");
            }
            if e.flags & wormlog_spool::record::ENTRY_NO_NEWLINE != 0 {
                s.push_str(" (no newline)");
            }
            s
        }
        Payload::Checkpoint(c) => format!(
            "epoch {} tree_size {} root {}",
            c.epoch,
            c.tree_size,
            &hex(&c.root)[..16]
        ),
        Payload::EpochKey {
            from_epoch,
            to_epoch,
            new_pubkey,
            ..
        } => {
            format!(
                "epoch {from_epoch} -> {to_epoch}, key {}",
                format_pubkey(new_pubkey)
            )
        }
        Payload::DataKey { recipients, .. } => format!(
            "entries of this segment encrypted to {}",
            recipients
                .iter()
                .map(|r| escape_bytes(r.as_bytes()))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Payload::Genesis {
            agent_id,
            first_pubkey,
        } => {
            format!(
                "agent {} key {}",
                escape_bytes(agent_id.as_bytes()),
                format_pubkey(first_pubkey)
            )
        }
        Payload::Start {
            program,
            pid,
            config_sha256,
            ..
        } => {
            format!(
                "{} pid {pid} config {}",
                escape_bytes(program.as_bytes()),
                &hex(config_sha256)[..16]
            )
        }
        Payload::Stop { reason, .. } => escape_bytes(reason.as_bytes()),
        Payload::Config { config_sha256, .. } => format!("config {}", &hex(config_sha256)[..16]),
        Payload::Heartbeat { .. } => String::new(),
        Payload::ClockStep {
            expected_ts,
            observed_ts,
            ..
        } => {
            format!(
                "expected {} observed {}",
                rfc3339(*expected_ts),
                rfc3339(*observed_ts)
            )
        }
        Payload::Gap {
            source,
            reason,
            detail,
            ..
        } => format!(
            "[{}] {}: {}",
            escape_bytes(source.as_bytes()),
            GapReason::from_u16(*reason).map_or("unknown", GapReason::name),
            escape_bytes(detail.as_bytes())
        ),
        Payload::Recovery { cause, detail, .. } => {
            format!("{}: {}", cause.name(), escape_bytes(detail.as_bytes()))
        }
        Payload::Receipt {
            collector_id,
            tree_size,
            ..
        } => {
            format!(
                "from {} for tree_size {tree_size}",
                escape_bytes(collector_id.as_bytes())
            )
        }
        Payload::Prune {
            first_kept_segment,
            detail,
            ..
        } => {
            format!(
                "segments below {first_kept_segment} removed: {}",
                escape_bytes(detail.as_bytes())
            )
        }
        Payload::Seal { next_segment } => format!("next segment {next_segment}"),
        Payload::Alert { code, detail } => format!(
            "{}: {}",
            AlertCode::name_of(*code),
            escape_bytes(detail.as_bytes())
        ),
    };
    if rest.is_empty() {
        head
    } else {
        format!("{head} {rest}")
    }
}

/// An entry's fields as a JSON object. A field that occurs more than once
/// (a journald field with several values, an audit key repeated in a
/// record) becomes an array of its values, in order. The compact syslog
/// field is shown expanded into the named fields it stands for.
fn fields_value(fields: &[(&str, &[u8])], body: &[u8]) -> Value {
    let mut f: Map<String, Value> = Map::new();
    // A field's own value is never an array (text or base64 object), so
    // an array here is one made for repeated values.
    let mut add = |k: &str, v: Value| match f.get_mut(k) {
        Some(Value::Array(a)) => a.push(v),
        Some(old) => {
            let first = old.take();
            *old = Value::Array(vec![first, v]);
        }
        None => {
            f.insert(k.to_owned(), v);
        }
    };
    for (k, v) in fields {
        if *k == wormlog_parse::syslog::COMPACT_FIELD
            && let Some(expanded) = wormlog_parse::syslog::expand_compact(body, v)
        {
            for (name, value) in expanded {
                add(name, bytes_value(&value));
            }
        } else {
            add(k, bytes_value(v));
        }
    }
    Value::Object(f)
}

/// The record an opened sealed entry stands for: its clear part with the
/// opened fields and body (how `cat --identity` shows it).
pub fn with_opened<'a>(
    rec: &Record<'a>,
    opened: &'a wormlog_spool::crypt::Opened,
) -> Option<Record<'a>> {
    let wormlog_spool::record::Payload::Entry(e) = &rec.payload else {
        return None;
    };
    Some(Record {
        kind: rec.kind,
        seq: rec.seq,
        ts: rec.ts,
        prev: rec.prev,
        payload: wormlog_spool::record::Payload::Entry(wormlog_spool::record::Entry {
            source: e.source,
            position: e.position,
            flags: e.flags,
            fields: opened
                .fields
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_slice()))
                .collect(),
            body: &opened.body,
            sealed: None,
        }),
    })
}

/// `cat --json`'s object for a record, opened when `opened` is given
/// (then `"decrypted": true`).
pub fn record_json_opened(
    rec: &Record<'_>,
    opened: Option<&wormlog_spool::crypt::Opened>,
    segment: u64,
    offset: u64,
) -> Value {
    match opened.and_then(|o| with_opened(rec, o)) {
        Some(clear) => {
            let mut v = record_json(&clear, segment, offset);
            v["decrypted"] = Value::Bool(true);
            v
        }
        None => record_json(rec, segment, offset),
    }
}

#[cfg(test)]
mod tests {
    use super::escape_bytes;

    #[test]
    fn hostile_bytes_are_shown_safely() {
        assert_eq!(escape_bytes(b"plain text"), "plain text");
        assert_eq!(
            escape_bytes(b"\x1b[31mred\x07"),
            "\\u{001b}[31mred\\u{0007}"
        );
        assert_eq!(escape_bytes(b"a\xff\xfeb\x00"), "a\\xff\\xfeb\\u{0000}");
        assert_eq!(
            escape_bytes("x\u{202e}y\u{2066}".as_bytes()),
            "x\\u{202e}y\\u{2066}"
        );
        assert_eq!(
            escape_bytes(b"back\\slash\ttab\r\n"),
            "back\\\\slash\\ttab\\r\\n"
        );
        assert_eq!(escape_bytes("héllo ☃".as_bytes()), "héllo ☃");
        assert_eq!(escape_bytes("\u{85}".as_bytes()), "\\u{0085}");
    }

    #[test]
    fn repeated_fields_become_arrays_and_the_compact_syslog_field_is_expanded() {
        let raw = b"<34>Oct 11 22:14:15 mymachine su: 'su root' failed";
        let ctx = wormlog_parse::syslog::Context {
            received_unix_ns: 1_764_000_000_000_000_000,
            local_utc_offset_secs: 0,
        };
        let mut enc = Vec::new();
        wormlog_parse::syslog::parse(raw, &ctx).encode_compact(&mut enc);
        let fields: Vec<(&str, &[u8])> = vec![
            ("TAG", b"a"),
            ("syslog", &enc),
            ("TAG", b"b"),
            ("TAG", b"\xff"),
        ];
        let v = super::fields_value(&fields, raw);
        assert_eq!(v["TAG"], serde_json::json!(["a", "b", {"base64": "/w=="}]));
        assert_eq!(v["hostname"], "mymachine");
        assert_eq!(v["app_name"], "su");
        assert_eq!(v["facility"], "4");
        assert!(v.get("syslog").is_none());
    }
}
