//! `clerkindex.v1.UserIndex`: thin handlers that convert, call the index on a blocking thread,
//! and convert back.

use std::sync::Arc;
use std::time::Duration;

use tonic::{Request, Response, Status};

use super::auth::caller;
use super::convert::{
    facets_from_proto, facets_to_proto, filter_from_proto, freshness_to_proto, sort_from_proto,
};
use super::export::{self, ExportJob, ExportStream};
use super::page_token;
use super::projection::{Projection, id_json};
use super::proto;
use super::proto::user_index_server::UserIndex as UserIndexApi;
use crate::auth::{Caller, Scope};
use crate::clock::now_ms;
use crate::error::Error;
use crate::index::{Snapshot, SortCursor, UserIndex};
use crate::query::ast::CoreKind;
use crate::query::{FieldPath, Filter, FilterLimits};
use crate::sync::SyncState;
use crate::sync::{MetadataPatch, WriteThrough};
use crate::user::MetadataNamespace;

/// Serves reads from the latest index snapshot.
#[derive(Clone)]
pub struct UserIndexService {
    index: UserIndex,
    write_through: WriteThrough,
    limits: FilterLimits,
    max_page_size: u32,
    /// Longest a read waits for `min_generation`.
    max_read_wait: Duration,
}

const DEFAULT_PAGE_SIZE: u32 = 50;

impl UserIndexService {
    pub fn new(
        index: UserIndex,
        write_through: WriteThrough,
        limits: FilterLimits,
        max_page_size: u32,
        max_read_wait: Duration,
    ) -> Self {
        UserIndexService {
            index,
            write_through,
            limits,
            max_page_size,
            max_read_wait,
        }
    }

    async fn snapshot(&self, at: ReadAt) -> Result<Arc<Snapshot>, Error> {
        snapshot_at(&self.index, at, self.max_read_wait).await
    }

    /// The service behind `auth`: every call carries its [`crate::auth::Caller`].
    pub fn into_server(
        self,
        auth: super::auth::Authenticate,
    ) -> tonic::service::interceptor::InterceptedService<
        proto::user_index_server::UserIndexServer<Self>,
        super::auth::Authenticate,
    > {
        proto::user_index_server::UserIndexServer::with_interceptor(self, auth)
    }
}

/// How new the snapshot answering a read must be: `min_generation` (this replica's commits) and
/// `min_log_sequence` (cluster mode's change log, the same on every replica).
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct ReadAt {
    pub generation: u64,
    pub log_sequence: u64,
}

impl ReadAt {
    pub fn new(generation: u64, log_sequence: u64) -> ReadAt {
        ReadAt {
            generation,
            log_sequence,
        }
    }

    fn reached_by(self, snapshot: &Snapshot) -> bool {
        snapshot.freshness.generation >= self.generation
            && (self.log_sequence == 0
                || SyncState::log_sequence_of(&snapshot.sync_state) >= self.log_sequence)
    }
}

/// The snapshot to answer from: the newest, once it has reached `at`.
pub(super) async fn snapshot_at(
    index: &UserIndex,
    at: ReadAt,
    max_wait: Duration,
) -> Result<Arc<Snapshot>, Error> {
    index
        .snapshot_when(|snapshot| at.reached_by(snapshot), max_wait)
        .await
        .ok_or_else(|| {
            let now = index.snapshot();
            Error::DeadlineExceeded(format!(
                "the index did not reach generation {} and change log sequence {} within {} ms \
                 (it is at generation {} and sequence {})",
                at.generation,
                at.log_sequence,
                max_wait.as_millis(),
                now.freshness.generation,
                SyncState::log_sequence_of(&now.sync_state),
            ))
        })
}

/// Runs index work off the async threads.
async fn blocking<T: Send + 'static>(
    snapshot: Arc<Snapshot>,
    work: impl FnOnce(&Snapshot) -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    // A child of the call's span, timing the index work apart from waiting and encoding.
    let span = tracing::info_span!(
        "index.query",
        generation = snapshot.freshness.generation as i64
    );
    tokio::task::spawn_blocking(move || span.in_scope(|| work(&snapshot)))
        .await
        .map_err(|e| Error::Internal(format!("index task failed: {e}")))?
}

fn to_user(
    id: String,
    raw_json: &str,
    sealed: Option<&str>,
    projection: &Projection,
) -> Result<proto::User, Error> {
    let json = projection.apply_stored(&id, raw_json, sealed)?;
    Ok(proto::User { id, json })
}

/// Checks that the caller may evaluate `filter`, and turns predicates on sensitive paths into
/// blind-index lookups (the only form in which they reach the index).
pub(super) fn authorize_filter(
    caller: &Caller,
    filter: Option<Filter>,
) -> Result<Option<Filter>, Error> {
    caller.check_filter(filter.as_ref())?;
    match (filter, &caller.sensitive) {
        (Some(filter), Some(sensitive)) => Ok(Some(
            sensitive
                .seal_filter(filter)
                .map_err(|e| Error::InvalidArgument(e.to_string()))?,
        )),
        (filter, _) => Ok(filter),
    }
}

/// Sorts and facets need values in the index, which sensitive paths do not have there.
fn check_not_sensitive(caller: &Caller, path: &FieldPath, what: &str) -> Result<(), Error> {
    if caller.is_sensitive(path) {
        return Err(Error::InvalidArgument(format!(
            "{path} is a sensitive path: it can be filtered only with =, != or IN, not used for {what}"
        )));
    }
    Ok(())
}

/// The caller of a request that reads users.
fn reader<T>(request: &Request<T>) -> Result<Caller, Error> {
    let caller = caller(request)?;
    caller.require_read()?;
    Ok(caller)
}

#[tonic::async_trait]
impl UserIndexApi for UserIndexService {
    async fn get_user(
        &self,
        request: Request<proto::GetUserRequest>,
    ) -> Result<Response<proto::GetUserResponse>, Status> {
        let caller = reader(&request)?;
        let proto::GetUserRequest {
            user_id,
            fields,
            min_generation,
            min_log_sequence,
        } = request.into_inner();
        if user_id.is_empty() {
            return Err(Error::InvalidArgument("user_id is required".into()).into());
        }
        let projection = Projection::new(fields, &caller)?;
        let snapshot = self
            .snapshot(ReadAt::new(min_generation, min_log_sequence))
            .await?;
        let freshness = freshness_to_proto(&snapshot);
        let id = user_id.clone();
        let stored = blocking(snapshot, move |s| Ok(s.get_stored(&id)?)).await?;
        let stored = stored
            .ok_or_else(|| Error::NotFound(format!("no user with id {user_id} in the index")))?;
        let user = to_user(
            user_id,
            &stored.raw_json,
            stored.sealed.as_deref(),
            &projection,
        )?;
        Ok(Response::new(proto::GetUserResponse {
            user: Some(user),
            freshness: Some(freshness),
        }))
    }

    async fn search_users(
        &self,
        request: Request<proto::SearchUsersRequest>,
    ) -> Result<Response<proto::SearchUsersResponse>, Status> {
        let caller = reader(&request)?;
        let proto::SearchUsersRequest {
            filter,
            sort,
            page_size,
            page_token,
            fields,
            min_generation,
            min_log_sequence,
        } = request.into_inner();
        let filter = filter_from_proto(filter, &self.limits)?;
        let sort = sort_from_proto(sort)?;
        let filter = authorize_filter(&caller, filter)?;
        caller.check_path(&sort.path, "sorting by")?;
        check_not_sensitive(&caller, &sort.path, "sorting")?;
        let projection = Projection::new(fields, &caller)?;
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
        let snapshot = self
            .snapshot(ReadAt::new(min_generation, min_log_sequence))
            .await?;
        let freshness = freshness_to_proto(&snapshot);
        let (query_filter, query_sort) = (filter.clone(), sort.clone());
        let with_json = !projection.ids_only();
        // One more than asked tells whether another page exists.
        let mut hits = blocking(snapshot, move |s| {
            Ok(s.search(
                query_filter.as_ref(),
                &query_sort,
                after,
                limit + 1,
                with_json,
                now_ms(),
            )?)
        })
        .await?;
        let more = hits.len() > limit;
        hits.truncate(limit);
        tracing::Span::current().record("clerk_index.result_count", hits.len() as i64);
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
            .map(|hit| match &hit.raw_json {
                Some(raw) => to_user(hit.id, raw, hit.sealed.as_deref(), &projection),
                None => Ok(proto::User {
                    json: id_json(&hit.id),
                    id: hit.id,
                }),
            })
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
        let caller = reader(&request)?;
        let proto::CountUsersRequest {
            filter,
            min_generation,
            min_log_sequence,
        } = request.into_inner();
        let filter = filter_from_proto(filter, &self.limits)?;
        let filter = authorize_filter(&caller, filter)?;
        let snapshot = self
            .snapshot(ReadAt::new(min_generation, min_log_sequence))
            .await?;
        let freshness = freshness_to_proto(&snapshot);
        let count = blocking(snapshot, move |s| Ok(s.count(filter.as_ref(), now_ms())?)).await?;
        tracing::Span::current().record("clerk_index.result_count", count as i64);
        Ok(Response::new(proto::CountUsersResponse {
            count,
            freshness: Some(freshness),
        }))
    }

    async fn update_user_metadata(
        &self,
        request: Request<proto::UpdateUserMetadataRequest>,
    ) -> Result<Response<proto::UpdateUserMetadataResponse>, Status> {
        let caller = caller(&request)?;
        caller.require(Scope::Write, "UpdateUserMetadata")?;
        let proto::UpdateUserMetadataRequest {
            user_id,
            public_metadata,
            private_metadata,
            unsafe_metadata,
            fields,
        } = request.into_inner();
        let parse = |name: &str,
                     text: Option<String>|
         -> Result<Option<serde_json::Value>, Error> {
            text.map(|t| {
                serde_json::from_str(&t)
                    .map_err(|e| Error::InvalidArgument(format!("{name} is not valid JSON: {e}")))
            })
            .transpose()
        };
        let patch = MetadataPatch {
            public: parse("public_metadata", public_metadata)?,
            private: parse("private_metadata", private_metadata)?,
            unsafe_: parse("unsafe_metadata", unsafe_metadata)?,
        };
        for (namespace, changed) in [
            (MetadataNamespace::Public, patch.public.is_some()),
            (MetadataNamespace::Private, patch.private.is_some()),
            (MetadataNamespace::Unsafe, patch.unsafe_.is_some()),
        ] {
            if changed {
                caller.require(
                    Scope::of_namespace(namespace),
                    &format!("changing {}", namespace.field_name()),
                )?;
            }
        }
        let projection = Projection::new(fields, &caller)?;
        let (user, generation) = self.write_through.update_metadata(&user_id, patch).await?;
        let snapshot = self.snapshot(ReadAt::new(generation, 0)).await?;
        let user = proto::User {
            json: projection.apply_clerk(&user.id, &user.raw_json)?,
            id: user.id.clone(),
        };
        Ok(Response::new(proto::UpdateUserMetadataResponse {
            user: Some(user),
            freshness: Some(freshness_to_proto(&snapshot)),
        }))
    }

    type ExportUsersStream = ExportStream;

    async fn facet_users(
        &self,
        request: Request<proto::FacetUsersRequest>,
    ) -> Result<Response<proto::FacetUsersResponse>, Status> {
        let caller = reader(&request)?;
        let proto::FacetUsersRequest {
            filter,
            facets,
            min_generation,
            min_log_sequence,
        } = request.into_inner();
        let filter = filter_from_proto(filter, &self.limits)?;
        let specs = facets_from_proto(facets)?;
        let filter = authorize_filter(&caller, filter)?;
        for spec in &specs {
            caller.check_path(&spec.path, "faceting on")?;
            check_not_sensitive(&caller, &spec.path, "facets")?;
        }
        let snapshot = self
            .snapshot(ReadAt::new(min_generation, min_log_sequence))
            .await?;
        let freshness = freshness_to_proto(&snapshot);
        let query_specs = specs.clone();
        let facets = blocking(snapshot, move |s| {
            Ok(s.facets(filter.as_ref(), &query_specs, now_ms())?)
        })
        .await?;
        Ok(Response::new(proto::FacetUsersResponse {
            matched: facets.matched,
            facets: facets_to_proto(facets, &specs),
            freshness: Some(freshness),
        }))
    }

    async fn export_users(
        &self,
        request: Request<proto::ExportUsersRequest>,
    ) -> Result<Response<Self::ExportUsersStream>, Status> {
        let caller = reader(&request)?;
        let proto::ExportUsersRequest {
            filter,
            fields,
            chunk_size,
            resume_cursor,
            min_generation,
            min_log_sequence,
            ids_only,
        } = request.into_inner();
        let filter = filter_from_proto(filter, &self.limits)?;
        let filter = authorize_filter(&caller, filter)?;
        let projection = Projection::new(fields, &caller)?;
        let job = ExportJob::new(filter, projection, chunk_size, &resume_cursor)?
            .with_ids_only(ids_only)?;
        let snapshot = self
            .snapshot(ReadAt::new(min_generation, min_log_sequence))
            .await?;
        Ok(Response::new(export::stream(snapshot, job, now_ms())))
    }

    async fn describe_fields(
        &self,
        request: Request<proto::DescribeFieldsRequest>,
    ) -> Result<Response<proto::DescribeFieldsResponse>, Status> {
        let caller = reader(&request)?;
        let proto::DescribeFieldsRequest {
            path_prefix,
            min_generation,
            min_log_sequence,
        } = request.into_inner();
        let snapshot = self
            .snapshot(ReadAt::new(min_generation, min_log_sequence))
            .await?;
        let freshness = freshness_to_proto(&snapshot);
        let (catalog, core) = blocking(snapshot, |s| {
            Ok((s.field_catalog()?, s.core_field_counts()?))
        })
        .await?;
        let prefix = path_prefix.trim();
        let fields = catalog
            .into_iter()
            // Key names are data too: only namespaces the caller may read are described.
            .filter(|entry| caller.check_path(&entry.path, "describing").is_ok())
            .filter(|entry| entry.path.to_string().starts_with(prefix))
            .map(|entry| proto::FieldDescription {
                path: entry.path.to_string(),
                type_conflict: entry.type_conflict(),
                types: entry
                    .types
                    .into_iter()
                    .map(|(kind, users)| proto::TypeCount {
                        r#type: kind,
                        users,
                    })
                    .collect(),
            })
            .collect();
        let core_fields = core
            .into_iter()
            .filter(|(field, _)| field.name().starts_with(prefix))
            .map(|(field, users)| proto::CoreFieldDescription {
                path: field.name().to_string(),
                kind: match field.kind() {
                    CoreKind::Keyword { .. } => "keyword",
                    CoreKind::TextOnly => "text",
                    CoreKind::Date => "date",
                    CoreKind::Bool => "boolean",
                }
                .to_string(),
                sortable: field.sortable(),
                facetable: field.facetable(),
                users,
            })
            .collect();
        Ok(Response::new(proto::DescribeFieldsResponse {
            fields,
            core_fields,
            freshness: Some(freshness),
        }))
    }
}
