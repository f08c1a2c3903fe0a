//! Process-wide counters, gauges and histograms, served at `GET /metrics` in the Prometheus
//! text exposition format (version 0.0.4,
//! <https://prometheus.io/docs/instrumenting/exposition_formats/>).
//!
//! Names follow the Prometheus conventions (<https://prometheus.io/docs/practices/naming/>):
//! a `callml_` prefix, base units (`_seconds`, `_bytes`), `_total` on counters. Updates are
//! atomics (fixed histogram buckets) or, for labelled counters touched a few times per call, a
//! short mutex; nothing here is on the RTP path. [`METRICS`] is the one registry of the
//! process, as a Prometheus client's default registry is.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Upper bounds of latency histograms, in seconds.
const LATENCY_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];
/// Upper bounds of the jitter histogram, in seconds.
const JITTER_BUCKETS: [f64; 8] = [0.001, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32];

/// A histogram with fixed upper bounds; observations are lock-free.
pub struct Histogram {
    bounds: &'static [f64],
    /// One count per bound (not cumulative), then the overflow (`+Inf`).
    counts: Vec<AtomicU64>,
    /// Sum of observations in nanoseconds (or, for non-time values, in billionths).
    sum_nanos: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_nanos: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, value: Duration) {
        let seconds = value.as_secs_f64();
        let slot = self
            .bounds
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(self.bounds.len());
        self.counts[slot].fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(value.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        let sep = if labels.is_empty() { "" } else { "," };
        for (bound, count) in self.bounds.iter().zip(&self.counts) {
            cumulative += count.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {cumulative}"
            );
        }
        cumulative += self.counts[self.bounds.len()].load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {cumulative}"
        );
        let sum = self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        let braces = |labels: &str| {
            if labels.is_empty() {
                String::new()
            } else {
                format!("{{{labels}}}")
            }
        };
        let _ = writeln!(out, "{name}_sum{} {sum}", braces(labels));
        let _ = writeln!(out, "{name}_count{} {cumulative}", braces(labels));
    }
}

/// A counter with labels, kept as rendered label sets (`direction="inbound",status="busy"`).
#[derive(Default)]
pub struct LabelledCounter {
    values: Mutex<BTreeMap<String, u64>>,
}

impl LabelledCounter {
    /// Adds `by` to the series with these label pairs (values are escaped here).
    pub fn add(&self, labels: &[(&str, &str)], by: u64) {
        let key = render_labels(labels);
        *self
            .values
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(key)
            .or_default() += by;
    }

    pub fn inc(&self, labels: &[(&str, &str)]) {
        self.add(labels, 1);
    }

    /// The value of one series (0 when it was never touched).
    pub fn get(&self, labels: &[(&str, &str)]) -> u64 {
        let key = render_labels(labels);
        self.values
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
            .copied()
            .unwrap_or(0)
    }

    fn render(&self, out: &mut String, name: &str) {
        let values = self.values.lock().unwrap_or_else(PoisonError::into_inner);
        for (labels, value) in values.iter() {
            let _ = writeln!(out, "{name}{{{labels}}} {value}");
        }
    }
}

/// `name="value",...` with the exposition format's escapes (backslash, quote, newline).
fn render_labels(labels: &[(&str, &str)]) -> String {
    let mut out = String::new();
    for (i, (name, value)) in labels.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(name);
        out.push_str("=\"");
        for c in value.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                '\n' => out.push_str("\\n"),
                c => out.push(c),
            }
        }
        out.push('"');
    }
    out
}

/// Every metric of the process.
pub struct Metrics {
    started: SystemTime,
    /// Calls (legs) that reached a final status, by `direction` and `status`.
    pub calls: LabelledCounter,
    /// Call tasks running now.
    pub active_calls: AtomicI64,
    /// From a leg's creation to its answer.
    pub call_setup: Histogram,
    /// SIP requests by `direction` (`in`, `out`) and `method`, retransmissions included.
    pub sip_requests: LabelledCounter,
    /// SIP responses by `direction`, `method` (of the CSeq) and `status`.
    pub sip_responses: LabelledCounter,
    /// Messages identical to one sent or received in the last 32 s, by `direction`.
    pub sip_retransmissions: LabelledCounter,
    /// New SIP transactions (requests other than ACK, not retransmitted), by `role`
    /// (`server`, `client`).
    pub sip_transactions: LabelledCounter,
    /// Document fetches and status callbacks, by `kind` (`document`, `callback`).
    pub webhook_duration: [Histogram; 2],
    /// Failed requests to customer URLs, by `kind` and Twilio `code`.
    pub webhook_errors: LabelledCounter,
    /// RTP packets of finished legs, by `direction` (`sent`, `received`).
    pub rtp_packets: LabelledCounter,
    /// RTP packets lost on the way to callml, in finished legs.
    pub rtp_lost: AtomicU64,
    /// Interarrival jitter of each finished leg.
    pub rtp_jitter: Histogram,
    /// Legs handed to the relay engine now.
    pub relayed_bridges: AtomicI64,
    /// One group commit of the store.
    pub store_write: Histogram,
    /// Capture records not kept because the capture queue was full.
    pub capture_dropped: AtomicU64,
    /// Capture records written.
    pub capture_written: AtomicU64,
    /// HEP packets sent to the collector.
    pub hep_sent: AtomicU64,
}

/// The process's metrics.
pub static METRICS: LazyLock<Metrics> = LazyLock::new(|| Metrics {
    started: SystemTime::now(),
    calls: LabelledCounter::default(),
    active_calls: AtomicI64::new(0),
    call_setup: Histogram::new(&LATENCY_BUCKETS),
    sip_requests: LabelledCounter::default(),
    sip_responses: LabelledCounter::default(),
    sip_retransmissions: LabelledCounter::default(),
    sip_transactions: LabelledCounter::default(),
    webhook_duration: [
        Histogram::new(&LATENCY_BUCKETS),
        Histogram::new(&LATENCY_BUCKETS),
    ],
    webhook_errors: LabelledCounter::default(),
    rtp_packets: LabelledCounter::default(),
    rtp_lost: AtomicU64::new(0),
    rtp_jitter: Histogram::new(&JITTER_BUCKETS),
    relayed_bridges: AtomicI64::new(0),
    store_write: Histogram::new(&LATENCY_BUCKETS),
    capture_dropped: AtomicU64::new(0),
    capture_written: AtomicU64::new(0),
    hep_sent: AtomicU64::new(0),
});

/// Which request to a customer URL a webhook observation is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookKind {
    Document = 0,
    Callback = 1,
}

impl WebhookKind {
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookKind::Document => "document",
            WebhookKind::Callback => "callback",
        }
    }
}

/// Writes `# HELP` and `# TYPE` for one metric family.
fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

impl Metrics {
    /// The whole registry in the text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(8 * 1024);
        family(
            &mut out,
            "callml_calls_total",
            "counter",
            "Call legs that reached a final status, by direction and status.",
        );
        self.calls.render(&mut out, "callml_calls_total");
        family(
            &mut out,
            "callml_calls_active",
            "gauge",
            "Calls whose task is running.",
        );
        let _ = writeln!(
            out,
            "callml_calls_active {}",
            self.active_calls.load(Ordering::Relaxed)
        );
        family(
            &mut out,
            "callml_call_setup_seconds",
            "histogram",
            "Time from a leg's creation to its answer.",
        );
        self.call_setup
            .render(&mut out, "callml_call_setup_seconds", "");
        family(
            &mut out,
            "callml_sip_requests_total",
            "counter",
            "SIP requests by direction (in, out) and method, retransmissions included.",
        );
        self.sip_requests
            .render(&mut out, "callml_sip_requests_total");
        family(
            &mut out,
            "callml_sip_responses_total",
            "counter",
            "SIP responses by direction, CSeq method and status code.",
        );
        self.sip_responses
            .render(&mut out, "callml_sip_responses_total");
        family(
            &mut out,
            "callml_sip_retransmissions_total",
            "counter",
            "SIP messages identical to one of the last 32 seconds, by direction.",
        );
        self.sip_retransmissions
            .render(&mut out, "callml_sip_retransmissions_total");
        family(
            &mut out,
            "callml_sip_transactions_total",
            "counter",
            "SIP transactions started, by role (server, client).",
        );
        self.sip_transactions
            .render(&mut out, "callml_sip_transactions_total");
        family(
            &mut out,
            "callml_webhook_duration_seconds",
            "histogram",
            "Requests to customer URLs, by kind (document, callback).",
        );
        for kind in [WebhookKind::Document, WebhookKind::Callback] {
            self.webhook_duration[kind as usize].render(
                &mut out,
                "callml_webhook_duration_seconds",
                &format!("kind=\"{}\"", kind.as_str()),
            );
        }
        family(
            &mut out,
            "callml_webhook_errors_total",
            "counter",
            "Failed requests to customer URLs, by kind and Twilio error code.",
        );
        self.webhook_errors
            .render(&mut out, "callml_webhook_errors_total");
        family(
            &mut out,
            "callml_rtp_packets_total",
            "counter",
            "RTP packets of finished legs, by direction (sent, received).",
        );
        self.rtp_packets
            .render(&mut out, "callml_rtp_packets_total");
        family(
            &mut out,
            "callml_rtp_packets_lost_total",
            "counter",
            "RTP packets lost on the way to callml, in finished legs.",
        );
        let _ = writeln!(
            out,
            "callml_rtp_packets_lost_total {}",
            self.rtp_lost.load(Ordering::Relaxed)
        );
        family(
            &mut out,
            "callml_rtp_jitter_seconds",
            "histogram",
            "Interarrival jitter (RFC 3550) of each finished leg.",
        );
        self.rtp_jitter
            .render(&mut out, "callml_rtp_jitter_seconds", "");
        family(
            &mut out,
            "callml_relay_bridges",
            "gauge",
            "Bridges whose packets the relay engine forwards now.",
        );
        let _ = writeln!(
            out,
            "callml_relay_bridges {}",
            self.relayed_bridges.load(Ordering::Relaxed)
        );
        family(
            &mut out,
            "callml_store_write_duration_seconds",
            "histogram",
            "One group commit of the SQLite store.",
        );
        self.store_write
            .render(&mut out, "callml_store_write_duration_seconds", "");
        for (name, help, value) in [
            (
                "callml_capture_records_total",
                "Capture records (SIP messages, webhooks) written.",
                &self.capture_written,
            ),
            (
                "callml_capture_dropped_total",
                "Capture records dropped because the capture queue was full.",
                &self.capture_dropped,
            ),
            (
                "callml_hep_packets_total",
                "HEP packets sent to the collector.",
                &self.hep_sent,
            ),
        ] {
            family(&mut out, name, "counter", help);
            let _ = writeln!(out, "{name} {}", value.load(Ordering::Relaxed));
        }
        self.render_process(&mut out);
        out
    }

    /// The standard `process_*` metrics, from `/proc/self` where there is one.
    fn render_process(&self, out: &mut String) {
        let start = self
            .started
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64();
        family(
            out,
            "process_start_time_seconds",
            "gauge",
            "Start time of the process since the Unix epoch, in seconds.",
        );
        let _ = writeln!(out, "process_start_time_seconds {start}");
        let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
            return;
        };
        // Fields after the command name (which may hold spaces), from field 3 (state) on.
        let Some(fields) = stat.rsplit_once(')').map(|(_, rest)| {
            rest.split_whitespace()
                .map(|f| f.parse::<u64>().unwrap_or(0))
                .collect::<Vec<_>>()
        }) else {
            return;
        };
        // SAFETY: sysconf has no preconditions.
        let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(1) as u64;
        let field = |n: usize| fields.get(n - 3).copied().unwrap_or(0);
        let cpu = (field(14) + field(15)) as f64 / ticks;
        family(
            out,
            "process_cpu_seconds_total",
            "counter",
            "User and system CPU time spent, in seconds.",
        );
        let _ = writeln!(out, "process_cpu_seconds_total {cpu}");
        family(
            out,
            "process_virtual_memory_bytes",
            "gauge",
            "Virtual memory size in bytes.",
        );
        let _ = writeln!(out, "process_virtual_memory_bytes {}", field(23));
        family(
            out,
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory size in bytes.",
        );
        let _ = writeln!(out, "process_resident_memory_bytes {}", field(24) * page);
        if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
            family(
                out,
                "process_open_fds",
                "gauge",
                "Number of open file descriptors.",
            );
            let _ = writeln!(out, "process_open_fds {}", fds.count());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_and_end_in_inf() {
        let histogram = Histogram::new(&LATENCY_BUCKETS);
        histogram.observe(Duration::from_millis(3));
        histogram.observe(Duration::from_millis(30));
        histogram.observe(Duration::from_secs(60));
        let mut out = String::new();
        histogram.render(&mut out, "h_seconds", "kind=\"x\"");
        assert!(out.contains("h_seconds_bucket{kind=\"x\",le=\"0.0025\"} 0\n"));
        assert!(out.contains("h_seconds_bucket{kind=\"x\",le=\"0.005\"} 1\n"));
        assert!(out.contains("h_seconds_bucket{kind=\"x\",le=\"0.05\"} 2\n"));
        assert!(out.contains("h_seconds_bucket{kind=\"x\",le=\"+Inf\"} 3\n"));
        assert!(out.contains("h_seconds_count{kind=\"x\"} 3\n"));
        assert!(out.contains("h_seconds_sum{kind=\"x\"} 60.033\n"), "{out}");
    }

    #[test]
    fn label_values_are_escaped() {
        let counter = LabelledCounter::default();
        counter.inc(&[("method", "A\"B\\C\nD")]);
        let mut out = String::new();
        counter.render(&mut out, "c_total");
        assert_eq!(out, "c_total{method=\"A\\\"B\\\\C\\nD\"} 1\n");
        assert_eq!(counter.get(&[("method", "A\"B\\C\nD")]), 1);
    }

    #[test]
    fn the_registry_renders_every_family_with_help_and_type() {
        let text = METRICS.render();
        for name in [
            "callml_calls_total",
            "callml_calls_active",
            "callml_call_setup_seconds",
            "callml_sip_requests_total",
            "callml_webhook_duration_seconds",
            "callml_store_write_duration_seconds",
            "process_start_time_seconds",
        ] {
            assert!(text.contains(&format!("# TYPE {name} ")), "{name} missing");
        }
    }
}
