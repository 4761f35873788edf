//! User and item ids: what producers send and consumers see (external ids: UTF-8 strings of up
//! to [`MAX_ID_BYTES`] bytes, such as `A3CIUOJXQ5VDQ2`, a UUID or `42`) and what the warehouse,
//! the exports, the models and the ALS engine work on (internal ids, `i64`).
//!
//! An external id written as a canonical decimal integer below [`DICTIONARY_BASE`] (ASCII
//! digits, no sign, no leading zero) is its own internal id: a MovieLens lake needs no
//! dictionary, and its ids, its lists and the order of its ties are what they were before
//! string ids. Every other external id gets an internal id at or above [`DICTIONARY_BASE`]
//! from the warehouse's dictionary (`warehouse/ids`), the first time a load sees it, once and
//! for ever: never reused, the same on every night, kept by snapshots.
//!
//! Stages past the warehouse read the dictionary entries a night needs from its export
//! (`ids-*.parquet`) into [`IdNames`], which turns internal ids back into external ones for
//! everything a consumer sees (recommendation files, the HTTP API, sinks, `show`), and external
//! ids given by a user (`forget --user`, an API path) into internal ones.

use std::borrow::Cow;
use std::sync::Arc;

// foldhash, not SipHash: a night looks up every string id of its files here.
use foldhash::HashMap;

/// The first internal id the dictionary assigns; numeric external ids stay below it.
pub const DICTIONARY_BASE: i64 = 1 << 62;

/// The longest external id, in bytes of UTF-8.
pub const MAX_ID_BYTES: usize = 256;

/// Which id space an id belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IdKind {
    User,
    Item,
}

impl IdKind {
    /// The name in the dictionary's `kind` column and in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            IdKind::User => "user",
            IdKind::Item => "item",
        }
    }

    /// Parses a `kind` column value.
    pub fn parse(s: &str) -> Option<IdKind> {
        match s {
            "user" => Some(IdKind::User),
            "item" => Some(IdKind::Item),
            _ => None,
        }
    }
}

/// The internal id of an external id that is its own: a canonical decimal integer below
/// [`DICTIONARY_BASE`].
pub fn numeric_id(external: &str) -> Option<i64> {
    let b = external.as_bytes();
    if b.is_empty() || b.len() > 19 || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    if b.len() > 1 && b[0] == b'0' {
        return None; // "007" is a string id, kept as written
    }
    external
        .parse::<i64>()
        .ok()
        .filter(|&v| v < DICTIONARY_BASE)
}

/// Why an external id cannot be used, if it cannot: empty, too long, or with control
/// characters (which no id of a real system holds and which break every text format).
pub fn check_external(external: &str) -> Result<(), String> {
    if external.is_empty() {
        return Err("empty id".into());
    }
    if external.len() > MAX_ID_BYTES {
        return Err(format!(
            "an id of {} bytes, longer than {MAX_ID_BYTES}",
            external.len()
        ));
    }
    // ASCII ids (nearly all) are checked byte by byte, without decoding characters.
    let control = if external.is_ascii() {
        external.bytes().any(|b| b < 0x20 || b == 0x7f)
    } else {
        external.chars().any(char::is_control)
    };
    if control {
        return Err("an id with control characters".into());
    }
    Ok(())
}

/// External names of the internal ids of one kind that are not their own (dictionary ids).
#[derive(Debug, Clone, Default)]
pub struct IdNames {
    external: HashMap<i64, Arc<str>>,
    internal: HashMap<Arc<str>, i64>,
}

impl IdNames {
    /// Records the external name of a dictionary id.
    pub fn insert(&mut self, id: i64, external: &str) {
        let name: Arc<str> = Arc::from(external);
        self.internal.insert(name.clone(), id);
        self.external.insert(id, name);
    }

    /// Dictionary entries held.
    pub fn len(&self) -> usize {
        self.external.len()
    }

    /// Whether no dictionary entry is held (every id is numeric).
    pub fn is_empty(&self) -> bool {
        self.external.is_empty()
    }

    /// The external id consumers see for an internal id.
    pub fn external(&self, id: i64) -> Cow<'_, str> {
        match self.external.get(&id) {
            Some(name) => Cow::Borrowed(name),
            None => Cow::Owned(id.to_string()),
        }
    }

    /// The internal id of an external id, if it is numeric or known to the dictionary.
    pub fn internal(&self, external: &str) -> Option<i64> {
        numeric_id(external).or_else(|| self.internal.get(external).copied())
    }

    /// The dictionary id of a string the dictionary has (a numeric id is not looked for).
    pub fn named(&self, external: &str) -> Option<i64> {
        self.internal.get(external).copied()
    }

    /// Every dictionary entry, by internal id.
    pub fn entries(&self) -> impl Iterator<Item = (i64, &str)> + '_ {
        self.external.iter().map(|(id, name)| (*id, name.as_ref()))
    }
}

/// The names of both kinds of ids.
#[derive(Debug, Clone, Default)]
pub struct IdDictionary {
    pub users: IdNames,
    pub items: IdNames,
}

impl IdDictionary {
    /// The names of one kind.
    pub fn of(&self, kind: IdKind) -> &IdNames {
        match kind {
            IdKind::User => &self.users,
            IdKind::Item => &self.items,
        }
    }

    /// The names of one kind, to add entries.
    pub fn of_mut(&mut self, kind: IdKind) -> &mut IdNames {
        match kind {
            IdKind::User => &mut self.users,
            IdKind::Item => &mut self.items,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_ids_are_their_own() {
        assert_eq!(numeric_id("0"), Some(0));
        assert_eq!(numeric_id("42"), Some(42));
        assert_eq!(numeric_id("4611686018427387903"), Some(DICTIONARY_BASE - 1));
        for not in [
            "",
            "007",
            "-1",
            "+1",
            "1.0",
            " 1",
            "4611686018427387904",
            "A1",
        ] {
            assert_eq!(numeric_id(not), None, "{not:?}");
        }
    }

    #[test]
    fn names_map_both_ways() {
        let mut names = IdNames::default();
        names.insert(DICTIONARY_BASE, "A3CIUOJXQ5VDQ2");
        assert_eq!(names.external(DICTIONARY_BASE), "A3CIUOJXQ5VDQ2");
        assert_eq!(names.external(7), "7");
        assert_eq!(names.internal("A3CIUOJXQ5VDQ2"), Some(DICTIONARY_BASE));
        assert_eq!(names.internal("7"), Some(7));
        assert_eq!(names.internal("007"), None);
    }

    #[test]
    fn external_ids_are_checked() {
        assert!(check_external("ok").is_ok());
        assert!(check_external("").is_err());
        assert!(check_external(&"x".repeat(257)).is_err());
        assert!(check_external("a\nb").is_err());
    }
}
