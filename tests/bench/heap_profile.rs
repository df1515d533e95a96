//! What held the operator's heap at its peak, from the profile an operator built with
//! `--features dhat-heap` writes when it exits (`dhat-heap.json`, dhat's file format 2).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use serde_json::{Value, json};

use crate::round;

/// Frames that say nothing about who allocated: the allocator, collections, runtime glue.
const PLUMBING: &[&str] = &[
    "dhat::",
    "alloc::",
    "core::",
    "std::",
    "hashbrown::",
    "<alloc::",
    "<core::",
    "<std::",
    "<hashbrown::",
    "bytes::",
    "<bytes::",
    "serde::",
    "<serde",
    "serde_json::",
    "<serde_json::",
    "smallvec::",
    "<smallvec::",
    "tokio::runtime::",
    "futures_util::",
    "<futures_util::",
    "[root]",
];

fn mib(bytes: u64) -> f64 {
    round(bytes as f64 / 1024.0 / 1024.0, 2)
}

/// The frame that names who allocated: the first one that is not plumbing, without its
/// file and line.
fn site(frames: &[&str]) -> String {
    let named = frames
        .iter()
        .map(|f| {
            // "0x1234: crate::module::function (src/file.rs:12:5)"
            let f = f.split_once(": ").map_or(*f, |(_, rest)| rest);
            f.split(" (").next().unwrap_or(f)
        })
        .filter(|f| !PLUMBING.iter().any(|p| f.starts_with(p)))
        .take(2)
        .collect::<Vec<_>>();
    if named.is_empty() {
        "(unnamed)".into()
    } else {
        named.join(" <- ")
    }
}

/// The heap at its peak (dhat's t-gmax) and at exit, and the sites that held the most at the
/// peak, grouped by the first frame that names who allocated.
pub fn summarize(path: &Path, top: usize) -> Result<Value> {
    let text = std::fs::read_to_string(path).with_context(|| format!("{}", path.display()))?;
    let profile: Value = serde_json::from_str(&text)?;
    let frames: Vec<&str> = profile["ftbl"]
        .as_array()
        .context("no ftbl")?
        .iter()
        .map(|f| f.as_str().unwrap_or_default())
        .collect();
    let mut at_peak: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    let (mut peak, mut end) = (0u64, 0u64);
    for pp in profile["pps"].as_array().context("no pps")? {
        let bytes = pp["gb"].as_u64().unwrap_or(0);
        let blocks = pp["gbk"].as_u64().unwrap_or(0);
        peak += bytes;
        end += pp["eb"].as_u64().unwrap_or(0);
        let stack: Vec<&str> = pp["fs"]
            .as_array()
            .map(|fs| {
                fs.iter()
                    .filter_map(|i| frames.get(i.as_u64()? as usize).copied())
                    .collect()
            })
            .unwrap_or_default();
        let entry = at_peak.entry(site(&stack)).or_default();
        entry.0 += bytes;
        entry.1 += blocks;
    }
    let mut sites: Vec<(String, (u64, u64))> = at_peak.into_iter().collect();
    sites.sort_by_key(|(_, (bytes, _))| std::cmp::Reverse(*bytes));
    Ok(json!({
        "heap_at_peak_mib": mib(peak),
        "heap_at_exit_mib": mib(end),
        "largest_at_peak": sites
            .iter()
            .take(top)
            .map(|(site, (bytes, blocks))| json!({"mib": mib(*bytes), "blocks": blocks, "site": site}))
            .collect::<Vec<_>>(),
        "profile": path,
    }))
}
