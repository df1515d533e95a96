//! When rotations happen: a fixed interval, a cron expression, or on request.

use std::str::FromStr;
use std::time::Duration;

use croner::Cron;
use jiff::Timestamp;
use jiff::tz::TimeZone;

use crate::resource::Weekday;

/// Why a rotation started.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Trigger {
    Schedule,
    RotationRequest,
    Annotation,
    /// A rotation found staged after a crash, before status recorded it.
    Resumed,
    /// The target says the password expires soon.
    PasswordExpiring,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Schedule => "Schedule",
            Trigger::RotationRequest => "RotationRequest",
            Trigger::Annotation => "Annotation",
            Trigger::Resumed => "Resumed",
            Trigger::PasswordExpiring => "PasswordExpiring",
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

/// When scheduled rotations happen: the rule, spread by a jitter fixed per resource, and
/// held to a window.
#[derive(Clone, Debug, PartialEq)]
pub struct Schedule {
    pub rule: ScheduleRule,
    pub jitter: Duration,
    pub window: Option<Window>,
}

impl Schedule {
    /// The first scheduled start after `after` for the resource `seed` names: the rule's
    /// time, plus the resource's share of the jitter, then the first moment the window is
    /// open.
    pub fn next_after(&self, after: Timestamp, seed: &str) -> Option<Timestamp> {
        let due = self.rule.next_after(after)?;
        let due = due.checked_add(jitter_of(seed, self.jitter)).ok()?;
        match &self.window {
            Some(window) => window.next_open(due),
            None => Some(due),
        }
    }
}

/// A share of `jitter` fixed by `seed`: the same across restarts and replicas.
fn jitter_of(seed: &str, jitter: Duration) -> Duration {
    let seconds = jitter.as_secs();
    if seconds == 0 {
        return Duration::ZERO;
    }
    // FNV-1a: stable across releases, unlike the standard library's hasher.
    let hash = seed.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    Duration::from_secs(hash % seconds)
}

/// Days of the week and minutes of the day (UTC) when a scheduled rotation may start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Window {
    /// Bit `n` for the weekday `n` days after Monday.
    days: u8,
    /// Start (included) and end (excluded) minute of the day; the end may come before the
    /// start, wrapping past midnight. The whole day when `None`.
    minutes: Option<(u32, u32)>,
}

impl Window {
    pub fn new(days: &[Weekday], hours: Option<&str>) -> Result<Self, String> {
        let days = if days.is_empty() {
            0x7f
        } else {
            days.iter().fold(0, |bits, day| {
                bits | 1 << day.to_jiff().to_monday_zero_offset()
            })
        };
        let minutes = match hours {
            None => None,
            Some(hours) => {
                let minute = |hh_mm: &str| -> Option<u32> {
                    let (h, m) = hh_mm.split_once(':')?;
                    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
                    (h < 24 && m < 60 && hh_mm.len() == 5).then_some(h * 60 + m)
                };
                let parsed = hours
                    .split_once('-')
                    .and_then(|(start, end)| Some((minute(start)?, minute(end)?)));
                match parsed {
                    Some((start, end)) if start != end => Some((start, end)),
                    _ => {
                        return Err(format!(
                            "{hours:?} is not HH:MM-HH:MM with a start other than its end"
                        ));
                    }
                }
            }
        };
        Ok(Window { days, minutes })
    }

    pub fn contains(&self, t: Timestamp) -> bool {
        let zoned = t.to_zoned(TimeZone::UTC);
        let day_allowed = self.days & (1 << zoned.weekday().to_monday_zero_offset()) != 0;
        let minute =
            u32::from(zoned.hour().unsigned_abs()) * 60 + u32::from(zoned.minute().unsigned_abs());
        let hour_allowed = match self.minutes {
            None => true,
            Some((start, end)) if start < end => (start..end).contains(&minute),
            Some((start, end)) => minute >= start || minute < end,
        };
        day_allowed && hour_allowed
    }

    /// `t` if the window is open then, else the moment it next opens.
    pub fn next_open(&self, t: Timestamp) -> Option<Timestamp> {
        if self.contains(t) {
            return Some(t);
        }
        // A window opens at a midnight (a new day, or the tail of a wrapped range) or at its
        // start minute, within the next week.
        let today = t.to_zoned(TimeZone::UTC).date();
        (0..=7)
            .filter_map(|d| today.checked_add(jiff::Span::new().days(d)).ok())
            .flat_map(|day| {
                let start = self.minutes.map_or(0, |(start, _)| start);
                [0, start].map(|minute| {
                    let time = jiff::civil::time((minute / 60) as i8, (minute % 60) as i8, 0, 0);
                    day.to_datetime(time)
                        .to_zoned(TimeZone::UTC)
                        .ok()
                        .map(|z| z.timestamp())
                })
            })
            .flatten()
            .filter(|candidate| *candidate > t && self.contains(*candidate))
            .min()
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

    #[test]
    fn a_window_holds_a_due_rotation_until_it_opens() {
        // Weekends, 22:00-04:00: Saturday 23:00 is open; Friday 23:00 waits a day.
        let window =
            Window::new(&[Weekday::Saturday, Weekday::Sunday], Some("22:00-04:00")).unwrap();
        let open = ts("2026-01-03T23:00:00Z"); // a Saturday
        assert_eq!(window.next_open(open), Some(open));
        assert_eq!(
            window.next_open(ts("2026-01-02T23:00:00Z")), // a Friday
            Some(ts("2026-01-03T00:00:00Z")),
            "Saturday's early hours are in the window"
        );
        assert_eq!(
            window.next_open(ts("2026-01-04T05:00:00Z")), // Sunday after the range
            Some(ts("2026-01-04T22:00:00Z"))
        );
        assert_eq!(
            window.next_open(ts("2026-01-05T01:00:00Z")), // Monday
            Some(ts("2026-01-10T00:00:00Z"))
        );
        let business = Window::new(&[], Some("09:00-17:00")).unwrap();
        assert_eq!(
            business.next_open(ts("2026-01-05T17:00:00Z")),
            Some(ts("2026-01-06T09:00:00Z")),
            "the end is excluded"
        );
        assert!(Window::new(&[], Some("10:00-10:00")).is_err());
        assert!(Window::new(&[], Some("25:00-01:00")).is_err());
    }

    #[test]
    fn jitter_spreads_resources_and_stays_put() {
        let schedule = Schedule {
            rule: ScheduleRule::Every(Duration::from_secs(24 * 3600)),
            jitter: Duration::from_secs(2 * 3600),
            window: None,
        };
        let after = ts("2026-01-01T00:00:00Z");
        let base = ts("2026-01-02T00:00:00Z");
        let starts: Vec<Timestamp> = (0..20)
            .map(|i| {
                schedule
                    .next_after(after, &format!("shop/cache-{i}"))
                    .unwrap()
            })
            .collect();
        for start in &starts {
            assert!(*start >= base && *start < base + Duration::from_secs(2 * 3600));
        }
        let distinct: std::collections::BTreeSet<_> = starts.iter().collect();
        assert!(distinct.len() > 10, "{distinct:?}");
        assert_eq!(schedule.next_after(after, "shop/cache-0"), Some(starts[0]));
    }
}
