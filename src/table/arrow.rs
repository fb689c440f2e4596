//! Tables as Arrow record batches (feature `arrow`) and Parquet files (feature `parquet`).

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Date32Type, Date64Type, Float64Type, TimestampMicrosecondType, TimestampMillisecondType,
    TimestampNanosecondType, TimestampSecondType,
};
use arrow_array::{Array, ArrayRef, Float32Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use chrono::{DateTime, NaiveDateTime};

use super::{Columns, ForecastTable, LongTable, Rows, TableOptions, parse_timestamp, table_error};
use crate::error::Result;

impl LongTable {
    /// Reads long-format rows from Arrow record batches (one schema; pyarrow's, polars' or
    /// DataFusion's), with the columns, grid and refusals of [`LongTable::from_csv`]. The item
    /// column may be any type Arrow casts to text (strings, integers, dictionaries); the target
    /// and covariates any numeric type (null is a missing value); timestamps `Timestamp` of any
    /// unit (with a time zone: taken in UTC), `Date32`, `Date64`, or text as in CSV. An error's
    /// row is the row's index in the batches taken together, from 0 (pandas' and pyarrow's).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use arrow_array::{Float64Array, RecordBatch, StringArray, TimestampSecondArray};
    /// use toto_fallback::table::{Frequency, LongTable, TableOptions};
    ///
    /// let batch = RecordBatch::try_from_iter([
    ///     ("unique_id", Arc::new(StringArray::from(vec!["a", "a", "a"])) as _),
    ///     ("ds", Arc::new(TimestampSecondArray::from(vec![0, 3600, 10_800])) as _),
    ///     ("y", Arc::new(Float64Array::from(vec![Some(1.0), None, Some(3.0)])) as _),
    /// ])
    /// .unwrap();
    /// let table = LongTable::from_record_batches(&[batch], &TableOptions::default())?;
    /// assert_eq!(table.frequency(), Frequency::Fixed { seconds: 3600 });
    /// assert_eq!(table.items()[0].target.len(), 4); // 02:00 is missing
    /// # Ok::<(), toto_fallback::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Table`](crate::error::Error::Table) as [`LongTable::from_csv`], and for a column of a
    /// type that cannot hold its role, or batches of different schemas.
    pub fn from_record_batches(batches: &[RecordBatch], options: &TableOptions) -> Result<Self> {
        let Some(first) = batches.first() else {
            return Err(table_error(
                None,
                "",
                "the table has no rows (no record batch)",
            ));
        };
        let schema = first.schema();
        let names: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
        let columns = Columns::resolve(names, options, None)?;
        let mut rows = Rows::default();
        let mut offset = 0;
        for batch in batches {
            if batch.schema().fields() != schema.fields() {
                return Err(table_error(
                    Some(offset),
                    "",
                    format!(
                        "this record batch's schema {:?} differs from the first batch's {:?}",
                        batch.schema().fields(),
                        schema.fields()
                    ),
                ));
            }
            let name = |c: usize| columns.names[c].as_str();
            let ids = cast(
                batch.column(columns.item),
                &DataType::Utf8,
                name(columns.item),
            )?;
            let ids = ids.as_string::<i32>();
            let times = timestamps(
                batch.column(columns.time),
                name(columns.time),
                &columns,
                offset,
            )?;
            let target = numbers(batch.column(columns.target), name(columns.target))?;
            let covariates = columns
                .covariates
                .iter()
                .map(|&c| numbers(batch.column(c), name(c)))
                .collect::<Result<Vec<_>>>()?;
            for r in 0..batch.num_rows() {
                let id = if ids.is_null(r) {
                    ""
                } else {
                    ids.value(r).trim()
                };
                rows.push(
                    &columns,
                    offset + r,
                    id,
                    times[r],
                    target[r],
                    covariates.iter().map(|c| c[r]).collect(),
                )?;
            }
            offset += batch.num_rows();
        }
        rows.finish(&columns, options)
    }

    /// Reads a Parquet file (feature `parquet`) through [`LongTable::from_record_batches`].
    ///
    /// # Errors
    /// [`Error::Io`](crate::error::Error::Io) when the file cannot be opened; [`Error::Table`](crate::error::Error::Table)
    /// when it is not Parquet or a page cannot be decoded, and as
    /// [`LongTable::from_record_batches`].
    #[cfg(feature = "parquet")]
    #[cfg_attr(docsrs, doc(cfg(feature = "parquet")))]
    pub fn read_parquet(path: impl AsRef<std::path::Path>, options: &TableOptions) -> Result<Self> {
        use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
        let path = path.as_ref();
        let file =
            std::fs::File::open(path).map_err(|e| crate::error::Error::io(path.display(), e))?;
        let unreadable =
            |e: &dyn std::fmt::Display| table_error(None, "", format!("{}: {e}", path.display()));
        let reader = ParquetRecordBatchReaderBuilder::try_new(file)
            .map_err(|e| unreadable(&e))?
            .build()
            .map_err(|e| unreadable(&e))?;
        let batches = reader
            .collect::<std::result::Result<Vec<RecordBatch>, _>>()
            .map_err(|e| unreadable(&e))?;
        Self::from_record_batches(&batches, options)
    }
}

impl ForecastTable {
    /// The rows as one Arrow record batch: `item_id` (Utf8), `timestamp` (Timestamp in
    /// microseconds, no time zone), `mean` and a column per level named by it (Float32).
    ///
    /// # Errors
    /// [`Error::Table`](crate::error::Error::Table) if Arrow refuses the batch (it does not for
    /// tables this type builds).
    pub fn to_record_batch(&self) -> Result<RecordBatch> {
        let mut fields = vec![
            Field::new("item_id", DataType::Utf8, false),
            Field::new(
                "timestamp",
                DataType::Timestamp(TimeUnit::Microsecond, None),
                false,
            ),
            Field::new("mean", DataType::Float32, false),
        ];
        fields.extend(
            self.levels
                .iter()
                .map(|q| Field::new(q.to_string(), DataType::Float32, false)),
        );
        let mut arrays: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from_iter_values(
                self.rows.iter().map(|r| r.0.as_str()),
            )),
            Arc::new(arrow_array::TimestampMicrosecondArray::from_iter_values(
                self.rows.iter().map(|r| r.1.and_utc().timestamp_micros()),
            )),
            Arc::new(Float32Array::from_iter_values(
                self.rows.iter().map(|r| r.2),
            )),
        ];
        for l in 0..self.levels.len() {
            arrays.push(Arc::new(Float32Array::from_iter_values(
                self.rows.iter().map(|r| r.3[l]),
            )));
        }
        RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)
            .map_err(|e| table_error(None, "", format!("building the record batch failed: {e}")))
    }

    /// Writes the rows as a Parquet file (feature `parquet`, Snappy pages): the columns of
    /// [`ForecastTable::to_record_batch`].
    ///
    /// # Errors
    /// [`Error::Table`](crate::error::Error::Table) when writing fails.
    #[cfg(feature = "parquet")]
    #[cfg_attr(docsrs, doc(cfg(feature = "parquet")))]
    pub fn write_parquet(&self, writer: impl std::io::Write + Send) -> Result<()> {
        use parquet::arrow::ArrowWriter;
        use parquet::basic::Compression;
        use parquet::file::properties::WriterProperties;
        let batch = self.to_record_batch()?;
        let failed = |e: parquet::errors::ParquetError| {
            table_error(None, "", format!("writing Parquet failed: {e}"))
        };
        let properties = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .build();
        let mut parquet =
            ArrowWriter::try_new(writer, batch.schema(), Some(properties)).map_err(failed)?;
        parquet.write(&batch).map_err(failed)?;
        parquet.close().map_err(failed)?;
        Ok(())
    }
}

/// `array` cast to `to` by arrow-cast; refused naming `column` when Arrow cannot.
fn cast(array: &ArrayRef, to: &DataType, column: &str) -> Result<ArrayRef> {
    arrow_cast::cast(array, to).map_err(|e| {
        table_error(
            None,
            column,
            format!("a {} column cannot be read as {to}: {e}", array.data_type()),
        )
    })
}

/// A numeric column as f32 values, null as NaN.
fn numbers(array: &ArrayRef, column: &str) -> Result<Vec<f32>> {
    if !array.data_type().is_numeric() && array.data_type() != &DataType::Null {
        return Err(table_error(
            None,
            column,
            format!("a {} column is not numbers", array.data_type()),
        ));
    }
    let values = cast(array, &DataType::Float64, column)?;
    let values = values.as_primitive::<Float64Type>();
    Ok((0..values.len())
        .map(|i| {
            if values.is_null(i) {
                f32::NAN
            } else {
                values.value(i) as f32
            }
        })
        .collect())
}

/// A timestamp column's values; a null or unreadable one refused naming its row.
fn timestamps(
    array: &ArrayRef,
    column: &str,
    columns: &Columns,
    offset: usize,
) -> Result<Vec<NaiveDateTime>> {
    let raw: Vec<Option<NaiveDateTime>> = match array.data_type() {
        DataType::Timestamp(unit, _) => {
            let at = |v: i64| match unit {
                TimeUnit::Second => DateTime::from_timestamp(v, 0),
                TimeUnit::Millisecond => DateTime::from_timestamp_millis(v),
                TimeUnit::Microsecond => DateTime::from_timestamp_micros(v),
                TimeUnit::Nanosecond => Some(DateTime::from_timestamp_nanos(v)),
            };
            let values: Vec<Option<i64>> = match unit {
                TimeUnit::Second => array.as_primitive::<TimestampSecondType>().iter().collect(),
                TimeUnit::Millisecond => array
                    .as_primitive::<TimestampMillisecondType>()
                    .iter()
                    .collect(),
                TimeUnit::Microsecond => array
                    .as_primitive::<TimestampMicrosecondType>()
                    .iter()
                    .collect(),
                TimeUnit::Nanosecond => array
                    .as_primitive::<TimestampNanosecondType>()
                    .iter()
                    .collect(),
            };
            values
                .into_iter()
                .map(|v| v.and_then(at).map(|t| t.naive_utc()))
                .collect()
        }
        DataType::Date32 => array
            .as_primitive::<Date32Type>()
            .iter()
            .map(|d| d.and_then(|d| DateTime::from_timestamp(i64::from(d) * 86_400, 0)))
            .map(|t| t.map(|t| t.naive_utc()))
            .collect(),
        DataType::Date64 => array
            .as_primitive::<Date64Type>()
            .iter()
            .map(|d| d.and_then(DateTime::from_timestamp_millis))
            .map(|t| t.map(|t| t.naive_utc()))
            .collect(),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
            let text = cast(array, &DataType::Utf8, column)?;
            let text = text.as_string::<i32>();
            let mut out = Vec::with_capacity(text.len());
            for r in 0..text.len() {
                let cell = if text.is_null(r) {
                    ""
                } else {
                    text.value(r).trim()
                };
                out.push(Some(
                    parse_timestamp(cell)
                        .ok_or_else(|| columns.timestamp_error(offset + r, cell))?,
                ));
            }
            out
        }
        other => {
            return Err(table_error(
                None,
                column,
                format!("a {other} column is not timestamps (Timestamp, Date32, Date64 or text)"),
            ));
        }
    };
    raw.into_iter()
        .enumerate()
        .map(|(r, t)| {
            t.ok_or_else(|| {
                table_error(
                    Some(offset + r),
                    column,
                    "a null (or out of range) timestamp; every row needs one",
                )
            })
        })
        .collect()
}
