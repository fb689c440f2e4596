//! The regular time grid of a table: a fixed step, or calendar months.

use chrono::{Datelike, Months, NaiveDateTime, TimeDelta, Timelike};

use crate::error::{Error, InputKind, Result};

/// The step between a table's timestamps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Frequency {
    /// A fixed step in seconds: `s`, `min`, `h`, `D`, `W` and their multiples (`15min`, `2h`).
    Fixed {
        /// Seconds per step (> 0).
        seconds: i64,
    },
    /// Calendar months: `M` (1), `Q` (3), `Y` (12) and their multiples. The grid keeps the first
    /// timestamp's day of the month, or the last day of every month when the first timestamp
    /// is the last day of its month (pandas' `ME`).
    Months {
        /// Months per step (> 0).
        months: u32,
    },
}

const MINUTE: i64 = 60;
const HOUR: i64 = 3600;
const DAY: i64 = 86_400;
const WEEK: i64 = 604_800;

impl Frequency {
    /// Parses a pandas-style frequency: an optional multiple and one of `s`, `min` (`T`), `h`
    /// (`H`), `D`, `W`, `M` (`ME`, `MS`), `Q` (`QE`, `QS`), `Y` (`YE`, `YS`, `A`).
    ///
    /// ```
    /// use toto_fallback::table::Frequency;
    /// assert_eq!(Frequency::parse("15min")?, Frequency::Fixed { seconds: 900 });
    /// assert_eq!(Frequency::parse("Q")?, Frequency::Months { months: 3 });
    /// assert_eq!(Frequency::parse("15min")?.seasonality(), 96);
    /// # Ok::<(), toto_fallback::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Input`] (`Unusable`) naming the text and the units it knows.
    pub fn parse(text: &str) -> Result<Self> {
        let trimmed = text.trim();
        let digits = trimmed.chars().take_while(char::is_ascii_digit).count();
        let (number, unit) = trimmed.split_at(digits);
        let n: i64 = if number.is_empty() {
            1
        } else {
            number.parse().unwrap_or(0)
        };
        let unknown = || {
            Error::input(
                "Frequency::parse",
                InputKind::Unusable,
                format!(
                    "`{text}` is not a frequency: give an optional multiple (at least 1) and one \
                     of s, min, h, D, W, M, Q, Y (for example 15min, h, D, M)"
                ),
            )
        };
        if n < 1 {
            return Err(unknown());
        }
        let fixed = |unit: i64| {
            n.checked_mul(unit)
                .map(|seconds| Frequency::Fixed { seconds })
        };
        let months = |unit: u32| {
            u32::try_from(n)
                .ok()
                .and_then(|n| n.checked_mul(unit))
                .map(|months| Frequency::Months { months })
        };
        match unit {
            "s" | "S" => fixed(1),
            "min" | "T" => fixed(MINUTE),
            "h" | "H" => fixed(HOUR),
            "D" | "d" => fixed(DAY),
            "W" => fixed(WEEK),
            "M" | "ME" | "MS" => months(1),
            "Q" | "QE" | "QS" => months(3),
            "Y" | "YE" | "YS" | "A" => months(12),
            _ => None,
        }
        .ok_or_else(unknown)
    }

    /// gluonts' `get_seasonality`: the steps in a season (a day for sub-daily steps, a year for
    /// months and quarters, an hour for seconds), 1 when the step does not divide it or there
    /// is none (daily, weekly, yearly data).
    pub fn seasonality(&self) -> usize {
        let (base, n) = match *self {
            Frequency::Fixed { seconds } if seconds % WEEK == 0 => (1, seconds / WEEK),
            Frequency::Fixed { seconds } if seconds % DAY == 0 => (1, seconds / DAY),
            Frequency::Fixed { seconds } if seconds % HOUR == 0 => (24, seconds / HOUR),
            Frequency::Fixed { seconds } if seconds % MINUTE == 0 => (1440, seconds / MINUTE),
            Frequency::Fixed { seconds } => (3600, seconds),
            Frequency::Months { months } if months % 12 == 0 => (1, i64::from(months / 12)),
            Frequency::Months { months } if months % 3 == 0 => (4, i64::from(months / 3)),
            Frequency::Months { months } => (12, i64::from(months)),
        };
        if n > 0 && base % n == 0 {
            (base / n) as usize
        } else {
            1
        }
    }

    /// The `k`-th timestamp of the grid that starts at `start`.
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

impl std::fmt::Display for Frequency {
    /// The pandas spelling: `15min`, `h`, `2D`, `M`, `Q`, `Y`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (n, unit) = match *self {
            Frequency::Fixed { seconds } if seconds % WEEK == 0 => (seconds / WEEK, "W"),
            Frequency::Fixed { seconds } if seconds % DAY == 0 => (seconds / DAY, "D"),
            Frequency::Fixed { seconds } if seconds % HOUR == 0 => (seconds / HOUR, "h"),
            Frequency::Fixed { seconds } if seconds % MINUTE == 0 => (seconds / MINUTE, "min"),
            Frequency::Fixed { seconds } => (seconds, "s"),
            Frequency::Months { months } if months % 12 == 0 => (i64::from(months / 12), "Y"),
            Frequency::Months { months } if months % 3 == 0 => (i64::from(months / 3), "Q"),
            Frequency::Months { months } => (i64::from(months), "M"),
        };
        if n == 1 {
            f.write_str(unit)
        } else {
            write!(f, "{n}{unit}")
        }
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
