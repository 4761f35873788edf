//! Interactions in the shapes ALS needs: dense indices and compressed sparse rows.
//!
//! External ids (i64) are mapped to indices in sorted id order, so the model does not depend on
//! the order of input files or rows.

use std::collections::HashMap;

use rayon::prelude::*;

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
    /// Duplicate (row, column) pairs keep the largest value.
    pub fn from_triples(rows: usize, triples: &[(u32, u32, f32)]) -> Csr {
        Csr::from_coo(rows, triples.len(), |e| triples[e])
    }

    /// Builds a CSR matrix from `n` coordinate entries given by `entry(e) = (row, col, value)`.
    ///
    /// A counting sort by row (two sequential O(n) passes), then each row sorted by column and
    /// deduplicated in parallel (duplicates keep the largest value): O(n log(row length)) work,
    /// no step quadratic in anything.
    pub fn from_coo(rows: usize, n: usize, entry: impl Fn(usize) -> (u32, u32, f32)) -> Csr {
        let mut starts = vec![0usize; rows + 1];
        for e in 0..n {
            starts[entry(e).0 as usize + 1] += 1;
        }
        for i in 0..rows {
            starts[i + 1] += starts[i];
        }
        let mut next = starts.clone();
        let mut entries = vec![(0u32, 0f32); n];
        for e in 0..n {
            let (r, c, v) = entry(e);
            let slot = &mut next[r as usize];
            entries[*slot] = (c, v);
            *slot += 1;
        }
        drop(next);
        // Sort and deduplicate every row in place; a row's distinct entries move to its front.
        let mut lens = vec![0usize; rows];
        {
            let mut slices: Vec<&mut [(u32, f32)]> = Vec::with_capacity(rows);
            let mut rest: &mut [(u32, f32)] = &mut entries;
            for r in 0..rows {
                let (head, tail) = rest.split_at_mut(starts[r + 1] - starts[r]);
                slices.push(head);
                rest = tail;
            }
            slices
                .into_par_iter()
                .zip(lens.par_iter_mut())
                .with_min_len(256)
                .for_each(|(row, len)| {
                    if !row.is_sorted_by_key(|e| e.0) {
                        row.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(b.1.total_cmp(&a.1)));
                    }
                    let mut w = 0;
                    for i in 0..row.len() {
                        if w == 0 || row[w - 1].0 != row[i].0 {
                            row[w] = row[i];
                            w += 1;
                        } else if row[i].1 > row[w - 1].1 {
                            row[w - 1].1 = row[i].1;
                        }
                    }
                    *len = w;
                });
        }
        let mut indptr = Vec::with_capacity(rows + 1);
        indptr.push(0);
        for &l in &lens {
            indptr.push(indptr[indptr.len() - 1] + l);
        }
        let nnz = indptr[rows];
        let mut indices = Vec::with_capacity(nnz);
        let mut values = Vec::with_capacity(nnz);
        for r in 0..rows {
            for &(c, v) in &entries[starts[r]..starts[r] + lens[r]] {
                indices.push(c);
                values.push(v);
            }
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

    /// The transpose, with `cols` rows: one counting sort. Rows are visited in order, so each
    /// column's entries come out sorted and nothing needs sorting.
    pub fn transpose(&self, cols: usize) -> Csr {
        let mut indptr = vec![0usize; cols + 1];
        for &c in &self.indices {
            indptr[c as usize + 1] += 1;
        }
        for i in 0..cols {
            indptr[i + 1] += indptr[i];
        }
        let mut next = indptr.clone();
        let mut indices = vec![0u32; self.nnz()];
        let mut values = vec![0f32; self.nnz()];
        for r in 0..self.rows() {
            for (&c, &v) in self.row_indices(r).iter().zip(self.row_values(r)) {
                let slot = &mut next[c as usize];
                indices[*slot] = r as u32;
                values[*slot] = v;
                *slot += 1;
            }
        }
        Csr {
            indptr,
            indices,
            values,
        }
    }
}

/// A sorted mapping between external ids and dense indices.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct IdMap {
    ids: Vec<i64>,
    lookup: Lookup,
}

/// How an id finds its index: a direct table when the ids are dense enough (MovieLens' are),
/// else a hash map.
#[derive(Debug, Clone, PartialEq, Default)]
enum Lookup {
    #[default]
    Empty,
    Table {
        min: i64,
        index: Vec<u32>,
    },
    Hash(HashMap<i64, u32>),
}

impl IdMap {
    /// Maps the distinct ids in sorted order.
    pub fn new(ids: impl IntoIterator<Item = i64>) -> IdMap {
        IdMap::from_vec(ids.into_iter().collect())
    }

    /// Maps the distinct ids of a vector in sorted order (sorting it in parallel).
    pub fn from_vec(mut ids: Vec<i64>) -> IdMap {
        ids.par_sort_unstable();
        ids.dedup();
        ids.shrink_to_fit();
        let lookup = match (ids.first(), ids.last()) {
            (Some(&min), Some(&max))
                if (max as i128 - min as i128) < 4 * ids.len() as i128 + 1024 =>
            {
                let mut index = vec![u32::MAX; (max - min) as usize + 1];
                for (i, &id) in ids.iter().enumerate() {
                    index[(id - min) as usize] = i as u32;
                }
                Lookup::Table { min, index }
            }
            (Some(_), _) => Lookup::Hash(
                ids.iter()
                    .enumerate()
                    .map(|(i, &id)| (id, i as u32))
                    .collect(),
            ),
            _ => Lookup::Empty,
        };
        IdMap { ids, lookup }
    }

    /// The index of an id.
    pub fn index(&self, id: i64) -> Option<u32> {
        match &self.lookup {
            Lookup::Empty => None,
            Lookup::Table { min, index } => {
                let at = usize::try_from(id.checked_sub(*min)?).ok()?;
                index.get(at).copied().filter(|&i| i != u32::MAX)
            }
            Lookup::Hash(h) => h.get(&id).copied(),
        }
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
    ///
    /// Ids are mapped in sorted order and each row's entries sorted by column, so the result
    /// does not depend on the order of the input rows. A (user, item) pair given twice keeps
    /// its largest value.
    pub fn from_columns(user_ids: &[i64], item_ids: &[i64], values: &[f32]) -> Interactions {
        let users = IdMap::from_vec(user_ids.to_vec());
        let items = IdMap::from_vec(item_ids.to_vec());
        let map = |ids: &[i64], m: &IdMap| -> Vec<u32> {
            ids.par_iter()
                .with_min_len(4096)
                .map(|&id| m.index(id).unwrap_or(u32::MAX))
                .collect()
        };
        let u = map(user_ids, &users);
        let i = map(item_ids, &items);
        let by_user = Csr::from_coo(users.len(), u.len(), |e| (u[e], i[e], values[e]));
        drop((u, i));
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
