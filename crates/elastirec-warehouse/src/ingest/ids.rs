//! The id dictionary (`warehouse/ids`): the internal id of every external id that is not its
//! own (see `elastirec_core::ids`), one row per (kind, external id).
//!
//! A load gives ids to the new strings of its files, from one past the highest id ever given
//! (erased entries included, so an id is never reused), and commits them before the events that
//! use them, with the load's number as its application transaction: a load that dies after the
//! dictionary commit finds the strings there on its rerun and gets the same ids. An erased
//! user's entry keeps its id with a null external id (a tombstone). `warehouse restore` never
//! rolls the dictionary back.

use std::collections::HashMap;
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
    pub(crate) names: IdDictionary,
    next: i64,
}

impl Default for Dictionary {
    fn default() -> Self {
        Dictionary {
            names: IdDictionary::default(),
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
        for b in &batches {
            let kinds = strings(b, "kind")?;
            let names = strings(b, "external")?;
            let ids = i64s(b, "id")?;
            for ((kind, name), id) in kinds.into_iter().zip(names).zip(ids) {
                let Some(id) = id else { continue };
                d.next = d.next.max(id + 1);
                if let (Some(kind), Some(name)) = (kind.as_deref().and_then(IdKind::parse), name) {
                    d.names.of_mut(kind).insert(id, &name);
                }
            }
        }
        Ok(d)
    }

    /// The named entries of the dictionary: the external id of every internal id that is not
    /// its own.
    pub async fn id_names(&self) -> Result<IdDictionary> {
        Ok(self.dictionary().await?.names)
    }

    /// Gives ids to the external ids the dictionary does not have yet and commits them (with the
    /// load's application transaction); returns how many were added.
    async fn assign_ids(
        &self,
        dictionary: &mut Dictionary,
        wanted: impl IntoIterator<Item = (IdKind, String)>,
        night: Night,
        load: i64,
    ) -> Result<u64> {
        let mut kinds = Vec::new();
        let mut names = Vec::new();
        let mut ids = Vec::new();
        for (kind, name) in wanted {
            if dictionary.get(kind, &name).is_some() {
                continue;
            }
            let id = dictionary.next;
            dictionary.next += 1;
            dictionary.names.of_mut(kind).insert(id, &name);
            kinds.push(kind.as_str());
            names.push(name);
            ids.push(id);
        }
        if ids.is_empty() {
            return Ok(0);
        }
        let n = ids.len();
        let now = chrono::Utc::now().timestamp_micros();
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(kinds)),
            Arc::new(StringArray::from_iter_values(names.iter())),
            Arc::new(Int64Array::from(ids)),
            Arc::new(Date32Array::from(vec![night.days_since_epoch(); n])),
            Arc::new(TimestampMicrosecondArray::from(vec![now; n]).with_timezone("UTC")),
        ];
        let batch = RecordBatch::try_new(schema(Table::Ids), columns)
            .map_err(|e| Error::Internal(format!("dictionary batch: {e}")))?;
        self.append_in_load(Table::Ids, batch, load).await?;
        Ok(n as u64)
    }

    /// The dictionary a load needs for `wanted` (external ids that are not numeric), with ids
    /// given to the new ones and committed; read only when there is something to look up.
    /// Returns it and how many ids were given.
    pub(crate) async fn ids_for(
        &self,
        wanted: Vec<(IdKind, String)>,
        night: Night,
        load: i64,
    ) -> Result<(Dictionary, u64)> {
        if wanted.is_empty() {
            return Ok((Dictionary::default(), 0));
        }
        let mut dictionary = self.dictionary().await?;
        let assigned = self
            .assign_ids(&mut dictionary, wanted, night, load)
            .await?;
        Ok((dictionary, assigned))
    }
}

/// The dictionary ids of a file's strings that rows still use (placeholder `-(k + 1)` → id).
pub(crate) fn resolver(
    dictionary: &Dictionary,
    kind: IdKind,
    ids: &ParsedIds,
) -> Result<HashMap<i64, i64>> {
    ids.used_names()
        .into_iter()
        .map(|(k, name)| {
            dictionary.get(kind, name).map(|id| (k, id)).ok_or_else(|| {
                Error::Internal(format!(
                    "{} id '{name}' has no dictionary id",
                    kind.as_str()
                ))
            })
        })
        .collect()
}
