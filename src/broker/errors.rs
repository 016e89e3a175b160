//! The one map from the log engine's, the config table's and the resource configs' errors to
//! Kafka error codes.

use kafka_protocol::error::ResponseError;

use crate::config::ConfigError;
use crate::dynamic_config::DynamicConfigError;
use crate::log::record_errors::RecordFault;
use crate::log::LogError;
use crate::quota::QuotaError;
use crate::resource_configs::{ResourceConfigError, ResourceKind};
use crate::tier::TierError;

/// No error.
pub(crate) const NONE: i16 = 0;

/// The Kafka error code for a log engine error. Exhaustive on purpose: a new `LogError` variant
/// must be given its code here.
pub(crate) fn log_error_code(error: &LogError) -> i16 {
    let e = match error {
        LogError::TopicExists(_) => ResponseError::TopicAlreadyExists,
        LogError::UnknownTopicOrPartition => ResponseError::UnknownTopicOrPartition,
        LogError::OffsetOutOfRange { .. } => ResponseError::OffsetOutOfRange,
        LogError::CorruptBatch(_) => ResponseError::CorruptMessage,
        LogError::InvalidRecord(_) => ResponseError::InvalidRecord,
        // As in Kafka: INVALID_TIMESTAMP when any record's timestamp is refused, whatever else.
        LogError::RecordsRefused { records } => {
            if records
                .iter()
                .any(|r| r.fault == RecordFault::TimestampOutOfBounds)
            {
                ResponseError::InvalidTimestamp
            } else {
                ResponseError::InvalidRecord
            }
        }
        LogError::BatchTooLarge { .. } => ResponseError::MessageTooLarge,
        LogError::InvalidTimestamp(_) => ResponseError::InvalidTimestamp,
        LogError::InvalidProducerEpoch { .. } => ResponseError::InvalidProducerEpoch,
        LogError::OutOfOrderSequence { .. } => ResponseError::OutOfOrderSequenceNumber,
        LogError::InvalidPartitions(_) => ResponseError::InvalidPartitions,
        LogError::Io(_) => ResponseError::KafkaStorageError,
        LogError::ShuttingDown => ResponseError::NotLeaderOrFollower,
    };
    e.code()
}

/// The Kafka error code for an object-storage tier error: every one is retriable for the
/// client (the store may come back, a corrupt object may be re-uploaded).
pub(crate) fn tier_error_code(error: &TierError) -> i16 {
    let e = match error {
        TierError::Store(_)
        | TierError::Io(_)
        | TierError::Corrupt { .. }
        | TierError::LeaseHeld { .. }
        | TierError::LeaseLost { .. } => ResponseError::KafkaStorageError,
    };
    e.code()
}

/// The Kafka error code for a config error.
pub(crate) fn config_error_code(_error: &ConfigError) -> i16 {
    ResponseError::InvalidConfig.code()
}

/// The Kafka error code for a client quota error.
pub(crate) fn quota_error_code(error: &QuotaError) -> i16 {
    match error {
        QuotaError::Invalid(_) => ResponseError::InvalidRequest.code(),
        QuotaError::Io { .. } | QuotaError::Corrupt { .. } => {
            ResponseError::KafkaStorageError.code()
        }
    }
}

/// The Kafka error code for a refused dynamic broker config. Kafka answers a key it cannot
/// change at runtime, and a value that fails validation, with INVALID_REQUEST (KAFKA-13609 keeps
/// it so); Cairn refuses an unknown key (which Kafka would store as a custom config) with
/// INVALID_CONFIG, as Kafka does for an unknown key in APPEND and SUBTRACT.
pub(crate) fn dynamic_config_error_code(error: &DynamicConfigError) -> i16 {
    let e = match error {
        DynamicConfigError::UnknownName(_) => ResponseError::InvalidConfig,
        DynamicConfigError::NotDynamic(_)
        | DynamicConfigError::RestartOnly(_)
        | DynamicConfigError::InvalidValue(_) => ResponseError::InvalidRequest,
        DynamicConfigError::Io { .. } | DynamicConfigError::Corrupt { .. } => {
            ResponseError::KafkaStorageError
        }
    };
    e.code()
}

pub(crate) fn code(e: ResponseError) -> i16 {
    e.code()
}

/// The Kafka error code for a group or client-metrics config error. Kafka answers an unknown
/// client-metrics key or an out-of-range push interval with INVALID_REQUEST, and every other
/// refusal of a value with INVALID_CONFIG.
pub(crate) fn resource_config_error_code(error: &ResourceConfigError) -> i16 {
    let e = match error {
        ResourceConfigError::UnknownName {
            kind: ResourceKind::ClientMetrics,
            ..
        }
        | ResourceConfigError::OutOfRange {
            kind: ResourceKind::ClientMetrics,
            ..
        } => ResponseError::InvalidRequest,
        ResourceConfigError::UnknownName { .. }
        | ResourceConfigError::InvalidValue { .. }
        | ResourceConfigError::OutOfRange { .. } => ResponseError::InvalidConfig,
        ResourceConfigError::Io { .. } | ResourceConfigError::Corrupt { .. } => {
            ResponseError::KafkaStorageError
        }
    };
    e.code()
}

/// The Kafka error code for a cluster (etcd) failure.
pub(crate) fn cluster_error_code(error: &crate::cluster::ClusterError) -> i16 {
    use crate::cluster::ClusterError;
    code(match error {
        ClusterError::TopicExists(_) => ResponseError::TopicAlreadyExists,
        ClusterError::UnknownTopic(_) => ResponseError::UnknownTopicOrPartition,
        ClusterError::InvalidPartitions(_) => ResponseError::InvalidPartitions,
        ClusterError::Config(_) => ResponseError::InvalidRequest,
        ClusterError::InvalidReplicationFactor(_) => ResponseError::InvalidReplicationFactor,
        // etcd unreachable, no live broker, a concurrent change: the client may retry.
        ClusterError::Etcd(_)
        | ClusterError::NoLiveBrokers
        | ClusterError::Conflict(_)
        | ClusterError::DuplicateNodeId { .. } => ResponseError::RequestTimedOut,
    })
}
