//! What both benches use: settings from the environment, bounded concurrency, rounding.

use std::future::Future;

use anyhow::Result;
use futures::{StreamExt, TryStreamExt};

pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Runs `f` on every item, at most `limit` at once.
pub async fn bounded<T, F, Fut>(
    items: impl IntoIterator<Item = T>,
    limit: usize,
    f: F,
) -> Result<()>
where
    F: Fn(T) -> Fut,
    Fut: Future<Output = Result<()>>,
{
    futures::stream::iter(items)
        .map(f)
        .buffer_unordered(limit)
        .try_for_each(|()| async { Ok(()) })
        .await
}

pub fn round(value: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits);
    (value * scale).round() / scale
}
