//! The destination calls of `clerkindex.v1.Segments`. Managing destinations needs the
//! `segments` scope; following a segment also needs the scopes its filter reads (its events
//! name its members).

use std::time::Duration;

use tonic::{Request, Response, Status};

use super::auth::caller;
use super::proto;
use crate::auth::{Caller, Scope};
use crate::destinations::{Destination, Destinations, Spec, State, Update};
use crate::error::Error;
use crate::segments::Segments;

/// The destinations, or why there are none (a server built without them, as some tests are).
fn available(destinations: Option<&Destinations>) -> Result<&Destinations, Error> {
    destinations.ok_or_else(|| {
        Error::FailedPrecondition("this server was started without destinations".into())
    })
}

fn manager<T>(request: &Request<T>) -> Result<Caller, Error> {
    let caller = caller(request)?;
    caller.require(Scope::Segments, "managing destinations")?;
    Ok(caller)
}

fn state_to_proto(state: State) -> proto::DestinationState {
    match state {
        State::Active => proto::DestinationState::Active,
        State::Paused => proto::DestinationState::Paused,
        State::Failing => proto::DestinationState::Failing,
        State::Gap => proto::DestinationState::Gap,
    }
}

fn to_proto(destinations: &Destinations, d: Destination) -> proto::Destination {
    let (lag_events, lag_seconds) = destinations.lag(&d);
    proto::Destination {
        state: state_to_proto(d.state) as i32,
        name: d.name,
        url: d.url,
        segments: d.segments,
        batch_size: d.batch_size as u32,
        batch_delay_ms: d.batch_delay_ms,
        create_time_ms: d.created_ms,
        update_time_ms: d.updated_ms,
        delivered_through_sequence: d.delivered_through,
        delivered_events: d.delivered_events,
        last_delivered_time_ms: d.last_delivered_ms.unwrap_or_default(),
        failed_attempts: d.failed_attempts,
        failing_since_time_ms: d.failing_since_ms.unwrap_or_default(),
        last_error: d.last_error.unwrap_or_default(),
        next_attempt_time_ms: d.next_attempt_ms.unwrap_or_default(),
        resync_pending: d.resync,
        lag_events,
        lag_seconds,
    }
}

/// Each segment followed must be readable by the caller: its events name its members (unknown
/// ones are refused by the destinations, naming the field).
fn may_follow(caller: &Caller, segments: &Segments, names: &[String]) -> Result<(), Error> {
    for name in names {
        if let Ok((_, filter)) = segments.get(name) {
            caller.check_filter(Some(&filter))?;
        }
    }
    Ok(())
}

pub(super) async fn create(
    destinations: Option<&Destinations>,
    segments: &Segments,
    request: Request<proto::CreateDestinationRequest>,
) -> Result<Response<proto::CreateDestinationResponse>, Status> {
    let caller = manager(&request)?;
    let destinations = available(destinations)?;
    let request = request.into_inner();
    may_follow(&caller, segments, &request.segments)?;
    let spec = Spec {
        name: request.name,
        url: request.url,
        segments: request.segments,
        batch_size: request.batch_size as usize,
        batch_delay: (request.batch_delay_ms > 0)
            .then(|| Duration::from_millis(request.batch_delay_ms)),
    };
    let (destination, secret) = destinations.create(spec).await.map_err(Error::from)?;
    Ok(Response::new(proto::CreateDestinationResponse {
        destination: Some(to_proto(destinations, destination)),
        signing_secret: secret,
    }))
}

pub(super) async fn update(
    destinations: Option<&Destinations>,
    segments: &Segments,
    request: Request<proto::UpdateDestinationRequest>,
) -> Result<Response<proto::UpdateDestinationResponse>, Status> {
    let caller = manager(&request)?;
    let destinations = available(destinations)?;
    let request = request.into_inner();
    let followed = request.segments.map(|s| s.names);
    may_follow(&caller, segments, followed.as_deref().unwrap_or_default())?;
    let update = Update {
        url: request.url,
        segments: followed,
        batch_size: request.batch_size.map(|n| n as usize),
        batch_delay: (request.batch_delay_ms)
            .map(|ms| (ms > 0).then(|| Duration::from_millis(ms)))
            .map(|delay| delay.unwrap_or(destinations.default_batch_delay())),
    };
    let destination = (destinations.update(&request.name, update).await).map_err(Error::from)?;
    Ok(Response::new(proto::UpdateDestinationResponse {
        destination: Some(to_proto(destinations, destination)),
    }))
}

pub(super) fn list(
    destinations: Option<&Destinations>,
    request: Request<proto::ListDestinationsRequest>,
) -> Result<Response<proto::ListDestinationsResponse>, Status> {
    manager(&request)?;
    let destinations = available(destinations)?;
    Ok(Response::new(proto::ListDestinationsResponse {
        destinations: (destinations.list().into_iter())
            .map(|d| to_proto(destinations, d))
            .collect(),
    }))
}

/// What a call on one named destination does.
pub(super) enum Action {
    Pause,
    Resume,
    Resync,
}

/// Pauses, resumes or resyncs the destination a request names.
pub(super) async fn change<T>(
    destinations: Option<&Destinations>,
    request: &Request<T>,
    name: &str,
    action: Action,
) -> Result<proto::Destination, Status> {
    manager(request)?;
    let destinations = available(destinations)?;
    let changed = match action {
        Action::Pause => destinations.pause(name).await,
        Action::Resume => destinations.resume(name).await,
        Action::Resync => destinations.resync(name).await,
    };
    Ok(to_proto(destinations, changed.map_err(Error::from)?))
}

pub(super) async fn rotate(
    destinations: Option<&Destinations>,
    request: Request<proto::RotateDestinationSecretRequest>,
) -> Result<Response<proto::RotateDestinationSecretResponse>, Status> {
    manager(&request)?;
    let destinations = available(destinations)?;
    let (destination, secret) = destinations
        .rotate_secret(&request.get_ref().name)
        .await
        .map_err(Error::from)?;
    Ok(Response::new(proto::RotateDestinationSecretResponse {
        destination: Some(to_proto(destinations, destination)),
        signing_secret: secret,
    }))
}

pub(super) async fn test(
    destinations: Option<&Destinations>,
    request: Request<proto::TestDestinationRequest>,
) -> Result<Response<proto::TestDestinationResponse>, Status> {
    manager(&request)?;
    let destinations = available(destinations)?;
    let result = destinations
        .test(&request.get_ref().name)
        .await
        .map_err(Error::from)?;
    Ok(Response::new(proto::TestDestinationResponse {
        status_code: u32::from(result.status),
        latency_ms: result.latency.as_millis() as u64,
        error: result.error.unwrap_or_default(),
    }))
}

pub(super) async fn delete(
    destinations: Option<&Destinations>,
    request: Request<proto::DeleteDestinationRequest>,
) -> Result<Response<proto::DeleteDestinationResponse>, Status> {
    manager(&request)?;
    let destinations = available(destinations)?;
    destinations
        .delete(&request.get_ref().name)
        .await
        .map_err(Error::from)?;
    Ok(Response::new(proto::DeleteDestinationResponse {}))
}
