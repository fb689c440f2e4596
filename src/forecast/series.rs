//! [`Series`]: the input of a forecast as host data — one series, the variates of one item, or
//! a batch — left-padded to one length with an observed-mask, with series ids, and the
//! timestamps and interval toto-ts's `MaskedTimeseries` carries.

use burn::tensor::{Bool, Device, Int, Tensor, TensorData};

use crate::error::{Error, InputKind, Result};
use crate::shape::{MAX_ELEMENTS, element_count};

/// The series of a forecast in host memory, `[B, V, T]`: `B` items of `V` variates each,
/// left-padded to the longest series' `T` steps, with a mask (true = observed), a series id per
/// variate (`[B, V]`), and optional timestamps and interval. What toto-ts's
/// `MaskedTimeseries(series, padding_mask, id_mask, timestamp_seconds, time_interval_seconds)`
/// holds, built from slices or `Vec`s instead of tensors.
///
/// - **Shapes.** [`Series::from_values`] takes one series (`[1, 1, T]`),
///   [`Series::from_variates`] the variates of one item (`[1, V, T]`), [`Series::from_batch`] a
///   batch (`[B, V, T]`); `TryFrom` takes `Vec<f32>`, `&[f32]`, `Vec<Vec<f32>>` and
///   `Vec<Vec<Vec<f32>>>` alike.
/// - **Variable lengths.** Series may differ in length: each is aligned to the last step (the
///   forecast starts after every series' last value) and left-padded with unobserved steps of
///   value 0. An empty series among others is all padding (a variate missing for one item).
/// - **Missing values.** NaN and ±inf are unobserved: their value becomes 0 and their mask
///   false, so the models never see them (both generations would mask them on the device too;
///   the forecast is the same).
/// - **Order.** Everything per series (mask rows, ids, timestamps) is given in the order of the
///   values: item 0's variates, then item 1's, and so on.
///
/// ```
/// use toto_fallback::forecast::Series;
///
/// // Two variates of one item, of different lengths, one value missing.
/// let series = Series::from_variates(&[vec![1.0, 2.0, 3.0], vec![4.0, f32::NAN]])?
///     .with_series_ids([0, 1])?;
/// assert_eq!(series.shape(), [1, 2, 3]);
/// assert_eq!(series.values(), [1.0, 2.0, 3.0, 0.0, 4.0, 0.0]);
/// assert_eq!(series.mask(), [true, true, true, false, true, false]);
/// assert_eq!(series.lengths(), [3, 2]);
/// # Ok::<(), toto_fallback::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// `[B, V, T]`.
    shape: [usize; 3],
    /// `[B, V, T]`, row-major; 0 where padded or non-finite.
    values: Vec<f32>,
    /// `[B, V, T]`: true where observed.
    observed: Vec<bool>,
    /// `[B, V]`: the steps given per series, before padding.
    lengths: Vec<usize>,
    /// `[B, V]`.
    series_ids: Vec<i32>,
    /// `[B, V]`: seconds of each series' first given step.
    timestamps: Option<Vec<i64>>,
    /// Seconds between steps.
    interval: Option<i64>,
}

impl Series {
    /// One series: `[1, 1, T]`, every finite value observed.
    ///
    /// # Errors
    /// [`Error::Input`] if `values` is empty or holds no finite value.
    pub fn from_values(values: impl AsRef<[f32]>) -> Result<Self> {
        Self::build("Series::from_values", [1, 1], &[values.as_ref()])
    }

    /// The variates of one item (`&[Vec<f32>]`, `&[&[f32]]`, `&Vec<Vec<f32>>`): `[1, V, T]`,
    /// shorter variates left-padded to the longest.
    ///
    /// # Errors
    /// [`Error::Input`] if there is no variate, every variate is empty, or no value is finite;
    /// [`Error::TooLarge`] if `V·T` passes [`MAX_ELEMENTS`].
    pub fn from_variates<S: AsRef<[f32]>>(variates: &[S]) -> Result<Self> {
        let rows: Vec<&[f32]> = variates.iter().map(AsRef::as_ref).collect();
        Self::build("Series::from_variates", [1, rows.len()], &rows)
    }

    /// A batch (`&Vec<Vec<Vec<f32>>>`, `&[&[&[f32]]]`): `batch[b][v]` is variate `v` of item
    /// `b`; `[B, V, T]`, shorter series left-padded to the longest.
    ///
    /// # Errors
    /// [`Error::Input`] if the batch is empty, its items have different numbers of variates
    /// (give a variate an item lacks as an empty series: it is all padding), no item has a
    /// variate, every series is empty, or no value is finite; [`Error::TooLarge`] if `B·V·T`
    /// passes [`MAX_ELEMENTS`].
    pub fn from_batch<I: AsRef<[S]>, S: AsRef<[f32]>>(batch: &[I]) -> Result<Self> {
        const WHAT: &str = "Series::from_batch";
        let v = batch.first().map_or(0, |item| item.as_ref().len());
        let ragged = batch.iter().position(|item| item.as_ref().len() != v);
        if let Some(i) = ragged {
            return Err(input(
                WHAT,
                InputKind::Shape,
                format!(
                    "`batch` is ragged: item {i} has {} variates, item 0 has {v}; every item \
                     needs the same variates (give a variate an item lacks as an empty series, \
                     which is all padding)",
                    batch[i].as_ref().len()
                ),
            ));
        }
        let rows: Vec<&[f32]> = batch
            .iter()
            .flat_map(|item| item.as_ref().iter().map(AsRef::as_ref))
            .collect();
        Self::build(WHAT, [batch.len(), v], &rows)
    }

    /// The padded series from `rows` (`b·v` of them, item-major), `what` naming the caller in
    /// errors.
    pub(crate) fn build(what: &'static str, [b, v]: [usize; 2], rows: &[&[f32]]) -> Result<Self> {
        if rows.is_empty() {
            return Err(input(
                what,
                InputKind::Empty,
                format!("no series: the input has {b} items of {v} variates; give at least one"),
            ));
        }
        let t = rows.iter().map(|r| r.len()).max().unwrap_or(0);
        if t == 0 {
            return Err(input(
                what,
                InputKind::Empty,
                format!(
                    "every one of the {} series is empty; give at least one value",
                    rows.len()
                ),
            ));
        }
        let n = element_count(&[b, v, t]).map_err(|elements| Error::TooLarge {
            what: "Series: the series left-padded to the longest [B, V, T]",
            shape: vec![b, v, t],
            elements,
            limit: MAX_ELEMENTS,
            fix: "forecast fewer series at once, or shorten the longest series (every series \
                  is padded to its length)",
        })?;
        let mut values = vec![0.0; n];
        let mut observed = vec![false; n];
        for (r, row) in rows.iter().enumerate() {
            let start = r * t + (t - row.len());
            for (k, &x) in row.iter().enumerate() {
                // Non-finite values would poison the scaler: unobserved, and 0 as padding is.
                if x.is_finite() {
                    values[start + k] = x;
                    observed[start + k] = true;
                }
            }
        }
        let series = Series {
            shape: [b, v, t],
            values,
            observed,
            lengths: rows.iter().map(|r| r.len()).collect(),
            series_ids: vec![0; b * v],
            timestamps: None,
            interval: None,
        };
        series.ensure_observed(what, "the input")?;
        Ok(series)
    }

    /// `Err` unless some step is observed.
    fn ensure_observed(&self, what: &'static str, by: &str) -> Result<()> {
        if self.observed.contains(&true) {
            return Ok(());
        }
        Err(input(
            what,
            InputKind::Empty,
            format!(
                "{by} leaves no observed value in any series (every value is NaN, ±inf or \
                 masked out); a forecast needs at least one"
            ),
        ))
    }

    /// Which values are observed: `mask[r][k]` for step `k` of series `r` (in the order of the
    /// values, as given, before padding), ANDed with the mask the values imply (non-finite
    /// values stay unobserved). One row per series, as long as that series: `&[mask]` for
    /// [`Series::from_values`], the rows of a batch's masks flattened (`mask.concat()`) for
    /// [`Series::from_batch`]. The values of masked-out steps are kept, as the tensor
    /// entry points keep them; the models exclude them.
    ///
    /// # Errors
    /// [`Error::Input`] naming `mask` if it has another number of rows than series, a row of
    /// another length than its series, or leaves nothing observed.
    pub fn with_mask<M: AsRef<[bool]>>(mut self, mask: &[M]) -> Result<Self> {
        const WHAT: &str = "Series::with_mask";
        self.ensure_per_series(WHAT, "mask", mask.len())?;
        let t = self.shape[2];
        for (r, (row, &len)) in mask.iter().zip(&self.lengths).enumerate() {
            let row = row.as_ref();
            if row.len() != len {
                return Err(input(
                    WHAT,
                    InputKind::Shape,
                    format!(
                        "`mask` row {r} (item {}, variate {}) has {} values; its series has {len}",
                        r / self.shape[1],
                        r % self.shape[1],
                        row.len()
                    ),
                ));
            }
            let start = r * t + (t - len);
            for (seen, &m) in self.observed[start..start + len].iter_mut().zip(row) {
                *seen &= m;
            }
        }
        self.ensure_observed(WHAT, "`mask`")?;
        Ok(self)
    }

    /// The series ids, one per series (`[B, V]` flattened, item-major): variates with equal ids
    /// inform each other (Toto 1.0's `id_mask`, constant over time; toto-2's `series_ids`). The
    /// default: all 0, every variate of an item in one group.
    ///
    /// # Errors
    /// [`Error::Input`] naming `series_ids` if it does not hold one id per series, or holds
    /// `i32::MIN` (Toto 2.0's mark of a patch without observations).
    pub fn with_series_ids(mut self, series_ids: impl AsRef<[i32]>) -> Result<Self> {
        const WHAT: &str = "Series::with_series_ids";
        let ids = series_ids.as_ref();
        self.ensure_per_series(WHAT, "series_ids", ids.len())?;
        if let Some(r) = ids.iter().position(|&id| id == i32::MIN) {
            return Err(input(
                WHAT,
                InputKind::OutOfRange,
                format!(
                    "`series_ids[{r}]` is i32::MIN, which marks a patch without observations; \
                     use any other id"
                ),
            ));
        }
        self.series_ids = ids.to_vec();
        Ok(self)
    }

    /// The time of each series' first given value (before padding), in seconds since an
    /// epoch of your choice (Unix time: chrono's `timestamp()`), one per series (`[B, V]`
    /// flattened, item-major). Step `k` of series `r` as given is at `timestamps[r] + k ·
    /// interval`.
    ///
    /// **Unused by the models**: Toto 1.0 and 2.0 ignore time (toto-ts's
    /// `timestamp_seconds` is "reserved for future releases"). Carried for your own use, such as
    /// dating the forecast: series `r` is forecast from `timestamps[r] + lengths[r] ·
    /// interval` on.
    ///
    /// # Errors
    /// [`Error::Input`] naming `timestamps` if it does not hold one time per series.
    pub fn with_timestamps(mut self, timestamps: impl AsRef<[i64]>) -> Result<Self> {
        let timestamps = timestamps.as_ref();
        self.ensure_per_series("Series::with_timestamps", "timestamps", timestamps.len())?;
        self.timestamps = Some(timestamps.to_vec());
        Ok(self)
    }

    /// The seconds between two steps (toto-ts's `time_interval_seconds`), the same for every
    /// series.
    ///
    /// **Unused by the models**, as [`Series::with_timestamps`].
    ///
    /// # Errors
    /// [`Error::Input`] naming `interval_seconds` unless it is positive.
    pub fn with_interval(mut self, interval_seconds: i64) -> Result<Self> {
        if interval_seconds <= 0 {
            return Err(input(
                "Series::with_interval",
                InputKind::OutOfRange,
                format!("`interval_seconds` must be positive; got {interval_seconds}"),
            ));
        }
        self.interval = Some(interval_seconds);
        Ok(self)
    }

    /// `Err` naming `param` unless it has one entry (`got`) per series.
    fn ensure_per_series(&self, what: &'static str, param: &str, got: usize) -> Result<()> {
        let [b, v, _] = self.shape;
        if got == b * v {
            return Ok(());
        }
        Err(input(
            what,
            InputKind::Shape,
            format!(
                "`{param}` has {got} entries; expected one per series, B·V = {} (B = {b} items \
                 of V = {v} variates, item-major)",
                b * v
            ),
        ))
    }

    /// Items `range` of the batch, `[range.len(), V, T]`: the same padding, mask, ids,
    /// timestamps and interval. Each item keeps the batch's `T` steps, so its forecast does not
    /// change with the cut (how a batch is sharded across workers, or devices by
    /// [`MultiDevice`](crate::multi::MultiDevice)).
    ///
    /// ```
    /// use toto_fallback::forecast::Series;
    ///
    /// let batch = Series::from_batch(&[vec![vec![1.0, 2.0]], vec![vec![3.0]], vec![vec![4.0]]])?;
    /// let tail = batch.items(1..3)?;
    /// assert_eq!(tail.shape(), [2, 1, 2]);
    /// assert_eq!(tail.values(), [0.0, 3.0, 0.0, 4.0]);
    /// assert_eq!(tail.mask(), [false, true, false, true]);
    /// # Ok::<(), toto_fallback::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Input`] for an empty range or one past the batch's `B` items.
    pub fn items(&self, range: std::ops::Range<usize>) -> Result<Series> {
        let [b, v, t] = self.shape;
        if range.is_empty() || range.end > b {
            return Err(Error::input(
                "Series::items",
                InputKind::OutOfRange,
                format!(
                    "items {range:?} of a batch of {b}: the range must be non-empty and end at \
                     most at {b}"
                ),
            ));
        }
        let steps = |per: usize| range.start * per..range.end * per;
        Ok(Series {
            shape: [range.len(), v, t],
            values: self.values[steps(v * t)].to_vec(),
            observed: self.observed[steps(v * t)].to_vec(),
            lengths: self.lengths[steps(v)].to_vec(),
            series_ids: self.series_ids[steps(v)].to_vec(),
            timestamps: self.timestamps.as_ref().map(|ts| ts[steps(v)].to_vec()),
            interval: self.interval,
        })
    }

    /// `[B, V, T]`: items, variates, steps after padding.
    pub fn shape(&self) -> [usize; 3] {
        self.shape
    }

    /// The padded values, `[B, V, T]` row-major: value `k` of series `r` as given is at
    /// `r·T + (T − lengths[r]) + k`; 0 where padded or non-finite.
    pub fn values(&self) -> &[f32] {
        &self.values
    }

    /// `[B, V, T]` row-major, like [`Series::values`]: true where observed (given, finite and
    /// not masked out).
    pub fn mask(&self) -> &[bool] {
        &self.observed
    }

    /// The steps given per series before padding, `[B, V]` flattened.
    pub fn lengths(&self) -> &[usize] {
        &self.lengths
    }

    /// The series ids, `[B, V]` flattened (all 0 unless set).
    pub fn series_ids(&self) -> &[i32] {
        &self.series_ids
    }

    /// The time of each series' first given value, seconds, `[B, V]` flattened, if set.
    /// Unused by the models.
    pub fn timestamps(&self) -> Option<&[i64]> {
        self.timestamps.as_deref()
    }

    /// The seconds between two steps, if set. Unused by the models.
    pub fn interval(&self) -> Option<i64> {
        self.interval
    }

    /// The tensors of the tensor entry points, on `device`: the values `[B, V, T]`, the mask
    /// `[B, V, T]` (true = observed) and the series ids `[B, V]`. The `Forecaster::predict` entry
    /// points call it; it uploads the data (no device read).
    pub fn to_tensors(&self, device: &Device) -> (Tensor<3>, Tensor<3, Bool>, Tensor<2, Int>) {
        let [b, v, t] = self.shape;
        let values = Tensor::from_data(TensorData::new(self.values.clone(), [b, v, t]), device);
        let mask = Tensor::from_data(TensorData::new(self.observed.clone(), [b, v, t]), device);
        let ids = Tensor::from_data(TensorData::new(self.series_ids.clone(), [b, v]), device);
        (values, mask, ids)
    }
}

/// [`Error::Input`] of `what`.
fn input(what: &'static str, kind: InputKind, reason: String) -> Error {
    Error::input(what, kind, reason)
}

impl TryFrom<&[f32]> for Series {
    type Error = Error;
    /// As [`Series::from_values`].
    fn try_from(values: &[f32]) -> Result<Self> {
        Series::from_values(values)
    }
}

impl TryFrom<Vec<f32>> for Series {
    type Error = Error;
    /// As [`Series::from_values`].
    fn try_from(values: Vec<f32>) -> Result<Self> {
        Series::from_values(values)
    }
}

impl TryFrom<Vec<Vec<f32>>> for Series {
    type Error = Error;
    /// As [`Series::from_variates`].
    fn try_from(variates: Vec<Vec<f32>>) -> Result<Self> {
        Series::from_variates(&variates)
    }
}

impl TryFrom<Vec<Vec<Vec<f32>>>> for Series {
    type Error = Error;
    /// As [`Series::from_batch`].
    fn try_from(batch: Vec<Vec<Vec<f32>>>) -> Result<Self> {
        Series::from_batch(&batch)
    }
}
