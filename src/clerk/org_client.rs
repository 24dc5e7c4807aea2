//! Listing Clerk's organizations and memberships (docs/ORGANIZATIONS.md, "Backfill"): offset
//! pages in ascending `created_at` order, as `{"data": [...], "total_count": N}`.
//!
//! Lenient where Clerk does not say: a bare JSON array is read as a page without a total; an
//! element that does not parse is reported and skipped (a walk must not stop on it); the lists
//! of one organization's members have no 404 in Clerk's spec, so both an empty list and a 404
//! read as "no members".

use serde::Deserialize;
use serde_json::value::RawValue;

use super::client::{ClerkApiError, ClerkClient};
use super::organization::{
    OrganizationParseError, ParsedMembership, parse_membership, parse_organization,
};
use crate::organization::Organization;

const LIST_ORGANIZATIONS: &str = "GET /v1/organizations";
const LIST_MEMBERSHIPS: &str = "GET /v1/organization_memberships";
const LIST_ORGANIZATION_MEMBERSHIPS: &str = "GET /v1/organizations/{organization_id}/memberships";
const UPDATE_ORGANIZATION_METADATA: &str = "PATCH /v1/organizations/{organization_id}/metadata";

/// The most Clerk sends in one page of these lists.
pub const ORGANIZATION_PAGE_LIMIT: usize = 500;

/// One page of a list: what parsed, what did not, how many elements came, and Clerk's total.
#[derive(Debug)]
pub struct ListPage<T> {
    pub items: Vec<T>,
    pub rejected: Vec<OrganizationParseError>,
    /// Elements Clerk sent, parsed or not: a short page ends a walk.
    pub len: usize,
    /// `total_count`, when the answer had one.
    pub total_count: Option<u64>,
}

/// `{"data": [...], "total_count": N}` (serde's untagged enums cannot hold raw values, so the
/// bare-array form is tried separately).
#[derive(Deserialize)]
struct Paged<'a> {
    #[serde(borrow)]
    data: Vec<&'a RawValue>,
    #[serde(default)]
    total_count: Option<u64>,
}

/// Parses a list answer, item by item.
pub fn parse_list_page<T>(
    body: &[u8],
    parse: impl Fn(&RawValue) -> Result<T, OrganizationParseError>,
) -> Result<ListPage<T>, OrganizationParseError> {
    let (elements, total_count) = match serde_json::from_slice::<Paged>(body) {
        Ok(paged) => (paged.data, paged.total_count),
        Err(paged_error) => match serde_json::from_slice::<Vec<&RawValue>>(body) {
            Ok(elements) => (elements, None),
            Err(_) => {
                return Err(OrganizationParseError::Malformed {
                    object: "list",
                    reason: format!(
                        "not a list of Clerk objects (line {} column {})",
                        paged_error.line(),
                        paged_error.column()
                    ),
                });
            }
        },
    };
    let mut page = ListPage {
        items: Vec::with_capacity(elements.len()),
        rejected: Vec::new(),
        len: elements.len(),
        total_count,
    };
    for element in elements {
        match parse(element) {
            Ok(item) => page.items.push(item),
            Err(error) => page.rejected.push(error),
        }
    }
    Ok(page)
}

/// Which end of a list ordered by `created_at` comes first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    OldestFirst,
    NewestFirst,
}

/// The most ids Clerk takes in one `organization_id` or `user_id` filter.
pub const IDS_PER_FILTER: usize = 100;

fn paging(offset: usize, limit: usize) -> Vec<(&'static str, String)> {
    paging_in(Order::OldestFirst, offset, limit)
}

fn paging_in(order: Order, offset: usize, limit: usize) -> Vec<(&'static str, String)> {
    let order_by = match order {
        Order::OldestFirst => "+created_at",
        Order::NewestFirst => "-created_at",
    };
    vec![
        ("limit", limit.clamp(1, ORGANIZATION_PAGE_LIMIT).to_string()),
        ("offset", offset.to_string()),
        ("order_by", order_by.to_string()),
    ]
}

fn decode<T>(
    request: &str,
    body: &[u8],
    parse: impl Fn(&RawValue) -> Result<T, OrganizationParseError>,
) -> Result<ListPage<T>, ClerkApiError> {
    parse_list_page(body, parse).map_err(|error| ClerkApiError::Decode {
        request: request.to_string(),
        message: error.to_string(),
    })
}

impl ClerkClient {
    /// `GET /v1/organizations`, oldest first, with `members_count`.
    pub async fn list_organizations(
        &self,
        offset: usize,
        limit: usize,
    ) -> Result<ListPage<Organization>, ClerkApiError> {
        self.list_organizations_in(Order::OldestFirst, offset, limit)
            .await
    }

    /// `GET /v1/organizations` in `order`, with `members_count`.
    pub async fn list_organizations_in(
        &self,
        order: Order,
        offset: usize,
        limit: usize,
    ) -> Result<ListPage<Organization>, ClerkApiError> {
        let request = format!("{LIST_ORGANIZATIONS}?offset={offset}");
        let mut query = paging_in(order, offset, limit);
        query.push(("include_members_count", "true".into()));
        let body = self
            .get(&request, LIST_ORGANIZATIONS, "/v1/organizations", &query)
            .await?;
        decode(&request, &body, parse_organization)
    }

    /// The organizations of `ids` (at most [`IDS_PER_FILTER`]) that Clerk still has, with
    /// `members_count`: `GET /v1/organizations?organization_id=...`.
    pub async fn organizations_with_ids(
        &self,
        ids: &[String],
    ) -> Result<ListPage<Organization>, ClerkApiError> {
        let request = format!("{LIST_ORGANIZATIONS}?organization_id=({} ids)", ids.len());
        let mut query = paging(0, ORGANIZATION_PAGE_LIMIT);
        query.push(("include_members_count", "true".into()));
        query.extend(
            ids.iter()
                .take(IDS_PER_FILTER)
                .map(|id| ("organization_id", id.clone())),
        );
        let body = self
            .get(&request, LIST_ORGANIZATIONS, "/v1/organizations", &query)
            .await?;
        decode(&request, &body, parse_organization)
    }

    /// The instance-wide `GET /v1/organization_memberships`, oldest first.
    pub async fn list_memberships(
        &self,
        offset: usize,
        limit: usize,
    ) -> Result<ListPage<ParsedMembership>, ClerkApiError> {
        self.list_memberships_in(Order::OldestFirst, offset, limit)
            .await
    }

    /// The instance-wide `GET /v1/organization_memberships` in `order`.
    pub async fn list_memberships_in(
        &self,
        order: Order,
        offset: usize,
        limit: usize,
    ) -> Result<ListPage<ParsedMembership>, ClerkApiError> {
        let request = format!("{LIST_MEMBERSHIPS}?offset={offset}");
        let path = "/v1/organization_memberships";
        let query = paging_in(order, offset, limit);
        let body = self.get(&request, LIST_MEMBERSHIPS, path, &query).await?;
        decode(&request, &body, parse_membership)
    }

    /// `GET /v1/organizations/{id}/memberships`, oldest first. An organization Clerk does not
    /// know has no members, whether Clerk says so with an empty list or a 404.
    pub async fn list_organization_memberships(
        &self,
        organization_id: &str,
        offset: usize,
        limit: usize,
    ) -> Result<ListPage<ParsedMembership>, ClerkApiError> {
        self.organization_memberships(organization_id, paging(offset, limit))
            .await
    }

    /// The memberships in one organization of the users of `user_ids` (at most
    /// [`IDS_PER_FILTER`]): `GET /v1/organizations/{id}/memberships?user_id=...`.
    pub async fn organization_memberships_of(
        &self,
        organization_id: &str,
        user_ids: &[String],
    ) -> Result<ListPage<ParsedMembership>, ClerkApiError> {
        let mut query = paging(0, ORGANIZATION_PAGE_LIMIT);
        query.extend(
            user_ids
                .iter()
                .take(IDS_PER_FILTER)
                .map(|id| ("user_id", id.clone())),
        );
        self.organization_memberships(organization_id, query).await
    }

    async fn organization_memberships(
        &self,
        organization_id: &str,
        query: Vec<(&'static str, String)>,
    ) -> Result<ListPage<ParsedMembership>, ClerkApiError> {
        let empty = || ListPage {
            items: Vec::new(),
            rejected: Vec::new(),
            len: 0,
            total_count: Some(0),
        };
        // An id that is not Clerk-shaped could name another endpoint in a path.
        if !crate::organization::is_clerk_id(organization_id, "org_") {
            return Ok(empty());
        }
        let path = format!("/v1/organizations/{organization_id}/memberships");
        let request = format!("GET {path}");
        match self
            .get(&request, LIST_ORGANIZATION_MEMBERSHIPS, &path, &query)
            .await
        {
            Ok(body) => decode(&request, &body, parse_membership),
            Err(error) if error.status() == Some(404) => Ok(empty()),
            Err(error) => Err(error),
        }
    }
}

impl ClerkClient {
    /// `PATCH /v1/organizations/{id}/metadata`: Clerk deep-merges `patch` (`null` removes a key)
    /// into the organization's `public_metadata`/`private_metadata` and returns it.
    pub async fn update_organization_metadata(
        &self,
        organization_id: &str,
        patch: &serde_json::Value,
    ) -> Result<Organization, ClerkApiError> {
        let request = format!("PATCH /v1/organizations/{organization_id}/metadata");
        // An id that is not Clerk-shaped could name another endpoint in a path.
        if !crate::organization::is_clerk_id(organization_id, "org_") {
            return Err(ClerkApiError::Api {
                request,
                status: 404,
                code: "resource_not_found".into(),
                long_message:
                    "an organization id is org_ followed by letters, digits and underscores".into(),
                trace_id: None,
                retry_after: None,
            });
        }
        let path = format!("/v1/organizations/{organization_id}/metadata");
        let body = serde_json::to_vec(patch).map_err(|e| ClerkApiError::Decode {
            request: request.clone(),
            message: e.to_string(),
        })?;
        let answer = self
            .patch(&request, UPDATE_ORGANIZATION_METADATA, &path, body)
            .await?;
        let decode = |message: String| ClerkApiError::Decode {
            request: request.clone(),
            message,
        };
        let raw: Box<RawValue> =
            serde_json::from_slice(&answer).map_err(|e| decode(e.to_string()))?;
        parse_organization(&raw).map_err(|e| decode(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_read_with_or_without_their_envelope_and_skip_bad_elements() {
        let paged =
            br#"{"data": [{"id": "org_1"}, {"name": "no id"}, {"id": "org_2"}], "total_count": 7}"#;
        let page = parse_list_page(paged, parse_organization).unwrap();
        assert_eq!(
            page.items.iter().map(|o| o.id.as_str()).collect::<Vec<_>>(),
            ["org_1", "org_2"]
        );
        assert_eq!(
            (page.len, page.rejected.len(), page.total_count),
            (3, 1, Some(7))
        );
        let bare = br#"[{"id": "org_3"}]"#;
        let page = parse_list_page(bare, parse_organization).unwrap();
        assert_eq!((page.len, page.total_count), (1, None));
        let error = parse_list_page(b"<html>502</html>", parse_organization).unwrap_err();
        assert!(error.to_string().contains("not a list"), "{error}");
        assert!(parse_list_page(br#"{"total_count": 3}"#, parse_organization).is_err());
    }
}
