//! Long-format tables (feature `csv`): grids, gaps, frequencies, the refusals, and forecasts
//! written back.

use toto_fallback::Error;
use toto_fallback::table::{ForecastTable, Frequency, LongTable, TableOptions};

fn read(csv: &str) -> Result<LongTable, Error> {
    LongTable::from_csv(csv.as_bytes(), &TableOptions::default())
}

/// The CSV's error's row and column, and that its text contains `needle`.
fn refused(csv: &str, options: &TableOptions, row: Option<usize>, column: &str, needle: &str) {
    refusal(
        LongTable::from_csv(csv.as_bytes(), options),
        row,
        column,
        needle,
    );
}

/// `read` is an [`Error::Table`] at `row` and `column` whose text contains `needle`.
fn refusal(read: Result<LongTable, Error>, row: Option<usize>, column: &str, needle: &str) {
    match read {
        Err(e @ Error::Table { .. }) => {
            let Error::Table {
                row: r, column: c, ..
            } = &e
            else {
                unreachable!()
            };
            assert_eq!((*r, c.as_str()), (row, column), "{e}");
            assert!(e.to_string().contains(needle), "{needle:?} not in: {e}");
        }
        other => panic!("accepted: {other:?}"),
    }
}

/// Hourly rows, unsorted, with a missing hour and an empty cell: sorted, the gap and the cell
/// masked (NaN), nothing dropped; the second item starts later and has its own grid.
#[test]
fn hourly_rows_become_items_on_a_grid() {
    let table = read(
        "item_id,timestamp,target,price\n\
         a,2024-01-01 02:00:00,3,30\n\
         a,2024-01-01 00:00:00,1,10\n\
         a,2024-01-01 04:00:00,,50\n\
         b,2024-01-01 05:00:00,7,70\n\
         b,2024-01-01 06:00:00,8,80\n",
    )
    .unwrap();
    assert_eq!(table.frequency(), Frequency::Fixed { seconds: 3600 });
    assert_eq!(table.frequency().seasonality(), 24);
    let a = &table.items()[0];
    assert_eq!(a.id, "a");
    assert_eq!(a.start.to_string(), "2024-01-01 00:00:00");
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    let nan = f32::NAN;
    assert_eq!(bits(&a.target), bits(&[1.0, nan, 3.0, nan, nan]));
    assert!(a.covariates.is_empty(), "price was not asked for");
    assert_eq!(table.items()[1].target, vec![7.0, 8.0]);
    // The forecast's first step follows each item's last row.
    let f = table.frequency();
    assert_eq!(
        a.timestamp(f, 5).unwrap().to_string(),
        "2024-01-01 05:00:00"
    );
    let series = table.series().unwrap();
    assert_eq!(series.shape(), [2, 1, 5]);
    assert_eq!(series.lengths(), [5, 2]);

    let with_price = LongTable::from_csv(
        "item_id,timestamp,target,price\na,2024-01-01 00:00,1,10\na,2024-01-01 01:00,2,\n"
            .as_bytes(),
        &TableOptions {
            covariates: vec!["price".into()],
            ..TableOptions::default()
        },
    )
    .unwrap();
    assert_eq!(
        bits(&with_price.items()[0].covariates[0]),
        bits(&[10.0, nan])
    );
}

/// Nixtla's column names, calendar frequencies (month starts, month ends, quarters) with a
/// missing month, and a given frequency where every item has one row.
#[test]
fn calendar_frequencies_and_nixtla_names() {
    let months =
        read("unique_id,ds,y\ns,2023-11-01,1\ns,2024-01-01,3\ns,2023-12-01,2\ns,2024-03-01,5\n")
            .unwrap();
    assert_eq!(months.frequency(), Frequency::Months { months: 1 });
    assert_eq!(months.frequency().seasonality(), 12);
    assert_eq!(months.items()[0].target.len(), 5);
    assert!(months.items()[0].target[3].is_nan());

    let ends =
        read("unique_id,ds,y\ns,2024-01-31,1\ns,2024-02-29,2\ns,2024-03-31,3\ns,2024-04-30,4\n")
            .unwrap();
    assert_eq!(ends.frequency(), Frequency::Months { months: 1 });
    let item = &ends.items()[0];
    assert_eq!(
        item.timestamp(ends.frequency(), 4).unwrap().to_string(),
        "2024-05-31 00:00:00"
    );

    let quarters =
        read("unique_id,ds,y\nq,2023-01-01,1\nq,2023-04-01,2\nq,2023-10-01,4\n").unwrap();
    assert_eq!(quarters.frequency(), Frequency::Months { months: 3 });
    assert_eq!(quarters.frequency().seasonality(), 4);
    assert_eq!(quarters.items()[0].target.len(), 4);

    let given = LongTable::from_csv(
        "unique_id,ds,y\na,2024-01-01,1\nb,2024-01-08,2\n".as_bytes(),
        &TableOptions {
            frequency: Some(Frequency::parse("W").unwrap()),
            ..TableOptions::default()
        },
    )
    .unwrap();
    assert_eq!(given.items().len(), 2);
}

/// gluonts' `get_seasonality` for pandas frequencies, and parsing's refusals.
#[test]
fn frequencies_parse_and_have_gluonts_seasonalities() {
    // (frequency, gluonts 0.16's get_seasonality)
    for (text, season) in [
        ("s", 3600),
        ("30s", 120),
        ("min", 1440),
        ("15min", 96),
        ("7min", 1),
        ("h", 24),
        ("2h", 12),
        ("5h", 1),
        ("D", 1),
        ("W", 1),
        ("M", 12),
        ("2M", 6),
        ("Q", 4),
        ("Y", 1),
    ] {
        let f = Frequency::parse(text).unwrap();
        assert_eq!(f.seasonality(), season, "{text}");
        assert_eq!(Frequency::parse(&f.to_string()).unwrap(), f, "{text} → {f}");
    }
    for bad in ["", "0h", "fortnight", "-1D", "1.5h"] {
        assert!(
            matches!(Frequency::parse(bad), Err(Error::Input { .. })),
            "{bad:?} parsed"
        );
    }
}

/// Every refusal names its row (the line in the file) and column.
#[test]
fn bad_tables_are_refused_with_row_and_column() {
    let default = TableOptions::default();
    refused(
        "item_id,timestamp,target\na,2024-01-01,1\na,yesterday,2\n",
        &default,
        Some(3),
        "timestamp",
        "`yesterday` is not a timestamp",
    );
    refused(
        "item_id,timestamp,target\na,2024-01-01,1\na,2024-01-02,abc\n",
        &default,
        Some(3),
        "target",
        "`abc` is not a number",
    );
    refused(
        "item_id,timestamp,target\na,2024-01-01,1\na,2024-01-02,2\na,2024-01-01,3\n",
        &default,
        Some(4),
        "timestamp",
        "twice (rows 2 and 4)",
    );
    refused(
        "item_id,timestamp,target\na,2024-01-01 00:00,1\na,2024-01-01 01:00,2\na,2024-01-01 02:00,3\na,2024-01-01 03:30,4\n",
        &default,
        Some(5),
        "timestamp",
        "irregular grid",
    );
    refused(
        "item_id,timestamp,target\na,2024-01-01,1\n",
        &default,
        None,
        "timestamp",
        "TableOptions::frequency",
    );
    refused("item_id,timestamp,target\n", &default, None, "", "no rows");
    refused(
        "id_of_item,when,what\na,2024-01-01,1\n",
        &default,
        Some(1),
        "item",
        "no item column",
    );
    refused(
        "item_id,timestamp,target\na,2024-01-01,1\n",
        &TableOptions {
            covariates: vec!["price".into()],
            ..default.clone()
        },
        Some(1),
        "price",
        "no such column",
    );
    refused(
        "item_id,timestamp,target\na,2024-01-01 00:00,1\na,2024-01-01 01:30,2\n",
        &TableOptions {
            frequency: Some(Frequency::Fixed { seconds: 3600 }),
            ..default.clone()
        },
        Some(3),
        "timestamp",
        "not on item `a`'s h grid",
    );
    refused(
        "item_id,timestamp,target\n,2024-01-01,1\n",
        &default,
        Some(2),
        "item_id",
        "empty item id",
    );
}

/// Forecast rows: the steps after each item's last row, a column per level, as CSV.
#[test]
fn forecasts_are_written_as_rows() {
    let table = read("item_id,timestamp,target\na,2024-01-31,1\na,2024-02-29,2\n").unwrap();
    let mut out = ForecastTable::new(&[0.1, 0.9]);
    out.push(
        &table.items()[0],
        table.frequency(),
        &[2.5, 3.0],
        &[&[2.0, 2.0], &[3.0, 4.5]],
    )
    .unwrap();
    assert!(matches!(
        out.push(&table.items()[0], table.frequency(), &[1.0], &[&[1.0]]),
        Err(Error::Table { .. })
    ));
    let mut bytes = Vec::new();
    out.write_csv(&mut bytes).unwrap();
    assert_eq!(
        String::from_utf8(bytes).unwrap(),
        "item_id,timestamp,mean,0.1,0.9\n\
         a,2024-03-31 00:00:00,2.5,2,3\n\
         a,2024-04-30 00:00:00,3,2,4.5\n"
    );
}

/// Arrow record batches read as the same CSV reads (feature `arrow`): integer item ids,
/// timestamps with a time zone (taken in UTC) or as dates, nulls as missing values, an integer
/// covariate; the refusals name the row (from 0) and the column.
#[cfg(feature = "arrow")]
#[test]
fn record_batches_read_as_csv_does() {
    use std::sync::Arc;
    use toto_fallback::table::arrow_array::{
        ArrayRef, BooleanArray, Date32Array, Float64Array, Int64Array, RecordBatch, StringArray,
        TimestampNanosecondArray,
    };

    let options = TableOptions {
        covariates: vec!["price".to_owned()],
        ..TableOptions::default()
    };
    let csv = LongTable::from_csv(
        "item_id,timestamp,target,price\n\
         7,2024-01-01 02:00:00,3,30\n\
         7,2024-01-01 00:00:00,1,10\n\
         7,2024-01-01 04:00:00,,50\n\
         9,2024-01-01 05:00:00,7,70\n"
            .as_bytes(),
        &options,
    )
    .unwrap();
    let hour = 3_600_000_000_000i64;
    let t0 = 1_704_067_200i64 * 1_000_000_000; // 2024-01-01T00:00:00Z
    let batch = |ids: ArrayRef, times: ArrayRef, target: ArrayRef| {
        RecordBatch::try_from_iter([
            ("item_id", ids),
            ("timestamp", times),
            ("target", target),
            (
                "price",
                Arc::new(Int64Array::from(vec![30, 10, 50, 70])) as ArrayRef,
            ),
        ])
        .unwrap()
    };
    let ids: ArrayRef = Arc::new(Int64Array::from(vec![7, 7, 7, 9]));
    let times: ArrayRef = Arc::new(
        TimestampNanosecondArray::from(vec![t0 + 2 * hour, t0, t0 + 4 * hour, t0 + 5 * hour])
            .with_timezone("UTC"),
    );
    let target: ArrayRef = Arc::new(Float64Array::from(vec![
        Some(3.0),
        Some(1.0),
        None,
        Some(7.0),
    ]));
    let whole = batch(ids.clone(), times.clone(), target.clone());
    // Two batches: rows keep counting across them.
    let arrow =
        LongTable::from_record_batches(&[whole.slice(0, 3), whole.slice(3, 1)], &options).unwrap();
    // NaN is not equal to itself: the tables compare by their printed values.
    assert_eq!(format!("{arrow:?}"), format!("{csv:?}"));
    assert_eq!(arrow.frequency(), Frequency::Fixed { seconds: 7200 });
    assert_eq!(arrow.items()[0].target[..2], [1.0, 3.0]);
    assert!(arrow.items()[0].target[2].is_nan()); // the null target
    assert_eq!(arrow.items()[1].id, "9"); // an integer id, as text

    // Dates (days since 1970): calendar months inferred as in CSV.
    let dates = RecordBatch::try_from_iter([
        (
            "unique_id",
            Arc::new(StringArray::from(vec!["a", "a"])) as ArrayRef,
        ),
        (
            "ds",
            Arc::new(Date32Array::from(vec![19_723, 19_754])) as ArrayRef,
        ), // 2024-01-01, 02-01
        (
            "y",
            Arc::new(Float64Array::from(vec![1.0, 2.0])) as ArrayRef,
        ),
    ])
    .unwrap();
    let monthly = LongTable::from_record_batches(&[dates], &TableOptions::default()).unwrap();
    assert_eq!(monthly.frequency(), Frequency::Months { months: 1 });

    let refused_arrow =
        |batches: &[RecordBatch], row: Option<usize>, column: &str, needle: &str| {
            refusal(
                LongTable::from_record_batches(batches, &options),
                row,
                column,
                needle,
            );
        };
    // A repeated (item, timestamp): rows 1 and 3 of the data.
    let repeated: ArrayRef = Arc::new(TimestampNanosecondArray::from(vec![
        t0 + hour,
        t0,
        t0 + 2 * hour,
        t0,
    ]));
    let ids_same: ArrayRef = Arc::new(Int64Array::from(vec![7, 7, 7, 7]));
    refused_arrow(
        &[batch(ids_same, repeated, target.clone())],
        Some(3),
        "timestamp",
        "twice (rows 1 and 3)",
    );
    // Text timestamps are parsed as in CSV; a bad one is named by its row.
    let text: ArrayRef = Arc::new(StringArray::from(vec![
        "2024-01-01",
        "2024-01-02",
        "soon",
        "2024-01-04",
    ]));
    refused_arrow(
        &[batch(ids.clone(), text, target.clone())],
        Some(2),
        "timestamp",
        "`soon` is not a timestamp",
    );
    // A null timestamp.
    let null_time: ArrayRef = Arc::new(TimestampNanosecondArray::from(vec![
        Some(t0),
        None,
        Some(t0 + hour),
        Some(t0),
    ]));
    refused_arrow(
        &[batch(ids.clone(), null_time, target.clone())],
        Some(1),
        "timestamp",
        "null",
    );
    // A target that is not numbers.
    let flags: ArrayRef = Arc::new(BooleanArray::from(vec![true, false, true, false]));
    refused_arrow(
        &[batch(ids.clone(), times.clone(), flags)],
        None,
        "target",
        "Boolean column is not numbers",
    );
    // A covariate the schema lacks; batches of two schemas; no batch.
    let missing = TableOptions {
        covariates: vec!["volume".to_owned()],
        ..TableOptions::default()
    };
    let err = LongTable::from_record_batches(std::slice::from_ref(&whole), &missing).unwrap_err();
    assert!(
        err.to_string().contains("column `volume`: no such column"),
        "{err}"
    );
    let other = RecordBatch::try_from_iter([
        ("item_id", Arc::new(Int64Array::from(vec![1])) as ArrayRef),
        (
            "timestamp",
            Arc::new(TimestampNanosecondArray::from(vec![t0])) as ArrayRef,
        ),
        (
            "target",
            Arc::new(Float64Array::from(vec![1.0])) as ArrayRef,
        ),
    ])
    .unwrap();
    refused_arrow(
        &[whole.clone(), other],
        Some(4),
        "",
        "differs from the first batch's",
    );
    refused_arrow(&[], None, "", "no rows");
}

/// Parquet (feature `parquet`): the macrodata table as pandas wrote it with pyarrow
/// (categorical item ids, nanosecond timestamps, Zstandard pages; made by
/// `tests/fixtures/datasets/make_statsmodels_data.py`) reads as its CSV does, and forecasts
/// written as Parquet read back with their columns and values.
#[cfg(feature = "parquet")]
#[test]
fn parquet_reads_pandas_files_and_writes_forecasts() {
    use toto_fallback::table::arrow_array::cast::AsArray;
    use toto_fallback::table::arrow_array::types::{Float32Type, TimestampMicrosecondType};

    let dir = "tests/fixtures/datasets";
    let parquet = LongTable::read_parquet(
        format!("{dir}/macro_quarterly.parquet"),
        &TableOptions::default(),
    )
    .unwrap();
    let csv = LongTable::read_csv(
        format!("{dir}/macro_quarterly.csv"),
        &TableOptions::default(),
    )
    .unwrap();
    assert_eq!(parquet, csv);
    assert_eq!(parquet.items().len(), 5);
    assert_eq!(parquet.frequency(), Frequency::Months { months: 3 });

    let item = &csv.items()[0];
    let mut table = ForecastTable::new(&[0.1, 0.9]);
    table
        .push(
            item,
            csv.frequency(),
            &[1.0, 2.0],
            &[&[0.5, 1.5], &[1.5, 2.5]],
        )
        .unwrap();
    let path = std::env::temp_dir().join(format!("toto-forecast-{}.parquet", std::process::id()));
    table
        .write_parquet(std::fs::File::create(&path).unwrap())
        .unwrap();
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
        std::fs::File::open(&path).unwrap(),
    )
    .unwrap()
    .build()
    .unwrap();
    std::fs::remove_file(&path).unwrap();
    let batches: Vec<_> = reader.map(Result::unwrap).collect();
    let batch = &batches[0];
    let names: Vec<&str> = batch
        .schema_ref()
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .collect();
    assert_eq!(names, ["item_id", "timestamp", "mean", "0.1", "0.9"]);
    assert_eq!(batch.column(0).as_string::<i32>().value(1), "realgdp");
    // realgdp ends at 2009Q3: its forecast starts at 2009-10-01 (µs since 1970).
    let start = batch
        .column(1)
        .as_primitive::<TimestampMicrosecondType>()
        .value(0);
    assert_eq!(start, 1_254_355_200 * 1_000_000);
    let upper: Vec<f32> = batch
        .column(4)
        .as_primitive::<Float32Type>()
        .values()
        .to_vec();
    assert_eq!(upper, [1.5, 2.5]);
}
