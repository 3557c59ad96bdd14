//! PostgreSQL's binary `COPY` format: rows written into one buffer, sent with `COPY ... FROM STDIN (FORMAT
//! binary)`.

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use crate::error::{Error, Result};

/// Microseconds from the Unix epoch to PostgreSQL's (2000-01-01 UTC).
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;

/// Rows in PostgreSQL's binary `COPY` format, each field written in the order of the statement's columns.
pub(super) struct CopyRows {
    buffer: Vec<u8>,
}

impl CopyRows {
    /// An empty set of rows (the format's header alone).
    pub(super) fn new() -> Self {
        let mut buffer = Vec::with_capacity(64 * 1024);
        buffer.extend_from_slice(b"PGCOPY\n\xff\r\n\0");
        buffer.extend_from_slice(&0i32.to_be_bytes()); // flags
        buffer.extend_from_slice(&0i32.to_be_bytes()); // header extension
        Self { buffer }
    }

    /// Starts a row of `fields` fields.
    pub(super) fn row(&mut self, fields: i16) -> &mut Self {
        self.buffer.extend_from_slice(&fields.to_be_bytes());
        self
    }

    fn field(&mut self, bytes: &[u8]) -> Result<&mut Self> {
        let length = i32::try_from(bytes.len())
            .map_err(|_| Error::Internal("a field too large to copy".into()))?;
        self.buffer.extend_from_slice(&length.to_be_bytes());
        self.buffer.extend_from_slice(bytes);
        Ok(self)
    }

    fn null(&mut self) -> &mut Self {
        self.buffer.extend_from_slice(&(-1i32).to_be_bytes());
        self
    }

    /// A `uuid` field.
    pub(super) fn uuid(&mut self, value: Uuid) -> Result<&mut Self> {
        self.field(value.as_bytes())
    }

    /// A `text` (or `varchar`) field, null for `None`.
    pub(super) fn text(&mut self, value: Option<&str>) -> Result<&mut Self> {
        match value {
            Some(value) => self.field(value.as_bytes()),
            None => Ok(self.null()),
        }
    }

    /// A `timestamptz` field, null for `None`.
    pub(super) fn timestamp(&mut self, value: Option<DateTime<Utc>>) -> Result<&mut Self> {
        match value {
            Some(value) => {
                let micros = value.timestamp_micros() - PG_EPOCH_MICROS;
                self.field(&micros.to_be_bytes())
            }
            None => Ok(self.null()),
        }
    }

    /// A `jsonb` field: its format version, then the document.
    pub(super) fn jsonb(&mut self, value: &impl Serialize) -> Result<&mut Self> {
        let start = self.buffer.len();
        self.buffer.extend_from_slice(&0i32.to_be_bytes());
        self.buffer.push(1);
        serde_json::to_writer(&mut self.buffer, value)
            .map_err(|e| Error::Internal(format!("encoding a document to copy: {e}")))?;
        let length = i32::try_from(self.buffer.len() - start - 4)
            .map_err(|_| Error::Internal("a field too large to copy".into()))?;
        self.buffer[start..start + 4].copy_from_slice(&length.to_be_bytes());
        Ok(self)
    }

    /// The rows with the format's trailer.
    pub(super) fn finish(mut self) -> Vec<u8> {
        self.buffer.extend_from_slice(&(-1i16).to_be_bytes());
        self.buffer
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_in_the_binary_format() {
        let time = DateTime::parse_from_rfc3339("2000-01-01T00:00:01.000002Z")
            .expect("time")
            .with_timezone(&Utc);
        let mut rows = CopyRows::new();
        rows.row(4)
            .uuid(Uuid::nil())
            .and_then(|r| r.text(None))
            .and_then(|r| r.timestamp(Some(time)))
            .and_then(|r| r.jsonb(&serde_json::json!({"a": "b"})))
            .expect("row");
        let bytes = rows.finish();
        let mut expected = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0".to_vec();
        expected.extend_from_slice(&[0, 4]);
        expected.extend_from_slice(&[0, 0, 0, 16]);
        expected.extend_from_slice(&[0; 16]);
        expected.extend_from_slice(&[0xff; 4]);
        expected.extend_from_slice(&[0, 0, 0, 8]);
        expected.extend_from_slice(&1_000_002i64.to_be_bytes());
        expected.extend_from_slice(&[0, 0, 0, 10, 1]);
        expected.extend_from_slice(br#"{"a":"b"}"#);
        expected.extend_from_slice(&[0xff, 0xff]);
        assert_eq!(bytes, expected);
    }
}
