//! Parquet objects of the lake back into Arrow batches and typed rows, without DuckDB: the
//! compact function reads and rewrites the lake with these alone.

use arrow::array::{
    Array, ArrayRef, Int16Array, Int32Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray, new_null_array,
};
use arrow::datatypes::SchemaRef;
use bytes::Bytes;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use std::net::IpAddr;

use super::writer::LakeError;
use crate::correlate::NatRow;
use crate::model::NatEventKind;

/// All batches of one Parquet object.
pub fn parquet_batches(bytes: Bytes) -> Result<Vec<RecordBatch>, LakeError> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)?
        .with_batch_size(64 * 1024)
        .build()?;
    Ok(reader.collect::<Result<Vec<_>, _>>()?)
}

/// `batch` with exactly the columns of `schema`, in its order: columns the object lacks (written
/// by an older version) become nulls, types are cast where they differ. A column the schema does
/// not know (written by a newer version) is an error: rewriting without it would lose data.
pub fn conform(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch, LakeError> {
    if let Some(extra) = batch
        .schema()
        .fields()
        .iter()
        .find(|f| schema.field_with_name(f.name()).is_err())
    {
        return Err(LakeError::Schema(format!(
            "column {:?} is not in this version's schema; refusing to rewrite the object without it",
            extra.name()
        )));
    }
    let columns = schema
        .fields()
        .iter()
        .map(|f| match batch.column_by_name(f.name()) {
            Some(c) if c.data_type() == f.data_type() => Ok(c.clone()),
            Some(c) => Ok(arrow::compute::cast(c, f.data_type())?),
            None => Ok(new_null_array(f.data_type(), batch.num_rows())),
        })
        .collect::<Result<Vec<ArrayRef>, LakeError>>()?;
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

fn col<'a, T: 'static>(batch: &'a RecordBatch, name: &str) -> Result<&'a T, LakeError> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<T>())
        .ok_or_else(|| LakeError::Schema(format!("column {name:?} missing or of another type")))
}

/// The rows of a `nat_events` (or `nat_carry`) batch as the correlation wants them. Rows the
/// lake should never hold (no public address, unknown event name) are skipped, not guessed at.
pub fn nat_rows(batch: &RecordBatch) -> Result<Vec<NatRow>, LakeError> {
    Ok(nat_rows_indexed(batch)?
        .into_iter()
        .map(|(_, r)| r)
        .collect())
}

/// [`nat_rows`] with each row's index in `batch`.
pub fn nat_rows_indexed(batch: &RecordBatch) -> Result<Vec<(usize, NatRow)>, LakeError> {
    let time = col::<TimestampMicrosecondArray>(batch, "time")?;
    let event = col::<StringArray>(batch, "event")?;
    let protocol = col::<Int16Array>(batch, "protocol")?;
    let src_ip = col::<StringArray>(batch, "src_ip")?;
    let src_port = col::<Int32Array>(batch, "src_port")?;
    let x_ip = col::<StringArray>(batch, "x_ip")?;
    let x_port = col::<Int32Array>(batch, "x_port")?;
    let x_port_end = col::<Int32Array>(batch, "x_port_end")?;
    let dst_ip = col::<StringArray>(batch, "dst_ip")?;
    let dst_port = col::<Int32Array>(batch, "dst_port")?;
    let vrf = col::<StringArray>(batch, "vrf")?;
    let direction = col::<StringArray>(batch, "direction")?;
    let device = col::<StringArray>(batch, "device")?;
    let end_time = col::<TimestampMicrosecondArray>(batch, "end_time")?;
    let subscriber = col::<StringArray>(batch, "subscriber")?;
    let raw_key = col::<StringArray>(batch, "raw_key")?;
    let raw_record = col::<Int64Array>(batch, "raw_record")?;

    fn s(a: &StringArray, i: usize) -> Option<String> {
        a.is_valid(i).then(|| a.value(i).to_owned())
    }
    fn ip(a: &StringArray, i: usize) -> Option<IpAddr> {
        a.is_valid(i).then(|| a.value(i).parse().ok()).flatten()
    }
    fn port(a: &Int32Array, i: usize) -> Option<u16> {
        a.is_valid(i)
            .then(|| u16::try_from(a.value(i)).ok())
            .flatten()
    }

    let mut out = Vec::with_capacity(batch.num_rows());
    for i in 0..batch.num_rows() {
        let Some(ev) = event
            .is_valid(i)
            .then(|| NatEventKind::parse(event.value(i)))
            .flatten()
        else {
            continue;
        };
        let Some(x) = ip(x_ip, i) else { continue };
        if time.is_null(i) {
            continue;
        }
        out.push((
            i,
            NatRow {
                time: time.value(i),
                event: ev,
                protocol: protocol
                    .is_valid(i)
                    .then(|| u8::try_from(protocol.value(i)).ok())
                    .flatten(),
                src_ip: ip(src_ip, i),
                src_port: port(src_port, i),
                x_ip: x,
                x_port: port(x_port, i),
                x_port_end: port(x_port_end, i),
                dst_ip: ip(dst_ip, i),
                dst_port: port(dst_port, i),
                vrf: s(vrf, i),
                direction: s(direction, i),
                device: s(device, i),
                end_time: end_time.is_valid(i).then(|| end_time.value(i)),
                subscriber: s(subscriber, i),
                raw_key: s(raw_key, i).unwrap_or_default(),
                raw_record: raw_record
                    .is_valid(i)
                    .then(|| u64::try_from(raw_record.value(i)).ok())
                    .flatten()
                    .unwrap_or(0),
            },
        ));
    }
    Ok(out)
}

/// A row's (raw_key, raw_record) as stored.
pub type RowProvenance<'a> = (Option<&'a str>, Option<i64>);

/// The (raw_key, raw_record) of every row: the provenance that identifies a row across copies.
pub fn provenance(batch: &RecordBatch) -> Result<Vec<RowProvenance<'_>>, LakeError> {
    let key = col::<StringArray>(batch, "raw_key")?;
    let rec = col::<Int64Array>(batch, "raw_record")?;
    Ok((0..batch.num_rows())
        .map(|i| {
            (
                key.is_valid(i).then(|| key.value(i)),
                rec.is_valid(i).then(|| rec.value(i)),
            )
        })
        .collect())
}
