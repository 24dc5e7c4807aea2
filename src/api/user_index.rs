//! `clerkindex.v1.UserIndex`: thin handlers. Each checks the caller's scope, converts the
//! request, calls the reader (or the write-through) and converts the answer back.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::auth::caller;
use super::convert::{
    facets_from_proto, facets_to_proto, filter_from_proto, freshness_to_proto, sort_from_proto,
};
use super::export::{ExportStream, export_stream};
use super::filter_tree::{filter_to_tree, warning_to_proto};
use super::proto;
use super::proto::user_index_server::UserIndex as UserIndexApi;
use crate::auth::{Caller, Scope};
use crate::error::Error;
use crate::index::Snapshot;
use crate::query::ast::CoreKind;
use crate::query::time::is_time_driven;
use crate::query::{Filter, FilterLimits, to_text};
use crate::read::{
    Answer, ExportQuery, FieldCatalog, Projection, ReadAt, ReadUser, SearchQuery, UserReader,
};
use crate::segments::Segments;
use crate::sync::{MetadataPatch, WriteThrough};
use crate::user::MetadataNamespace;

/// Serves reads from the latest index snapshot, and metadata writes through Clerk.
#[derive(Clone)]
pub struct UserIndexService {
    reader: UserReader,
    write_through: WriteThrough,
    limits: FilterLimits,
    /// The saved segments `IN SEGMENT` refers to.
    segments: Option<Segments>,
}

impl UserIndexService {
    pub fn new(reader: UserReader, write_through: WriteThrough, limits: FilterLimits) -> Self {
        UserIndexService {
            segments: None,
            reader,
            write_through,
            limits,
        }
    }

    /// `IN SEGMENT` in filters refers to these saved segments.
    pub fn with_segments(mut self, segments: Segments) -> Self {
        self.segments = Some(segments);
        self
    }

    /// A request's filter, its segment references expanded.
    fn filter(&self, spec: Option<proto::FilterSpec>) -> Result<Option<Filter>, Error> {
        filter_from_proto(spec, &self.limits)?
            .map(|raw| self.expand(&raw))
            .transpose()
    }

    fn expand(&self, raw: &Filter) -> Result<Filter, Error> {
        match &self.segments {
            Some(segments) => Ok(segments.expand(raw, None)?),
            None if crate::query::references(raw).is_empty() => Ok(raw.clone()),
            None => Err(Error::invalid(
                "filter",
                "IN SEGMENT needs saved segments, which this server does not keep",
            )),
        }
    }

    /// The service behind `auth`: every call carries its [`crate::auth::Caller`].
    pub fn into_server(
        self,
        auth: super::auth::Authenticate,
    ) -> tonic::service::interceptor::InterceptedService<
        proto::user_index_server::UserIndexServer<Self>,
        super::auth::Authenticate,
    > {
        let server = proto::user_index_server::UserIndexServer::new(self)
            .accept_compressed(tonic::codec::CompressionEncoding::Gzip)
            .send_compressed(tonic::codec::CompressionEncoding::Gzip);
        tonic::service::interceptor::InterceptedService::new(server, auth)
    }
}

/// The caller of a request that reads users.
fn reader<T>(request: &Request<T>) -> Result<Caller, Error> {
    let caller = caller(request)?;
    caller.require_read()?;
    Ok(caller)
}

fn user_to_proto(user: ReadUser) -> proto::User {
    let ReadUser { id, json } = user;
    proto::User { id, json }
}

fn freshness(snapshot: &Arc<Snapshot>) -> Option<proto::Freshness> {
    Some(freshness_to_proto(snapshot))
}

fn catalog_to_proto(answer: Answer<FieldCatalog>) -> proto::DescribeFieldsResponse {
    let FieldCatalog { metadata, core } = answer.value;
    proto::DescribeFieldsResponse {
        fields: metadata
            .into_iter()
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
            .collect(),
        core_fields: core
            .into_iter()
            .map(|(field, users)| proto::CoreFieldDescription {
                path: field.name().to_string(),
                kind: match field.kind() {
                    CoreKind::Keyword { .. } => "keyword",
                    CoreKind::TextOnly => "text",
                    CoreKind::Date => "date",
                    CoreKind::Bool => "boolean",
                    CoreKind::Integer => "integer",
                }
                .to_string(),
                sortable: field.sortable(),
                facetable: field.facetable(),
                users,
            })
            .collect(),
        freshness: freshness(&answer.snapshot),
    }
}

/// A `user_id` argument shaped like Clerk's; anything else is refused without being repeated.
fn check_user_id(user_id: &str) -> Result<(), Error> {
    if crate::user::is_user_id(user_id) {
        Ok(())
    } else {
        Err(Error::invalid(
            "user_id",
            format!(
                "user_id ({} bytes) is not a user id: {}",
                user_id.len(),
                crate::user::user_id_rule()
            ),
        ))
    }
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
        let at = ReadAt::new(min_generation, min_log_sequence);
        check_user_id(&user_id)?;
        let answer = self.reader.get(&caller, user_id, fields, at).await?;
        Ok(Response::new(proto::GetUserResponse {
            freshness: freshness(&answer.snapshot),
            user: Some(user_to_proto(answer.value)),
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
        let query = SearchQuery {
            filter: self.filter(filter)?,
            sort: sort_from_proto(sort)?,
            page_size,
            page_token,
            fields,
            at: ReadAt::new(min_generation, min_log_sequence),
        };
        let answer = self.reader.search(&caller, query).await?;
        let page = answer.value;
        tracing::Span::current().record("clerk_index.result_count", page.users.len() as i64);
        Ok(Response::new(proto::SearchUsersResponse {
            users: page.users.into_iter().map(user_to_proto).collect(),
            next_page_token: page.next_page_token,
            freshness: freshness(&answer.snapshot),
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
        let filter = self.filter(filter)?;
        let at = ReadAt::new(min_generation, min_log_sequence);
        let answer = self.reader.count(&caller, filter, at).await?;
        tracing::Span::current().record("clerk_index.result_count", answer.value as i64);
        Ok(Response::new(proto::CountUsersResponse {
            count: answer.value,
            freshness: freshness(&answer.snapshot),
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
        check_user_id(&user_id)?;
        let parse =
            |name: &str, text: Option<String>| -> Result<Option<serde_json::Value>, Error> {
                text.map(|t| {
                    serde_json::from_str(&t)
                        .map_err(|e| Error::invalid(name, format!("{name} is not valid JSON: {e}")))
                })
                .transpose()
            };
        let patch = MetadataPatch {
            public: parse("public_metadata", public_metadata)?,
            private: parse("private_metadata", private_metadata)?,
            unsafe_: parse("unsafe_metadata", unsafe_metadata)?,
        };
        for (namespace, changed) in [
            (MetadataNamespace::Public, &patch.public),
            (MetadataNamespace::Private, &patch.private),
            (MetadataNamespace::Unsafe, &patch.unsafe_),
        ] {
            let Some(changed) = changed else { continue };
            caller.require(
                Scope::of_namespace(namespace),
                &format!("changing {}", namespace.field_name()),
            )?;
            // Writing, replacing or deleting a sensitive value needs the scope that reads it.
            if let Some(path) = caller
                .sensitive
                .as_ref()
                .and_then(|s| s.paths().touched_by_patch(namespace, changed))
            {
                caller.require(Scope::Sensitive, &format!("changing {path}"))?;
            }
        }
        let projection = Projection::new(fields, &caller)?;
        let (user, generation) = self.write_through.update_metadata(&user_id, patch).await?;
        let snapshot = self.reader.snapshot(ReadAt::new(generation, 0)).await?;
        let user = proto::User {
            json: projection.apply_clerk(&user.id, &user.raw_json)?,
            id: user.id.clone(),
        };
        Ok(Response::new(proto::UpdateUserMetadataResponse {
            user: Some(user),
            freshness: Some(freshness_to_proto(&snapshot)),
        }))
    }

    async fn update_organization_metadata(
        &self,
        request: Request<proto::UpdateOrganizationMetadataRequest>,
    ) -> Result<Response<proto::UpdateOrganizationMetadataResponse>, Status> {
        let caller = caller(&request)?;
        caller.require(Scope::Write, "UpdateOrganizationMetadata")?;
        let proto::UpdateOrganizationMetadataRequest {
            organization_id,
            public_metadata,
            private_metadata,
        } = request.into_inner();
        if !crate::organization::is_clerk_id(&organization_id, "org_") {
            Err(Error::invalid(
                "organization_id",
                "an organization id is org_ followed by letters, digits and underscores",
            ))?;
        }
        let mut patch = serde_json::Map::new();
        for (name, scope, text) in [
            ("public_metadata", Scope::Public, public_metadata),
            ("private_metadata", Scope::Private, private_metadata),
        ] {
            let Some(text) = text else { continue };
            caller.require(scope, &format!("changing an organization's {name}"))?;
            match serde_json::from_str(&text) {
                Ok(serde_json::Value::Object(object)) => {
                    patch.insert(name.into(), object.into());
                }
                _ => Err(Error::invalid(
                    name,
                    format!("{name} must be a JSON object"),
                ))?,
            }
        }
        if patch.is_empty() {
            Err(Error::invalid(
                "public_metadata",
                "give at least one of public_metadata, private_metadata",
            ))?;
        }
        let (organization, generation) = self
            .write_through
            .update_organization_metadata(&organization_id, patch.into())
            .await?;
        let snapshot = self.reader.snapshot(ReadAt::new(generation, 0)).await?;
        let mut json: serde_json::Value = serde_json::from_str(&organization.raw_json)
            .map_err(|e| Error::Internal(e.to_string()))?;
        if caller.require(Scope::Private, "").is_err()
            && let Some(object) = json.as_object_mut()
        {
            object.remove("private_metadata");
        }
        Ok(Response::new(proto::UpdateOrganizationMetadataResponse {
            organization_json: json.to_string(),
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
        let filter = self.filter(filter)?;
        let specs = facets_from_proto(facets)?;
        let at = ReadAt::new(min_generation, min_log_sequence);
        let answer = self
            .reader
            .facets(&caller, filter, specs.clone(), at)
            .await?;
        Ok(Response::new(proto::FacetUsersResponse {
            matched: answer.value.matched,
            freshness: freshness(&answer.snapshot),
            facets: facets_to_proto(answer.value, &specs),
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
        let query = ExportQuery {
            filter: self.filter(filter)?,
            fields,
            chunk_size,
            resume_cursor,
            ids_only,
            at: ReadAt::new(min_generation, min_log_sequence),
        };
        let chunks = self.reader.export(&caller, query).await?;
        Ok(Response::new(export_stream(chunks)))
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
        let at = ReadAt::new(min_generation, min_log_sequence);
        let answer = self.reader.describe(&caller, &path_prefix, at).await?;
        Ok(Response::new(catalog_to_proto(answer)))
    }

    async fn describe_caller(
        &self,
        request: Request<proto::DescribeCallerRequest>,
    ) -> Result<Response<proto::DescribeCallerResponse>, Status> {
        let caller = caller(&request)?;
        Ok(Response::new(proto::DescribeCallerResponse {
            key_name: caller.name.to_string(),
            scopes: caller.scopes.iter().map(|s| s.to_string()).collect(),
        }))
    }

    async fn validate_filter(
        &self,
        request: Request<proto::ValidateFilterRequest>,
    ) -> Result<Response<proto::ValidateFilterResponse>, Status> {
        let caller = reader(&request)?;
        let filter = filter_from_proto(request.into_inner().filter, &self.limits)?;
        let Some(filter) = filter else {
            // No filter: every user; nothing to warn about.
            let snapshot = self.reader.snapshot(ReadAt::default()).await?;
            return Ok(Response::new(proto::ValidateFilterResponse {
                freshness: Some(freshness_to_proto(&snapshot)),
                ..Default::default()
            }));
        };
        let expression =
            to_text(&filter).map_err(|e| Error::invalid("filter", format!("filter: {e}")))?;
        // Shown as written; checked with the segments it refers to expanded.
        let expanded = self.expand(&filter)?;
        let answer = (self.reader)
            .validate(&caller, &expanded, ReadAt::default())
            .await?;
        Ok(Response::new(proto::ValidateFilterResponse {
            expression,
            tree: Some(filter_to_tree(&filter)),
            required_scopes: (caller.filter_scopes(&expanded).iter())
                .map(|scope| scope.name().to_string())
                .collect(),
            time_driven: is_time_driven(&expanded),
            warnings: answer.value.into_iter().map(warning_to_proto).collect(),
            freshness: Some(freshness_to_proto(&answer.snapshot)),
        }))
    }
}
