//! The id dictionary (`warehouse/ids`): the internal id of every external id that is not its
//! own (see `elastirec_core::ids`), one row per (kind, external id).
//!
//! A load gives ids to the new strings of its files, from one past the highest id ever given
//! (erased entries included, so an id is never reused), and commits them before the events that
//! use them, with the load's number as its application transaction: a load that dies after the
//! dictionary commit finds the strings there on its rerun and gets the same ids. An erased
//! user's entry keeps its id with a null external id (a tombstone). `warehouse restore` never
//! rolls the dictionary back.

use std::sync::Arc;

use deltalake::arrow::array::{
    ArrayRef, Date32Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};

use elastirec_core::Night;
use elastirec_core::ids::{DICTIONARY_BASE, IdDictionary, IdKind};
use elastirec_core::layout::Table;

use super::parse::ParsedIds;
use crate::query::{i64s, strings};
use crate::tables::{Warehouse, schema};
use crate::{Error, Result};

/// The dictionary as a load uses it: every named entry, and the next id to give.
#[derive(Debug, Clone)]
pub(crate) struct Dictionary {
    /// Shared with the parsing threads of a part, which resolve the strings it already has.
    pub(crate) names: Arc<IdDictionary>,
    next: i64,
}

impl Default for Dictionary {
    fn default() -> Self {
        Dictionary {
            names: Arc::default(),
            next: DICTIONARY_BASE,
        }
    }
}

impl Dictionary {
    /// The internal id of an external id, if it is numeric or the dictionary has it.
    pub(crate) fn get(&self, kind: IdKind, external: &str) -> Option<i64> {
        self.names.of(kind).internal(external)
    }
}

impl Warehouse {
    /// Reads the whole dictionary.
    pub(crate) async fn dictionary(&self) -> Result<Dictionary> {
        let batches = self.sql("SELECT kind, external, id FROM ids").await?;
        let mut d = Dictionary::default();
        let entries = Arc::make_mut(&mut d.names);
        for b in &batches {
            let kinds = strings(b, "kind")?;
            let names = strings(b, "external")?;
            let ids = i64s(b, "id")?;
            for ((kind, name), id) in kinds.into_iter().zip(names).zip(ids) {
                let Some(id) = id else { continue };
                d.next = d.next.max(id + 1);
                if let (Some(kind), Some(name)) = (kind.as_deref().and_then(IdKind::parse), name) {
                    entries.of_mut(kind).insert(id, &name);
                }
            }
        }
        Ok(d)
    }

    /// The named entries of the dictionary: the external id of every internal id that is not
    /// its own.
    pub async fn id_names(&self) -> Result<IdDictionary> {
        Ok(Arc::unwrap_or_clone(self.dictionary().await?.names))
    }

    /// The dictionary with ids given to the external ids of `wanted` it does not have yet,
    /// committed (read only when there is something to look up).
    pub(crate) async fn ids_for(
        &self,
        wanted: &[(IdKind, &str)],
        night: Night,
        load: i64,
    ) -> Result<Dictionary> {
        if wanted.is_empty() {
            return Ok(Dictionary::default());
        }
        let mut dictionary = self.dictionary().await?;
        let mut new = NewIds::default();
        for (kind, name) in wanted {
            dictionary.id_of(*kind, name, &mut new);
        }
        self.commit_ids(new, night, load).await?;
        Ok(dictionary)
    }

    /// Commits the ids a load gave (with the load's application transaction), before the
    /// events that use them; returns how many.
    pub(crate) async fn commit_ids(&self, new: NewIds, night: Night, load: i64) -> Result<u64> {
        let n = new.ids.len();
        if n == 0 {
            return Ok(0);
        }
        let now = chrono::Utc::now().timestamp_micros();
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(new.kinds)),
            Arc::new(StringArray::from(new.names)),
            Arc::new(Int64Array::from(new.ids)),
            Arc::new(Date32Array::from(vec![night.days_since_epoch(); n])),
            Arc::new(TimestampMicrosecondArray::from(vec![now; n]).with_timezone("UTC")),
        ];
        let batch = RecordBatch::try_new(schema(Table::Ids), columns)
            .map_err(|e| Error::Internal(format!("dictionary batch: {e}")))?;
        self.append_in_load(Table::Ids, batch, load).await?;
        Ok(n as u64)
    }
}

/// Ids a load gave that are not committed yet.
#[derive(Debug, Default)]
pub(crate) struct NewIds {
    kinds: Vec<&'static str>,
    names: Vec<String>,
    ids: Vec<i64>,
}

impl Dictionary {
    /// The dictionary ids of a file's strings, by placeholder (`-(k + 1)` → `[k]`; 0 for a
    /// string no row uses any more). A string the dictionary does not have gets the next id,
    /// recorded in `new` to be committed before the events.
    pub(crate) fn resolve(&mut self, kind: IdKind, ids: &ParsedIds, new: &mut NewIds) -> Vec<i64> {
        let used = ids.used();
        ids.names
            .iter()
            .zip(used)
            .map(|(name, used)| if used { self.id_of(kind, name, new) } else { 0 })
            .collect()
    }

    /// The id of an external id, given now (and recorded in `new`) if the dictionary does
    /// not have it.
    fn id_of(&mut self, kind: IdKind, name: &str, new: &mut NewIds) -> i64 {
        if let Some(id) = self.get(kind, name) {
            return id;
        }
        let id = self.next;
        self.next += 1;
        // The parsing threads' handles are gone once a part is parsed: no copy is made.
        Arc::make_mut(&mut self.names).of_mut(kind).insert(id, name);
        new.kinds.push(kind.as_str());
        new.names.push(name.to_string());
        new.ids.push(id);
        id
    }
}
