//! The fields of one JSON line, read without building the whole object: a serde visitor walks
//! the line, skips every key no field names (`serde::de::IgnoredAny`), descends only into the
//! objects of dotted paths (`properties.product_id`) and keeps strings borrowed from the line
//! where they have no escapes. [`super::records`] keeps the `serde_json::Value` reader beside it
//! as the reference (the tests compare both on the same lines), and for the rare mapping it
//! cannot serve (a name that is both a field and the start of a dotted path).

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::records::{FieldSpec, Fields, Value};

/// Where each field may be found, as a tree of keys from the line's top-level object.
#[derive(Debug)]
pub(crate) struct JsonFields {
    nodes: Vec<Node>,
    /// Per spec, per name in order: the slot of its literal key at the top level, and the slot
    /// of its dotted path (when the name has a dot).
    names: Vec<Vec<(usize, Option<usize>)>>,
    slots: usize,
}

#[derive(Debug, Default)]
struct Node {
    children: Vec<(String, usize)>,
    /// Slots whose value is this key's value.
    slots: Vec<usize>,
}

/// A slot's value: `None` when the key is absent from the line.
type Slot<'de> = Option<Option<Value<'de>>>;

/// Why a line could not be read.
pub(crate) enum LineError {
    /// Valid JSON, but not an object.
    NotObject,
    /// Not valid JSON.
    Syntax(String),
}

const NOT_OBJECT: &str = "elastirec: not an object";

impl JsonFields {
    /// The tree for `specs`; `None` when a key is both a field and the start of a longer path
    /// (then the lines are read whole).
    pub(crate) fn new(specs: &[FieldSpec]) -> Option<JsonFields> {
        let mut fields = JsonFields {
            nodes: vec![Node::default()],
            names: Vec::new(),
            slots: 0,
        };
        for spec in specs {
            let mut names = Vec::new();
            for name in &spec.names {
                let literal = fields.slot_at(&[name.as_str()]);
                let path = name.contains('.').then(|| {
                    let keys: Vec<&str> = name.split('.').collect();
                    fields.slot_at(&keys)
                });
                names.push((literal, path));
            }
            fields.names.push(names);
        }
        let ambiguous = fields
            .nodes
            .iter()
            .any(|n| !n.slots.is_empty() && !n.children.is_empty());
        (!ambiguous).then_some(fields)
    }

    /// A new slot at the node of `keys`, made as needed.
    fn slot_at(&mut self, keys: &[&str]) -> usize {
        let mut node = 0;
        for key in keys {
            node = match self.nodes[node].children.iter().find(|(k, _)| k == key) {
                Some((_, child)) => *child,
                None => {
                    self.nodes.push(Node::default());
                    let child = self.nodes.len() - 1;
                    self.nodes[node].children.push((key.to_string(), child));
                    child
                }
            };
        }
        let slot = self.slots;
        self.slots += 1;
        self.nodes[node].slots.push(slot);
        slot
    }

    /// The fields of one line (its text, without the newline), in the order of the specs: for
    /// each, the first name present with a value, the literal key before the dotted path.
    pub(crate) fn read<'de>(&self, line: &'de str) -> Result<Fields<'de>, LineError> {
        let mut slots: Vec<Slot<'de>> = (0..self.slots).map(|_| None).collect();
        let mut de = serde_json::Deserializer::from_str(line);
        let seed = NodeSeed {
            fields: self,
            node: 0,
            slots: &mut slots,
            top: true,
        };
        let read = seed.deserialize(&mut de).and_then(|()| de.end());
        if let Err(e) = read {
            return Err(if e.to_string().starts_with(NOT_OBJECT) {
                LineError::NotObject
            } else {
                LineError::Syntax(e.to_string())
            });
        }
        Ok(self
            .names
            .iter()
            .map(|names| {
                names
                    .iter()
                    .find_map(|&(literal, path)| match slots[literal].take() {
                        Some(value) => value,
                        None => path.and_then(|p| slots[p].take()).flatten(),
                    })
            })
            .collect())
    }
}

/// Reads the value at one node: an object is walked for the node's children; anything else is
/// skipped (the top level must be an object).
struct NodeSeed<'a, 'de> {
    fields: &'a JsonFields,
    node: usize,
    slots: &'a mut Vec<Slot<'de>>,
    top: bool,
}

impl<'de> DeserializeSeed<'de> for NodeSeed<'_, 'de> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> NodeSeed<'_, 'de> {
    fn not_an_object<E: de::Error>(&self) -> Result<(), E> {
        if self.top {
            Err(E::custom(NOT_OBJECT))
        } else {
            Ok(())
        }
    }
}

impl<'de> Visitor<'de> for NodeSeed<'_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let NodeSeed {
            fields,
            node,
            slots,
            ..
        } = self;
        let node = &fields.nodes[node];
        while let Some(child) = map.next_key_seed(KeySeed(&node.children))? {
            let Some(child) = child else {
                map.next_value::<IgnoredAny>()?;
                continue;
            };
            let target = &fields.nodes[child];
            if target.children.is_empty() {
                let value = map.next_value_seed(ScalarSeed)?;
                for &slot in &target.slots {
                    slots[slot] = Some(value.clone());
                }
            } else {
                map.next_value_seed(NodeSeed {
                    fields,
                    node: child,
                    slots: &mut *slots,
                    top: false,
                })?;
            }
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        self.not_an_object()
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        self.not_an_object()
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        self.not_an_object()
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        self.not_an_object()
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        self.not_an_object()
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        self.not_an_object()
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.not_an_object()
    }
}

/// Matches an object key against a node's children: `Some(child)` or `None` (skip its value).
struct KeySeed<'a>(&'a [(String, usize)]);

impl<'de> DeserializeSeed<'de> for KeySeed<'_> {
    type Value = Option<usize>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Option<usize>, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed<'_> {
    type Value = Option<usize>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<Option<usize>, E> {
        Ok(self.0.iter().find(|(k, _)| k == key).map(|(_, c)| *c))
    }
}

/// A field's value as `records::Value` reads it: strings trimmed (empty is absent), integers as
/// integers (beyond `i64` as text), booleans as text, an object or array as its JSON text.
struct ScalarSeed;

impl<'de> DeserializeSeed<'de> for ScalarSeed {
    type Value = Option<Value<'de>>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

fn text<'de>(t: Cow<'de, str>) -> Option<Value<'de>> {
    let trimmed = t.trim();
    if trimmed.is_empty() {
        return None;
    }
    Some(Value::Text(match t {
        Cow::Borrowed(b) => Cow::Borrowed(b.trim()),
        Cow::Owned(o) if o.len() == trimmed.len() => Cow::Owned(o),
        Cow::Owned(o) => Cow::Owned(o.trim().to_string()),
    }))
}

impl<'de> Visitor<'de> for ScalarSeed {
    type Value = Option<Value<'de>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(text(Cow::Borrowed(v)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(text(Cow::Owned(v.to_string())))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(text(Cow::Owned(v)))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Some(Value::Int(v)))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Some(match i64::try_from(v) {
            Ok(i) => Value::Int(i),
            Err(_) => Value::Text(Cow::Owned(v.to_string())),
        }))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Some(Value::Float(v)))
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Some(Value::Text(Cow::Borrowed(if v {
            "true"
        } else {
            "false"
        }))))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        let v: serde_json::Value =
            serde::Deserialize::deserialize(de::value::MapAccessDeserializer::new(map))?;
        Ok(Some(Value::Text(Cow::Owned(v.to_string()))))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        let v: serde_json::Value =
            serde::Deserialize::deserialize(de::value::SeqAccessDeserializer::new(seq))?;
        Ok(Some(Value::Text(Cow::Owned(v.to_string()))))
    }
}
