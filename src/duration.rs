//! Durations in the Go syntax that Kubernetes and CEL's `duration()` use: `720h`, `1h30m`, `90s`.
//! Not kube's `Duration`: its parser (kube-core 5.0.0) panics on `1h-5m` and takes `""` for zero,
//! and these texts are a tenant's to write.

use std::borrow::Cow;
use std::time::Duration;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

/// Kept as the text the user wrote, so that a resource with a bad value still deserializes
/// and gets a condition naming the field instead of breaking the watch.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq)]
#[serde(transparent)]
pub struct GoDuration(String);

impl GoDuration {
    pub fn from_secs(secs: u64) -> Self {
        Self(format_duration(Duration::from_secs(secs)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn parse(&self) -> Result<Duration, String> {
        parse_go_duration(&self.0)
    }
}

impl From<&str> for GoDuration {
    fn from(s: &str) -> Self {
        Self(s.to_owned())
    }
}

impl JsonSchema for GoDuration {
    fn schema_name() -> Cow<'static, str> {
        "GoDuration".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "description": "A duration such as 30m, 1h30m or 720h",
        })
    }

    fn inline_schema() -> bool {
        true
    }
}

fn format_duration(d: Duration) -> String {
    let secs = d.as_secs();
    let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 || out.is_empty() {
        out.push_str(&format!("{s}s"));
    }
    out
}

/// Parses a Go duration: a sequence of decimal numbers, each with a unit of ns, us, µs, ms,
/// s, m or h. Negative durations are refused: nothing in the resource can be negative.
pub fn parse_go_duration(text: &str) -> Result<Duration, String> {
    let invalid = || format!("invalid duration {text:?}: use a form like 30m, 1h30m or 720h");
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    let mut rest = text;
    let mut total = 0f64;
    if rest.is_empty() {
        return Err(invalid());
    }
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(invalid)?;
        if number_len == 0 {
            return Err(invalid());
        }
        let value: f64 = rest[..number_len].parse().map_err(|_| invalid())?;
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let seconds_per_unit = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(invalid()),
        };
        total += value * seconds_per_unit;
        rest = &rest[unit_len..];
    }
    Duration::try_from_secs_f64(total).map_err(|_| invalid())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_forms_kubernetes_uses() {
        assert_eq!(
            parse_go_duration("720h"),
            Ok(Duration::from_secs(720 * 3600))
        );
        assert_eq!(parse_go_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_go_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_go_duration("1.5h"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_go_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_go_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_go_duration("0s"), Ok(Duration::ZERO));
    }

    #[test]
    fn refuses_what_go_refuses() {
        for bad in ["", "5", "h", "1d", "-1h", "1h-5m", "1 h", "1.2.3s"] {
            assert!(parse_go_duration(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn formats_round_trip() {
        for secs in [0, 1, 59, 60, 300, 1800, 3600, 5400, 720 * 3600 + 61] {
            let d = GoDuration::from_secs(secs);
            assert_eq!(d.parse(), Ok(Duration::from_secs(secs)), "{}", d.as_str());
        }
    }
}
