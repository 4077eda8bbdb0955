//! Parquet objects of the lake back into Arrow batches and typed rows, without DuckDB: the
//! compact function reads and rewrites the lake with these alone.

use arrow::array::{
    Array, ArrayRef, Int16Array, Int32Array, Int64Array, Int64Builder, RecordBatch, StringArray,
    TimestampMicrosecondArray, new_null_array,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use bytes::Bytes;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use std::net::IpAddr;
use std::sync::Arc;

use super::columns::RECV_DELAY;

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
/// Event objects written before `recv_delay_us` hold `recv_time`: the delay is derived from it,
/// and a receive time it cannot express is an error for the same reason.
pub fn conform(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch, LakeError> {
    let legacy_recv = schema.field_with_name(RECV_DELAY).is_ok()
        && batch.column_by_name(RECV_DELAY).is_none()
        && batch.column_by_name(RECV_TIME).is_some();
    if let Some(extra) = batch.schema().fields().iter().find(|f| {
        schema.field_with_name(f.name()).is_err() && !(legacy_recv && f.name() == RECV_TIME)
    }) {
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
            None if legacy_recv && f.name() == RECV_DELAY => recv_delay_of(batch),
            None => Ok(new_null_array(f.data_type(), batch.num_rows())),
        })
        .collect::<Result<Vec<ArrayRef>, LakeError>>()?;
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

/// The receive time's stored name before `recv_delay_us`, and still the name users see.
const RECV_TIME: &str = "recv_time";

/// A timestamp column as µs since the epoch (whatever its unit or zone label), or None when the
/// batch lacks it.
fn micros(batch: &RecordBatch, name: &str) -> Result<Option<Int64Array>, LakeError> {
    let Some(c) = batch.column_by_name(name) else {
        return Ok(None);
    };
    let DataType::Timestamp(_, tz) = c.data_type() else {
        return Err(LakeError::Schema(format!(
            "column {name:?} is {}, not a timestamp",
            c.data_type()
        )));
    };
    // The unit only: a zone label never moves the stored instant.
    let us = arrow::compute::cast(c, &DataType::Timestamp(TimeUnit::Microsecond, tz.clone()))?;
    let us = arrow::compute::cast(&us, &DataType::Int64)?;
    Ok(us.as_any().downcast_ref::<Int64Array>().cloned())
}

/// `recv_time − time` of a batch that stores `recv_time` (an object from before the delay).
fn recv_delay_of(batch: &RecordBatch) -> Result<ArrayRef, LakeError> {
    let recv = micros(batch, RECV_TIME)?
        .ok_or_else(|| LakeError::Schema(format!("column {RECV_TIME:?} missing")))?;
    let time = micros(batch, "time")?;
    let mut out = Int64Builder::with_capacity(batch.num_rows());
    for i in 0..batch.num_rows() {
        if recv.is_null(i) {
            out.append_null();
            continue;
        }
        // Without `time` (normalize always sets it) or past i64, the receive time has no delay
        // to be stored as: refuse, as for an unknown column, rather than drop it.
        let delay = time
            .as_ref()
            .filter(|t| t.is_valid(i))
            .and_then(|t| recv.value(i).checked_sub(t.value(i)))
            .ok_or_else(|| {
                LakeError::Schema(format!(
                    "row {i}: recv_time {} cannot be stored as a delay after time {}",
                    recv.value(i),
                    time.as_ref()
                        .filter(|t| t.is_valid(i))
                        .map_or("null".to_string(), |t| t.value(i).to_string())
                ))
            })?;
        out.append_value(delay);
    }
    Ok(Arc::new(out.finish()))
}

/// `batch` as users see its rows: an event batch's `recv_delay_us` replaced, in place, by
/// `recv_time` = `time` + delay (UTC µs), as the views in `queries/views.sql` show it. Batches
/// that store `recv_time` (rejects, older objects) are returned as they are.
pub fn with_recv_time(batch: &RecordBatch) -> Result<RecordBatch, LakeError> {
    let schema = batch.schema();
    let Ok(at) = schema.index_of(RECV_DELAY) else {
        return Ok(batch.clone());
    };
    let delay = batch
        .column(at)
        .as_any()
        .downcast_ref::<Int64Array>()
        .ok_or_else(|| LakeError::Schema(format!("column {RECV_DELAY:?} is not int64")))?;
    let time = micros(batch, "time")?;
    // A sum past i64 (never from a delay this version derived) is a null, not a wrapped time.
    let recv: TimestampMicrosecondArray = (0..batch.num_rows())
        .map(|i| {
            let t = time.as_ref().filter(|t| t.is_valid(i))?.value(i);
            delay.is_valid(i).then(|| t.checked_add(delay.value(i)))?
        })
        .collect::<TimestampMicrosecondArray>()
        .with_timezone("UTC");
    let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields[at] = Field::new(RECV_TIME, recv.data_type().clone(), true);
    let mut columns = batch.columns().to_vec();
    columns[at] = Arc::new(recv);
    Ok(RecordBatch::try_new(
        Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone())),
        columns,
    )?)
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
        if !a.is_valid(i) {
            return None;
        }
        let s = a.value(i);
        // The lake's dotted quads without the standard parser (a tenth of the carry's
        // instructions); anything else, IPv6 included, as before.
        match crate::parsers::util::dotted_quad(s.as_bytes()) {
            Some(v4) => Some(IpAddr::V4(v4)),
            None => s.parse().ok(),
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lake::compact::table_schema;
    use crate::model::{NatEventKind, Table};
    use crate::testing::nat_row;
    use arrow::array::AsArray;
    use arrow::datatypes::{Int64Type, TimestampMicrosecondType};

    /// 2026-11-23T00:00Z
    const T: i64 = 1_795_392_000_000_000;

    /// A batch as versions before the delay wrote it: `time` and `recv_time` (timestamp[us, UTC])
    /// and the NAT columns that matter here.
    fn old_batch(time: &[Option<i64>], recv: &[Option<i64>]) -> RecordBatch {
        let ts = |v: &[Option<i64>]| -> ArrayRef {
            Arc::new(TimestampMicrosecondArray::from(v.to_vec()).with_timezone("UTC"))
        };
        let n = time.len();
        let schema = Schema::new(vec![
            Field::new(
                "time",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                true,
            ),
            Field::new("x_ip", DataType::Utf8, true),
            Field::new(
                "recv_time",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                true,
            ),
            Field::new("raw_record", DataType::Int64, true),
        ]);
        RecordBatch::try_new(
            Arc::new(schema),
            vec![
                ts(time),
                Arc::new(StringArray::from(vec!["198.51.100.7"; n])),
                ts(recv),
                Arc::new(Int64Array::from((0..n as i64).collect::<Vec<_>>())),
            ],
        )
        .expect("batch")
    }

    #[test]
    fn an_old_objects_receive_time_becomes_its_delay() {
        let time = [Some(T), Some(T + 5), Some(T + 9), Some(T)];
        let recv = [Some(T + 20_000), Some(T), None, Some(T + 3_600_000_000)];
        let schema = table_schema(Table::NatEvents);
        let got = conform(&old_batch(&time, &recv), &schema).expect("conform");
        assert_eq!(got.schema(), schema);
        let d = got
            .column_by_name(RECV_DELAY)
            .expect("delay")
            .as_primitive::<Int64Type>();
        // 20 ms late; 5 µs early (device clock ahead); no receive time; an hour late.
        assert_eq!(
            d.iter().collect::<Vec<_>>(),
            [Some(20_000), Some(-5), None, Some(3_600_000_000)]
        );
        // And back: the receive times as stored.
        let shown = with_recv_time(&got).expect("shown");
        let r = shown
            .column_by_name("recv_time")
            .expect("recv_time")
            .as_primitive::<TimestampMicrosecondType>();
        assert_eq!(r.iter().collect::<Vec<_>>(), recv);
        assert_eq!(
            shown.schema().index_of("recv_time").ok(),
            schema.index_of(RECV_DELAY).ok()
        );
        assert!(shown.column_by_name(RECV_DELAY).is_none());
        // Batches that store recv_time already (rejects, old objects) are shown as they are.
        let old = old_batch(&time, &recv);
        assert_eq!(with_recv_time(&old).expect("old"), old);
    }

    #[test]
    fn a_receive_time_without_a_delay_to_store_is_refused_not_dropped() {
        let schema = table_schema(Table::NatEvents);
        // A row with a receive time but no event time: nothing to store it against.
        let e = conform(&old_batch(&[Some(T), None], &[Some(T), Some(T)]), &schema)
            .expect_err("no time");
        assert!(e.to_string().contains("row 1"), "{e}");
        // A difference past i64.
        let e =
            conform(&old_batch(&[Some(i64::MAX)], &[Some(-10)]), &schema).expect_err("overflow");
        assert!(e.to_string().contains("cannot be stored as a delay"), "{e}");
        // A row with neither is just a row without a receive time.
        let got = conform(&old_batch(&[None], &[None]), &schema).expect("nulls");
        assert_eq!(
            got.column_by_name(RECV_DELAY).expect("delay").null_count(),
            1
        );
    }

    #[test]
    fn a_batch_with_both_forms_is_refused() {
        // recv_time beside recv_delay_us is a column this version does not write: rewriting
        // the object would drop it.
        let schema = table_schema(Table::NatEvents);
        let old = old_batch(&[Some(T)], &[Some(T + 1)]);
        let both = conform(&old, &schema).expect("conform");
        let mut fields: Vec<Field> = both
            .schema()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        fields.push(Field::new(
            "recv_time",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            true,
        ));
        let mut cols = both.columns().to_vec();
        cols.push(old.column_by_name("recv_time").expect("recv_time").clone());
        let both = RecordBatch::try_new(Arc::new(Schema::new(fields)), cols).expect("batch");
        let e = conform(&both, &schema).expect_err("both");
        assert!(e.to_string().contains("recv_time"), "{e}");
    }

    #[test]
    fn written_rows_store_the_delay_and_show_their_receive_time() {
        use crate::lake::writer::{WriteOptions, encode_outputs};
        let mut rows: Vec<_> = (0..3u16)
            .map(|i| {
                nat_row(
                    T + i64::from(i) * 1_000_000,
                    NatEventKind::SessionCreate,
                    "100.64.0.9",
                    1024 + i,
                    "raw/k",
                    u64::from(i),
                )
            })
            .collect();
        rows[0].envelope.recv_time = T - 1_500_000; // the device's clock 1.5 s ahead
        rows[1].envelope.recv_time = T + 1_000_000 + 17_250;
        let outs = encode_outputs("raw/k", &rows, &[], &WriteOptions::ingest()).expect("encode");
        let batches = parquet_batches(outs[0].1.clone()).expect("read");
        let b = &batches[0];
        assert!(b.column_by_name("recv_time").is_none());
        let d = b
            .column_by_name(RECV_DELAY)
            .expect("delay")
            .as_primitive::<Int64Type>();
        assert_eq!(d.values().to_vec(), [-1_500_000, 17_250, 0]);
        let shown = with_recv_time(b).expect("shown");
        let r = shown
            .column_by_name("recv_time")
            .expect("recv_time")
            .as_primitive::<TimestampMicrosecondType>();
        let want: Vec<i64> = rows.iter().map(|r| r.envelope.recv_time).collect();
        assert_eq!(r.values().to_vec(), want);
        assert_eq!(r.timezone(), Some("UTC"));
    }
}
