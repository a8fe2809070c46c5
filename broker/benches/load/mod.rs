//! What the load benches (`soak`, `fleet`) share: per-call latency
//! records and their percentiles.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Milliseconds per call kind.
pub type Latencies = Arc<Mutex<BTreeMap<&'static str, Vec<f64>>>>;

/// Runs `f`, recording how long it took under `what`.
pub async fn timed<T>(
    lat: &Latencies,
    what: &'static str,
    f: impl std::future::Future<Output = T>,
) -> T {
    let start = Instant::now();
    let out = f.await;
    let ms = start.elapsed().as_secs_f64() * 1000.0;
    lat.lock().unwrap().entry(what).or_default().push(ms);
    out
}

/// The `p` quantile (0..=1) of sorted values; 0 for none.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}
