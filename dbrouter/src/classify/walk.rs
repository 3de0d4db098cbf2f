//! A walk over every node of a parsed statement that notes what decides its routing.
//!
//! pg_query's own `nodes()` iterator visits only the node kinds it needs for its table and
//! function lists (it skips `VALUES` lists, `LIMIT`, window definitions, `FILTER`, …), so a
//! `nextval` there would pass unseen. A hand-written walker over the ~270 node kinds would
//! fall out of date with each Postgres release. Instead: the protobuf types derive
//! `serde::Serialize`, and serializing a tree into a [`Serializer`] that keeps no output
//! visits every struct in it, whatever its kind, including kinds added later. The walker
//! notes the few struct names that matter and captures the name of every function call.
//!
//! Nothing is allocated but the function names. The recursion is bounded: the protobuf
//! decoder refuses trees nested deeper than 100 messages before a walk can start.

use std::fmt;

use serde::ser::{self, Serialize, Serializer};

/// What a statement contains, as far as routing cares.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Facts {
    /// An `INSERT`, `UPDATE`, `DELETE` or `MERGE` anywhere (inside `WITH` for a `SELECT`).
    pub data_modifying: bool,
    /// A `FOR UPDATE` / `FOR NO KEY UPDATE` / `FOR SHARE` / `FOR KEY SHARE` clause.
    pub locking: bool,
    /// An `INTO` clause (`SELECT … INTO new_table`).
    pub into: bool,
    /// Every function called, in tree order: its name parts joined by `.`, ASCII-lowercased.
    pub functions: Vec<String>,
}

/// Visit every node of `node` and report what it contains.
pub(super) fn facts<T: Serialize + ?Sized>(node: &T) -> Facts {
    let mut walker = Walker {
        facts: Facts::default(),
        capture: None,
    };
    // The walker never fails; an error could only come from a foreign Serialize impl, and
    // then the facts gathered so far are still the conservative answer's input.
    let _ = node.serialize(&mut walker);
    walker.facts
}

struct Walker {
    facts: Facts,
    /// `Some` while inside a `FuncCall`'s `funcname`: the strings seen are its name parts.
    capture: Option<String>,
}

impl Walker {
    fn enter_struct(&mut self, name: &'static str) {
        match name {
            "InsertStmt" | "UpdateStmt" | "DeleteStmt" | "MergeStmt" => {
                self.facts.data_modifying = true
            }
            "LockingClause" => self.facts.locking = true,
            "IntoClause" => self.facts.into = true,
            _ => {}
        }
    }
}

/// The walker's error type; it is never produced by the walker itself.
#[derive(Debug)]
pub(super) struct WalkError(String);

impl fmt::Display for WalkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for WalkError {}

impl ser::Error for WalkError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        WalkError(msg.to_string())
    }
}

type Res = Result<(), WalkError>;

/// Scalars carry nothing routing needs, except strings inside a function name.
macro_rules! ignore {
    ($($method:ident: $ty:ty),* $(,)?) => {
        $(fn $method(self, _: $ty) -> Res { Ok(()) })*
    };
}

impl<'a> Serializer for &'a mut Walker {
    type Ok = ();
    type Error = WalkError;
    type SerializeSeq = Self;
    type SerializeTuple = Self;
    type SerializeTupleStruct = Self;
    type SerializeTupleVariant = Self;
    type SerializeMap = Self;
    type SerializeStruct = StructWalk<'a>;
    type SerializeStructVariant = StructWalk<'a>;

    ignore!(serialize_bool: bool, serialize_i8: i8, serialize_i16: i16, serialize_i32: i32,
        serialize_i64: i64, serialize_u8: u8, serialize_u16: u16, serialize_u32: u32,
        serialize_u64: u64, serialize_f32: f32, serialize_f64: f64, serialize_char: char,
        serialize_bytes: &[u8], serialize_unit_struct: &'static str);

    fn serialize_str(self, v: &str) -> Res {
        if let Some(name) = self.capture.as_mut() {
            if !name.is_empty() {
                name.push('.');
            }
            name.extend(v.chars().map(|c| c.to_ascii_lowercase()));
        }
        Ok(())
    }
    fn serialize_none(self) -> Res {
        Ok(())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Res {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Res {
        Ok(())
    }
    fn serialize_unit_variant(self, _: &'static str, _: u32, _: &'static str) -> Res {
        Ok(())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(self, _: &'static str, v: &T) -> Res {
        v.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        value: &T,
    ) -> Res {
        value.serialize(self)
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self, WalkError> {
        Ok(self)
    }
    fn serialize_tuple(self, _: usize) -> Result<Self, WalkError> {
        Ok(self)
    }
    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Self, WalkError> {
        Ok(self)
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self, WalkError> {
        Ok(self)
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self, WalkError> {
        Ok(self)
    }
    fn serialize_struct(self, name: &'static str, _: usize) -> Result<StructWalk<'a>, WalkError> {
        self.enter_struct(name);
        Ok(StructWalk { walker: self, name })
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<StructWalk<'a>, WalkError> {
        self.serialize_struct(variant, len)
    }
}

/// Inside one struct: knows its name, to capture `FuncCall.funcname`.
pub(super) struct StructWalk<'a> {
    walker: &'a mut Walker,
    name: &'static str,
}

impl StructWalk<'_> {
    fn field<T: Serialize + ?Sized>(&mut self, key: &'static str, value: &T) -> Res {
        if self.name == "FuncCall" && key == "funcname" && self.walker.capture.is_none() {
            self.walker.capture = Some(String::new());
            let result = value.serialize(&mut *self.walker);
            if let Some(name) = self.walker.capture.take() {
                self.walker.facts.functions.push(name);
            }
            return result;
        }
        value.serialize(&mut *self.walker)
    }
}

impl ser::SerializeStruct for StructWalk<'_> {
    type Ok = ();
    type Error = WalkError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, key: &'static str, value: &T) -> Res {
        self.field(key, value)
    }
    fn end(self) -> Res {
        Ok(())
    }
}

impl ser::SerializeStructVariant for StructWalk<'_> {
    type Ok = ();
    type Error = WalkError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, key: &'static str, value: &T) -> Res {
        self.field(key, value)
    }
    fn end(self) -> Res {
        Ok(())
    }
}

/// Sequences, tuples and maps: visit every element.
macro_rules! compound {
    ($($trait:ident: $method:ident),* $(,)?) => {
        $(impl ser::$trait for &mut Walker {
            type Ok = ();
            type Error = WalkError;
            fn $method<T: Serialize + ?Sized>(&mut self, value: &T) -> Res {
                value.serialize(&mut **self)
            }
            fn end(self) -> Res {
                Ok(())
            }
        })*
    };
}

compound!(SerializeSeq: serialize_element, SerializeTuple: serialize_element,
    SerializeTupleStruct: serialize_field, SerializeTupleVariant: serialize_field);

impl ser::SerializeMap for &mut Walker {
    type Ok = ();
    type Error = WalkError;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Res {
        key.serialize(&mut **self)
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Res {
        value.serialize(&mut **self)
    }
    fn end(self) -> Res {
        Ok(())
    }
}
