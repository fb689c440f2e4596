//! Long-format tables in and out (feature `csv`): `item_id, timestamp, target[, covariates]`
//! rows — autogluon's `TimeSeriesDataFrame`, Nixtla's `unique_id, ds, y` — read into items on a
//! regular time grid, and forecasts written back as rows. With the `arrow` feature the rows may
//! be Arrow record batches ([`LongTable::from_record_batches`],
//! [`ForecastTable::to_record_batch`]), with `parquet` Parquet files
//! ([`LongTable::read_parquet`], [`ForecastTable::write_parquet`]). The items feed
//! [`LongTable::series`] (a forecast of every item) or
//! [`Backtest::run`](crate::eval::Backtest::run) ([`LongTable::backtest_items`]).
//!
//! Reading ([`LongTable::from_csv`]):
//! - **Columns** by name: the item, timestamp and target columns are found by the usual names
//!   (`item_id`/`unique_id`/`series_id`/`id`, `timestamp`/`ds`/`date`/`time`,
//!   `target`/`y`/`value`) unless [`TableOptions`] names them; named covariate columns become
//!   the item's covariates. A named column the header lacks is an error naming the header.
//! - **Timestamps**: `2024-01-31`, `2024-01-31 13:00[:00]`, `2024-01-31T13:00:00`, RFC 3339 with
//!   an offset (taken to UTC). Unsorted rows are sorted per item; a repeated (item, timestamp)
//!   is an error naming both rows.
//! - **The grid**: [`TableOptions::frequency`], or inferred: calendar months when every
//!   timestamp is midnight on one day of the month (or on month ends), else the smallest step
//!   between neighbours; a step that is not a multiple of it is an error naming the row (give
//!   the frequency when a stray row would make the smallest step a wrong one). Missing steps become missing values (NaN, masked by the models), as do empty
//!   cells and `NaN`/`NA`/`null` in the target; nothing is dropped.
//! - **Errors** are [`Error::Table`] naming the row (the line in the file, the header being
//!   line 1) and the column.
//!
//! ```
//! use toto_fallback::table::{Frequency, LongTable, TableOptions};
//!
//! let csv = "unique_id,ds,y\n\
//!            a,2024-01-01,1.0\n\
//!            a,2024-03-01,3.0\n\
//!            a,2024-02-01,\n\
//!            b,2024-01-01,5.0\n";
//! let table = LongTable::from_csv(csv.as_bytes(), &TableOptions::default())?;
//! assert_eq!(table.frequency(), Frequency::Months { months: 1 });
//! assert_eq!(table.items()[0].id, "a");
//! assert!(table.items()[0].target[1].is_nan()); // the empty cell
//! assert_eq!(table.items()[1].target, vec![5.0]);
//! # Ok::<(), toto_fallback::Error>(())
//! ```

#[cfg(feature = "arrow")]
mod arrow;
mod frequency;

/// The Arrow crates the record batches are built with (feature `arrow`), for building or reading
/// them at the same version.
#[cfg(feature = "arrow")]
#[cfg_attr(docsrs, doc(cfg(feature = "arrow")))]
pub use {arrow_array, arrow_schema};

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::Path;

use chrono::{DateTime, NaiveDate, NaiveDateTime};

use crate::error::{Error, Result};
pub use crate::eval::Frequency;
use crate::eval::{BacktestItem, BacktestReport};
use crate::forecast::Series;

/// How to read a table ([`LongTable::from_csv`]).
#[derive(Debug, Clone, Default)]
pub struct TableOptions {
    /// The item column; found by its usual names when `None`.
    pub item: Option<String>,
    /// The timestamp column; found by its usual names when `None`.
    pub timestamp: Option<String>,
    /// The target column; found by its usual names when `None`.
    pub target: Option<String>,
    /// Known covariate columns (Toto 2.0), in this order.
    pub covariates: Vec<String>,
    /// The grid's step; inferred when `None`.
    pub frequency: Option<Frequency>,
}

/// One item of a table: its values on the grid from its first timestamp, NaN where missing.
#[derive(Debug, Clone, PartialEq)]
pub struct TableItem {
    /// The item's id, as the table spells it.
    pub id: String,
    /// The first timestamp.
    pub start: NaiveDateTime,
    /// The target on the grid, NaN where missing.
    pub target: Vec<f32>,
    /// Each covariate column on the same grid, NaN where missing.
    pub covariates: Vec<Vec<f32>>,
}

impl TableItem {
    /// The timestamp of step `k` of this item (`k` may pass its last value: the forecast's
    /// steps).
    pub fn timestamp(&self, frequency: Frequency, k: usize) -> Option<NaiveDateTime> {
        frequency.step(self.start, u32::try_from(k).ok()?)
    }
}

/// A long-format table read into items on one regular grid.
#[derive(Debug, Clone, PartialEq)]
pub struct LongTable {
    frequency: Frequency,
    items: Vec<TableItem>,
    covariates: Vec<String>,
}

const ITEM_NAMES: [&str; 4] = ["item_id", "unique_id", "series_id", "id"];
const TIMESTAMP_NAMES: [&str; 4] = ["timestamp", "ds", "date", "time"];
const TARGET_NAMES: [&str; 3] = ["target", "y", "value"];

impl LongTable {
    /// Reads a CSV file ([`LongTable::from_csv`]).
    ///
    /// # Errors
    /// [`Error::Io`] when the file cannot be read; what [`LongTable::from_csv`] returns.
    pub fn read_csv(path: impl AsRef<Path>, options: &TableOptions) -> Result<Self> {
        let path = path.as_ref();
        let file = std::fs::File::open(path).map_err(|e| Error::io(path.display(), e))?;
        Self::from_csv(std::io::BufReader::new(file), options)
    }

    /// Reads CSV with a header row ([`table`](self) says how).
    ///
    /// # Errors
    /// [`Error::Table`] naming the row and column of the first problem: a missing or unknown
    /// column, an unparsable timestamp or number, a repeated (item, timestamp), a step off the
    /// grid, no rows, or no frequency to infer (every item one row: give
    /// [`TableOptions::frequency`]).
    pub fn from_csv(reader: impl Read, options: &TableOptions) -> Result<Self> {
        let mut csv = csv::ReaderBuilder::new()
            .has_headers(true)
            .from_reader(reader);
        let header: Vec<String> = csv
            .headers()
            .map_err(|e| table_error(Some(1), "", format!("unreadable header: {e}")))?
            .iter()
            .map(|h| h.trim().to_owned())
            .collect();
        let columns = Columns::resolve(header, options, Some(1))?;
        let mut rows = Rows::default();
        for record in csv.records() {
            let record = record.map_err(|e| {
                let line = e.position().map(|p| p.line() as usize);
                table_error(line, "", format!("unreadable row: {e}"))
            })?;
            let line = record.position().map_or(0, |p| p.line() as usize);
            let cell = |col: usize| record.get(col).unwrap_or("").trim();
            let time = parse_timestamp(cell(columns.time))
                .ok_or_else(|| columns.timestamp_error(line, cell(columns.time)))?;
            let target = parse_value(cell(columns.target)).ok_or_else(|| {
                number_error(line, &columns.names[columns.target], cell(columns.target))
            })?;
            let covariates = columns
                .covariates
                .iter()
                .map(|&c| {
                    parse_value(cell(c))
                        .ok_or_else(|| number_error(line, &columns.names[c], cell(c)))
                })
                .collect::<Result<Vec<f32>>>()?;
            rows.push(&columns, line, cell(columns.item), time, target, covariates)?;
        }
        rows.finish(&columns, options)
    }

    /// The grid's step.
    pub fn frequency(&self) -> Frequency {
        self.frequency
    }

    /// The items, in order of their first row.
    pub fn items(&self) -> &[TableItem] {
        &self.items
    }

    /// The covariate columns' names.
    pub fn covariate_names(&self) -> &[String] {
        &self.covariates
    }

    /// The items as [`Backtest::run`](crate::eval::Backtest::run)'s input (covariates
    /// included).
    pub fn backtest_items(&self) -> Vec<BacktestItem<'_>> {
        self.items
            .iter()
            .map(|i| BacktestItem {
                id: &i.id,
                target: &i.target,
                covariates: &i.covariates,
            })
            .collect()
    }

    /// The shortest item's length on the grid (gaps counted): what
    /// [`Backtest::gift_eval`](crate::eval::Backtest::gift_eval) sizes its windows by.
    pub fn min_length(&self) -> usize {
        self.items.iter().map(|i| i.target.len()).min().unwrap_or(0)
    }

    /// Every item's target as one batch (`[items, 1, longest]`, shorter items left-padded:
    /// each forecast starts after its own item's last step), for
    /// [`ForecastRequest::new`](crate::ForecastRequest::new).
    ///
    /// # Errors
    /// What [`Series::from_batch`] returns (an item without one observed value).
    pub fn series(&self) -> Result<Series> {
        let batch: Vec<[&[f32]; 1]> = self.items.iter().map(|i| [i.target.as_slice()]).collect();
        Series::from_batch(&batch)
    }
}

/// The columns of a table, found in its header.
struct Columns {
    /// The header's names.
    names: Vec<String>,
    item: usize,
    time: usize,
    target: usize,
    covariates: Vec<usize>,
}

impl Columns {
    /// Finds the columns `options` names (or the usual names) in `names`; `row` is the header's
    /// row in errors (CSV's line 1; none for Arrow's schema).
    fn resolve(names: Vec<String>, options: &TableOptions, row: Option<usize>) -> Result<Self> {
        let column =
            |given: Option<&str>, usual: &[&str], role: &str| -> Result<usize> {
                match given {
                Some(name) => names.iter().position(|h| h == name).ok_or_else(|| {
                    table_error(row, name, format!("no such column; the header has {names:?}"))
                }),
                None => usual
                    .iter()
                    .find_map(|n| names.iter().position(|h| h.eq_ignore_ascii_case(n)))
                    .ok_or_else(|| {
                        table_error(
                            row,
                            role,
                            format!(
                                "no {role} column among {names:?} (looked for {usual:?}); name it \
                                 in TableOptions::{role}"
                            ),
                        )
                    }),
            }
            };
        let item = column(options.item.as_deref(), &ITEM_NAMES, "item")?;
        let time = column(options.timestamp.as_deref(), &TIMESTAMP_NAMES, "timestamp")?;
        let target = column(options.target.as_deref(), &TARGET_NAMES, "target")?;
        let covariates = options
            .covariates
            .iter()
            .map(|c| column(Some(c), &[], "covariate"))
            .collect::<Result<_>>()?;
        Ok(Columns {
            names,
            item,
            time,
            target,
            covariates,
        })
    }

    fn timestamp_error(&self, row: usize, text: &str) -> Error {
        table_error(
            Some(row),
            &self.names[self.time],
            format!(
                "`{text}` is not a timestamp (2024-01-31, 2024-01-31 13:00:00, \
                 2024-01-31T13:00:00, or RFC 3339)"
            ),
        )
    }
}

/// One row of an item: (row, timestamp, target, covariates).
type Row = (usize, NaiveDateTime, f32, Vec<f32>);

/// Rows grouped by item, in order of the items' first rows.
#[derive(Default)]
struct Rows {
    order: Vec<String>,
    sorted: Vec<Vec<Row>>,
    index: HashMap<String, usize>,
}

impl Rows {
    fn push(
        &mut self,
        columns: &Columns,
        row: usize,
        id: &str,
        time: NaiveDateTime,
        target: f32,
        covariates: Vec<f32>,
    ) -> Result<()> {
        if id.is_empty() {
            return Err(table_error(
                Some(row),
                &columns.names[columns.item],
                "empty item id",
            ));
        }
        let i = match self.index.get(id) {
            Some(&i) => i,
            None => {
                self.order.push(id.to_owned());
                self.sorted.push(Vec::new());
                self.index.insert(id.to_owned(), self.order.len() - 1);
                self.order.len() - 1
            }
        };
        self.sorted[i].push((row, time, target, covariates));
        Ok(())
    }

    /// The items on their grid: rows sorted per item (a repeated timestamp is an error), the
    /// frequency given or inferred, gaps filled with NaN.
    fn finish(self, columns: &Columns, options: &TableOptions) -> Result<LongTable> {
        let Rows {
            order, mut sorted, ..
        } = self;
        let time_name = &columns.names[columns.time];
        if order.is_empty() {
            return Err(table_error(None, "", "the table has no rows"));
        }
        for (id, item) in order.iter().zip(&mut sorted) {
            item.sort_by_key(|r| (r.1, r.0));
            if let Some(w) = item.windows(2).find(|w| w[0].1 == w[1].1) {
                return Err(table_error(
                    Some(w[1].0),
                    time_name,
                    format!(
                        "item `{id}` has {} twice (rows {} and {}); keep one",
                        w[0].1, w[0].0, w[1].0
                    ),
                ));
            }
        }

        let times: Vec<Vec<NaiveDateTime>> = sorted
            .iter()
            .map(|item| item.iter().map(|r| r.1).collect())
            .collect();
        let frequency = match options.frequency {
            Some(f) => f,
            None => match Frequency::infer(&times) {
                Ok(Some(f)) => f,
                Ok(None) => {
                    return Err(table_error(
                        None,
                        time_name,
                        "no item has two rows, so the frequency cannot be inferred; give \
                         TableOptions::frequency",
                    ));
                }
                Err((i, p)) => {
                    let (line, t) = (sorted[i][p].0, sorted[i][p].1);
                    return Err(table_error(
                        Some(line),
                        time_name,
                        format!(
                            "irregular grid: item `{}` steps from {} to {t}, which is not a \
                             multiple of the table's smallest step; give \
                             TableOptions::frequency",
                            order[i],
                            sorted[i][p - 1].1
                        ),
                    ));
                }
            },
        };

        let mut items = Vec::with_capacity(order.len());
        for (id, item) in order.into_iter().zip(sorted) {
            let start = item[0].1;
            let mut target = Vec::new();
            let mut covariates = vec![Vec::new(); columns.covariates.len()];
            for (line, t, y, cov) in item {
                let k = frequency.index(start, t).ok_or_else(|| {
                    table_error(
                        Some(line),
                        time_name,
                        format!("{t} is not on item `{id}`'s {frequency} grid from {start}"),
                    )
                })? as usize;
                if k as u64 > crate::shape::MAX_ELEMENTS {
                    return Err(table_error(
                        Some(line),
                        time_name,
                        format!("{t} is {k} steps of {frequency} after {start}: too many"),
                    ));
                }
                target.resize(k, f32::NAN);
                target.push(y);
                for (c, v) in covariates.iter_mut().zip(cov) {
                    c.resize(k, f32::NAN);
                    c.push(v);
                }
            }
            items.push(TableItem {
                id,
                start,
                target,
                covariates,
            });
        }
        Ok(LongTable {
            frequency,
            items,
            covariates: options.covariates.clone(),
        })
    }
}

/// Forecasts as long-format rows: `item_id, timestamp, mean, <level>...` (autogluon's columns),
/// one row per item and step.
#[derive(Debug, Clone, Default)]
pub struct ForecastTable {
    levels: Vec<f64>,
    rows: Vec<(String, NaiveDateTime, f32, Vec<f32>)>,
}

impl ForecastTable {
    /// An empty table with a column per quantile level.
    pub fn new(levels: &[f64]) -> Self {
        ForecastTable {
            levels: levels.to_vec(),
            rows: Vec::new(),
        }
    }

    /// Every window's forecast of a backtest of `table` (run on [`LongTable::backtest_items`])
    /// as rows at the report's levels, window by window: each window's steps from its origin on
    /// its item's grid. Windows that overlap (a step below the horizon) repeat timestamps, in
    /// window order.
    ///
    /// # Errors
    /// [`Error::Table`] when a window names an item the table lacks (a report of another
    /// table), and as [`ForecastTable::push`].
    pub fn from_backtest(table: &LongTable, report: &BacktestReport) -> Result<Self> {
        let mut rows = ForecastTable::new(&report.levels);
        for window in &report.forecasts {
            let item = table.items.get(window.item).ok_or_else(|| {
                table_error(
                    None,
                    "",
                    format!(
                        "the report has a window of item {} and the table {} items: a report \
                         of another table",
                        window.item,
                        table.items.len()
                    ),
                )
            })?;
            let quantiles: Vec<&[f32]> = window.quantiles.iter().map(Vec::as_slice).collect();
            rows.push_at(
                item,
                table.frequency,
                window.origin,
                &window.mean,
                &quantiles,
            )?;
        }
        Ok(rows)
    }

    /// Adds an item's forecast: the steps after `item`'s last value on `frequency`'s grid, its
    /// mean and a quantile row per level (each the horizon's length).
    ///
    /// # Errors
    /// [`Error::Table`] when the quantiles do not match the levels or the horizon, or a
    /// timestamp passes chrono's range.
    pub fn push(
        &mut self,
        item: &TableItem,
        frequency: Frequency,
        mean: &[f32],
        quantiles: &[&[f32]],
    ) -> Result<()> {
        self.push_at(item, frequency, item.target.len(), mean, quantiles)
    }

    /// As [`ForecastTable::push`], for a forecast whose first step is step `first` of `item`'s
    /// grid: a backtest window's ([`WindowForecast::origin`](crate::eval::WindowForecast)).
    ///
    /// # Errors
    /// As [`ForecastTable::push`].
    pub fn push_at(
        &mut self,
        item: &TableItem,
        frequency: Frequency,
        first: usize,
        mean: &[f32],
        quantiles: &[&[f32]],
    ) -> Result<()> {
        let h = mean.len();
        if quantiles.len() != self.levels.len() || quantiles.iter().any(|q| q.len() != h) {
            return Err(table_error(
                None,
                &item.id,
                format!(
                    "{} quantile rows of lengths {:?} for {} levels and a mean of {h} steps",
                    quantiles.len(),
                    quantiles.iter().map(|q| q.len()).collect::<Vec<_>>(),
                    self.levels.len()
                ),
            ));
        }
        for t in 0..h {
            let time = item.timestamp(frequency, first + t).ok_or_else(|| {
                table_error(
                    None,
                    &item.id,
                    "a forecast step passes the calendar's range",
                )
            })?;
            self.rows.push((
                item.id.clone(),
                time,
                mean[t],
                quantiles.iter().map(|q| q[t]).collect(),
            ));
        }
        Ok(())
    }

    /// Writes the rows as CSV with a header.
    ///
    /// # Errors
    /// [`Error::Table`] when writing fails.
    pub fn write_csv(&self, writer: impl Write) -> Result<()> {
        let failed = |e: csv::Error| table_error(None, "", format!("writing CSV failed: {e}"));
        let mut csv = csv::Writer::from_writer(writer);
        let mut header = vec![
            "item_id".to_owned(),
            "timestamp".to_owned(),
            "mean".to_owned(),
        ];
        header.extend(self.levels.iter().map(|q| q.to_string()));
        csv.write_record(&header).map_err(failed)?;
        for (id, time, mean, quantiles) in &self.rows {
            let mut record = vec![id.clone(), time.format("%Y-%m-%d %H:%M:%S").to_string()];
            record.push(mean.to_string());
            record.extend(quantiles.iter().map(|q| q.to_string()));
            csv.write_record(&record).map_err(failed)?;
        }
        csv.flush()
            .map_err(|e| table_error(None, "", format!("writing CSV failed: {e}")))
    }
}

fn table_error(row: Option<usize>, column: &str, reason: impl Into<String>) -> Error {
    Error::Table {
        row,
        column: column.to_owned(),
        reason: reason.into(),
    }
}

fn number_error(line: usize, column: &str, text: &str) -> Error {
    table_error(
        Some(line),
        column,
        format!("`{text}` is not a number (empty, NaN, NA or null mark a missing value)"),
    )
}

/// A cell's number: empty, `NaN`, `NA`, `null` are missing (NaN).
fn parse_value(text: &str) -> Option<f32> {
    if text.is_empty()
        || ["nan", "na", "null", "none"]
            .iter()
            .any(|m| text.eq_ignore_ascii_case(m))
    {
        return Some(f32::NAN);
    }
    text.parse::<f32>().ok()
}

fn parse_timestamp(text: &str) -> Option<NaiveDateTime> {
    for format in [
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(text, format) {
            return Some(t);
        }
    }
    if let Ok(d) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Some(d.and_time(chrono::NaiveTime::MIN));
    }
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.naive_utc())
}
