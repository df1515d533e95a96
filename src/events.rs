//! Publishes the operator's Events (events.k8s.io/v1). A warning repeated with the same reason
//! and note is one Event whose series counts the repeats (`kubectl describe` shows `x3 over
//! 5m`), while the repeats come less than [`KEEP`] apart. A warning with another note is another
//! Event, so the last one a person reads explains what is wrong now: kube's `Recorder` folds by
//! reason alone and keeps the first note. Normal Events (a rotation's start and end) do not
//! repeat and are not kept.

use std::collections::HashMap;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::{Event as KubeEvent, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::events::{Event, EventType, Reporter};
use kube::{Client, ResourceExt};
use serde_json::json;

/// How long a warning's series stays open after its last repeat (as kube's `Recorder`).
const KEEP: SignedDuration = SignedDuration::from_mins(6);

/// What makes two warnings one series.
#[derive(Hash, PartialEq, Eq)]
struct SeriesKey {
    namespace: Option<String>,
    uid: Option<String>,
    name: Option<String>,
    reason: String,
    action: String,
    note: Option<String>,
}

struct Series {
    /// The Event that counts the repeats.
    name: String,
    count: i32,
    last: Timestamp,
}

pub struct EventPublisher {
    client: Client,
    reporter: Reporter,
    open: HashMap<SeriesKey, Series>,
}

impl EventPublisher {
    pub fn new(client: Client, reporter: Reporter) -> Self {
        EventPublisher {
            client,
            reporter,
            open: HashMap::new(),
        }
    }

    /// Creates the Event, or counts a repeat of an open series.
    pub async fn publish(
        &mut self,
        event: &Event,
        regarding: &ObjectReference,
    ) -> Result<(), kube::Error> {
        let now = Timestamp::now();
        self.open.retain(|_, series| series.last + KEEP > now);
        let events: Api<KubeEvent> = Api::namespaced(
            self.client.clone(),
            regarding.namespace.as_deref().unwrap_or("default"),
        );
        if event.type_ == EventType::Normal {
            events
                .create(&PostParams::default(), &self.event(event, regarding, now))
                .await?;
            return Ok(());
        }
        let key = SeriesKey {
            namespace: regarding.namespace.clone(),
            uid: regarding.uid.clone(),
            name: regarding.name.clone(),
            reason: event.reason.clone(),
            action: event.action.clone(),
            note: event.note.clone(),
        };
        if let Some(series) = self.open.get_mut(&key) {
            series.count += 1;
            series.last = now;
            let repeats = json!({"series": EventSeries {
                count: series.count,
                last_observed_time: MicroTime(now),
            }});
            let counted = events
                .patch(
                    &series.name,
                    &PatchParams::default(),
                    &Patch::Merge(&repeats),
                )
                .await;
            if counted.is_err() {
                // Deleted meanwhile, or the patch failed: the next repeat starts a new Event.
                self.open.remove(&key);
            }
            return counted.map(|_| ());
        }
        let created = events
            .create(&PostParams::default(), &self.event(event, regarding, now))
            .await?;
        self.open.insert(
            key,
            Series {
                name: created.name_any(),
                count: 1,
                last: now,
            },
        );
        Ok(())
    }

    fn event(&self, event: &Event, regarding: &ObjectReference, now: Timestamp) -> KubeEvent {
        let controller = &self.reporter.controller;
        KubeEvent {
            metadata: ObjectMeta {
                namespace: regarding.namespace.clone(),
                name: Some(format!(
                    "{}.{:x}",
                    regarding.name.as_deref().unwrap_or(controller),
                    now.as_nanosecond()
                )),
                ..ObjectMeta::default()
            },
            action: Some(event.action.clone()),
            reason: Some(event.reason.clone()),
            note: event.note.clone(),
            type_: Some(
                match event.type_ {
                    EventType::Normal => "Normal",
                    EventType::Warning => "Warning",
                }
                .into(),
            ),
            event_time: Some(MicroTime(now)),
            regarding: Some(regarding.clone()),
            related: event.secondary.clone(),
            reporting_controller: Some(controller.clone()),
            reporting_instance: Some(
                self.reporter
                    .instance
                    .clone()
                    .unwrap_or_else(|| controller.clone()),
            ),
            ..KubeEvent::default()
        }
    }
}
