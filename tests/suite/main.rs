//! The integration tests, as one binary (each test binary links burn and wgpu, so one binary
//! builds once): the backends, the distributions, Toto against toto-ts fixtures, the reliability
//! cases, and the crate's layering.

#[macro_use]
mod common;

mod anomaly;
mod architecture;
mod backends;
#[cfg(feature = "csv")]
mod backtest;
mod distributions;
mod eval;
mod forecaster;
#[cfg(feature = "hub")]
mod hub;
mod layers;
mod multi;
mod reliability;
mod series;
mod stream;
#[cfg(feature = "csv")]
mod table;
mod toto;
mod toto2;
