//! Reads of organization and membership documents, and of users whole (to compose them again
//! when one of their memberships or organizations changes). See docs/ORGANIZATIONS.md.

use std::sync::Arc;

use std::ops::Bound;

use tantivy::collector::DocSetCollector;
use tantivy::query::{BooleanQuery, Occur, Query, RangeQuery, TermQuery};
use tantivy::schema::{IndexRecordOption, Value};
use tantivy::{DocAddress, TantivyDocument, Term};

use super::engine::search;
use super::error::IndexError;
use super::schema::{KIND_MEMBERSHIP, KIND_ORGANIZATION};
use super::snapshot::Snapshot;
use crate::clerk::{parse_organization, parse_stored_membership, user_from_json};
use crate::organization::{Membership, Organization};
use crate::user::{Sealed, User, no_organizations};

impl Snapshot {
    fn entity_json(&self, address: DocAddress) -> Result<String, IndexError> {
        let doc: TantivyDocument = self.searcher.doc(address)?;
        let bytes = doc
            .get_first(self.fields.entity_json)
            .and_then(|v| v.as_bytes())
            .ok_or_else(|| IndexError::Read(format!("document {address:?} has no stored JSON")))?;
        String::from_utf8(bytes.to_vec()).map_err(|e| IndexError::Read(e.to_string()))
    }

    /// The organization the index holds under `id`.
    pub fn organization(&self, id: &str) -> Result<Option<Organization>, IndexError> {
        let term = Term::from_field_text(self.fields.entity_id, id);
        let Some(address) = self.live_docs(&term, 1)?.pop() else {
            return Ok(None);
        };
        self.organization_at(address).map(Some)
    }

    fn organization_at(&self, address: DocAddress) -> Result<Organization, IndexError> {
        let json = self.entity_json(address)?;
        let raw: &serde_json::value::RawValue =
            serde_json::from_str(&json).map_err(|e| IndexError::Read(e.to_string()))?;
        parse_organization(raw).map_err(|e| IndexError::Read(e.to_string()))
    }

    fn membership_at(&self, address: DocAddress) -> Result<Membership, IndexError> {
        let json = self.entity_json(address)?;
        parse_stored_membership(&json).map_err(|e| IndexError::Read(e.to_string()))
    }

    fn memberships_at(&self, term: &Term, limit: usize) -> Result<Vec<Membership>, IndexError> {
        self.live_docs(term, limit)?
            .into_iter()
            .map(|address| self.membership_at(address))
            .collect()
    }

    /// The membership the index holds under `id`.
    pub fn membership(&self, id: &str) -> Result<Option<Membership>, IndexError> {
        let term = Term::from_field_text(self.fields.entity_id, id);
        Ok(self.memberships_at(&term, 1)?.pop())
    }

    /// Every membership of one user.
    pub fn memberships_of_user(&self, user_id: &str) -> Result<Vec<Membership>, IndexError> {
        let term = Term::from_field_text(self.fields.member_user, user_id);
        self.memberships_at(&term, usize::MAX)
    }

    /// Every membership in one organization.
    pub fn memberships_in(&self, organization_id: &str) -> Result<Vec<Membership>, IndexError> {
        let term = Term::from_field_text(self.fields.member_org, organization_id);
        self.memberships_at(&term, usize::MAX)
    }

    /// The documents of `kind` created within `from..=until` (ms).
    fn created_between(
        &self,
        kind: &str,
        from: i64,
        until: i64,
    ) -> Result<Vec<DocAddress>, IndexError> {
        if from > until {
            return Ok(Vec::new());
        }
        let kind = TermQuery::new(
            Term::from_field_text(self.fields.kind, kind),
            IndexRecordOption::Basic,
        );
        let bound = |ms| Bound::Included(Term::from_field_i64(self.fields.entity_created_at, ms));
        let created = RangeQuery::new(bound(from), bound(until));
        let query = BooleanQuery::new(vec![
            (Occur::Must, Box::new(kind) as Box<dyn Query>),
            (Occur::Must, Box::new(created)),
        ]);
        let mut addresses: Vec<DocAddress> = search(&self.searcher, &query, &DocSetCollector)?
            .into_iter()
            .collect();
        addresses.sort_unstable();
        Ok(addresses)
    }

    /// The organizations held that Clerk created within `from..=until` (ms).
    pub fn organizations_created_between(
        &self,
        from: i64,
        until: i64,
    ) -> Result<Vec<Organization>, IndexError> {
        self.created_between(KIND_ORGANIZATION, from, until)?
            .into_iter()
            .map(|address| self.organization_at(address))
            .collect()
    }

    /// The memberships held that Clerk created within `from..=until` (ms).
    pub fn memberships_created_between(
        &self,
        from: i64,
        until: i64,
    ) -> Result<Vec<Membership>, IndexError> {
        self.created_between(KIND_MEMBERSHIP, from, until)?
            .into_iter()
            .map(|address| self.membership_at(address))
            .collect()
    }

    /// How many memberships the index holds in one organization (no document is read).
    pub fn membership_count_in(&self, organization_id: &str) -> Result<usize, IndexError> {
        let term = Term::from_field_text(self.fields.member_org, organization_id);
        Ok(self.live_docs(&term, usize::MAX)?.len())
    }

    /// Whether the index holds any organization or membership.
    pub fn holds_organizations(&self) -> bool {
        self.other_docs > 0
    }

    /// A user whole as stored: Clerk JSON, sealed values with their tokens, memberships.
    pub fn stored_user(&self, user_id: &str) -> Result<Option<User>, IndexError> {
        let Some(stored) = self.get_stored(user_id)? else {
            return Ok(None);
        };
        let mut user =
            user_from_json(&stored.raw_json).map_err(|e| IndexError::Read(e.to_string()))?;
        if let Some(values) = stored.sealed {
            user.sealed = Some(Arc::new(Sealed {
                values,
                tokens: stored.tokens,
            }));
        }
        user.organizations = match stored.organizations {
            Some(json) => {
                Arc::new(serde_json::from_str(&json).map_err(|e| IndexError::Read(e.to_string()))?)
            }
            None => no_organizations(),
        };
        Ok(Some(user))
    }
}
