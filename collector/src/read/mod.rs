//! The reading side of the store: the search index ([`index`], built from
//! [`scan`]ned records with word filters, [`words`]), the search
//! itself ([`search`]), and the bundles an auditor exports or discloses
//! ([`bundle`], with proofs from [`nodes`]). Nothing here writes to an
//! agent's store, and nothing here is used to verify it.

pub mod bundle;
pub mod index;
pub mod nodes;
pub mod scan;
pub mod search;
pub mod side;
pub mod timeline;
pub mod views;
pub mod words;

use scan::{At, Scan, ScanError};
use std::path::Path;
use wormlog_spool::crypt::{Identities, Opened, Opener};
use wormlog_spool::record::{Payload, Record};

/// Opens sealed entries with the collector's read identity, one
/// segment's data key at a time.
#[derive(Debug)]
pub struct Bodies {
    opener: Option<Opener>,
    /// Sealed entries that could not be opened (no identity, or it is not
    /// a recipient).
    pub sealed_unopened: u64,
}

impl Bodies {
    pub fn new(ids: Option<Identities>) -> Bodies {
        Bodies {
            opener: ids.map(Opener::new),
            sealed_unopened: 0,
        }
    }

    pub fn can_open(&self) -> bool {
        self.opener.is_some()
    }

    /// Takes the data key of segment `no` (its `data_key` record stands
    /// right after the anchor), for reading from the middle of it.
    pub fn prime(&mut self, store: &Path, no: u64) -> Result<(), ScanError> {
        if self.opener.is_none() {
            return Ok(());
        }
        let mut scan = Scan::from(
            store,
            At {
                segment: no,
                offset: 0,
            },
        )?;
        for _ in 0..4 {
            let Some((at, rec)) = scan.next_record()? else {
                break;
            };
            if at.segment != no {
                break;
            }
            if let Ok(r) = Record::decode(rec)
                && let Payload::DataKey { .. } = r.payload
            {
                self.take(no, &r);
                break;
            }
        }
        Ok(())
    }

    /// The key of entry `seq` of segment `segment` (primed) alone.
    pub fn entry_key(
        &self,
        segment: u64,
        seq: u64,
    ) -> Result<wormlog_spool::crypt::EntryKey, String> {
        self.opener
            .as_ref()
            .ok_or_else(|| "no read identity".to_string())?
            .entry_key(segment, seq)
    }

    fn take(&mut self, segment: u64, r: &Record<'_>) {
        if let (
            Some(o),
            Payload::DataKey {
                recipients,
                wrapped,
            },
        ) = (self.opener.as_mut(), &r.payload)
        {
            o.data_key(segment, recipients, wrapped);
        }
    }
}

/// What a search reads of an entry: its clear form (opened when sealed).
#[derive(Debug)]
pub enum EntryText<'a> {
    Clear(Record<'a>),
    Opened(Record<'a>, Opened),
}

impl EntryText<'_> {
    /// The body and the field values, the texts a search matches.
    pub fn texts(&self) -> Vec<&[u8]> {
        match self {
            EntryText::Clear(r) => match &r.payload {
                Payload::Entry(e) => std::iter::once(e.body)
                    .chain(e.fields.iter().map(|(_, v)| *v))
                    .collect(),
                _ => Vec::new(),
            },
            EntryText::Opened(_, o) => std::iter::once(o.body.as_slice())
                .chain(o.fields.iter().map(|(_, v)| v.as_slice()))
                .collect(),
        }
    }
}

/// Decodes `rec` (a record of segment `segment`), takes a `data_key`
/// record in, and gives an entry's texts: clear, or opened when sealed
/// and the identity opens it (None otherwise, counted).
pub fn open_record<'a>(bodies: &mut Bodies, segment: u64, rec: &'a [u8]) -> Option<EntryText<'a>> {
    let r = Record::decode(rec).ok()?;
    match &r.payload {
        Payload::DataKey { .. } => {
            bodies.take(segment, &r);
            None
        }
        Payload::Entry(e) => match e.sealed {
            None => Some(EntryText::Clear(r)),
            Some(s) => {
                let n = s.len();
                match bodies
                    .opener
                    .as_ref()
                    .map(|o| o.open(segment, r.seq, rec, n))
                {
                    Some(Ok(o)) => Some(EntryText::Opened(r, o)),
                    _ => {
                        bodies.sealed_unopened += 1;
                        None
                    }
                }
            }
        },
        _ => None,
    }
}
