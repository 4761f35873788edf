//! Interactions in the shapes ALS needs: dense indices and compressed sparse rows.
//!
//! External ids (i64) are mapped to indices in sorted id order, so the model does not depend on
//! the order of input files or rows.

use std::collections::HashMap;

/// Compressed sparse rows: row `r`'s entries are `indices[indptr[r]..indptr[r+1]]`, sorted.
#[derive(Debug, Clone, PartialEq)]
pub struct Csr {
    pub indptr: Vec<usize>,
    pub indices: Vec<u32>,
    pub values: Vec<f32>,
}

impl Csr {
    /// Builds a CSR matrix with `rows` rows from (row, column, value) triples.
    ///
    /// Duplicate (row, column) pairs keep the largest value. Runs in O(nnz log(row length)).
    pub fn from_triples(rows: usize, triples: &[(u32, u32, f32)]) -> Csr {
        let mut counts = vec![0usize; rows + 1];
        for &(r, _, _) in triples {
            counts[r as usize + 1] += 1;
        }
        for i in 0..rows {
            counts[i + 1] += counts[i];
        }
        let mut next = counts.clone();
        let mut entries = vec![(0u32, 0f32); triples.len()];
        for &(r, c, v) in triples {
            let slot = &mut next[r as usize];
            entries[*slot] = (c, v);
            *slot += 1;
        }
        let mut indptr = Vec::with_capacity(rows + 1);
        let mut indices = Vec::with_capacity(triples.len());
        let mut values = Vec::with_capacity(triples.len());
        indptr.push(0);
        for r in 0..rows {
            let row = &mut entries[counts[r]..counts[r + 1]];
            row.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.total_cmp(&a.1)));
            let mut last = None;
            for &(c, v) in row.iter() {
                if last != Some(c) {
                    indices.push(c);
                    values.push(v);
                    last = Some(c);
                }
            }
            indptr.push(indices.len());
        }
        Csr {
            indptr,
            indices,
            values,
        }
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.indptr.len() - 1
    }

    /// Number of stored entries.
    pub fn nnz(&self) -> usize {
        self.indices.len()
    }

    /// Column indices of a row.
    pub fn row_indices(&self, r: usize) -> &[u32] {
        &self.indices[self.indptr[r]..self.indptr[r + 1]]
    }

    /// Values of a row.
    pub fn row_values(&self, r: usize) -> &[f32] {
        &self.values[self.indptr[r]..self.indptr[r + 1]]
    }

    /// Whether a row holds a column.
    pub fn contains(&self, r: usize, c: u32) -> bool {
        self.row_indices(r).binary_search(&c).is_ok()
    }

    /// The transpose, with `cols` rows.
    pub fn transpose(&self, cols: usize) -> Csr {
        let mut triples = Vec::with_capacity(self.nnz());
        for r in 0..self.rows() {
            for (&c, &v) in self.row_indices(r).iter().zip(self.row_values(r)) {
                triples.push((c, r as u32, v));
            }
        }
        Csr::from_triples(cols, &triples)
    }
}

/// A sorted mapping between external ids and dense indices.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct IdMap {
    ids: Vec<i64>,
    index: HashMap<i64, u32>,
}

impl IdMap {
    /// Maps the distinct ids in sorted order.
    pub fn new(ids: impl IntoIterator<Item = i64>) -> IdMap {
        let mut ids: Vec<i64> = ids.into_iter().collect();
        ids.sort_unstable();
        ids.dedup();
        let index = ids
            .iter()
            .enumerate()
            .map(|(i, &id)| (id, i as u32))
            .collect();
        IdMap { ids, index }
    }

    /// The index of an id.
    pub fn index(&self, id: i64) -> Option<u32> {
        self.index.get(&id).copied()
    }

    /// The id at an index.
    pub fn id(&self, index: u32) -> i64 {
        self.ids[index as usize]
    }

    /// All ids, sorted.
    pub fn ids(&self) -> &[i64] {
        &self.ids
    }

    /// Number of ids.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether there are no ids.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

/// The user–item matrix of one training export.
#[derive(Debug, Clone, PartialEq)]
pub struct Interactions {
    pub users: IdMap,
    pub items: IdMap,
    /// Values by user (rows) and item (columns).
    pub by_user: Csr,
    /// The transpose: values by item.
    pub by_item: Csr,
}

impl Interactions {
    /// Builds the matrices from parallel columns of external ids and values.
    pub fn from_columns(user_ids: &[i64], item_ids: &[i64], values: &[f32]) -> Interactions {
        let users = IdMap::new(user_ids.iter().copied());
        let items = IdMap::new(item_ids.iter().copied());
        let triples: Vec<(u32, u32, f32)> = user_ids
            .iter()
            .zip(item_ids)
            .zip(values)
            .filter_map(|((&u, &i), &v)| Some((users.index(u)?, items.index(i)?, v)))
            .collect();
        let by_user = Csr::from_triples(users.len(), &triples);
        let by_item = by_user.transpose(items.len());
        Interactions {
            users,
            items,
            by_user,
            by_item,
        }
    }

    /// Number of stored (user, item) pairs.
    pub fn nnz(&self) -> usize {
        self.by_user.nnz()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csr_sorts_dedupes_and_transposes() {
        let m = Csr::from_triples(3, &[(2, 1, 1.0), (0, 3, 2.0), (0, 1, 5.0), (0, 3, 4.0)]);
        assert_eq!(m.indptr, vec![0, 2, 2, 3]);
        assert_eq!(m.row_indices(0), &[1, 3]);
        assert_eq!(m.row_values(0), &[5.0, 4.0]);
        assert!(m.contains(2, 1) && !m.contains(1, 1));
        let t = m.transpose(4);
        assert_eq!(t.row_indices(1), &[0, 2]);
        assert_eq!(t.transpose(3), m);
    }

    #[test]
    fn ids_map_in_sorted_order_whatever_the_input_order() {
        let a = Interactions::from_columns(&[30, 10, 20], &[7, 5, 7], &[1.0, 2.0, 3.0]);
        let b = Interactions::from_columns(&[20, 30, 10], &[7, 7, 5], &[3.0, 1.0, 2.0]);
        assert_eq!(a, b);
        assert_eq!(a.users.ids(), &[10, 20, 30]);
        assert_eq!(a.users.index(20), Some(1));
        assert_eq!(a.items.id(1), 7);
    }
}
