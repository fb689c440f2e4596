//! The step of a regular time grid ([`Frequency`]): its pandas spelling, gluonts' seasonality,
//! and GIFT-Eval's horizons ([`Term`]).

use crate::error::{Error, InputKind, Result};

/// The step between a series' timestamps. The calendar arithmetic on timestamps (the `k`-th
/// step of a grid) comes with the `csv` feature's tables ([`Frequency::step`]).
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

pub(crate) const MINUTE: i64 = 60;
pub(crate) const HOUR: i64 = 3600;
pub(crate) const DAY: i64 = 86_400;
pub(crate) const WEEK: i64 = 604_800;

/// GIFT-Eval's forecast terms: a frequency's base horizon times 1, 10 or 15
/// ([`Frequency::gift_eval_horizon`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Term {
    /// The base horizon.
    Short,
    /// Ten times the base horizon.
    Medium,
    /// Fifteen times the base horizon.
    Long,
}

impl Term {
    /// The multiple of the base horizon: 1, 10, 15.
    pub fn multiplier(self) -> usize {
        match self {
            Term::Short => 1,
            Term::Medium => 10,
            Term::Long => 15,
        }
    }
}

impl Frequency {
    /// Parses a pandas-style frequency: an optional multiple and one of `s`, `min` (`T`), `h`
    /// (`H`), `D`, `W`, `M` (`ME`, `MS`), `Q` (`QE`, `QS`), `Y` (`YE`, `YS`, `A`).
    ///
    /// ```
    /// use toto_fallback::eval::Frequency;
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

    /// GIFT-Eval's horizon for a series of this frequency (`gift_eval/data.py`,
    /// `Dataset.prediction_length`): the base horizon of the frequency's unit, whatever its
    /// multiple (`15min` is `min`), times the term's multiplier ([`Term::multiplier`]). Base
    /// horizons: seconds 60, minutes and hours 48, days 30, weeks 8, months 12; quarters 8 and
    /// years 6, which GIFT-Eval takes from M4 (its only quarterly and yearly data).
    ///
    /// ```
    /// use toto_fallback::eval::{Frequency, Term};
    /// assert_eq!(Frequency::parse("15min")?.gift_eval_horizon(Term::Short), 48);
    /// assert_eq!(Frequency::parse("D")?.gift_eval_horizon(Term::Long), 450);
    /// assert_eq!(Frequency::parse("W")?.gift_eval_horizon(Term::Medium), 80);
    /// # Ok::<(), toto_fallback::Error>(())
    /// ```
    pub fn gift_eval_horizon(&self, term: Term) -> usize {
        let base = match *self {
            Frequency::Fixed { seconds } if seconds % WEEK == 0 => 8,
            Frequency::Fixed { seconds } if seconds % DAY == 0 => 30,
            Frequency::Fixed { seconds } if seconds % MINUTE == 0 => 48,
            Frequency::Fixed { .. } => 60,
            Frequency::Months { months } if months % 12 == 0 => 6,
            Frequency::Months { months } if months % 3 == 0 => 8,
            Frequency::Months { .. } => 12,
        };
        base * term.multiplier()
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
