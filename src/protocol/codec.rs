//! Decoding request frames into typed requests, and encoding responses into frames.
//!
//! Every check that can be made on lengths is made before the generated decoders run, and the
//! decoders themselves run under `catch_unwind`, so no byte sequence can take the broker down.

use std::panic::{catch_unwind, AssertUnwindSafe};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsResponse, RequestHeader, RequestKind, ResponseHeader, ResponseKind,
};
use kafka_protocol::protocol::{Decodable, Encodable};

use super::versions::VersionTable;

/// UNSUPPORTED_VERSION.
const UNSUPPORTED_VERSION: i16 = 35;

/// A frame decoded as far as it could be.
// The request is moved once, straight into its handler: boxing it would only add an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Decoded {
    /// A request of a supported API and version.
    Request {
        header: RequestHeader,
        body: RequestKind,
    },
    /// An ApiVersions request newer than this broker knows (KIP-511): the body is not parsed, and
    /// the answer is a v0 response with UNSUPPORTED_VERSION listing the supported ranges.
    ApiVersionsTooNew { correlation_id: i32 },
}

/// Why a frame could not be served. Each closes the connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("frame of {0} bytes is too short for a request header")]
    TooShort(usize),
    #[error("unknown api key {api_key} (correlation id {correlation_id})")]
    UnknownApiKey { api_key: i16, correlation_id: i32 },
    #[error("unsupported version {version} of {api_key:?} (correlation id {correlation_id})")]
    UnsupportedVersion {
        api_key: ApiKey,
        version: i16,
        correlation_id: i32,
    },
    #[error("malformed {api_key:?} v{version} request: {reason}")]
    Malformed {
        api_key: ApiKey,
        version: i16,
        reason: String,
    },
}

/// Decodes one request frame (without its length prefix).
pub fn decode_request(frame: Bytes, table: &VersionTable) -> Result<Decoded, DecodeError> {
    // api key (2) + version (2) + correlation id (4): the least any header holds.
    if frame.len() < 8 {
        return Err(DecodeError::TooShort(frame.len()));
    }
    let mut peek = &frame[..8];
    let raw_key = peek.get_i16();
    let version = peek.get_i16();
    let correlation_id = peek.get_i32();
    let api_key = ApiKey::try_from(raw_key).map_err(|()| DecodeError::UnknownApiKey {
        api_key: raw_key,
        correlation_id,
    })?;
    let Some(entry) = table.get(api_key) else {
        return Err(DecodeError::UnknownApiKey {
            api_key: raw_key,
            correlation_id,
        });
    };
    if api_key == ApiKey::ApiVersions && version > entry.max {
        return Ok(Decoded::ApiVersionsTooNew { correlation_id });
    }
    if !table.accepts(api_key, version) {
        return Err(DecodeError::UnsupportedVersion {
            api_key,
            version,
            correlation_id,
        });
    }
    let malformed = |reason: String| DecodeError::Malformed {
        api_key,
        version,
        reason,
    };
    let mut buf = frame;
    let decoded = catch_unwind(AssertUnwindSafe(|| {
        let header = RequestHeader::decode(&mut buf, api_key.request_header_version(version))?;
        let body = RequestKind::decode(api_key, &mut buf, version)?;
        Ok::<_, kafka_protocol::error::ProtoError>((header, body))
    }));
    match decoded {
        Ok(Ok((header, body))) => Ok(Decoded::Request { header, body }),
        Ok(Err(e)) => Err(malformed(e.to_string())),
        Err(_) => Err(malformed("decoder panicked".to_string())),
    }
}

/// Why a response could not be encoded (a bug: a field set that the version cannot carry).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot encode {api_key:?} v{version} response: {reason}")]
pub struct EncodeError {
    pub api_key: ApiKey,
    pub version: i16,
    pub reason: String,
}

/// Encodes a response frame, length prefix included.
pub fn encode_response(
    correlation_id: i32,
    api_key: ApiKey,
    version: i16,
    response: &ResponseKind,
) -> Result<Bytes, EncodeError> {
    let err = |reason: String| EncodeError {
        api_key,
        version,
        reason,
    };
    let mut buf = BytesMut::with_capacity(64);
    buf.put_i32(0);
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    header
        .encode(&mut buf, api_key.response_header_version(version))
        .map_err(|e| err(e.to_string()))?;
    response
        .encode(&mut buf, version)
        .map_err(|e| err(e.to_string()))?;
    let length = (buf.len() - 4) as i32;
    buf[..4].copy_from_slice(&length.to_be_bytes());
    Ok(buf.freeze())
}

/// The KIP-511 answer to an ApiVersions request newer than this broker: a v0 body with
/// UNSUPPORTED_VERSION and every supported range, behind a v0 response header.
pub fn api_versions_too_new(correlation_id: i32, table: &VersionTable) -> Bytes {
    let response = ApiVersionsResponse::default()
        .with_error_code(UNSUPPORTED_VERSION)
        .with_api_keys(api_version_list(table));
    encode_response(
        correlation_id,
        ApiKey::ApiVersions,
        0,
        &ResponseKind::ApiVersions(response),
    )
    .expect("a v0 ApiVersions response always encodes")
}

/// The ApiVersions list for a table.
pub fn api_version_list(table: &VersionTable) -> Vec<ApiVersion> {
    table
        .entries()
        .iter()
        .map(|e| {
            ApiVersion::default()
                .with_api_key(e.api_key as i16)
                .with_min_version(e.advertised_min)
                .with_max_version(e.max)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::versions::VersionEntry;
    use kafka_protocol::messages::{ApiVersionsRequest, MetadataRequest};

    fn table() -> VersionTable {
        VersionTable::new(vec![
            VersionEntry {
                api_key: ApiKey::ApiVersions,
                advertised_min: 0,
                served_min: 0,
                max: 4,
            },
            VersionEntry {
                api_key: ApiKey::Metadata,
                advertised_min: 0,
                served_min: 0,
                max: 12,
            },
        ])
    }

    fn frame(api_key: ApiKey, version: i16, body: impl Encodable) -> Bytes {
        let mut buf = BytesMut::new();
        let header = RequestHeader::default()
            .with_request_api_key(api_key as i16)
            .with_request_api_version(version)
            .with_correlation_id(7);
        header
            .encode(&mut buf, api_key.request_header_version(version))
            .unwrap();
        body.encode(&mut buf, version).unwrap();
        buf.freeze()
    }

    #[test]
    fn decodes_a_supported_request() {
        let f = frame(ApiKey::Metadata, 12, MetadataRequest::default());
        match decode_request(f, &table()).unwrap() {
            Decoded::Request { header, body } => {
                assert_eq!(header.correlation_id, 7);
                assert!(matches!(body, RequestKind::Metadata(_)));
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn too_new_api_versions_gets_kip_511_answer() {
        let f = frame(ApiKey::ApiVersions, 4, ApiVersionsRequest::default());
        let mut raw = f.to_vec();
        raw[2..4].copy_from_slice(&99i16.to_be_bytes());
        let decoded = decode_request(Bytes::from(raw), &table()).unwrap();
        assert!(matches!(
            decoded,
            Decoded::ApiVersionsTooNew { correlation_id: 7 }
        ));
        let mut answer = api_versions_too_new(7, &table());
        assert_eq!(answer.get_i32() as usize, answer.len());
        assert_eq!(answer.get_i32(), 7);
        let body = ApiVersionsResponse::decode(&mut answer, 0).unwrap();
        assert_eq!(body.error_code, 35);
        assert_eq!(body.api_keys.len(), 2);
    }

    #[test]
    fn refuses_short_unknown_unsupported_and_garbage() {
        assert_eq!(
            decode_request(Bytes::from_static(&[0, 3, 0]), &table()).unwrap_err(),
            DecodeError::TooShort(3)
        );
        let unknown = Bytes::from_static(&[0x7f, 0x00, 0, 0, 0, 0, 0, 1]);
        assert!(matches!(
            decode_request(unknown, &table()),
            Err(DecodeError::UnknownApiKey {
                correlation_id: 1,
                ..
            })
        ));
        let f = frame(ApiKey::Metadata, 12, MetadataRequest::default());
        let mut raw = f.to_vec();
        raw[2..4].copy_from_slice(&13i16.to_be_bytes());
        assert!(matches!(
            decode_request(Bytes::from(raw), &table()),
            Err(DecodeError::UnsupportedVersion { version: 13, .. })
        ));
        // A Metadata v12 header followed by an array that claims i32::MAX topics.
        let mut raw = frame(ApiKey::Metadata, 12, MetadataRequest::default()).to_vec();
        raw.truncate(raw.len() - 4);
        raw.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x07]);
        assert!(matches!(
            decode_request(Bytes::from(raw), &table()),
            Err(DecodeError::Malformed { .. })
        ));
    }
}
