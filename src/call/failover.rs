//! Failover between the `<Uri>`s of one `<Sip>` noun (pure).
//!
//! Order: by `priority`, lowest first; within a priority, RFC 2782's weighted selection
//! ("Usage rules", the SRV selection algorithm): a running sum of the weights of the URIs not
//! yet chosen, a random number in `0..=sum`, the first URI whose running sum reaches it comes
//! next. A URI of weight 10 beside one of weight 30 is tried first a quarter of the time.
//!
//! When the next URI is tried (Twilio's origination failover): the one before gave no
//! response (Timer B, RFC 3261 §17.1.1.2, or a 408), could not be reached (a transport
//! failure, §18.4; a host that does not resolve, RFC 3263), or answered 5xx (§21.5: a server
//! failure, somewhere else may serve). Any other final answer stops: a 4xx is the callee's
//! answer (486 busy is an answer, not a failure), a 6xx says no server will do better
//! (§21.6).

use crate::markup::ast::SipUriChoice;

/// Indexes of `choices` in the order to try them; `random(max)` is a uniform pick in
/// `0..=max` (`rand::random_range` in a call, a script in tests).
pub fn order(choices: &[SipUriChoice], mut random: impl FnMut(u32) -> u32) -> Vec<usize> {
    let mut left: Vec<usize> = (0..choices.len()).collect();
    left.sort_by_key(|&i| choices[i].priority);
    let mut ordered = Vec::with_capacity(choices.len());
    while let Some(&first) = left.first() {
        let priority = choices[first].priority;
        let same = left
            .iter()
            .take_while(|&&i| choices[i].priority == priority)
            .count();
        let total: u32 = left[..same]
            .iter()
            .map(|&i| u32::from(choices[i].weight))
            .sum();
        let target = random(total);
        let mut running = 0;
        let position = left[..same]
            .iter()
            .position(|&i| {
                running += u32::from(choices[i].weight);
                running >= target
            })
            .unwrap_or(0);
        ordered.push(left.remove(position));
    }
    ordered
}

/// Whether a final response with `status` to one URI's INVITE sends the call to the next.
pub fn fails_over_on(status: u16) -> bool {
    status == 408 || (500..600).contains(&status)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::markup::parse_sip_uri;

    fn choice(host: &str, priority: u16, weight: u16) -> SipUriChoice {
        SipUriChoice {
            priority,
            weight,
            ..SipUriChoice::new(parse_sip_uri(&format!("sip:a@{host}")).unwrap())
        }
    }

    #[test]
    fn lower_priorities_come_first_whatever_the_weights() {
        let choices = [
            choice("c", 20, 1),
            choice("a", 0, 1),
            choice("b", 10, 65535),
        ];
        assert_eq!(order(&choices, |_| 0), vec![1, 2, 0]);
    }

    #[test]
    fn within_a_priority_the_pick_falls_by_running_weight() {
        let choices = [choice("a", 5, 10), choice("b", 5, 30)];
        // Sums 10 and 40: a pick up to 10 chooses a, above it b.
        assert_eq!(order(&choices, |_| 10), vec![0, 1]);
        assert_eq!(order(&choices, |_| 11), vec![1, 0]);
        let mut totals = Vec::new();
        order(&choices, |total| {
            totals.push(total);
            total
        });
        // The second pick is among what is left: b's 30 once a's 10 is gone.
        assert_eq!(totals, vec![40, 10]);
    }

    #[test]
    fn weights_share_the_first_tries_in_proportion() {
        let choices = [choice("a", 1, 10), choice("b", 1, 30)];
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut firsts = [0u32; 2];
        for _ in 0..4000 {
            let first = order(&choices, |max| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                (seed % (u64::from(max) + 1)) as u32
            })[0];
            firsts[first] += 1;
        }
        // Expected a: 11 of 41 picks (0..=10), about 1073 of 4000.
        assert!((900..1250).contains(&firsts[0]), "{firsts:?}");
    }

    #[test]
    fn no_response_and_server_failures_fail_over_answers_do_not() {
        for status in [408, 500, 503, 504, 599] {
            assert!(fails_over_on(status), "{status}");
        }
        for status in [404, 480, 486, 487, 488, 600, 603] {
            assert!(!fails_over_on(status), "{status}");
        }
    }
}
