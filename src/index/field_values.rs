//! A user's fields read from the index's columns instead of its stored document.
//!
//! Reading and decompressing stored users is most of the cost of an export or a page that asks
//! for names and a few metadata fields, and every such field already has a column. A column alone
//! does not say what the JSON held, though: an array flattens into the same column as a single
//! value, an integer may sit in a column coerced to floats, an object has no value of its own and
//! an empty name column cannot tell `null` from an absent key. So each path is read with what
//! the index knows of its JSON type for that user:
//!
//! - metadata paths: the `field_types` terms (`{path}\u{1f}{type}`), one bit per type per user,
//!   read once from the postings for the users asked about;
//! - core fields: the `gaps` terms, which mark the few users whose key is absent or `null` where
//!   the column holds a default;
//! - a namespace itself: a `gaps` term when it is not an object.
//!
//! Anything the columns cannot give back exactly (an array, an object asked for whole, a value
//! missing from its column) is [`Slot::Unknown`], and the caller reads that user's stored document.

use serde_json::{Number, Value};
use tantivy::columnar::{Column, DynamicColumn, StrColumn};
use tantivy::schema::{Field, IndexRecordOption};
use tantivy::{DateTime, DocAddress, DocId, DocSet, SegmentReader, TERMINATED, Term};

use super::engine::DecodedTerms;
use super::error::IndexError;
use super::paths::TYPE_SEPARATOR;
use super::schema::Fields;
use super::snapshot::Snapshot;
use crate::query::CoreField;
use crate::user::{MetadataNamespace, encode_metadata_path};

/// A place in a user's Clerk JSON that columns may answer.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ValuePath {
    /// A core field with a faithful column ([`ValuePath::core`]).
    Core(CoreField),
    /// A metadata namespace's object itself: whether the user has one.
    Namespace(MetadataNamespace),
    /// A path inside a metadata namespace.
    Metadata {
        namespace: MetadataNamespace,
        keys: Vec<String>,
    },
}

impl ValuePath {
    /// The core field whose top-level Clerk JSON key is `key`, when its column gives back the
    /// JSON value: names and the external id are kept verbatim, times as whole milliseconds, and
    /// the flags Clerk sends as booleans. (`username` and `locale` are lower-cased, the email
    /// and verification fields are derived: those come from the stored user.)
    pub fn core(key: &str) -> Option<ValuePath> {
        // The key itself, not an alias a filter accepts: the mask selects Clerk's JSON keys.
        let field = CoreField::parse(key).filter(|field| field.name() == key)?;
        column_kind(field).map(|_| ValuePath::Core(field))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CoreKind {
    Text,
    Millis,
    Flag,
}

fn column_kind(field: CoreField) -> Option<CoreKind> {
    use CoreField::*;
    Some(match field {
        ExternalId | FirstName | LastName => CoreKind::Text,
        CreatedAt | UpdatedAt | LastSignInAt | LastActiveAt | LegalAcceptedAt => CoreKind::Millis,
        Banned | Locked | TwoFactorEnabled | PasswordEnabled | HasImage | TotpEnabled
        | BackupCodeEnabled => CoreKind::Flag,
        _ => return None,
    })
}

/// What the index says one path of one user holds.
#[derive(Debug, Clone, PartialEq)]
pub enum Slot {
    /// No such key.
    Absent,
    /// An object (what it holds is asked path by path).
    Object,
    /// A scalar or `null`, exactly as in the user's JSON.
    Value(Value),
    /// Only the stored document can say.
    Unknown,
}

/// What [`Cells::write`] found at one path of a user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cell {
    /// No such key; nothing written.
    Absent,
    /// An object; nothing written (what it holds is asked path by path).
    Object,
    /// A scalar or `null`, written as JSON.
    Written,
    /// Only the stored document can say; nothing written.
    Unknown,
}

/// Where a projection written from columns finds each path of one user.
pub trait Cells {
    /// Appends path `p`'s value to `out` as JSON when it is a scalar or `null`.
    fn write(&mut self, p: usize, out: &mut String) -> Result<Cell, IndexError>;
}

/// Slots read ahead (a page's users, [`Snapshot::slots_at`]).
impl Cells for &[Slot] {
    fn write(&mut self, p: usize, out: &mut String) -> Result<Cell, IndexError> {
        Ok(match &self[p] {
            Slot::Absent => Cell::Absent,
            Slot::Object => Cell::Object,
            Slot::Unknown => Cell::Unknown,
            Slot::Value(value) => {
                push_json_value(out, value);
                Cell::Written
            }
        })
    }
}

/// One user's paths read from the columns as they are written: no slot, no `Value`, and a
/// string is copied once, from the decoded dictionary into the answer.
pub struct Row<'a> {
    /// Opened for the user's segment ([`ValueColumns::kinds`]).
    pub(super) values: Option<&'a ValueColumns>,
    pub(super) segment: u32,
    pub(super) doc: DocId,
    /// The type bits of each path for this user ([`ValueColumns::kinds`]).
    pub(super) kinds: &'a [u8],
    /// A string looked up in a dictionary not decoded whole.
    pub(super) scratch: &'a mut String,
}

impl Cells for Row<'_> {
    fn write(&mut self, p: usize, out: &mut String) -> Result<Cell, IndexError> {
        let Some(values) = self.values else {
            return Ok(Cell::Unknown);
        };
        let read = values.read(self.segment, p, self.doc, self.kinds[p], self.scratch)?;
        Ok(match read {
            Read::Absent => Cell::Absent,
            Read::Object => Cell::Object,
            Read::Unknown => Cell::Unknown,
            Read::Scalar(scalar) => {
                scalar.write(out);
                Cell::Written
            }
        })
    }
}

/// A path of one user as the columns give it, borrowing its text.
enum Read<'a> {
    Absent,
    Object,
    Scalar(Scalar<'a>),
    Unknown,
}

enum Scalar<'a> {
    Null,
    Bool(bool),
    Number(Number),
    Text(&'a str),
}

impl Scalar<'_> {
    fn into_value(self) -> Value {
        match self {
            Scalar::Null => Value::Null,
            Scalar::Bool(flag) => Value::Bool(flag),
            Scalar::Number(number) => Value::Number(number),
            Scalar::Text(text) => Value::String(text.to_string()),
        }
    }

    fn write(&self, out: &mut String) {
        use std::fmt::Write;
        match self {
            Scalar::Null => out.push_str("null"),
            Scalar::Bool(true) => out.push_str("true"),
            Scalar::Bool(false) => out.push_str("false"),
            Scalar::Number(number) => write!(out, "{number}").expect("a String takes any text"),
            Scalar::Text(text) => push_json_str(out, text),
        }
    }
}

/// Appends `text` as a JSON string, escaped as `serde_json` escapes it.
pub fn push_json_str(out: &mut String, text: &str) {
    let plain = |b: &u8| *b >= 0x20 && *b != b'"' && *b != b'\\';
    if text.as_bytes().iter().all(plain) {
        out.reserve(text.len() + 2);
        out.push('"');
        out.push_str(text);
        out.push('"');
    } else {
        out.push_str(&serde_json::to_string(text).expect("a string always serializes"));
    }
}

/// Appends `value` as JSON.
fn push_json_value(out: &mut String, value: &Value) {
    match value {
        Value::String(text) => push_json_str(out, text),
        // `Value`'s `Display` is its JSON.
        other => {
            use std::fmt::Write;
            write!(out, "{other}").expect("a String takes any text")
        }
    }
}

/// JSON type bits per user and path (`field_types` terms), and `GAP` (`gaps` terms).
const STRING: u8 = 1;
const INTEGER: u8 = 2;
const FLOAT: u8 = 4;
const BOOLEAN: u8 = 8;
const NULL: u8 = 16;
const ARRAY: u8 = 32;
const OBJECT: u8 = 64;
const GAP: u8 = 128;
const TYPES: [(&str, u8); 7] = [
    ("string", STRING),
    ("integer", INTEGER),
    ("float", FLOAT),
    ("boolean", BOOLEAN),
    ("null", NULL),
    ("array", ARRAY),
    ("object", OBJECT),
];

/// Integers of smaller magnitude are held by an f64 exactly, and no other integer rounds to one.
const EXACT: f64 = (1u64 << 53) as f64;

/// The columns of some paths, opened per segment on first use.
pub struct ValueColumns {
    paths: Vec<ValuePath>,
    /// By segment ordinal, once opened.
    segments: Vec<Option<Vec<PathColumns>>>,
}

#[derive(Default)]
struct PathColumns {
    text: Option<(StrColumn, Option<std::sync::Arc<DecodedTerms>>)>,
    number: Option<DynamicColumn>,
    flag: Option<Column<bool>>,
    date: Option<Column<DateTime>>,
}

impl ValueColumns {
    pub fn new(paths: Vec<ValuePath>) -> ValueColumns {
        ValueColumns {
            paths,
            segments: Vec::new(),
        }
    }

    pub fn paths(&self) -> &[ValuePath] {
        &self.paths
    }

    /// The type bits of every path for `docs` of one segment (ascending, no repeats): one byte
    /// per path per doc, doc after doc. Read from postings alone: the segment's columns are
    /// opened apart ([`Self::opened`]).
    pub fn kinds(
        &self,
        snapshot: &Snapshot,
        segment: u32,
        docs: &[DocId],
    ) -> Result<Vec<u8>, IndexError> {
        let reader = snapshot.searcher.segment_reader(segment);
        let fields = &snapshot.fields;
        let width = self.paths.len();
        let mut kinds = vec![0u8; docs.len() * width];
        for (p, path) in self.paths.iter().enumerate() {
            let mut mark = |field: Field, text: &str, bit: u8| -> Result<(), IndexError> {
                mark_docs(reader, field, text, docs, |i| kinds[i * width + p] |= bit)
            };
            match path {
                ValuePath::Core(field) => mark(fields.gaps, field.name(), GAP)?,
                ValuePath::Namespace(namespace) => mark(fields.gaps, namespace.field_name(), GAP)?,
                ValuePath::Metadata { namespace, keys } => {
                    let encoded = encode_metadata_path(*namespace, keys);
                    for (name, bit) in TYPES {
                        let term = format!("{encoded}{TYPE_SEPARATOR}{name}");
                        mark(fields.field_types, &term, bit)?;
                    }
                }
            }
        }
        Ok(kinds)
    }

    /// What path `p` of `doc` (in `segment`) holds, given its type bits from [`Self::kinds`].
    pub fn slot(
        &mut self,
        snapshot: &Snapshot,
        segment: u32,
        p: usize,
        doc: DocId,
        kind: u8,
    ) -> Result<Slot, IndexError> {
        self.opened(snapshot, segment, 0)?;
        Ok(
            match self.read(segment, p, doc, kind, &mut String::new())? {
                Read::Absent => Slot::Absent,
                Read::Object => Slot::Object,
                Read::Unknown => Slot::Unknown,
                Read::Scalar(scalar) => Slot::Value(scalar.into_value()),
            },
        )
    }

    /// What path `p` of `doc` holds, from the columns of `segment` opened before (else
    /// [`Read::Unknown`]).
    fn read<'a>(
        &'a self,
        segment: u32,
        p: usize,
        doc: DocId,
        kind: u8,
        scratch: &'a mut String,
    ) -> Result<Read<'a>, IndexError> {
        let Some(Some(opened)) = self.segments.get(segment as usize) else {
            return Ok(Read::Unknown);
        };
        let columns = &opened[p];
        Ok(match &self.paths[p] {
            ValuePath::Namespace(_) if kind & GAP != 0 => Read::Absent,
            ValuePath::Namespace(_) => Read::Object,
            ValuePath::Core(_) if kind & GAP != 0 => Read::Unknown,
            ValuePath::Core(field) => core_read(columns, column_kind(*field), doc, scratch)?,
            ValuePath::Metadata { .. } => metadata_read(columns, doc, kind, scratch)?,
        })
    }

    /// Opens the columns of `segment` on first use, for reading about `docs` of its docs.
    pub fn opened(
        &mut self,
        snapshot: &Snapshot,
        segment: u32,
        docs: usize,
    ) -> Result<(), IndexError> {
        let at = segment as usize;
        if self.segments.len() <= at {
            self.segments.resize_with(at + 1, || None);
        }
        if self.segments[at].is_none() {
            self.segments[at] = Some(self.open(snapshot, segment, docs)?);
        }
        Ok(())
    }

    fn open(
        &self,
        snapshot: &Snapshot,
        segment: u32,
        docs: usize,
    ) -> Result<Vec<PathColumns>, IndexError> {
        let reader = snapshot.searcher.segment_reader(segment);
        let mut opened = Vec::with_capacity(self.paths.len());
        for path in &self.paths {
            let name = match path {
                ValuePath::Namespace(_) => {
                    opened.push(PathColumns::default());
                    continue;
                }
                ValuePath::Core(field) => field.name().to_string(),
                ValuePath::Metadata { namespace, keys } => encode_metadata_path(*namespace, keys),
            };
            opened.push(open_columns(reader, &snapshot.fields, &name, docs)?);
        }
        Ok(opened)
    }
}

/// Calls `hit(i)` for each `docs[i]` holding `text` in `field`.
fn mark_docs(
    reader: &SegmentReader,
    field: Field,
    text: &str,
    docs: &[DocId],
    mut hit: impl FnMut(usize),
) -> Result<(), IndexError> {
    let term = Term::from_field_text(field, text);
    let Some(mut postings) = reader
        .inverted_index(field)?
        .read_postings(&term, IndexRecordOption::Basic)?
    else {
        return Ok(());
    };
    for (i, &doc) in docs.iter().enumerate() {
        let mut at = postings.doc();
        if at < doc {
            at = postings.seek(doc);
        }
        if at == TERMINATED {
            break;
        }
        if at == doc {
            hit(i);
        }
    }
    Ok(())
}

/// The columns of `name` in one segment. A string column's dictionary is decoded whole (and
/// cached) only for reading many docs against its size: a page of 50 names looks its strings up
/// one by one rather than decode a million distinct ones.
fn open_columns(
    reader: &SegmentReader,
    fields: &Fields,
    name: &str,
    docs: usize,
) -> Result<PathColumns, IndexError> {
    let mut columns = PathColumns::default();
    for handle in reader.fast_fields().dynamic_column_handles(name)? {
        match handle.open()? {
            DynamicColumn::Str(column) => {
                let terms = match docs.saturating_mul(4) >= column.num_terms() {
                    true => {
                        (fields.columns).terms(reader.segment_id(), name, column.dictionary())?
                    }
                    false => None,
                };
                columns.text = Some((column, terms));
            }
            DynamicColumn::Bool(column) => columns.flag = Some(column),
            DynamicColumn::DateTime(column) => columns.date = Some(column),
            number @ (DynamicColumn::I64(_) | DynamicColumn::U64(_) | DynamicColumn::F64(_)) => {
                columns.number = Some(number)
            }
            _ => {}
        }
    }
    Ok(columns)
}

/// The one value of `doc` in `column`; `None` when it has none or several.
fn single<T: PartialOrd + Copy + std::fmt::Debug + Send + Sync + 'static>(
    column: &Column<T>,
    doc: DocId,
) -> Option<T> {
    let mut values = column.values_for_doc(doc);
    let first = values.next()?;
    values.next().is_none().then_some(first)
}

fn text<'a>(
    columns: &'a PathColumns,
    doc: DocId,
    scratch: &'a mut String,
) -> Result<Option<Option<&'a str>>, IndexError> {
    let Some((column, terms)) = &columns.text else {
        return Ok(Some(None));
    };
    let mut ords = column.term_ords(doc);
    let Some(ord) = ords.next() else {
        return Ok(Some(None));
    };
    if ords.next().is_some() {
        return Ok(None);
    }
    let text = match terms {
        Some(terms) => terms.term(ord),
        None => {
            scratch.clear();
            if !column.ord_to_str(ord, scratch)? {
                return Ok(None);
            }
            scratch.as_str()
        }
    };
    Ok(Some(Some(text)))
}

fn core_read<'a>(
    columns: &'a PathColumns,
    kind: Option<CoreKind>,
    doc: DocId,
    scratch: &'a mut String,
) -> Result<Read<'a>, IndexError> {
    Ok(match kind {
        // An optional field: an empty column is the user's `null` (an absent key is a gap).
        Some(CoreKind::Text) => match text(columns, doc, scratch)? {
            Some(Some(text)) => Read::Scalar(Scalar::Text(text)),
            Some(None) => Read::Scalar(Scalar::Null),
            None => Read::Unknown,
        },
        Some(CoreKind::Millis) => match &columns.date {
            None => Read::Scalar(Scalar::Null),
            Some(column) => {
                let mut dates = column.values_for_doc(doc);
                match (dates.next(), dates.next()) {
                    (None, _) => Read::Scalar(Scalar::Null),
                    (Some(date), None) => {
                        Read::Scalar(Scalar::Number(date.into_timestamp_millis().into()))
                    }
                    (Some(_), Some(_)) => Read::Unknown,
                }
            }
        },
        Some(CoreKind::Flag) => match columns.flag.as_ref().and_then(|c| single(c, doc)) {
            Some(flag) => Read::Scalar(Scalar::Bool(flag)),
            None => Read::Unknown,
        },
        None => Read::Unknown,
    })
}

fn metadata_read<'a>(
    columns: &'a PathColumns,
    doc: DocId,
    kind: u8,
    scratch: &'a mut String,
) -> Result<Read<'a>, IndexError> {
    Ok(match kind {
        0 => Read::Absent,
        OBJECT => Read::Object,
        NULL => Read::Scalar(Scalar::Null),
        STRING => match text(columns, doc, scratch)? {
            Some(Some(text)) => Read::Scalar(Scalar::Text(text)),
            _ => Read::Unknown,
        },
        BOOLEAN => match columns.flag.as_ref().and_then(|c| single(c, doc)) {
            Some(flag) => Read::Scalar(Scalar::Bool(flag)),
            None => Read::Unknown,
        },
        INTEGER | FLOAT => match columns.number.as_ref().and_then(|c| number(c, doc, kind)) {
            Some(number) => Read::Scalar(Scalar::Number(number)),
            None => Read::Unknown,
        },
        // An array (its elements' types are set too), or several types at one path.
        _ => Read::Unknown,
    })
}

/// The number at `doc` as the JSON held it (`kind` says integer or float): a column coerced to
/// another numeric type gives it back only when the conversion is exact.
fn number(column: &DynamicColumn, doc: DocId, kind: u8) -> Option<Number> {
    match (column, kind) {
        (DynamicColumn::I64(c), INTEGER) => single(c, doc).map(Number::from),
        (DynamicColumn::U64(c), INTEGER) => single(c, doc).map(Number::from),
        (DynamicColumn::F64(c), INTEGER) => {
            let value = single(c, doc)?;
            // 2^53 itself may be 2^53 + 1 rounded: only smaller magnitudes are surely exact.
            (value.fract() == 0.0 && value.abs() < EXACT).then(|| Number::from(value as i64))
        }
        (DynamicColumn::F64(c), FLOAT) => Number::from_f64(single(c, doc)?),
        (DynamicColumn::I64(c), FLOAT) => {
            let value = single(c, doc)?;
            (value.unsigned_abs() <= 1 << 53).then(|| Number::from_f64(value as f64))?
        }
        (DynamicColumn::U64(c), FLOAT) => {
            let value = single(c, doc)?;
            (value <= 1 << 53).then(|| Number::from_f64(value as f64))?
        }
        _ => None,
    }
}

impl Snapshot {
    /// What each path of `values` holds for each user at `addresses` (any order), from the
    /// columns: one slot per path per address.
    pub fn slots_at(
        &self,
        values: &mut ValueColumns,
        addresses: &[DocAddress],
    ) -> Result<Vec<Vec<Slot>>, IndexError> {
        let width = values.paths().len();
        let mut order: Vec<usize> = (0..addresses.len()).collect();
        order.sort_unstable_by_key(|&i| (addresses[i].segment_ord, addresses[i].doc_id));
        let mut slots = vec![Vec::new(); addresses.len()];
        for group in order.chunk_by(|&a, &b| addresses[a].segment_ord == addresses[b].segment_ord) {
            let segment = addresses[group[0]].segment_ord;
            let docs: Vec<DocId> = group.iter().map(|&i| addresses[i].doc_id).collect();
            values.opened(self, segment, docs.len())?;
            let kinds = values.kinds(self, segment, &docs)?;
            for (at, &i) in group.iter().enumerate() {
                slots[i] = (kinds[at * width..(at + 1) * width].iter().enumerate())
                    .map(|(p, &kind)| values.slot(self, segment, p, docs[at], kind))
                    .collect::<Result<_, _>>()?;
            }
        }
        Ok(slots)
    }
}

#[cfg(test)]
mod tests;
