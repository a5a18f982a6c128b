//! Group keys interned to dense group ids.
//!
//! Every group of an aggregate gets a small integer id; the operator's state
//! is one column per aggregate call indexed by that id, so a batch touches
//! flat vectors rather than a separately allocated record per group. Ids of
//! groups that disappear are reused. A single integer key (the common
//! `GROUP BY id`) is hashed as an `i64`; any other key by its row encoding.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Int64Array};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Int64Type};
use eddy_common::row::RowCodec;
use hashbrown::HashMap;

use crate::Result;

/// A group's id: an index into every per-group state vector.
pub(super) type GroupId = u32;

enum Keys {
    /// No GROUP BY: one group, id 0.
    Global,
    /// One integer key column, hashed as `i64`; `null` is the NULL group.
    Integer {
        data_type: DataType,
        ids: HashMap<i64, GroupId>,
        null: Option<GroupId>,
        keys: Vec<Option<i64>>,
    },
    /// Any other key, by its row encoding.
    Encoded {
        codec: RowCodec,
        ids: HashMap<Box<[u8]>, GroupId>,
        keys: Vec<Box<[u8]>>,
    },
}

/// The groups of one aggregate: key → id, id → key.
pub(super) struct Groups {
    keys: Keys,
    free: Vec<GroupId>,
    slots: usize,
}

impl Groups {
    /// Groups keyed by columns of `types` (none: the one global group).
    pub(super) fn new(types: Vec<DataType>) -> Result<Self> {
        let keys = match types.as_slice() {
            [] => Keys::Global,
            [one] if one.is_integer() && *one != DataType::UInt64 => Keys::Integer {
                data_type: one.clone(),
                ids: HashMap::new(),
                null: None,
                keys: Vec::new(),
            },
            _ => Keys::Encoded {
                codec: RowCodec::new(types)?,
                ids: HashMap::new(),
                keys: Vec::new(),
            },
        };
        let slots = usize::from(matches!(keys, Keys::Global));
        Ok(Self {
            keys,
            free: Vec::new(),
            slots,
        })
    }

    /// True for the global group of an aggregate without GROUP BY.
    pub(super) fn is_global(&self) -> bool {
        matches!(self.keys, Keys::Global)
    }

    /// Number of id slots in use or free: per-group state vectors must have
    /// this length.
    pub(super) fn slots(&self) -> usize {
        self.slots
    }

    /// The group id of every row of `columns` (the key columns, already of
    /// the key types), creating groups as needed; the ids of the groups
    /// created go to `created`.
    pub(super) fn intern(
        &mut self,
        columns: &[ArrayRef],
        rows: usize,
        out: &mut Vec<GroupId>,
        created: &mut Vec<GroupId>,
    ) -> Result<()> {
        out.clear();
        out.reserve(rows);
        created.clear();
        let free = &mut self.free;
        let slots = &mut self.slots;
        let mut allocate = || {
            let id = match free.pop() {
                Some(id) => id,
                None => {
                    *slots += 1;
                    (*slots - 1) as GroupId
                }
            };
            created.push(id);
            id
        };
        match &mut self.keys {
            Keys::Global => out.resize(rows, 0),
            Keys::Integer {
                ids, null, keys, ..
            } => {
                let column = cast(&columns[0], &DataType::Int64)?;
                let values = column.as_primitive::<Int64Type>();
                let mut store = |id: GroupId, key: Option<i64>| {
                    let index = id as usize;
                    if index >= keys.len() {
                        keys.resize(index + 1, None);
                    }
                    keys[index] = key;
                };
                for row in 0..rows {
                    let id = if values.is_null(row) {
                        *null.get_or_insert_with(|| {
                            let id = allocate();
                            store(id, None);
                            id
                        })
                    } else {
                        let value = values.value(row);
                        *ids.entry(value).or_insert_with(|| {
                            let id = allocate();
                            store(id, Some(value));
                            id
                        })
                    };
                    out.push(id);
                }
            }
            Keys::Encoded { codec, ids, keys } => {
                let encoded = codec.encode(columns)?;
                for row in encoded.iter() {
                    let bytes = row.data();
                    let id = match ids.get(bytes) {
                        Some(id) => *id,
                        None => {
                            let id = allocate();
                            let index = id as usize;
                            if index >= keys.len() {
                                keys.resize(index + 1, Box::default());
                            }
                            keys[index] = bytes.into();
                            ids.insert(bytes.into(), id);
                            id
                        }
                    };
                    out.push(id);
                }
            }
        }
        Ok(())
    }

    /// Append group `id`'s key, as state entries store it, to `out`.
    pub(super) fn stored_key(&self, id: GroupId, out: &mut Vec<u8>) {
        match &self.keys {
            Keys::Global => {}
            Keys::Integer { keys, .. } => match keys[id as usize] {
                None => out.push(0),
                Some(key) => {
                    out.push(1);
                    out.extend_from_slice(&key.to_be_bytes());
                }
            },
            Keys::Encoded { keys, .. } => out.extend_from_slice(&keys[id as usize]),
        }
    }

    /// The id of the group whose key [`Groups::stored_key`] wrote, creating
    /// the group.
    pub(super) fn load_key(&mut self, key: &[u8]) -> Result<GroupId> {
        if let Keys::Global = self.keys {
            return match key {
                [] => Ok(0),
                _ => Err(crate::state::corrupt()),
            };
        }
        let id = match self.free.pop() {
            Some(id) => id,
            None => {
                self.slots += 1;
                (self.slots - 1) as GroupId
            }
        };
        let index = id as usize;
        match &mut self.keys {
            Keys::Global => {}
            Keys::Integer {
                ids, null, keys, ..
            } => {
                let key = match key {
                    [0] => None,
                    [1, value @ ..] => Some(i64::from_be_bytes(
                        <[u8; 8]>::try_from(value).map_err(|_| crate::state::corrupt())?,
                    )),
                    _ => return Err(crate::state::corrupt()),
                };
                if index >= keys.len() {
                    keys.resize(index + 1, None);
                }
                keys[index] = key;
                match key {
                    None => *null = Some(id),
                    Some(key) => {
                        ids.insert(key, id);
                    }
                }
            }
            Keys::Encoded { ids, keys, .. } => {
                if index >= keys.len() {
                    keys.resize(index + 1, Box::default());
                }
                keys[index] = key.into();
                ids.insert(key.into(), id);
            }
        }
        Ok(id)
    }

    /// Forget a group; its id will be reused.
    pub(super) fn release(&mut self, id: GroupId) {
        match &mut self.keys {
            Keys::Global => return,
            Keys::Integer {
                ids, null, keys, ..
            } => match keys[id as usize].take() {
                Some(key) => {
                    ids.remove(&key);
                }
                None => *null = None,
            },
            Keys::Encoded { ids, keys, .. } => {
                let key = std::mem::take(&mut keys[id as usize]);
                ids.remove(&key);
            }
        }
        self.free.push(id);
    }

    /// The key columns of the groups `ids`, in that order.
    pub(super) fn key_columns(&self, ids: &[GroupId]) -> Result<Vec<ArrayRef>> {
        match &self.keys {
            Keys::Global => Ok(Vec::new()),
            Keys::Integer {
                data_type, keys, ..
            } => {
                let values: Int64Array = ids.iter().map(|id| keys[*id as usize]).collect();
                let values: ArrayRef = Arc::new(values);
                Ok(vec![cast(&values, data_type)?])
            }
            Keys::Encoded { codec, keys, .. } => {
                codec.decode(ids.iter().map(|id| keys[*id as usize].as_ref()))
            }
        }
    }
}
