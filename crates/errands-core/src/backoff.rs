//! How long a failed job waits before its next attempt.

use chrono::Duration;
use rand::Rng;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A retry backoff policy. Durations are seconds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum Backoff {
    /// `min(cap, base * 2^(attempt-1))`, with the upper half jittered when `jitter` is set
    /// so that jobs failing together do not retry together.
    Exponential {
        /// Delay before the first retry, in seconds.
        base: f64,
        /// Longest delay, in seconds.
        cap: f64,
        /// Spread each delay at random over `[d/2, d]`.
        #[serde(default = "default_jitter")]
        jitter: bool,
    },
    /// The same delay before every retry.
    Fixed {
        /// Delay in seconds.
        delay: f64,
    },
    /// Retry at once.
    None,
}

fn default_jitter() -> bool {
    true
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::Exponential {
            base: 1.0,
            cap: 3600.0,
            jitter: true,
        }
    }
}

impl Backoff {
    /// The delay before the retry that follows failed attempt number `attempt` (1-based).
    pub fn delay(&self, attempt: u32, rng: &mut impl Rng) -> Duration {
        let seconds = match *self {
            Backoff::Exponential { base, cap, jitter } => {
                let exponent = attempt.saturating_sub(1).min(62) as i32;
                let full = (base * 2f64.powi(exponent)).min(cap);
                if jitter {
                    full / 2.0 + rng.random::<f64>() * full / 2.0
                } else {
                    full
                }
            }
            Backoff::Fixed { delay } => delay,
            Backoff::None => 0.0,
        };
        seconds_to_duration(seconds)
    }

    /// Checks that every duration is a number of seconds from 0 to [`MAX_SECONDS`].
    pub fn validate(&self) -> Result<(), &'static str> {
        let ok = |s: f64| (0.0..=MAX_SECONDS).contains(&s);
        match *self {
            Backoff::Exponential { base, cap, .. } if !(ok(base) && ok(cap)) => {
                Err("backoff base and cap must be between 0 and 100 years in seconds")
            }
            Backoff::Fixed { delay } if !ok(delay) => {
                Err("backoff delay must be between 0 and 100 years in seconds")
            }
            _ => Ok(()),
        }
    }
}

/// The longest duration the server accepts anywhere (100 years), so time arithmetic never
/// overflows.
pub const MAX_SECONDS: f64 = 100.0 * 365.0 * 86_400.0;

/// Converts seconds (as sent on the wire) to a duration, rounding to milliseconds and clamping
/// to `0..=MAX_SECONDS`.
pub fn seconds_to_duration(seconds: f64) -> Duration {
    let seconds = if seconds.is_nan() {
        0.0
    } else {
        seconds.clamp(0.0, MAX_SECONDS)
    };
    Duration::milliseconds((seconds * 1000.0).round() as i64)
}

/// Converts a duration to seconds for the wire.
pub fn duration_to_seconds(duration: Duration) -> f64 {
    duration.num_milliseconds() as f64 / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn rng() -> StdRng {
        StdRng::seed_from_u64(7)
    }

    #[test]
    fn exponential_doubles_up_to_the_cap() {
        let policy = Backoff::Exponential {
            base: 2.0,
            cap: 10.0,
            jitter: false,
        };
        let delays: Vec<i64> = (1..=5)
            .map(|attempt| policy.delay(attempt, &mut rng()).num_seconds())
            .collect();
        assert_eq!(delays, [2, 4, 8, 10, 10]);
    }

    #[test]
    fn jitter_stays_within_the_upper_half() {
        let policy = Backoff::Exponential {
            base: 8.0,
            cap: 100.0,
            jitter: true,
        };
        let mut rng = rng();
        for _ in 0..1000 {
            let ms = policy.delay(1, &mut rng).num_milliseconds();
            assert!((4000..=8000).contains(&ms), "{ms} outside [4s, 8s]");
        }
    }

    #[test]
    fn huge_attempt_numbers_do_not_overflow() {
        let policy = Backoff::Exponential {
            base: 1.0,
            cap: 60.0,
            jitter: false,
        };
        assert_eq!(policy.delay(u32::MAX, &mut rng()).num_seconds(), 60);
    }

    #[test]
    fn fixed_and_none() {
        assert_eq!(
            Backoff::Fixed { delay: 1.5 }
                .delay(9, &mut rng())
                .num_milliseconds(),
            1500
        );
        assert_eq!(Backoff::None.delay(3, &mut rng()), Duration::zero());
    }

    #[test]
    fn wire_format() {
        let parsed: Backoff =
            serde_json::from_str(r#"{"type":"exponential","base":1,"cap":60}"#).unwrap();
        assert_eq!(
            parsed,
            Backoff::Exponential {
                base: 1.0,
                cap: 60.0,
                jitter: true
            }
        );
        assert!(serde_json::from_str::<Backoff>(r#"{"type":"linear"}"#).is_err());
        assert!(Backoff::Fixed { delay: -1.0 }.validate().is_err());
    }
}
