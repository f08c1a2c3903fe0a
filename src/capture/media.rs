//! A leg's media facts when it is released: codec, packets, loss, jitter, round trip, and a
//! MOS estimate from them (the ITU-T G.107 E-model, simplified as the common VoIP monitoring
//! tools do: an effective latency of half the round trip plus twice the jitter plus 10 ms, and
//! 2.5 R points per percent of loss). Also adds the leg to the RTP metrics.

use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::media::session::StreamStats;
use crate::metrics::METRICS;

/// A mean opinion score (1 to 4.5) from loss (share of packets, 0 to 1), jitter and round trip.
pub fn mos_estimate(loss: f64, jitter: Duration, round_trip: Option<Duration>) -> f64 {
    let latency_ms = round_trip.map_or(0.0, |rtt| rtt.as_secs_f64() * 500.0)
        + jitter.as_secs_f64() * 2000.0
        + 10.0;
    let delay_impairment = if latency_ms < 160.0 {
        latency_ms / 40.0
    } else {
        (latency_ms - 120.0) / 10.0
    };
    let r = (93.2 - delay_impairment - 2.5 * loss.clamp(0.0, 1.0) * 100.0).clamp(0.0, 100.0);
    let mos = 1.0 + 0.035 * r + 0.000_007 * r * (r - 60.0) * (100.0 - r);
    (mos.clamp(1.0, 4.5) * 100.0).round() / 100.0
}

/// The facts of one leg as JSON, for its capture; counts them in the metrics.
pub fn leg_facts(codec: &str, stats: &StreamStats) -> serde_json::Value {
    METRICS
        .rtp_packets
        .add(&[("direction", "sent")], stats.packets_sent);
    METRICS
        .rtp_packets
        .add(&[("direction", "received")], stats.packets_received);
    METRICS
        .rtp_lost
        .fetch_add(stats.packets_lost.max(0) as u64, Ordering::Relaxed);
    if stats.packets_received > 0 {
        METRICS.rtp_jitter.observe(stats.jitter);
    }
    let round_trip = stats.remote.and_then(|report| report.round_trip);
    let mos = mos_estimate(
        f64::from(stats.loss_permille) / 1000.0,
        stats.jitter,
        round_trip,
    );
    serde_json::json!({
        "codec": codec,
        "packets_sent": stats.packets_sent,
        "packets_received": stats.packets_received,
        "packets_lost": stats.packets_lost,
        "loss_permille": stats.loss_permille,
        "jitter_ms": stats.jitter.as_secs_f64() * 1000.0,
        "round_trip_ms": round_trip.map(|rtt| rtt.as_secs_f64() * 1000.0),
        "rtcp_received": stats.rtcp_received,
        "srtp_auth_failures": stats.srtp_auth_failures,
        "mos": (stats.packets_received > 0).then_some(mos),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clean_leg_scores_about_4_4_and_loss_lowers_it() {
        let clean = mos_estimate(
            0.0,
            Duration::from_millis(2),
            Some(Duration::from_millis(20)),
        );
        assert!((4.35..=4.45).contains(&clean), "{clean}");
        let lossy = mos_estimate(
            0.05,
            Duration::from_millis(2),
            Some(Duration::from_millis(20)),
        );
        assert!(lossy < clean - 0.3, "{lossy}");
        let awful = mos_estimate(
            0.5,
            Duration::from_millis(200),
            Some(Duration::from_secs(1)),
        );
        assert_eq!(awful, 1.0);
    }
}
