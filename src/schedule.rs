//! When rotations happen: a fixed interval, a cron expression, or on request.

use std::str::FromStr;
use std::time::Duration;

use croner::Cron;
use jiff::Timestamp;

/// Why a rotation started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    Schedule,
    RotationRequest,
    Annotation,
    /// A rotation found staged after a crash, before status recorded it.
    Resumed,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Schedule => "Schedule",
            Trigger::RotationRequest => "RotationRequest",
            Trigger::Annotation => "Annotation",
            Trigger::Resumed => "Resumed",
        }
    }
}

#[derive(Clone, Debug)]
pub enum ScheduleRule {
    Every(Duration),
    Cron(Box<Cron>),
}

impl PartialEq for ScheduleRule {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (ScheduleRule::Every(a), ScheduleRule::Every(b)) => a == b,
            (ScheduleRule::Cron(a), ScheduleRule::Cron(b)) => {
                a.pattern.to_string() == b.pattern.to_string()
            }
            _ => false,
        }
    }
}

impl ScheduleRule {
    pub fn cron(expression: &str) -> Result<Self, String> {
        Cron::from_str(expression)
            .map(|c| ScheduleRule::Cron(Box::new(c)))
            .map_err(|e| format!("invalid cron expression {expression:?}: {e}"))
    }

    /// The first rotation time strictly after `after`.
    pub fn next_after(&self, after: Timestamp) -> Option<Timestamp> {
        match self {
            ScheduleRule::Every(every) => after.checked_add(*every).ok(),
            ScheduleRule::Cron(cron) => {
                let after = chrono::DateTime::from_timestamp(
                    after.as_second(),
                    after.subsec_nanosecond().try_into().ok()?,
                )?;
                let next = cron.find_next_occurrence(&after, false).ok()?;
                Timestamp::new(
                    next.timestamp(),
                    next.timestamp_subsec_nanos().try_into().ok()?,
                )
                .ok()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn every_adds_the_interval() {
        let rule = ScheduleRule::Every(Duration::from_secs(3600));
        assert_eq!(
            rule.next_after(ts("2026-01-01T00:00:00Z")),
            Some(ts("2026-01-01T01:00:00Z"))
        );
    }

    #[test]
    fn cron_finds_the_next_match_in_utc() {
        let rule = ScheduleRule::cron("0 3 * * 0").unwrap();
        // 2026-01-01 is a Thursday; the next Sunday 03:00 is 2026-01-04.
        assert_eq!(
            rule.next_after(ts("2026-01-01T12:00:00Z")),
            Some(ts("2026-01-04T03:00:00Z"))
        );
        assert_eq!(
            rule.next_after(ts("2026-01-04T03:00:00Z")),
            Some(ts("2026-01-11T03:00:00Z"))
        );
    }

    #[test]
    fn bad_cron_names_the_expression() {
        let err = ScheduleRule::cron("61 * * * *").unwrap_err();
        assert!(err.contains("61 * * * *"), "{err}");
    }
}
