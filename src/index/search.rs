//! Reads over one [`Snapshot`]: count, get by id, sorted pages.

use tantivy::collector::Count;
use tantivy::schema::{IndexRecordOption, Value};
use tantivy::{DocAddress, DocSet, TERMINATED, TantivyDocument, Term};

use super::compile::compile;
use super::engine::{SortCursor, TopHits, search};
use super::error::IndexError;
use super::snapshot::Snapshot;
use crate::query::Filter;
use crate::query::sort::{SortSpec, SortValue};
use crate::user::UserVersion;

/// One user of a sorted page.
#[derive(Debug, Clone)]
pub struct SearchHit {
    pub id: String,
    /// Where its document is.
    pub address: DocAddress,
    pub sort_value: SortValue,
    /// The user's Clerk JSON as stored (`None` when not asked for).
    pub raw_json: Option<String>,
    /// The user's sealed sensitive values, if any (read with `raw_json`).
    pub sealed: Option<String>,
    /// The user's memberships, a JSON array (read with `raw_json`).
    pub organizations: Option<String>,
}

/// A user as stored: its Clerk JSON without sensitive values, and those values sealed.
#[derive(Debug, Clone)]
pub struct StoredUser {
    pub raw_json: String,
    pub sealed: Option<String>,
    /// The sealed values' blind-index tokens.
    pub tokens: Vec<String>,
    /// The user's memberships as its document holds them (a JSON array), if any.
    pub organizations: Option<String>,
}

impl Snapshot {
    /// The exact number of users matching `filter` (every user for `None`).
    pub fn count(&self, filter: Option<&Filter>, now_ms: i64) -> Result<u64, IndexError> {
        if filter.is_none() {
            return Ok(self.freshness.user_count);
        }
        let query = compile(&self.fields, filter, now_ms, self.org_slots);
        Ok(search(&self.searcher, &query, &Count)? as u64)
    }

    fn find(&self, user_id: &str) -> Result<Option<DocAddress>, IndexError> {
        let term = Term::from_field_text(self.fields.id, user_id);
        Ok(self.live_docs(&term, 1)?.pop())
    }

    /// Up to `limit` live documents holding `term`.
    pub(super) fn live_docs(
        &self,
        term: &Term,
        limit: usize,
    ) -> Result<Vec<DocAddress>, IndexError> {
        let mut addresses = Vec::new();
        for (ordinal, segment) in self.searcher.segment_readers().iter().enumerate() {
            let inverted = segment.inverted_index(term.field())?;
            let Some(mut postings) = inverted.read_postings(term, IndexRecordOption::Basic)? else {
                continue;
            };
            let mut doc = postings.doc();
            while doc != TERMINATED && addresses.len() < limit {
                if !segment.is_deleted(doc) {
                    addresses.push(DocAddress::new(ordinal as u32, doc));
                }
                doc = postings.advance();
            }
        }
        Ok(addresses)
    }

    pub fn stored_at(&self, address: DocAddress) -> Result<StoredUser, IndexError> {
        let doc: TantivyDocument = self.searcher.doc(address)?;
        let text = |field| -> Result<Option<String>, IndexError> {
            doc.get_first(field)
                .and_then(|v| v.as_bytes())
                .map(|bytes| {
                    String::from_utf8(bytes.to_vec()).map_err(|e| IndexError::Read(e.to_string()))
                })
                .transpose()
        };
        Ok(StoredUser {
            raw_json: text(self.fields.raw_json)?.ok_or_else(|| {
                IndexError::Read(format!("document {address:?} has no stored user"))
            })?,
            sealed: text(self.fields.sealed)?,
            tokens: doc
                .get_all(self.fields.blind)
                .filter_map(|v| v.as_str().map(String::from))
                .collect(),
            organizations: text(self.fields.org_json)?,
        })
    }

    pub fn raw_json_at(&self, address: DocAddress) -> Result<String, IndexError> {
        Ok(self.stored_at(address)?.raw_json)
    }

    /// One user as stored.
    pub fn get_stored(&self, user_id: &str) -> Result<Option<StoredUser>, IndexError> {
        match self.find(user_id)? {
            Some(address) => self.stored_at(address).map(Some),
            None => Ok(None),
        }
    }

    /// The stored Clerk JSON of one user.
    pub fn get_raw_json(&self, user_id: &str) -> Result<Option<String>, IndexError> {
        Ok(self.get_stored(user_id)?.map(|stored| stored.raw_json))
    }

    /// Where the live users indexed with `token` in the blind index are.
    pub fn with_blind_token(&self, token: &str) -> Result<Vec<DocAddress>, IndexError> {
        let term = Term::from_field_text(self.fields.blind, token);
        self.live_docs(&term, usize::MAX)
    }

    /// The version of a user the index holds: its `updated_at`, `last_sign_in_at` and
    /// `last_active_at`; `None` when it holds no such user.
    pub fn version_of(&self, user_id: &str) -> Result<Option<UserVersion>, IndexError> {
        let Some(address) = self.find(user_id)? else {
            return Ok(None);
        };
        let fast = self
            .searcher
            .segment_reader(address.segment_ord)
            .fast_fields();
        let date = |name: &str| -> Result<Option<i64>, IndexError> {
            // A segment where no user has a value has no column at all.
            let column = fast.column_opt::<tantivy::DateTime>(name)?;
            Ok(column
                .and_then(|column| column.first(address.doc_id))
                .map(|d| d.into_timestamp_millis()))
        };
        let Some(updated_at) = date("updated_at")? else {
            return Ok(Some(UserVersion::OLDEST));
        };
        Ok(Some(UserVersion {
            updated_at,
            last_sign_in_at: date("last_sign_in_at")?.unwrap_or(i64::MIN),
            last_active_at: date("last_active_at")?.unwrap_or(i64::MIN),
        }))
    }

    /// Up to `limit` users matching `filter`, in `sort` order, strictly after `after`, with
    /// their stored Clerk JSON if `with_json` (reading it is most of the cost of a page).
    pub fn search(
        &self,
        filter: Option<&Filter>,
        sort: &SortSpec,
        after: Option<SortCursor>,
        limit: usize,
        with_json: bool,
        now_ms: i64,
    ) -> Result<Vec<SearchHit>, IndexError> {
        let query = compile(&self.fields, filter, now_ms, self.org_slots);
        let collector = TopHits {
            spec: sort.clone(),
            after,
            limit,
            cache: self.fields.columns.clone(),
        };
        let hits = collector.search(&self.searcher, &query)??;
        hits.into_iter()
            .map(|hit| {
                let stored = match with_json {
                    true => Some(self.stored_at(hit.address)?),
                    false => None,
                };
                let (raw_json, sealed, organizations) = match stored {
                    Some(stored) => (Some(stored.raw_json), stored.sealed, stored.organizations),
                    None => (None, None, None),
                };
                Ok(SearchHit {
                    raw_json,
                    sealed,
                    organizations,
                    id: hit.id,
                    address: hit.address,
                    sort_value: hit.value,
                })
            })
            .collect()
    }

    /// Ids of users created in `[from_ms, until_ms)`, in id order (for the reconcile sweep).
    pub fn ids_created_between(
        &self,
        from_ms: i64,
        until_ms: i64,
    ) -> Result<Vec<String>, IndexError> {
        use crate::query::ast::{CmpOp, DateValue, FieldPath, Op, Predicate, Value};
        let bound = |cmp, ms| {
            Filter::Predicate(Predicate {
                path: FieldPath::Core(crate::query::CoreField::CreatedAt),
                op: Op::Compare(cmp, Value::Date(DateValue::Absolute(ms))),
                position: 0,
            })
        };
        let filter = Filter::And(vec![bound(CmpOp::Gte, from_ms), bound(CmpOp::Lt, until_ms)]);
        self.all_ids(Some(&filter), &SortSpec::by_id(), 0)
    }

    /// Every matching id in `sort` order, paging internally (for tests and exports).
    pub fn all_ids(
        &self,
        filter: Option<&Filter>,
        sort: &SortSpec,
        now_ms: i64,
    ) -> Result<Vec<String>, IndexError> {
        let query = compile(&self.fields, filter, now_ms, self.org_slots);
        let mut ids = Vec::new();
        let mut after = None;
        loop {
            let collector = TopHits {
                spec: sort.clone(),
                after: after.take(),
                limit: 4096,
                cache: self.fields.columns.clone(),
            };
            let hits = search(&self.searcher, &query, &collector)??;
            let Some(last) = hits.last() else {
                return Ok(ids);
            };
            after = Some(SortCursor {
                value: last.value.clone(),
                id: last.id.clone(),
            });
            ids.extend(hits.into_iter().map(|h| h.id));
        }
    }
}
