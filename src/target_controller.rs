//! Keeps each target's status ([`crate::target_status`]): the operator of the target's shard
//! logs in with its admin credentials at start, every 5 minutes and when the spec or its
//! Secrets change, and every 30 seconds brings the failed-login budget and the count of
//! resources up to date. The status is written only when it changes.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::reflector::ReflectHandle;
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;
use tracing::{Instrument, debug, info_span, warn};

use crate::controller::Context;
use crate::login_budget::{Clocks, Refusal};
use crate::reason::Reason;
use crate::rotation::CallFailure;
use crate::rotation_target::{
    ClusterRotationTarget, RotationTarget, TargetKind, TargetStatus, TargetView,
};
use crate::secrets::MANAGER;
use crate::target_status::{self, Budget, Check, LastCheck, Observed};
use crate::targets::{Connect, PasswordTarget, credentials_fingerprint};
use crate::{Error, Result, shard};

/// How often the budget and the count of resources are brought up to date.
const REFRESH_EVERY: Duration = Duration::from_secs(30);
/// How long a check may take: a target that does not answer is not Ready.
const CHECK_TIMEOUT: Duration = Duration::from_secs(30);

/// A kind of target, as its status is kept.
pub trait TargetObject:
    Resource<DynamicType = ()> + Clone + Debug + DeserializeOwned + Serialize + Send + Sync + 'static
{
    const KIND: TargetKind;
    fn view(&self) -> TargetView<'_>;
    fn target_status(&self) -> Option<&TargetStatus>;
    /// Where its Secrets are.
    fn secrets_namespace(&self, ctx: &Context) -> Option<String>;
    fn api(&self, ctx: &Context) -> Api<Self>;
}

impl TargetObject for RotationTarget {
    const KIND: TargetKind = TargetKind::RotationTarget;
    fn view(&self) -> TargetView<'_> {
        TargetView::of_namespaced(self)
    }
    fn target_status(&self) -> Option<&TargetStatus> {
        self.status.as_ref()
    }
    fn secrets_namespace(&self, _: &Context) -> Option<String> {
        self.namespace()
    }
    fn api(&self, ctx: &Context) -> Api<Self> {
        Api::namespaced(ctx.client(), &self.namespace().unwrap_or_default())
    }
}

impl TargetObject for ClusterRotationTarget {
    const KIND: TargetKind = TargetKind::ClusterRotationTarget;
    fn view(&self) -> TargetView<'_> {
        TargetView::of_cluster(self)
    }
    fn target_status(&self) -> Option<&TargetStatus> {
        self.status.as_ref()
    }
    fn secrets_namespace(&self, ctx: &Context) -> Option<String> {
        ctx.settings().cluster_target_namespace.clone()
    }
    fn api(&self, ctx: &Context) -> Api<Self> {
        Api::all(ctx.client())
    }
}

/// What the target controllers share: the rotations' context, and what each target's last
/// check was.
pub struct Checks {
    ctx: Arc<Context>,
    last: Mutex<HashMap<String, Option<LastCheck>>>,
}

/// Runs the status controller of the targets `handle` shows until a termination signal.
pub async fn run<K: TargetObject>(handle: ReflectHandle<K>, ctx: Arc<Context>) {
    let checks = Arc::new(Checks {
        ctx,
        last: Mutex::default(),
    });
    Controller::for_shared_stream(handle.clone(), handle.reader())
        .shutdown_on_signal()
        .run(reconcile::<K>, error_policy::<K>, checks)
        .for_each(|result| async move {
            match result {
                Ok((object, _)) => debug!(%object, "target status kept"),
                Err(controller::Error::ReconcilerFailed(..)) => {}
                Err(controller::Error::ObjectNotFound(object)) => {
                    debug!(%object, "target gone before its reconcile")
                }
                Err(error) => warn!(%error, "the target controller's queue failed"),
            }
        })
        .await;
}

fn error_policy<K: TargetObject>(target: Arc<K>, error: &Error, _: Arc<Checks>) -> Action {
    if error.kind() == "conflict" {
        // Another process wrote the status since this copy: the watch brings its version,
        // and the status is made again from it.
        debug!(kind = %K::KIND, name = target.name_any(), "the target's status moved; again");
        return Action::requeue(Duration::from_secs(1));
    }
    warn!(
        kind = %K::KIND,
        namespace = target.namespace().unwrap_or_default(),
        name = target.name_any(),
        %error,
        "keeping the target's status failed"
    );
    Action::requeue(REFRESH_EVERY)
}

async fn reconcile<K: TargetObject>(target: Arc<K>, checks: Arc<Checks>) -> Result<Action> {
    let ctx = &checks.ctx;
    if shard::of(&*target) != ctx.settings().shard.as_deref() {
        return Ok(Action::await_change());
    }
    let span = info_span!(
        "target",
        kind = %K::KIND,
        namespace = target.namespace().unwrap_or_default(),
        name = target.name_any()
    );
    let now = Timestamp::now();
    let previous = target.target_status().cloned().unwrap_or_default();
    let key = format!(
        "{}/{}/{}",
        K::KIND,
        target.namespace().unwrap_or_default(),
        target.name_any()
    );
    let (budget, check, credentials) = observe(&*target, &checks, &key, &previous, now)
        .instrument(span.clone())
        .await?;
    let view = target.view();
    let observed = Observed {
        generation: target.meta().generation,
        check,
        credentials,
        budget,
        resources: ctx.resources_naming(K::KIND, target.namespace().as_deref(), view.name),
        now,
    };
    let status = target_status::next(&previous, observed);
    ctx.metrics().target_status(
        K::KIND,
        &target.namespace().unwrap_or_default(),
        view.name,
        &status,
    );
    if status != previous {
        ctx.settings().fail_point("before-target-status");
        write_status(&*target, ctx, &status)
            .instrument(span)
            .await?;
    }
    Ok(Action::requeue(REFRESH_EVERY))
}

/// Connects to the target and checks it when a check is due: the budget as this process holds
/// it after that, the check, and the fingerprint of the credentials it logged in with.
async fn observe<K: TargetObject>(
    target: &K,
    checks: &Checks,
    key: &str,
    previous: &TargetStatus,
    now: Timestamp,
) -> Result<(Option<Budget>, Check, Option<String>)> {
    let (probe, credentials) = match connect(target, &checks.ctx, key, previous).await? {
        Ok(connected) => connected,
        Err(check) => return Ok((None, check, None)),
    };
    let generation = target.meta().generation;
    let last = checks
        .last
        .lock()
        .expect("not poisoned")
        .entry(key.to_owned())
        .or_insert_with(|| target_status::recorded_check(previous, now))
        .clone();
    let check = if target_status::check_due(last.as_ref(), generation, &credentials, now) {
        let check = describe(probe.as_ref()).await;
        checks.last.lock().expect("not poisoned").insert(
            key.to_owned(),
            Some(LastCheck {
                generation,
                credentials: credentials.clone(),
                at: now,
                ready: matches!(check, Check::Described(_)),
            }),
        );
        check
    } else {
        Check::Skipped
    };
    let budget = probe.budget();
    let (failures, refusal): (u32, Option<Refusal>) = budget.account.state(Clocks::now());
    let budget = Budget {
        account: budget.account_key.clone(),
        failures,
        refusal,
    };
    Ok((Some(budget), check, Some(credentials)))
}

/// The target built from its spec and Secrets, and the fingerprint of those; or why it cannot
/// be, as the check that failed.
async fn connect<K: TargetObject>(
    target: &K,
    ctx: &Context,
    key: &str,
    previous: &TargetStatus,
) -> Result<Result<(Box<dyn PasswordTarget>, String), Check>> {
    let failed = |reason, message| Ok(Err(Check::Failed { reason, message }));
    let view = target.view();
    let Some(secrets_namespace) = target.secrets_namespace(ctx) else {
        return Ok(Err(Check::Skipped));
    };
    let spec = match view.connection.for_checks() {
        Ok(spec) => spec,
        Err(invalid) => {
            let message = format!("{}: {}", invalid.field, invalid.message);
            return failed(Reason::InvalidSpec, message);
        }
    };
    let Ok(member) = spec.selected() else {
        return Ok(Err(Check::Skipped));
    };
    let mut secrets = BTreeMap::new();
    for used in member.secrets() {
        let Some(secret) = ctx.target_secret(&secrets_namespace, &used.name).await? else {
            let message = format!(
                "Secret {} ({}) is not in namespace {secrets_namespace}",
                used.name, used.field
            );
            return failed(Reason::SecretMissing, message);
        };
        secrets.insert(used.name, secret);
    }
    let credentials = credentials_fingerprint(&secrets);
    let remembered = |account: &str| target_status::remembered(previous, account);
    let connected = ctx.connect_target(
        member,
        Connect {
            secrets: &secrets,
            credentials: &credentials,
            secrets_namespace: &secrets_namespace,
            lockout: view.lockout,
            shared: ctx.shared(),
            settings: ctx.target_settings(),
            resource: format!("the check of {key}"),
            observer: ctx.metrics().clone(),
            remembered: &remembered,
            system: previous.identity.as_deref(),
        },
    );
    match connected {
        Ok(probe) => Ok(Ok((probe, credentials))),
        Err(Error::Target { reason, detail }) => failed(reason, detail),
        Err(e) => Err(e),
    }
}

/// One login to the target, within [`CHECK_TIMEOUT`].
async fn describe(probe: &dyn PasswordTarget) -> Check {
    match tokio::time::timeout(CHECK_TIMEOUT, probe.describe()).await {
        Ok(Ok(description)) => Check::Described(description),
        Ok(Err(failure)) => target_status::failed(failure),
        Err(_) => target_status::failed(CallFailure::Transient {
            detail: format!("no answer within {} s", CHECK_TIMEOUT.as_secs()),
        }),
    }
}

/// Only at the version the status was made from: it carries the admin account's failed-login
/// budget, and a copy read before another process recorded a refused login would write over
/// that refusal, and the refused credentials be tried again.
async fn write_status<K: TargetObject>(
    target: &K,
    ctx: &Context,
    status: &TargetStatus,
) -> Result<()> {
    let patch = json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "metadata": {"resourceVersion": target.resource_version()},
        "status": status,
    });
    target
        .api(ctx)
        .patch_status(
            &target.name_any(),
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await?;
    Ok(())
}
