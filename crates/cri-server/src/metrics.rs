//! Per-method call metrics: counts by gRPC code and a latency histogram, exportable as
//! Prometheus text.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tonic::Code;

/// Every CRI method as `(service, method)`, in proto order; the index is the method's slot.
pub(crate) const METHODS: [(&str, &str); 43] = [
    ("RuntimeService", "Version"),
    ("RuntimeService", "RunPodSandbox"),
    ("RuntimeService", "StopPodSandbox"),
    ("RuntimeService", "RemovePodSandbox"),
    ("RuntimeService", "PodSandboxStatus"),
    ("RuntimeService", "ListPodSandbox"),
    ("RuntimeService", "StreamPodSandboxes"),
    ("RuntimeService", "CreateContainer"),
    ("RuntimeService", "StartContainer"),
    ("RuntimeService", "StopContainer"),
    ("RuntimeService", "RemoveContainer"),
    ("RuntimeService", "ListContainers"),
    ("RuntimeService", "StreamContainers"),
    ("RuntimeService", "ContainerStatus"),
    ("RuntimeService", "UpdateContainerResources"),
    ("RuntimeService", "ReopenContainerLog"),
    ("RuntimeService", "ExecSync"),
    ("RuntimeService", "Exec"),
    ("RuntimeService", "Attach"),
    ("RuntimeService", "PortForward"),
    ("RuntimeService", "ContainerStats"),
    ("RuntimeService", "ListContainerStats"),
    ("RuntimeService", "StreamContainerStats"),
    ("RuntimeService", "PodSandboxStats"),
    ("RuntimeService", "ListPodSandboxStats"),
    ("RuntimeService", "StreamPodSandboxStats"),
    ("RuntimeService", "UpdateRuntimeConfig"),
    ("RuntimeService", "Status"),
    ("RuntimeService", "CheckpointContainer"),
    ("RuntimeService", "CheckpointPod"),
    ("RuntimeService", "RestorePod"),
    ("RuntimeService", "GetContainerEvents"),
    ("RuntimeService", "ListMetricDescriptors"),
    ("RuntimeService", "ListPodSandboxMetrics"),
    ("RuntimeService", "StreamPodSandboxMetrics"),
    ("RuntimeService", "RuntimeConfig"),
    ("RuntimeService", "UpdatePodSandboxResources"),
    ("ImageService", "ListImages"),
    ("ImageService", "StreamImages"),
    ("ImageService", "ImageStatus"),
    ("ImageService", "PullImage"),
    ("ImageService", "RemoveImage"),
    ("ImageService", "ImageFsInfo"),
];

/// The slot of `method` in [`METHODS`]; evaluated at compile time by the adapters.
pub(crate) const fn method_index(method: &str) -> usize {
    let mut i = 0;
    while i < METHODS.len() {
        if str_eq(METHODS[i].1, method) {
            return i;
        }
        i += 1;
    }
    panic!("unknown CRI method")
}

const fn str_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// Upper bounds of the latency histogram buckets, in seconds (a last bucket holds the rest).
pub const LATENCY_BUCKETS: [f64; 16] = [
    0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
    30.0, 120.0,
];

/// [`LATENCY_BUCKETS`] in nanoseconds, so that recording a call compares integers.
const BUCKET_NANOS: [u64; LATENCY_BUCKETS.len()] = {
    let mut nanos = [0; LATENCY_BUCKETS.len()];
    let mut i = 0;
    while i < nanos.len() {
        nanos[i] = (LATENCY_BUCKETS[i] * 1e9) as u64;
        i += 1;
    }
    nanos
};

const CODES: usize = 17;

#[derive(Default)]
struct MethodSlot {
    by_code: [AtomicU64; CODES],
    buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    sum_nanos: AtomicU64,
}

/// Call metrics of a server, shared by all its connections. Cheap to clone.
///
/// ```
/// let metrics = cri_server::Metrics::default();
/// assert!(metrics.snapshot().iter().all(|m| m.calls == 0));
/// assert!(metrics.render_prometheus().contains("# TYPE cri_server_calls_total counter"));
/// ```
#[derive(Clone)]
pub struct Metrics {
    slots: Arc<[MethodSlot]>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            slots: (0..METHODS.len()).map(|_| MethodSlot::default()).collect(),
        }
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let calls: u64 = self.snapshot().iter().map(|m| m.calls).sum();
        f.debug_struct("Metrics").field("calls", &calls).finish()
    }
}

/// One method's figures at the time of [`Metrics::snapshot`].
#[derive(Clone, Debug, PartialEq)]
pub struct MethodStats {
    /// `"RuntimeService"` or `"ImageService"`.
    pub service: &'static str,
    /// The CRI method, e.g. `"RunPodSandbox"`.
    pub method: &'static str,
    /// Calls finished, whatever their outcome.
    pub calls: u64,
    /// Finished calls by gRPC code (only codes seen), `Ok` included.
    pub by_code: Vec<(Code, u64)>,
    /// Calls per latency bucket: the i-th entry counts calls of at most
    /// `LATENCY_BUCKETS[i]` seconds (and more than the previous bound); the last, the rest.
    pub latency_buckets: Vec<u64>,
    /// Sum of all call latencies.
    pub latency_sum: Duration,
}

impl MethodStats {
    /// Calls that finished with a code other than `Ok`.
    pub fn errors(&self) -> u64 {
        self.by_code
            .iter()
            .filter(|(code, _)| *code != Code::Ok)
            .map(|(_, n)| n)
            .sum()
    }
}

impl Metrics {
    pub(crate) fn record(&self, method: usize, code: Code, latency: Duration) {
        let slot = &self.slots[method];
        slot.by_code[(code as usize).min(CODES - 1)].fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        let bucket = BUCKET_NANOS
            .iter()
            .position(|bound| nanos <= *bound)
            .unwrap_or(LATENCY_BUCKETS.len());
        slot.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        slot.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// The figures of every method, in proto order.
    pub fn snapshot(&self) -> Vec<MethodStats> {
        METHODS
            .iter()
            .zip(self.slots.iter())
            .map(|(&(service, method), slot)| {
                let by_code: Vec<(Code, u64)> = slot
                    .by_code
                    .iter()
                    .enumerate()
                    .map(|(code, n)| (Code::from(code as i32), n.load(Ordering::Relaxed)))
                    .filter(|(_, n)| *n > 0)
                    .collect();
                MethodStats {
                    service,
                    method,
                    calls: by_code.iter().map(|(_, n)| n).sum(),
                    by_code,
                    latency_buckets: slot
                        .buckets
                        .iter()
                        .map(|b| b.load(Ordering::Relaxed))
                        .collect(),
                    latency_sum: Duration::from_nanos(slot.sum_nanos.load(Ordering::Relaxed)),
                }
            })
            .collect()
    }

    /// The metrics in the Prometheus text exposition format (version 0.0.4), ready to be
    /// served on a `/metrics` endpoint. Methods never called are left out.
    ///
    /// - `cri_server_calls_total{service,method,code}`: counter of finished calls;
    /// - `cri_server_call_duration_seconds{service,method}`: latency histogram.
    pub fn render_prometheus(&self) -> String {
        let stats: Vec<MethodStats> = self
            .snapshot()
            .into_iter()
            .filter(|m| m.calls > 0)
            .collect();
        let mut out = String::new();
        out.push_str("# HELP cri_server_calls_total CRI calls finished, by gRPC status code.\n");
        out.push_str("# TYPE cri_server_calls_total counter\n");
        for m in &stats {
            for (code, n) in &m.by_code {
                let _ = writeln!(
                    out,
                    "cri_server_calls_total{{service=\"{}\",method=\"{}\",code=\"{}\"}} {n}",
                    m.service,
                    m.method,
                    code_name(*code)
                );
            }
        }
        out.push_str("# HELP cri_server_call_duration_seconds Latency of CRI calls.\n");
        out.push_str("# TYPE cri_server_call_duration_seconds histogram\n");
        for m in &stats {
            let labels = format!("service=\"{}\",method=\"{}\"", m.service, m.method);
            let mut cumulative = 0;
            for (bound, n) in LATENCY_BUCKETS.iter().zip(&m.latency_buckets) {
                cumulative += n;
                let _ = writeln!(
                    out,
                    "cri_server_call_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {cumulative}"
                );
            }
            let _ = writeln!(
                out,
                "cri_server_call_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
                m.calls
            );
            let _ = writeln!(
                out,
                "cri_server_call_duration_seconds_sum{{{labels}}} {}",
                m.latency_sum.as_secs_f64()
            );
            let _ = writeln!(
                out,
                "cri_server_call_duration_seconds_count{{{labels}}} {}",
                m.calls
            );
        }
        out
    }
}

/// The canonical upper-snake name of a gRPC code (`NOT_FOUND`).
pub(crate) fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_table_is_complete_and_indexed() {
        assert_eq!(method_index("Version"), 0);
        assert_eq!(method_index("ImageFsInfo"), 42);
        let mut names: Vec<_> = METHODS.iter().map(|(_, m)| *m).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), 43);
    }

    #[test]
    fn records_codes_and_latency() {
        let metrics = Metrics::default();
        let idx = method_index("ExecSync");
        metrics.record(idx, Code::Ok, Duration::from_micros(100));
        metrics.record(idx, Code::Ok, Duration::from_millis(3));
        metrics.record(idx, Code::DeadlineExceeded, Duration::from_secs(500));
        let stats = &metrics.snapshot()[idx];
        assert_eq!(stats.calls, 3);
        assert_eq!(stats.errors(), 1);
        assert_eq!(
            stats.by_code,
            vec![(Code::Ok, 2), (Code::DeadlineExceeded, 1)]
        );
        assert_eq!(stats.latency_buckets[0], 1, "100µs <= 250µs");
        assert_eq!(stats.latency_buckets[4], 1, "3ms <= 5ms");
        assert_eq!(stats.latency_buckets[16], 1, "500s in the overflow bucket");

        let text = metrics.render_prometheus();
        assert!(text.contains(
            "cri_server_calls_total{service=\"RuntimeService\",method=\"ExecSync\",code=\"DEADLINE_EXCEEDED\"} 1"
        ));
        assert!(text.contains(
            "cri_server_call_duration_seconds_bucket{service=\"RuntimeService\",method=\"ExecSync\",le=\"0.005\"} 2"
        ));
        assert!(text.contains(
            "cri_server_call_duration_seconds_count{service=\"RuntimeService\",method=\"ExecSync\"} 3"
        ));
        assert!(
            !text.contains("method=\"Version\""),
            "uncalled methods are left out"
        );
        metrics.record(idx, Code::Ok, Duration::from_micros(250));
        assert_eq!(
            metrics.snapshot()[idx].latency_buckets[0],
            2,
            "a bound belongs to its bucket"
        );
    }
}
