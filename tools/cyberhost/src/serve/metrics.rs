//! `/metrics`: Prometheus text exposition.

use super::jobs::{State, Table};
use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    queue_depth: IntGauge,
    jobs: IntGaugeVec,
    pub step_seconds: Histogram,
    pub job_seconds: Histogram,
    pub latency_seconds: Histogram,
    pub http_errors: IntCounterVec,
    pub device_memory_used: Gauge,
    pub device_memory_total: Gauge,
}

fn buckets(lo: f64, factor: f64, n: usize) -> Vec<f64> {
    prometheus::exponential_buckets(lo, factor, n).unwrap_or_default()
}

/// A histogram of seconds with 20 doubling buckets from `lo`.
fn seconds(name: &str, help: &str, lo: f64) -> prometheus::Result<Histogram> {
    Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets(lo, 2.0, 20)))
}

impl Metrics {
    pub fn new() -> prometheus::Result<Self> {
        let registry = Registry::new_custom(Some("cyberhost".into()), None)?;
        let queue_depth = IntGauge::new("queue_depth", "Jobs waiting in the queue")?;
        let jobs = IntGaugeVec::new(Opts::new("jobs", "Jobs known, by state"), &["state"])?;
        let step_seconds = seconds("step_seconds", "Duration of one sampler step", 0.001)?;
        let job_seconds = seconds(
            "job_seconds",
            "Run time of a finished job (start to video written)",
            0.01,
        )?;
        let latency_seconds = seconds(
            "job_latency_seconds",
            "Submission to finish of a job (queue wait included)",
            0.01,
        )?;
        let http_errors = IntCounterVec::new(
            Opts::new(
                "http_errors_total",
                "Requests answered with an error, by status",
            ),
            &["code"],
        )?;
        let device_memory_used = Gauge::new(
            "device_memory_used_bytes",
            "GPU memory in use (NVML; 0 on the CPU backend)",
        )?;
        let device_memory_total = Gauge::new(
            "device_memory_total_bytes",
            "GPU memory in total (NVML; 0 on the CPU backend)",
        )?;
        let collectors: [Box<dyn prometheus::core::Collector>; 8] = [
            Box::new(queue_depth.clone()),
            Box::new(jobs.clone()),
            Box::new(step_seconds.clone()),
            Box::new(job_seconds.clone()),
            Box::new(latency_seconds.clone()),
            Box::new(http_errors.clone()),
            Box::new(device_memory_used.clone()),
            Box::new(device_memory_total.clone()),
        ];
        for c in collectors {
            registry.register(c)?;
        }
        Ok(Metrics {
            registry,
            queue_depth,
            jobs,
            step_seconds,
            job_seconds,
            latency_seconds,
            http_errors,
            device_memory_used,
            device_memory_total,
        })
    }

    /// The exposition text, with the gauges read from `table` now.
    pub fn render(&self, table: &Table) -> String {
        self.queue_depth.set(table.queue.len() as i64);
        for s in State::ALL {
            self.jobs
                .with_label_values(&[s.name()])
                .set(table.count(s) as i64);
        }
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    }
}
