//! `clerkindex.v1.Segments`: saved segments, their counts, members and events.

use std::collections::BTreeSet;

use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::auth::caller;
use super::convert::{filter_from_proto, freshness_to_proto};
use super::destinations::{self as destination_calls, Action};
use super::export::{ExportStream, export_stream};
use super::filter_tree::warning_to_proto;
use super::proto;
use super::proto::segments_server::Segments as SegmentsApi;
use crate::auth::{Caller, Scope};
use crate::destinations::Destinations;
use crate::error::Error;
use crate::limits::Budget;
use crate::query::{Filter, FilterLimits};
use crate::read::{ExportQuery, ReadAt, UserReader};
use crate::segments::{EventKind, Granularity, SavedSegment, SegmentEvent, Segments, Selection};

#[derive(Clone)]
pub struct SegmentsService {
    segments: Segments,
    /// `None` in cluster mode (destinations deliver in single mode only).
    destinations: Option<Destinations>,
    reader: UserReader,
    limits: FilterLimits,
}

impl SegmentsService {
    /// The store this service answers from.
    pub fn segments(&self) -> &Segments {
        &self.segments
    }

    pub fn new(segments: Segments, reader: UserReader, limits: FilterLimits) -> Self {
        SegmentsService {
            segments,
            destinations: None,
            reader,
            limits,
        }
    }

    /// Serves the destination calls from `destinations`.
    pub fn with_destinations(mut self, destinations: Destinations) -> Self {
        self.destinations = Some(destinations);
        self
    }

    /// The service behind `auth`: every call carries its [`crate::auth::Caller`].
    pub fn into_server(
        self,
        auth: super::auth::Authenticate,
    ) -> tonic::service::interceptor::InterceptedService<
        proto::segments_server::SegmentsServer<Self>,
        super::auth::Authenticate,
    > {
        let server = proto::segments_server::SegmentsServer::new(self)
            .accept_compressed(tonic::codec::CompressionEncoding::Gzip)
            .send_compressed(tonic::codec::CompressionEncoding::Gzip);
        tonic::service::interceptor::InterceptedService::new(server, auth)
    }

    /// A required filter, in either spelling.
    fn filter(&self, spec: Option<proto::FilterSpec>) -> Result<Filter, Error> {
        filter_from_proto(spec, &self.limits)?.ok_or_else(|| {
            Error::invalid(
                "filter",
                "a segment needs a filter (to match everyone: id EXISTS)",
            )
        })
    }

    fn lookup(&self, name: &str) -> Result<(SavedSegment, Filter), Status> {
        Ok(self.segments.get(name).map_err(Error::from)?)
    }

    /// A segment the caller may evaluate: it reads users and may read every field the
    /// segment's filter tests (a count of `private.ltv > 1000` reveals private data).
    fn visible(&self, caller: &Caller, name: &str) -> Result<(SavedSegment, Filter), Status> {
        caller.require_read().map_err(Error::from)?;
        let (segment, filter) = self.lookup(name)?;
        caller.check_filter(Some(&filter)).map_err(Error::from)?;
        Ok((segment, filter))
    }

    /// A definition the caller may save: readable, and free of sensitive paths (definitions
    /// are stored as text, so a sensitive literal would be stored in plaintext).
    /// A watch stream over `selection`, holding a watch slot of the caller's budget.
    fn watch(
        &self,
        caller: Caller,
        selection: Selection,
        after_sequence: Option<u64>,
    ) -> Result<Response<EventStream>, Status> {
        // Held by the stream: given back as soon as the client goes away.
        let slot = self
            .reader
            .budgets()
            .acquire(Budget::Watches, &caller.name)
            .map_err(Error::from)?;
        // Asked again whenever a definition changes during the watch.
        let may_watch = Box::new(move |filter: &Filter| caller.check_filter(Some(filter)).is_ok());
        let events = self
            .segments
            .watch_many(selection, after_sequence, may_watch)
            .map_err(Error::from)?;
        let stream = ReceiverStream::new(events).map(move |event| {
            let _held = &slot;
            match event {
                Ok(event) => Ok(event_to_proto(&event)),
                Err(error) => Err(Error::from(error).into()),
            }
        });
        Ok(Response::new(Box::pin(stream)))
    }

    /// What `ValidateFilter` warns about a filter just saved (none when the catalog cannot be
    /// read now: the save itself succeeded).
    async fn warnings(&self, caller: &Caller, filter: &Filter) -> Vec<proto::FilterWarning> {
        match self
            .reader
            .validate(caller, filter, ReadAt::default())
            .await
        {
            Ok(answer) => answer.value.into_iter().map(warning_to_proto).collect(),
            Err(error) => {
                tracing::warn!(%error, "could not check a saved segment's filter for warnings");
                Vec::new()
            }
        }
    }

    fn check_definition(caller: &Caller, filter: &Filter) -> Result<(), Error> {
        caller.check_filter(Some(filter))?;
        if caller.sensitive.as_ref().is_some_and(|s| s.touches(filter)) {
            return Err(Error::invalid(
                "filter",
                "saved segments cannot test sensitive paths: their definitions are stored as text",
            ));
        }
        Ok(())
    }

    /// The caller of a request that changes segments.
    fn manager<T>(request: &Request<T>) -> Result<Caller, Error> {
        let caller = caller(request)?;
        caller.require(
            Scope::Segments,
            "creating, changing or deleting saved segments",
        )?;
        Ok(caller)
    }
}

fn segment_to_proto(caller: &Caller, segment: SavedSegment, filter: &Filter) -> proto::Segment {
    proto::Segment {
        required_scopes: caller
            .filter_scopes(filter)
            .iter()
            .map(|scope| scope.name().to_string())
            .collect(),
        warnings: Vec::new(),
        name: segment.name,
        description: segment.description,
        filter: Some(proto::FilterSpec {
            spec: Some(proto::filter_spec::Spec::Expression(segment.filter)),
        }),
        version: segment.version,
        create_time_ms: segment.created_ms,
        update_time_ms: segment.updated_ms,
    }
}

fn event_to_proto(event: &SegmentEvent) -> proto::SegmentEvent {
    use proto::segment_event::Kind;
    proto::SegmentEvent {
        sequence: event.sequence,
        segment: event.segment.clone(),
        kind: match event.kind {
            EventKind::Entered => Kind::Entered,
            EventKind::Exited => Kind::Exited,
            EventKind::SegmentUpdated => Kind::SegmentUpdated,
            EventKind::SegmentDeleted => Kind::SegmentDeleted,
        } as i32,
        user_id: event.user_id.clone(),
        change_time_ms: event.change_time_ms,
        recorded_at_ms: event.recorded_at_ms,
        cause: event.cause.clone(),
    }
}

/// Names one `WatchSegments` stream may follow.
pub const MAX_WATCHED_NAMES: usize = 1_000;

type EventStream =
    std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<proto::SegmentEvent, Status>> + Send>>;

#[tonic::async_trait]
impl SegmentsApi for SegmentsService {
    async fn create_segment(
        &self,
        request: Request<proto::CreateSegmentRequest>,
    ) -> Result<Response<proto::Segment>, Status> {
        let caller = Self::manager(&request)?;
        let proto::CreateSegmentRequest {
            name,
            description,
            filter,
        } = request.into_inner();
        let filter = self.filter(filter)?;
        // Scopes and warnings are those of the segments it refers to as well.
        let expanded = (self.segments.expand(&filter, Some(&name))).map_err(Error::from)?;
        Self::check_definition(&caller, &expanded)?;
        let saved = self
            .segments
            .create(name, description, filter)
            .await
            .map_err(Error::from)?;
        let mut segment = segment_to_proto(&caller, saved, &expanded);
        segment.warnings = self.warnings(&caller, &expanded).await;
        Ok(Response::new(segment))
    }

    async fn get_segment(
        &self,
        request: Request<proto::GetSegmentRequest>,
    ) -> Result<Response<proto::Segment>, Status> {
        let caller = caller(&request)?;
        let (segment, filter) = self.visible(&caller, &request.into_inner().name)?;
        Ok(Response::new(segment_to_proto(&caller, segment, &filter)))
    }

    async fn list_segments(
        &self,
        request: Request<proto::ListSegmentsRequest>,
    ) -> Result<Response<proto::ListSegmentsResponse>, Status> {
        let caller = caller(&request)?;
        caller.require_read().map_err(Error::from)?;
        // Segments the caller could not evaluate are left out.
        Ok(Response::new(proto::ListSegmentsResponse {
            segments: self
                .segments
                .list()
                .into_iter()
                .filter(|(_, filter)| caller.check_filter(Some(filter)).is_ok())
                .map(|(segment, filter)| segment_to_proto(&caller, segment, &filter))
                .collect(),
        }))
    }

    async fn update_segment(
        &self,
        request: Request<proto::UpdateSegmentRequest>,
    ) -> Result<Response<proto::Segment>, Status> {
        let caller = Self::manager(&request)?;
        let proto::UpdateSegmentRequest {
            name,
            description,
            filter,
            expected_version,
        } = request.into_inner();
        let filter = match filter.and_then(|f| f.spec) {
            Some(spec) => Some(self.filter(Some(proto::FilterSpec { spec: Some(spec) }))?),
            None => None,
        };
        // Both the definition it replaces and the new one must be readable.
        let (_, current) = self.visible(&caller, &name)?;
        let expanded = match &filter {
            Some(filter) => {
                let expanded = (self.segments.expand(filter, Some(&name))).map_err(Error::from)?;
                Self::check_definition(&caller, &expanded)?;
                Some(expanded)
            }
            None => None,
        };
        let saved = self
            .segments
            .update(name, description, filter, expected_version)
            .await
            .map_err(Error::from)?;
        let saved_filter = expanded.as_ref().unwrap_or(&current);
        let mut segment = segment_to_proto(&caller, saved, saved_filter);
        segment.warnings = self.warnings(&caller, saved_filter).await;
        Ok(Response::new(segment))
    }

    async fn delete_segment(
        &self,
        request: Request<proto::DeleteSegmentRequest>,
    ) -> Result<Response<proto::DeleteSegmentResponse>, Status> {
        let caller = Self::manager(&request)?;
        let name = request.into_inner().name;
        self.visible(&caller, &name)?;
        self.segments.delete(name).await.map_err(Error::from)?;
        Ok(Response::new(proto::DeleteSegmentResponse {}))
    }

    async fn count_segment(
        &self,
        request: Request<proto::CountSegmentRequest>,
    ) -> Result<Response<proto::CountUsersResponse>, Status> {
        let caller = caller(&request)?;
        let proto::CountSegmentRequest {
            name,
            min_generation,
            min_log_sequence,
        } = request.into_inner();
        let (_, filter) = self.visible(&caller, &name)?;
        let at = ReadAt::new(min_generation, min_log_sequence).at_segment_clock();
        let answer = self.reader.count(&caller, Some(filter), at).await?;
        Ok(Response::new(proto::CountUsersResponse {
            count: answer.value,
            freshness: Some(freshness_to_proto(&answer.snapshot)),
        }))
    }

    async fn get_user_segments(
        &self,
        request: Request<proto::GetUserSegmentsRequest>,
    ) -> Result<Response<proto::GetUserSegmentsResponse>, Status> {
        let caller = caller(&request)?;
        caller.require_read().map_err(Error::from)?;
        let proto::GetUserSegmentsRequest {
            user_id,
            min_generation,
            min_log_sequence,
        } = request.into_inner();
        // Segments the caller could not evaluate are left out, as in ListSegments.
        let readable: Vec<(String, Filter)> = (self.segments.list().into_iter())
            .filter(|(_, filter)| caller.check_filter(Some(filter)).is_ok())
            .map(|(segment, filter)| (segment.name, filter))
            .collect();
        let at = ReadAt::new(min_generation, min_log_sequence).at_segment_clock();
        let answer = self.reader.segments_of(&user_id, readable, at).await?;
        Ok(Response::new(proto::GetUserSegmentsResponse {
            segments: answer.value,
            freshness: Some(freshness_to_proto(&answer.snapshot)),
        }))
    }

    async fn create_destination(
        &self,
        request: Request<proto::CreateDestinationRequest>,
    ) -> Result<Response<proto::CreateDestinationResponse>, Status> {
        destination_calls::create(self.destinations.as_ref(), &self.segments, request).await
    }

    async fn update_destination(
        &self,
        request: Request<proto::UpdateDestinationRequest>,
    ) -> Result<Response<proto::UpdateDestinationResponse>, Status> {
        destination_calls::update(self.destinations.as_ref(), &self.segments, request).await
    }

    async fn list_destinations(
        &self,
        request: Request<proto::ListDestinationsRequest>,
    ) -> Result<Response<proto::ListDestinationsResponse>, Status> {
        destination_calls::list(self.destinations.as_ref(), request)
    }

    async fn pause_destination(
        &self,
        request: Request<proto::PauseDestinationRequest>,
    ) -> Result<Response<proto::PauseDestinationResponse>, Status> {
        let (destinations, name) = (self.destinations.as_ref(), &request.get_ref().name);
        let destination =
            destination_calls::change(destinations, &request, name, Action::Pause).await?;
        Ok(Response::new(proto::PauseDestinationResponse {
            destination: Some(destination),
        }))
    }

    async fn resume_destination(
        &self,
        request: Request<proto::ResumeDestinationRequest>,
    ) -> Result<Response<proto::ResumeDestinationResponse>, Status> {
        let (destinations, name) = (self.destinations.as_ref(), &request.get_ref().name);
        let destination =
            destination_calls::change(destinations, &request, name, Action::Resume).await?;
        Ok(Response::new(proto::ResumeDestinationResponse {
            destination: Some(destination),
        }))
    }

    async fn resync_destination(
        &self,
        request: Request<proto::ResyncDestinationRequest>,
    ) -> Result<Response<proto::ResyncDestinationResponse>, Status> {
        let (destinations, name) = (self.destinations.as_ref(), &request.get_ref().name);
        let destination =
            destination_calls::change(destinations, &request, name, Action::Resync).await?;
        Ok(Response::new(proto::ResyncDestinationResponse {
            destination: Some(destination),
        }))
    }

    async fn rotate_destination_secret(
        &self,
        request: Request<proto::RotateDestinationSecretRequest>,
    ) -> Result<Response<proto::RotateDestinationSecretResponse>, Status> {
        destination_calls::rotate(self.destinations.as_ref(), request).await
    }

    async fn test_destination(
        &self,
        request: Request<proto::TestDestinationRequest>,
    ) -> Result<Response<proto::TestDestinationResponse>, Status> {
        destination_calls::test(self.destinations.as_ref(), request).await
    }

    async fn delete_destination(
        &self,
        request: Request<proto::DeleteDestinationRequest>,
    ) -> Result<Response<proto::DeleteDestinationResponse>, Status> {
        destination_calls::delete(self.destinations.as_ref(), request).await
    }

    async fn get_segment_history(
        &self,
        request: Request<proto::GetSegmentHistoryRequest>,
    ) -> Result<Response<proto::GetSegmentHistoryResponse>, Status> {
        use proto::get_segment_history_request::Granularity as Wire;
        let caller = caller(&request)?;
        let request = request.into_inner();
        self.visible(&caller, &request.name)?;
        let granularity = match request.granularity() {
            Wire::Hour => Granularity::Hour,
            Wire::Day | Wire::Unspecified => Granularity::Day,
        };
        let (periods, size) = (self.segments)
            .history(&request.name, granularity)
            .map_err(Error::from)?;
        Ok(Response::new(proto::GetSegmentHistoryResponse {
            periods: (periods.into_iter())
                .map(|b| proto::SegmentHistoryPeriod {
                    start_time_ms: b.start_ms,
                    entered: b.entered,
                    exited: b.exited,
                    size: b.size,
                })
                .collect(),
            size,
        }))
    }

    type ListSegmentMembersStream = ExportStream;

    async fn list_segment_members(
        &self,
        request: Request<proto::ListSegmentMembersRequest>,
    ) -> Result<Response<Self::ListSegmentMembersStream>, Status> {
        let caller = caller(&request)?;
        let proto::ListSegmentMembersRequest {
            name,
            fields,
            chunk_size,
            resume_cursor,
            min_generation,
            min_log_sequence,
        } = request.into_inner();
        let (_, filter) = self.visible(&caller, &name)?;
        let query = ExportQuery {
            filter: Some(filter),
            fields,
            chunk_size,
            resume_cursor,
            ids_only: false,
            at: ReadAt::new(min_generation, min_log_sequence).at_segment_clock(),
        };
        let chunks = self.reader.export(&caller, query).await?;
        Ok(Response::new(export_stream(chunks)))
    }

    type WatchSegmentStream = EventStream;

    async fn watch_segment(
        &self,
        request: Request<proto::WatchSegmentRequest>,
    ) -> Result<Response<Self::WatchSegmentStream>, Status> {
        let caller = caller(&request)?;
        let proto::WatchSegmentRequest {
            name,
            after_sequence,
        } = request.into_inner();
        self.visible(&caller, &name)?;
        let selection = Selection::Named(BTreeSet::from([name]));
        self.watch(caller, selection, after_sequence)
    }

    type WatchSegmentsStream = EventStream;

    async fn watch_segments(
        &self,
        request: Request<proto::WatchSegmentsRequest>,
    ) -> Result<Response<Self::WatchSegmentsStream>, Status> {
        let caller = caller(&request)?;
        caller.require_read().map_err(Error::from)?;
        let proto::WatchSegmentsRequest {
            names,
            after_sequence,
        } = request.into_inner();
        if names.len() > MAX_WATCHED_NAMES {
            return Err(Error::invalid(
                "names",
                format!(
                    "{} names: watch at most {MAX_WATCHED_NAMES} on one stream (or none, for every readable segment)",
                    names.len()
                ),
            )
            .into());
        }
        let selection = if names.is_empty() {
            Selection::Readable
        } else {
            for name in &names {
                self.visible(&caller, name)?;
            }
            Selection::Named(names.into_iter().collect())
        };
        self.watch(caller, selection, after_sequence)
    }
}
