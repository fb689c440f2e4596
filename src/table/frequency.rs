//! The calendar side of [`Frequency`]: the timestamps of a grid, and the grid of a table's
//! timestamps.

use chrono::{Datelike, Months, NaiveDateTime, TimeDelta, Timelike};

use crate::eval::Frequency;

impl Frequency {
    /// The `k`-th timestamp of the grid that starts at `start` (feature `csv`).
    #[cfg_attr(docsrs, doc(cfg(feature = "csv")))]
    pub fn step(&self, start: NaiveDateTime, k: u32) -> Option<NaiveDateTime> {
        match *self {
            Frequency::Fixed { seconds } => start
                .checked_add_signed(TimeDelta::try_seconds(seconds.checked_mul(i64::from(k))?)?),
            Frequency::Months { months } => {
                let moved = start.checked_add_months(Months::new(months.checked_mul(k)?))?;
                if is_month_end(start) {
                    Some(month_end(moved))
                } else {
                    Some(moved)
                }
            }
        }
    }

    /// The index of `t` on the grid that starts at `start`, `None` when `t` is not on it.
    pub(crate) fn index(&self, start: NaiveDateTime, t: NaiveDateTime) -> Option<u32> {
        let k = match *self {
            Frequency::Fixed { seconds } => {
                let delta = (t - start).num_seconds();
                if delta < 0 || delta % seconds != 0 || (t - start).subsec_nanos() != 0 {
                    return None;
                }
                u32::try_from(delta / seconds).ok()?
            }
            Frequency::Months { months } => {
                let delta = month_number(t) - month_number(start);
                if delta < 0 || delta % i64::from(months) != 0 {
                    return None;
                }
                u32::try_from(delta / i64::from(months)).ok()?
            }
        };
        (self.step(start, k)? == t).then_some(k)
    }

    /// The frequency of sorted, distinct timestamps (`items`: each item's): calendar months
    /// when every timestamp is at midnight on one day of the month (or every one on a month's
    /// last day), else a fixed step; the smallest step between neighbours, which every step
    /// must be a multiple of. `Err` carries the item and position of a step that is not.
    pub(crate) fn infer(
        items: &[Vec<NaiveDateTime>],
    ) -> std::result::Result<Option<Self>, (usize, usize)> {
        let calendar = items.iter().all(|ts| {
            ts.iter().all(|t| t.time() == chrono::NaiveTime::MIN)
                && (ts.iter().all(|t| is_month_end(*t))
                    || ts.windows(2).all(|w| w[0].day() == w[1].day()))
        }) && items.iter().any(|ts| ts.len() > 1)
            && items
                .iter()
                .flat_map(|ts| ts.windows(2))
                .all(|w| month_number(w[1]) > month_number(w[0]));
        let steps: Vec<Vec<i64>> = items
            .iter()
            .map(|item| {
                item.windows(2)
                    .map(|w| {
                        if calendar {
                            month_number(w[1]) - month_number(w[0])
                        } else {
                            (w[1] - w[0]).num_seconds()
                        }
                    })
                    .collect()
            })
            .collect();
        // The smallest step: missing rows make the others multiples of it.
        let Some(step) = steps.iter().flatten().copied().filter(|s| *s > 0).min() else {
            return Ok(None);
        };
        for (i, item) in steps.iter().enumerate() {
            if let Some(p) = item.iter().position(|s| s % step != 0 || *s <= 0) {
                return Err((i, p + 1));
            }
        }
        Ok(Some(if calendar {
            Frequency::Months {
                months: u32::try_from(step).unwrap_or(1),
            }
        } else {
            Frequency::Fixed { seconds: step }
        }))
    }
}

fn month_number(t: NaiveDateTime) -> i64 {
    i64::from(t.year()) * 12 + i64::from(t.month0())
}

fn is_month_end(t: NaiveDateTime) -> bool {
    t.date()
        .succ_opt()
        .is_none_or(|next| next.month() != t.month())
        && t.num_seconds_from_midnight() == 0
}

/// The last day of `t`'s month, at `t`'s time.
fn month_end(t: NaiveDateTime) -> NaiveDateTime {
    let mut d = t.date();
    while let Some(next) = d.succ_opt().filter(|n| n.month() == d.month()) {
        d = next;
    }
    d.and_time(t.time())
}
