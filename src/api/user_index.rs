//! `clerkindex.v1.UserIndex`: thin handlers that convert, call the index on a blocking thread,
//! and convert back.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::convert::{filter_from_proto, freshness_to_proto, sort_from_proto};
use super::page_token;
use super::projection::project_json;
use super::proto;
use super::proto::user_index_server::UserIndex as UserIndexApi;
use crate::error::Error;
use crate::index::{Snapshot, SortCursor, UserIndex};
use crate::query::FilterLimits;
use crate::sync::now_ms;

/// Serves reads from the latest index snapshot.
#[derive(Clone)]
pub struct UserIndexService {
    index: UserIndex,
    limits: FilterLimits,
    max_page_size: u32,
}

const DEFAULT_PAGE_SIZE: u32 = 50;

impl UserIndexService {
    pub fn new(index: UserIndex, limits: FilterLimits, max_page_size: u32) -> Self {
        UserIndexService {
            index,
            limits,
            max_page_size,
        }
    }

    pub fn into_server(self) -> proto::user_index_server::UserIndexServer<Self> {
        proto::user_index_server::UserIndexServer::new(self)
    }
}

/// Runs index work off the async threads.
async fn blocking<T: Send + 'static>(
    snapshot: Arc<Snapshot>,
    work: impl FnOnce(&Snapshot) -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    tokio::task::spawn_blocking(move || work(&snapshot))
        .await
        .map_err(|e| Error::Internal(format!("index task failed: {e}")))?
}

fn to_user(id: String, raw_json: &str, fields: &[String]) -> Result<proto::User, Error> {
    let json = project_json(raw_json, fields)
        .map_err(|e| Error::Internal(format!("stored user {id} is not valid json: {e}")))?;
    Ok(proto::User { id, json })
}

#[tonic::async_trait]
impl UserIndexApi for UserIndexService {
    async fn get_user(
        &self,
        request: Request<proto::GetUserRequest>,
    ) -> Result<Response<proto::GetUserResponse>, Status> {
        let proto::GetUserRequest { user_id, fields } = request.into_inner();
        if user_id.is_empty() {
            return Err(Error::InvalidArgument("user_id is required".into()).into());
        }
        let snapshot = self.index.snapshot();
        let freshness = freshness_to_proto(snapshot.freshness);
        let id = user_id.clone();
        let raw = blocking(snapshot, move |s| Ok(s.get_raw_json(&id)?)).await?;
        let raw =
            raw.ok_or_else(|| Error::NotFound(format!("no user with id {user_id} in the index")))?;
        let user = to_user(user_id, &raw, &fields)?;
        Ok(Response::new(proto::GetUserResponse {
            user: Some(user),
            freshness: Some(freshness),
        }))
    }

    async fn search_users(
        &self,
        request: Request<proto::SearchUsersRequest>,
    ) -> Result<Response<proto::SearchUsersResponse>, Status> {
        let proto::SearchUsersRequest {
            filter,
            sort,
            page_size,
            page_token,
            fields,
        } = request.into_inner();
        let filter = filter_from_proto(filter, &self.limits)?;
        let sort = sort_from_proto(sort)?;
        let after = page_token::decode(&page_token, filter.as_ref(), &sort)?;
        let limit = match page_size {
            0 => DEFAULT_PAGE_SIZE,
            n if n > self.max_page_size => {
                return Err(Error::InvalidArgument(format!(
                    "page_size {n} is above the limit of {}",
                    self.max_page_size
                ))
                .into());
            }
            n => n,
        } as usize;
        let snapshot = self.index.snapshot();
        let freshness = freshness_to_proto(snapshot.freshness);
        let (query_filter, query_sort) = (filter.clone(), sort.clone());
        // One more than asked tells whether another page exists.
        let mut hits = blocking(snapshot, move |s| {
            Ok(s.search(
                query_filter.as_ref(),
                &query_sort,
                after,
                limit + 1,
                now_ms(),
            )?)
        })
        .await?;
        let more = hits.len() > limit;
        hits.truncate(limit);
        let next_page_token = match (more, hits.last()) {
            (true, Some(last)) => page_token::encode(
                SortCursor {
                    value: last.sort_value.clone(),
                    id: last.id.clone(),
                },
                filter.as_ref(),
                &sort,
            ),
            _ => String::new(),
        };
        let users = hits
            .into_iter()
            .map(|hit| to_user(hit.id, &hit.raw_json, &fields))
            .collect::<Result<_, _>>()?;
        Ok(Response::new(proto::SearchUsersResponse {
            users,
            next_page_token,
            freshness: Some(freshness),
        }))
    }

    async fn count_users(
        &self,
        request: Request<proto::CountUsersRequest>,
    ) -> Result<Response<proto::CountUsersResponse>, Status> {
        let proto::CountUsersRequest { filter } = request.into_inner();
        let filter = filter_from_proto(filter, &self.limits)?;
        let snapshot = self.index.snapshot();
        let freshness = freshness_to_proto(snapshot.freshness);
        let count = blocking(snapshot, move |s| Ok(s.count(filter.as_ref(), now_ms())?)).await?;
        Ok(Response::new(proto::CountUsersResponse {
            count,
            freshness: Some(freshness),
        }))
    }
}
