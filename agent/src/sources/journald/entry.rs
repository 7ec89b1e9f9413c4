//! One line of `journalctl --output=json` as a spool entry: `MESSAGE` is the
//! body, every other field is kept as a structured field, byte-exact.
//!
//! In that format a field's value is a JSON string (valid UTF-8 text), an
//! array of numbers (bytes that are not text: kept as those bytes), or an
//! array of either (a field that occurs more than once in the entry: kept as
//! that many fields of the same name, in order). `--all` is always passed,
//! so no value is left out for its size.

use serde_json::Value;

/// One journal entry: its cursor (also its position in the spool), its
/// fields but `MESSAGE`, and `MESSAGE` (the body).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalEntry {
    pub cursor: String,
    pub fields: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
}

/// Why a line could not be read as an entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    #[error("not a JSON object: {0}")]
    Json(String),
    #[error("no __CURSOR field")]
    NoCursor,
    #[error("field {0}: a value that is neither text nor bytes")]
    Value(String),
}

/// The entry of one line.
pub fn parse(line: &[u8]) -> Result<JournalEntry, EntryError> {
    let v: serde_json::Map<String, Value> =
        serde_json::from_slice(line).map_err(|e| EntryError::Json(e.to_string()))?;
    let cursor = match v.get("__CURSOR") {
        Some(Value::String(c)) => c.clone(),
        _ => return Err(EntryError::NoCursor),
    };
    let mut body = None;
    let mut fields = Vec::with_capacity(v.len());
    for (k, val) in v {
        let mut values = Vec::new();
        match val {
            Value::Array(items) if items.iter().all(Value::is_number) => {
                values.push(bytes_of(&k, &Value::Array(items))?);
            }
            Value::Array(items) => {
                for item in &items {
                    values.push(bytes_of(&k, item)?);
                }
            }
            other => values.push(bytes_of(&k, &other)?),
        }
        for value in values {
            if k == "MESSAGE" && body.is_none() {
                body = Some(value);
            } else {
                fields.push((k.clone(), value));
            }
        }
    }
    Ok(JournalEntry {
        cursor,
        fields,
        body: body.unwrap_or_default(),
    })
}

fn bytes_of(key: &str, v: &Value) -> Result<Vec<u8>, EntryError> {
    match v {
        Value::String(s) => Ok(s.as_bytes().to_vec()),
        // A value journalctl left out (not with --all): kept as empty.
        Value::Null => Ok(Vec::new()),
        Value::Array(items) => items
            .iter()
            .map(|n| n.as_u64().and_then(|n| u8::try_from(n).ok()))
            .collect::<Option<Vec<u8>>>()
            .ok_or_else(|| EntryError::Value(key.to_owned())),
        _ => Err(EntryError::Value(key.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_binary_and_repeated_fields_are_kept_exactly() {
        let line = br#"{"__CURSOR":"s=1;i=2","MESSAGE":[98,105,110,0,255,10],"_SYSTEMD_UNIT":"cron.service","TAG":["a",[0,1],"c"],"EMPTY":null}"#;
        let e = parse(line).unwrap();
        assert_eq!(e.cursor, "s=1;i=2");
        assert_eq!(e.body, b"bin\0\xff\n");
        let f = |k: &str| -> Vec<Vec<u8>> {
            e.fields
                .iter()
                .filter(|(n, _)| n == k)
                .map(|(_, v)| v.clone())
                .collect()
        };
        assert_eq!(f("_SYSTEMD_UNIT"), vec![b"cron.service".to_vec()]);
        assert_eq!(f("TAG"), vec![b"a".to_vec(), vec![0, 1], b"c".to_vec()]);
        assert_eq!(f("EMPTY"), vec![Vec::<u8>::new()]);
        assert_eq!(f("__CURSOR"), vec![b"s=1;i=2".to_vec()]);
    }

    #[test]
    fn bad_lines_are_errors_not_panics() {
        assert!(matches!(parse(b"{"), Err(EntryError::Json(_))));
        assert!(matches!(parse(b"[1]"), Err(EntryError::Json(_))));
        assert_eq!(
            parse(br#"{"MESSAGE":"x"}"#).unwrap_err(),
            EntryError::NoCursor
        );
        assert!(matches!(
            parse(br#"{"__CURSOR":"c","X":[256]}"#),
            Err(EntryError::Value(_))
        ));
        assert!(matches!(
            parse(br#"{"__CURSOR":"c","X":{"a":1}}"#),
            Err(EntryError::Value(_))
        ));
        let e = parse(br#"{"__CURSOR":"c"}"#).unwrap();
        assert!(e.body.is_empty());
    }
}
