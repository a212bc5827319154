//! `/metrics` in the Prometheus text format: request counts and latencies by verb and
//! code, open watches, the store's revision.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::AtomicI64;
use std::time::Duration;

/// Upper bounds (seconds) of the request latency histogram.
const BUCKETS: &[f64] = &[0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0];

#[derive(Default)]
pub struct Metrics {
    pub watchers: AtomicI64,
    requests: Mutex<BTreeMap<(String, u16), Series>>,
}

#[derive(Default)]
struct Series {
    count: u64,
    sum: f64,
    buckets: [u64; 10],
}

impl Metrics {
    pub fn observe(&self, verb: &str, code: u16, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        let mut requests = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        let series = requests.entry((verb.to_string(), code)).or_default();
        series.count += 1;
        series.sum += seconds;
        for (i, bound) in BUCKETS.iter().enumerate() {
            if seconds <= *bound {
                series.buckets[i] += 1;
            }
        }
    }

    pub fn render(&self, revision: u64) -> String {
        let mut out = String::new();
        out.push_str("# HELP apiserver_request_total Requests by verb and HTTP code.\n# TYPE apiserver_request_total counter\n");
        let requests = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        for ((verb, code), series) in requests.iter() {
            out.push_str(&format!(
                "apiserver_request_total{{verb=\"{verb}\",code=\"{code}\"}} {}\n",
                series.count
            ));
        }
        out.push_str("# HELP apiserver_request_duration_seconds Request latency by verb.\n# TYPE apiserver_request_duration_seconds histogram\n");
        let mut by_verb: BTreeMap<&str, Series> = BTreeMap::new();
        for ((verb, _), series) in requests.iter() {
            let total = by_verb.entry(verb).or_default();
            total.count += series.count;
            total.sum += series.sum;
            for i in 0..BUCKETS.len() {
                total.buckets[i] += series.buckets[i];
            }
        }
        for (verb, series) in by_verb {
            for (i, bound) in BUCKETS.iter().enumerate() {
                out.push_str(&format!("apiserver_request_duration_seconds_bucket{{verb=\"{verb}\",le=\"{bound}\"}} {}\n", series.buckets[i]));
            }
            out.push_str(&format!(
                "apiserver_request_duration_seconds_bucket{{verb=\"{verb}\",le=\"+Inf\"}} {}\n",
                series.count
            ));
            out.push_str(&format!(
                "apiserver_request_duration_seconds_sum{{verb=\"{verb}\"}} {}\n",
                series.sum
            ));
            out.push_str(&format!(
                "apiserver_request_duration_seconds_count{{verb=\"{verb}\"}} {}\n",
                series.count
            ));
        }
        out.push_str(&format!(
            "# HELP apiserver_watchers Open watches.\n# TYPE apiserver_watchers gauge\napiserver_watchers {}\n",
            self.watchers.load(std::sync::atomic::Ordering::Relaxed)
        ));
        out.push_str(&format!("# HELP skiff_store_revision The store's current revision.\n# TYPE skiff_store_revision gauge\nskiff_store_revision {revision}\n"));
        out
    }
}
