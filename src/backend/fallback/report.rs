//! The [`Report`] of a [`FallbackBackend`](crate::FallbackBackend): what ran where.

use std::fmt;
use std::sync::Mutex;
use std::time::Duration;

use super::FallbackPolicy;
use crate::op::Op;

/// Where a [`FallbackBackend`](crate::FallbackBackend) ran an op.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Placement {
    /// On the primary (GPU) backend, natively.
    Native,
    /// Forwarded to the fallback (CPU) backend, with a device round trip.
    Forwarded,
}

/// Counters for one op in one [`Placement`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Number of calls.
    pub calls: u64,
    /// Elements produced, summed over calls.
    pub elements: u64,
    /// Bytes read back from the GPU to the CPU (inputs of forwarded calls).
    pub bytes_to_cpu: u64,
    /// Bytes uploaded from the CPU to the GPU (results of forwarded calls).
    pub bytes_to_gpu: u64,
    /// Wall time spent in the calls. For forwarded calls this is the whole round trip (sync,
    /// read-back, CPU work, upload); for native GPU calls it is the time to *enqueue* the work,
    /// since GPU execution is asynchronous and measuring it would need a sync.
    pub time: Duration,
}

impl Usage {
    fn add(&mut self, other: &Usage) {
        self.calls += other.calls;
        self.elements += other.elements;
        self.bytes_to_cpu += other.bytes_to_cpu;
        self.bytes_to_gpu += other.bytes_to_gpu;
        self.time += other.time;
    }
}

/// One op's row of a [`Report`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpReport {
    /// The op.
    pub op: Op,
    /// Calls run natively on the primary backend.
    pub native: Usage,
    /// Calls forwarded to the fallback backend.
    pub forwarded: Usage,
}

impl OpReport {
    const fn empty(op: Op) -> Self {
        OpReport {
            op,
            native: Usage {
                calls: 0,
                elements: 0,
                bytes_to_cpu: 0,
                bytes_to_gpu: 0,
                time: Duration::ZERO,
            },
            forwarded: Usage {
                calls: 0,
                elements: 0,
                bytes_to_cpu: 0,
                bytes_to_gpu: 0,
                time: Duration::ZERO,
            },
        }
    }

    /// The counters of one placement.
    pub fn usage(&self, placement: Placement) -> &Usage {
        match placement {
            Placement::Native => &self.native,
            Placement::Forwarded => &self.forwarded,
        }
    }
}

/// A snapshot of what a [`FallbackBackend`](crate::FallbackBackend) ran where, per op: calls,
/// elements, bytes moved each way and time, natively and forwarded.
///
/// It prints as a table (`{}`); [`Report::op`] gives one op's counters.
///
/// ```text
/// What runs where: gpu = wgpu (llvmpipe (LLVM 15.0.6, 256 bits); wgsl), cpu = ndarray (policy: warn)
/// op                runs on     calls     elements      to CPU      to GPU        time
/// standard_normal   gpu             1       100000         0 B         0 B      0.1 ms
/// standard_gamma    cpu             1       100000   390.6 KiB   390.6 KiB     14.2 ms
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The primary backend's name.
    pub gpu: String,
    /// The fallback backend's name.
    pub cpu: String,
    /// The policy for ops the primary backend lacks.
    pub policy: FallbackPolicy,
    rows: [OpReport; Op::ALL.len()],
}

impl Report {
    /// One op's counters.
    pub fn op(&self, op: Op) -> &OpReport {
        &self.rows[op.index()]
    }

    /// Every op's counters, in [`Op::ALL`] order (ops never called included).
    pub fn ops(&self) -> &[OpReport] {
        &self.rows
    }

    /// Totals over all ops for one placement.
    pub fn total(&self, placement: Placement) -> Usage {
        let mut total = Usage::default();
        for row in &self.rows {
            total.add(row.usage(placement));
        }
        total
    }
}

impl Report {
    /// The sum of `reports` (several devices' reports): every counter added, the backends'
    /// names listed once each; the first report's policy. `None` if `reports` is empty.
    pub fn sum(reports: &[Report]) -> Option<Report> {
        let first = reports.first()?;
        let names = |name: fn(&Report) -> &str| {
            let mut seen: Vec<&str> = Vec::new();
            for r in reports {
                if !seen.contains(&name(r)) {
                    seen.push(name(r));
                }
            }
            seen.join(" + ")
        };
        let mut rows = first.rows;
        for r in &reports[1..] {
            for (row, other) in rows.iter_mut().zip(&r.rows) {
                row.native.add(&other.native);
                row.forwarded.add(&other.forwarded);
            }
        }
        Some(Report {
            gpu: names(|r| &r.gpu),
            cpu: names(|r| &r.cpu),
            policy: first.policy,
            rows,
        })
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "What runs where: gpu = {}, cpu = {} (policy: {})",
            self.gpu, self.cpu, self.policy
        )?;
        writeln!(
            f,
            "{:<17} {:<8} {:>8} {:>12} {:>11} {:>11} {:>11}",
            "op", "runs on", "calls", "elements", "to CPU", "to GPU", "time"
        )?;
        let mut any = false;
        for row in &self.rows {
            for (placement, usage) in [("gpu", &row.native), ("cpu", &row.forwarded)] {
                if usage.calls == 0 {
                    continue;
                }
                any = true;
                writeln!(
                    f,
                    "{:<17} {:<8} {:>8} {:>12} {:>11} {:>11} {:>11}",
                    row.op.name(),
                    placement,
                    usage.calls,
                    usage.elements,
                    bytes(usage.bytes_to_cpu),
                    bytes(usage.bytes_to_gpu),
                    format!("{:.1} ms", usage.time.as_secs_f64() * 1e3),
                )?;
            }
        }
        if !any {
            writeln!(f, "(no op has run since the last reset)")?;
        }
        Ok(())
    }
}

fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// The live counters behind [`Report`], shared by every clone of a backend.
#[derive(Debug)]
pub(crate) struct Recorder {
    rows: Mutex<[OpReport; Op::ALL.len()]>,
}

impl Recorder {
    pub(crate) fn new() -> Self {
        Recorder {
            rows: Mutex::new(Op::ALL.map(OpReport::empty)),
        }
    }

    pub(crate) fn record(&self, op: Op, placement: Placement, usage: Usage) {
        let mut rows = self.lock();
        let row = &mut rows[op.index()];
        match placement {
            Placement::Native => row.native.add(&usage),
            Placement::Forwarded => row.forwarded.add(&usage),
        }
    }

    pub(crate) fn snapshot(&self, gpu: &str, cpu: &str, policy: FallbackPolicy) -> Report {
        Report {
            gpu: gpu.to_owned(),
            cpu: cpu.to_owned(),
            policy,
            rows: *self.lock(),
        }
    }

    pub(crate) fn reset(&self) {
        *self.lock() = Op::ALL.map(OpReport::empty);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, [OpReport; Op::ALL.len()]> {
        // Counters are updated whole under the lock; a panic elsewhere cannot tear them.
        self.rows.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_are_human_readable() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(400_000), "390.6 KiB");
        assert_eq!(bytes(3 << 30), "3.0 GiB");
    }

    #[test]
    fn records_accumulate_and_reset() {
        let r = Recorder::new();
        let usage = Usage {
            calls: 1,
            elements: 10,
            bytes_to_cpu: 40,
            bytes_to_gpu: 40,
            time: Duration::from_millis(2),
        };
        r.record(Op::StandardGamma, Placement::Forwarded, usage);
        r.record(Op::StandardGamma, Placement::Forwarded, usage);
        r.record(Op::Uniform, Placement::Native, usage);
        let report = r.snapshot("g", "c", FallbackPolicy::Warn);
        assert_eq!(report.op(Op::StandardGamma).forwarded.calls, 2);
        assert_eq!(report.op(Op::StandardGamma).forwarded.bytes_to_gpu, 80);
        assert_eq!(report.op(Op::StandardGamma).native, Usage::default());
        assert_eq!(report.total(Placement::Native).calls, 1);
        let table = report.to_string();
        assert!(table.contains("standard_gamma    cpu"), "{table}");
        assert!(table.contains("uniform           gpu"), "{table}");
        assert!(
            !table.contains("lgamma"),
            "ops never called are not listed: {table}"
        );
        r.reset();
        assert_eq!(
            r.snapshot("g", "c", FallbackPolicy::Warn)
                .total(Placement::Forwarded),
            Usage::default()
        );
    }
}
