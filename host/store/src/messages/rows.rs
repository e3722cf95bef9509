//! Conversion between `fleetspeak.Message` and rows of `messages` ⋈ `pending_messages`.

use fleetgate_types::pb::fleetspeak::{
    Address, Annotations, Message, MessageResult, ValidationInfo,
};
use fleetgate_types::{MessageId, message};
use prost::Message as _;
use prost_types::{Any, Timestamp};
use sea_orm::Value;

use crate::StoreError;
use crate::api::Result;
use crate::db::Row;

/// The `messages` columns every message read selects, in [`decode`] order, followed by the two
/// payload columns (`pm.data_type_url, pm.data_value` or `NULL, NULL`).
pub(crate) const MSG_COLS: &str = "m.message_id, m.source_client_id, m.source_service_name, \
     m.source_message_id, m.destination_client_id, m.destination_service_name, m.message_type, \
     m.creation_time_seconds, m.creation_time_nanos, m.processed_time_seconds, m.processed_time_nanos, \
     m.failed, m.failed_reason, m.validation_info, m.annotations";

/// The payload columns, or NULLs when the caller does not want data.
pub(crate) fn data_cols(want_data: bool) -> &'static str {
    if want_data {
        "pm.data_type_url, pm.data_value"
    } else {
        "NULL, NULL"
    }
}

/// Builds a message from a row selected with [`MSG_COLS`] and [`data_cols`].
pub(crate) fn decode(r: &Row<'_>) -> Result<Message> {
    let processed = r.opt_i64(9)?;
    let result = processed.map(|secs| -> Result<MessageResult> {
        Ok(MessageResult {
            processed_time: Some(Timestamp {
                seconds: secs,
                nanos: nanos(r.opt_i64(10)?.unwrap_or(0)),
            }),
            failed: r.opt_i64(11)?.unwrap_or(0) != 0,
            failed_reason: r.string(12)?,
        })
    });
    let data = r.opt_string(15)?.map(|type_url| -> Result<Any> {
        Ok(Any {
            type_url,
            value: r.bytes(16)?,
        })
    });
    Ok(Message {
        message_id: r.bytes(0)?,
        source: Some(Address {
            client_id: r.bytes(1)?,
            service_name: r.string(2)?,
        }),
        source_message_id: r.bytes(3)?,
        destination: Some(Address {
            client_id: r.bytes(4)?,
            service_name: r.string(5)?,
        }),
        message_type: r.string(6)?,
        creation_time: Some(Timestamp {
            seconds: r.i64(7)?,
            nanos: nanos(r.i64(8)?),
        }),
        data: data.transpose()?,
        validation_info: decode_opt::<ValidationInfo>(r.opt_bytes(13)?, "validation_info")?,
        result: result.transpose()?,
        annotations: decode_opt::<Annotations>(r.opt_bytes(14)?, "annotations")?,
        ..Default::default()
    })
}

fn nanos(v: i64) -> i32 {
    i32::try_from(v).unwrap_or(0)
}

fn decode_opt<T: prost::Message + Default>(b: Option<Vec<u8>>, what: &str) -> Result<Option<T>> {
    match b {
        Some(b) if !b.is_empty() => {
            T::decode(b.as_slice())
                .map(Some)
                .map_err(|e| StoreError::Backend {
                    op: "decode message",
                    message: format!("bad {what}: {e}"),
                    retryable: false,
                })
        }
        _ => Ok(None),
    }
}

fn bytes_or_null(b: &[u8]) -> Value {
    if b.is_empty() {
        Value::Bytes(None)
    } else {
        b.to_vec().into()
    }
}

/// The values of one `messages` row in [`INSERT_COLS`] order.
pub(crate) const INSERT_COLS: &str = "message_id, source_client_id, source_service_name, source_message_id, \
     destination_client_id, destination_service_name, message_type, creation_time_seconds, creation_time_nanos, \
     processed_time_seconds, processed_time_nanos, failed, failed_reason, validation_info, annotations";
pub(crate) const INSERT_NCOLS: usize = 15;

/// A message about to be written: its id, where it goes and its column values.
pub(crate) struct NewRow {
    pub(crate) id: MessageId,
    pub(crate) for_server: bool,
    pub(crate) values: Vec<Value>,
    /// The pending row's payload, `None` when the message is already finished.
    pub(crate) pending: Option<(Option<String>, Option<Vec<u8>>)>,
}

/// Validates `m` and lays out its row. A message with a result gets no pending row and no payload.
pub(crate) fn encode(m: &Message) -> Result<NewRow> {
    let id = message::message_id(m).map_err(|e| StoreError::Invalid(e.to_string()))?;
    let dest = message::destination_client(m).map_err(|e| StoreError::Invalid(e.to_string()))?;
    let ct = m.creation_time.unwrap_or_default();
    let src = m.source.clone().unwrap_or_default();
    let dst = m.destination.clone().unwrap_or_default();
    let res = m.result.as_ref();
    let pt = res.map(|r| r.processed_time.unwrap_or_default());
    let failed = res.filter(|r| r.failed);
    let values: Vec<Value> = vec![
        id.to_vec().into(),
        bytes_or_null(&src.client_id),
        src.service_name.into(),
        bytes_or_null(&m.source_message_id),
        dest.map(|d| d.to_vec()).into(),
        dst.service_name.into(),
        m.message_type.clone().into(),
        ct.seconds.into(),
        i64::from(ct.nanos).into(),
        pt.map(|t| t.seconds).into(),
        pt.map(|t| i64::from(t.nanos)).into(),
        failed.map(|_| 1i64).into(),
        failed.map(|r| r.failed_reason.clone()).into(),
        m.validation_info.as_ref().map(|v| v.encode_to_vec()).into(),
        m.annotations.as_ref().map(|a| a.encode_to_vec()).into(),
    ];
    let pending = res.is_none().then(|| match &m.data {
        Some(a) => (Some(a.type_url.clone()), Some(a.value.clone())),
        None => (None, None),
    });
    Ok(NewRow {
        id,
        for_server: dest.is_none(),
        values,
        pending,
    })
}

/// New rows must carry a creation time (checked only on insert, as in the original).
pub(crate) fn check_creation_time(m: &Message) -> Result<()> {
    if m.creation_time.map(|t| t.seconds).unwrap_or(0) == 0 {
        return Err(StoreError::Invalid(
            "message CreationTime must be set".into(),
        ));
    }
    Ok(())
}
