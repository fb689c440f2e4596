//! Long-format tables (feature `csv`): grids, gaps, frequencies, the refusals, and forecasts
//! written back.

use toto_fallback::Error;
use toto_fallback::table::{ForecastTable, Frequency, LongTable, TableOptions};

fn read(csv: &str) -> Result<LongTable, Error> {
    LongTable::from_csv(csv.as_bytes(), &TableOptions::default())
}

/// The error's row and column, and that its text contains `needle`.
fn refused(csv: &str, options: &TableOptions, row: Option<usize>, column: &str, needle: &str) {
    match LongTable::from_csv(csv.as_bytes(), options) {
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
