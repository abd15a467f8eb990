//! Percentiles and the summary of one cell (a case at a client count, all rounds merged).

use serde::{Deserialize, Serialize};

/// Nearest-rank percentile of sorted values (`q` in 0..=1).
pub fn percentile(sorted: &[u32], q: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// One case at one client count, every round merged.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Cell {
    /// Case name.
    pub case: String,
    /// Concurrent client processes.
    pub clients: usize,
    /// Successful requests.
    pub requests: u64,
    /// Failed requests.
    pub errors: u64,
    /// The first error seen, if any.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub first_error: String,
    /// Requests per second: each round's sum of per-client rates, then the median over
    /// rounds.
    pub throughput: f64,
    /// Each round's throughput, in round order.
    pub throughput_rounds: Vec<f64>,
    /// Latency percentiles in µs over every request of every round.
    pub p50_us: f64,
    /// 90th percentile.
    pub p90_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// 99.9th percentile.
    pub p999_us: f64,
    /// Mean.
    pub mean_us: f64,
}

/// Accumulates one cell over rounds.
#[derive(Debug, Default)]
pub struct CellAcc {
    /// Every latency, ns.
    pub latencies: Vec<u32>,
    /// Per-round throughput.
    pub rounds: Vec<f64>,
    /// Totals.
    pub ok: u64,
    /// Failures.
    pub errors: u64,
    /// First failure message.
    pub first_error: String,
}

impl CellAcc {
    /// The summary.
    pub fn finish(mut self, case: &str, clients: usize) -> Cell {
        self.latencies.sort_unstable();
        let us = |ns: u32| f64::from(ns) / 1000.0;
        let l = &self.latencies;
        let mean = if l.is_empty() {
            0.0
        } else {
            l.iter().map(|&x| f64::from(x)).sum::<f64>() / l.len() as f64 / 1000.0
        };
        let mut sorted_rounds = self.rounds.clone();
        sorted_rounds.sort_by(f64::total_cmp);
        let median = if sorted_rounds.is_empty() {
            0.0
        } else if sorted_rounds.len() % 2 == 1 {
            sorted_rounds[sorted_rounds.len() / 2]
        } else {
            let m = sorted_rounds.len() / 2;
            (sorted_rounds[m - 1] + sorted_rounds[m]) / 2.0
        };
        Cell {
            case: case.to_string(),
            clients,
            requests: self.ok,
            errors: self.errors,
            first_error: self.first_error,
            throughput: median,
            throughput_rounds: self.rounds,
            p50_us: us(percentile(l, 0.50)),
            p90_us: us(percentile(l, 0.90)),
            p99_us: us(percentile(l, 0.99)),
            p999_us: us(percentile(l, 0.999)),
            mean_us: mean,
        }
    }
}
