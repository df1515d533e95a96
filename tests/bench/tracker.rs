//! Watches the bench's PasswordRotations (kube::runtime::watcher, not sleep-polling) and
//! records, per resource, the instant each state was first seen, so latencies are not
//! quantized by a poll interval.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use futures::StreamExt;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, ResourceExt};
use password_rotator::resource::{PasswordRotation, Phase};
use tokio::sync::watch;

/// The label every bench PasswordRotation carries (its value names the set).
pub const SET_LABEL: &str = "bench.rotator.dev/set";

#[derive(Default)]
pub struct State {
    /// Resources whose status is Idle, no step, for their current generation.
    pub settled: HashMap<String, bool>,
    /// (name, rotationRequest token) -> when the completed rotation was first seen.
    pub completed: HashMap<(String, String), Instant>,
}

impl State {
    pub fn settled_count(&self, prefix: &str) -> usize {
        self.settled
            .iter()
            .filter(|(name, settled)| **settled && name.starts_with(prefix))
            .count()
    }

    pub fn completed_count(&self, prefix: &str, token: &str) -> usize {
        self.completed
            .keys()
            .filter(|(name, t)| t == token && name.starts_with(prefix))
            .count()
    }

    pub fn last_completion(&self, prefix: &str, token: &str) -> Option<Instant> {
        self.completed
            .iter()
            .filter(|((name, t), _)| t == token && name.starts_with(prefix))
            .map(|(_, at)| *at)
            .max()
    }
}

pub struct Tracker {
    state: Arc<Mutex<State>>,
    version: watch::Receiver<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Tracker {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Idle, no step, the last rotation recorded, and `token` handled.
fn completed_token(rotation: &PasswordRotation) -> Option<String> {
    let status = rotation.status.as_ref()?;
    (status.phase == Some(Phase::Idle)
        && status.step.is_none()
        && status.last_rotation_time.is_some())
    .then(|| status.handled_rotation_request.clone())
    .flatten()
}

fn settled(rotation: &PasswordRotation) -> bool {
    rotation.status.as_ref().is_some_and(|s| {
        s.phase == Some(Phase::Idle)
            && s.step.is_none()
            && s.observed_generation.is_some()
            && s.observed_generation == rotation.metadata.generation
    })
}

impl Tracker {
    /// Starts watching and returns once the initial list is in.
    pub async fn start(api: Api<PasswordRotation>) -> Result<Tracker> {
        let state = Arc::new(Mutex::new(State::default()));
        let (tx, version) = watch::channel(0u64);
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let shared = state.clone();
        let task = tokio::spawn(async move {
            let mut ready = Some(ready_tx);
            let stream = watcher(api, watcher::Config::default().labels(SET_LABEL))
                .default_backoff()
                .boxed();
            let mut stream = stream;
            while let Some(event) = stream.next().await {
                let now = Instant::now();
                match event {
                    Ok(watcher::Event::Apply(r)) | Ok(watcher::Event::InitApply(r)) => {
                        let mut state = shared.lock().expect("not poisoned");
                        let name = r.name_any();
                        state.settled.insert(name.clone(), settled(&r));
                        if let Some(token) = completed_token(&r) {
                            state.completed.entry((name, token)).or_insert(now);
                        }
                    }
                    Ok(watcher::Event::Delete(r)) => {
                        shared
                            .lock()
                            .expect("not poisoned")
                            .settled
                            .remove(&r.name_any());
                    }
                    Ok(watcher::Event::InitDone) => {
                        if let Some(ready) = ready.take() {
                            let _ = ready.send(());
                        }
                    }
                    Ok(watcher::Event::Init) => {}
                    Err(e) => eprintln!("bench: watch error (retrying): {e}"),
                }
                tx.send_modify(|v| *v += 1);
            }
        });
        match tokio::time::timeout(Duration::from_secs(30), ready_rx).await {
            Ok(Ok(())) => Ok(Tracker {
                state,
                version,
                task,
            }),
            _ => {
                task.abort();
                bail!("the PasswordRotation watch did not list within 30 s")
            }
        }
    }

    pub fn with<T>(&self, f: impl FnOnce(&State) -> T) -> T {
        f(&self.state.lock().expect("not poisoned"))
    }

    /// Waits until `done` holds (true) or `timeout` passes (false). `alive` is checked every
    /// second, so that a dead operator ends the wait at once.
    pub async fn wait_until(
        &self,
        timeout: Duration,
        mut alive: impl FnMut() -> Result<()>,
        done: impl Fn(&State) -> bool,
    ) -> Result<bool> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut version = self.version.clone();
        loop {
            version.borrow_and_update();
            if self.with(&done) {
                return Ok(true);
            }
            alive()?;
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Ok(false);
            }
            let tick = (deadline - now).min(Duration::from_secs(1));
            let _ = tokio::time::timeout(tick, version.changed()).await;
        }
    }
}
