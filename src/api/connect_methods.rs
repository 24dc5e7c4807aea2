//! The methods the HTTP port serves in the Connect protocol: every method of `UserIndex`,
//! `Segments` and `Sync`, each with its request decoded from the proto3 JSON mapping and its
//! responses encoded to it (the generated pbjson serde), so the bridge can hand protobuf to the
//! gRPC services and JSON back to the caller. A test checks the table against the compiled protos.

use prost::Message;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::proto;

/// One method of the API, as the bridge calls it.
pub(super) struct ApiMethod {
    /// `/clerkindex.v1.Service/Method`, the path on both ports.
    pub path: &'static str,
    /// The method answers with a stream of messages.
    pub server_streaming: bool,
    /// The request's proto3 JSON -> its protobuf encoding.
    pub request_from_json: fn(&[u8]) -> Result<Vec<u8>, ConvertError>,
    /// A response's protobuf encoding -> its proto3 JSON.
    pub response_to_json: fn(&[u8]) -> Result<Vec<u8>, ConvertError>,
    /// The protobuf message names, for the test against the descriptors.
    #[cfg_attr(not(test), allow(dead_code))]
    types: (&'static str, &'static str),
}

/// A message that did not convert: JSON that is not the message's, or protobuf that does not
/// decode.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(super) struct ConvertError(String);

fn from_json<T: DeserializeOwned + Message>(json: &[u8]) -> Result<Vec<u8>, ConvertError> {
    let message: T = serde_json::from_slice(json).map_err(|e| ConvertError(e.to_string()))?;
    Ok(message.encode_to_vec())
}

fn to_json<T: Serialize + Message + Default>(encoded: &[u8]) -> Result<Vec<u8>, ConvertError> {
    let message = T::decode(encoded).map_err(|e| ConvertError(e.to_string()))?;
    serde_json::to_vec(&message).map_err(|e| ConvertError(e.to_string()))
}

macro_rules! methods {
    ($($kind:ident $service:ident $method:ident($request:ident) -> $response:ident;)*) => {
        static METHODS: &[ApiMethod] = &[$(
            ApiMethod {
                path: concat!("/clerkindex.v1.", stringify!($service), "/", stringify!($method)),
                server_streaming: methods!(@streaming $kind),
                request_from_json: from_json::<proto::$request>,
                response_to_json: to_json::<proto::$response>,
                types: (stringify!($request), stringify!($response)),
            },
        )*];
    };
    (@streaming unary) => { false };
    (@streaming stream) => { true };
}

methods! {
    unary UserIndex GetUser(GetUserRequest) -> GetUserResponse;
    unary UserIndex SearchUsers(SearchUsersRequest) -> SearchUsersResponse;
    unary UserIndex CountUsers(CountUsersRequest) -> CountUsersResponse;
    unary UserIndex UpdateUserMetadata(UpdateUserMetadataRequest) -> UpdateUserMetadataResponse;
    unary UserIndex UpdateOrganizationMetadata(UpdateOrganizationMetadataRequest)
        -> UpdateOrganizationMetadataResponse;
    unary UserIndex FacetUsers(FacetUsersRequest) -> FacetUsersResponse;
    stream UserIndex ExportUsers(ExportUsersRequest) -> ExportUsersResponse;
    unary UserIndex DescribeFields(DescribeFieldsRequest) -> DescribeFieldsResponse;
    unary UserIndex DescribeCaller(DescribeCallerRequest) -> DescribeCallerResponse;
    unary UserIndex ValidateFilter(ValidateFilterRequest) -> ValidateFilterResponse;
    unary Segments CreateSegment(CreateSegmentRequest) -> Segment;
    unary Segments GetSegment(GetSegmentRequest) -> Segment;
    unary Segments ListSegments(ListSegmentsRequest) -> ListSegmentsResponse;
    unary Segments UpdateSegment(UpdateSegmentRequest) -> Segment;
    unary Segments DeleteSegment(DeleteSegmentRequest) -> DeleteSegmentResponse;
    unary Segments CountSegment(CountSegmentRequest) -> CountUsersResponse;
    stream Segments ListSegmentMembers(ListSegmentMembersRequest) -> ExportUsersResponse;
    stream Segments WatchSegment(WatchSegmentRequest) -> SegmentEvent;
    stream Segments WatchSegments(WatchSegmentsRequest) -> SegmentEvent;
    unary Segments GetUserSegments(GetUserSegmentsRequest) -> GetUserSegmentsResponse;
    unary Segments GetSegmentHistory(GetSegmentHistoryRequest) -> GetSegmentHistoryResponse;
    unary Segments CreateDestination(CreateDestinationRequest) -> CreateDestinationResponse;
    unary Segments ListDestinations(ListDestinationsRequest) -> ListDestinationsResponse;
    unary Segments UpdateDestination(UpdateDestinationRequest) -> UpdateDestinationResponse;
    unary Segments PauseDestination(PauseDestinationRequest) -> PauseDestinationResponse;
    unary Segments ResumeDestination(ResumeDestinationRequest) -> ResumeDestinationResponse;
    unary Segments ResyncDestination(ResyncDestinationRequest) -> ResyncDestinationResponse;
    unary Segments RotateDestinationSecret(RotateDestinationSecretRequest)
        -> RotateDestinationSecretResponse;
    unary Segments TestDestination(TestDestinationRequest) -> TestDestinationResponse;
    unary Segments DeleteDestination(DeleteDestinationRequest) -> DeleteDestinationResponse;
    unary Sync GetSyncStatus(GetSyncStatusRequest) -> SyncStatus;
    unary Sync TriggerReconcile(TriggerReconcileRequest) -> TriggerReconcileResponse;
    unary Sync ReencryptSensitive(ReencryptSensitiveRequest) -> ReencryptSensitiveResponse;
}

/// The method served at `path`, if the API has one.
pub(super) fn api_method(path: &str) -> Option<&'static ApiMethod> {
    METHODS.iter().find(|method| method.path == path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost_types::FileDescriptorSet;

    #[test]
    fn the_table_is_every_method_of_the_protos_with_its_types() {
        let set = FileDescriptorSet::decode(proto::FILE_DESCRIPTOR_SET).unwrap();
        let mut seen = 0;
        for file in set.file {
            for service in &file.service {
                for method in &service.method {
                    let path = format!("/{}.{}/{}", file.package(), service.name(), method.name());
                    let entry = api_method(&path).unwrap_or_else(|| panic!("{path} missing"));
                    let name = |full: &str| full.rsplit('.').next().unwrap().to_string();
                    assert_eq!(entry.types.0, name(method.input_type()), "{path}");
                    assert_eq!(entry.types.1, name(method.output_type()), "{path}");
                    assert_eq!(entry.server_streaming, method.server_streaming(), "{path}");
                    assert!(!method.client_streaming(), "{path}");
                    seen += 1;
                }
            }
        }
        assert_eq!(seen, METHODS.len());
    }

    #[test]
    fn json_converts_both_ways_in_the_proto3_mapping() {
        let method = api_method("/clerkindex.v1.UserIndex/CountUsers").unwrap();
        let encoded =
            (method.request_from_json)(br#"{"filter":{"expression":"public.plan = \"pro\""}}"#)
                .unwrap();
        let request = proto::CountUsersRequest::decode(&*encoded).unwrap();
        assert_eq!(
            request.filter.unwrap().spec,
            Some(proto::filter_spec::Spec::Expression(
                r#"public.plan = "pro""#.into()
            ))
        );
        let response = proto::CountUsersResponse {
            count: 12,
            ..Default::default()
        };
        let json = (method.response_to_json)(&response.encode_to_vec()).unwrap();
        let value: serde_json::Value = serde_json::from_slice(&json).unwrap();
        // 64-bit integers are strings in proto3 JSON.
        assert_eq!(value["count"], "12");
        let unknown = (method.request_from_json)(br#"{"filtr":{}}"#).unwrap_err();
        assert!(unknown.to_string().contains("filtr"), "{unknown}");
    }
}
