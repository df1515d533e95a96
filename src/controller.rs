//! The kube-runtime Controller: a reconcile observes, asks `rotation::decide`, acts and records.
//! Here the reconcile and its reads; `act` the effects, `reporting` status and Events,
//! `target_access` the target, `deletion` the finalizer's cleanup, `context` what reconciles
//! share, `watch` the watches that drive them.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::Api;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{self, Action, Config as ControllerConfig, Controller};
use kube::runtime::events::{Event, EventType, Reporter};
use kube::runtime::reflector::{self, ObjectRef, ReflectHandle, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use secrecy::SecretString;
use tokio::task::JoinHandle;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::freshness::Freshness;
use crate::http::Health;
use crate::kubernetes::{ApiServer, Kubernetes, Secrets};
use crate::login_budget::Refusal;
use crate::metrics::Metrics;
use crate::password::{PasswordPolicy, generate_os};
use crate::plan::Plan;
use crate::reason::Reason;
use crate::resource::{
    FINALIZER, Mode, PasswordRotation, PasswordRotationStatus, Phase, ROTATE_REQUESTED_ANNOTATION,
    Step, restart_annotation_key,
};
use crate::resource_index::{
    NamedTarget, PasswordList, ResourceIndex, Watched, state_secret_owner,
};
use crate::rotation::{
    self, CallFailure, CallOutcome, Decision, Observation, OnDeletion, RolloutProgress,
    RolloutTrouble, SecretHolds, StateSummary, by_expiry, decide, earliest, on_add, on_failure,
    on_replace, on_retire, on_rollback, step_after,
};
use crate::rotation_spec::{RotationSpec, Unresolved};
use crate::rotation_target::{RotationTarget, TargetKind};
use crate::schedule::Trigger;
use crate::secret_cache::TargetSecretCache;
use crate::secrets::{self, MANAGER, RotationState};
use crate::shard;
use crate::status::{self, Outcome, ceil_to_second, has_condition, has_condition_reason};
use crate::target_controller;
use crate::target_index::{ClusterHandles, TargetIndex};
use crate::targets::{
    Accounts, Change, Connect, PasswordTarget, Shared, TargetSettings, TargetSpec,
    credentials_fingerprint, not_its_own_admin,
};
use crate::validation::{InvalidField, ValidSpec, validate};
use crate::{Error, Result, template, verify};

mod act;
mod context;
mod deletion;
mod reporting;
mod target_access;
mod watch;

use context::*;
pub use context::{Connector, Context, Settings};
pub use watch::run;

/// How long a claim on a password list holds off other resources: long enough for the
/// status of the claim's rotation to show it.
const UNTIL_STATUS_SHOWS: Duration = Duration::from_secs(30);

/// How often the nodes of a target that [heals](TargetSpec::heals) are looked at while the
/// workloads roll out.
const HEAL_EVERY: Duration = Duration::from_secs(5);

/// How often a rotation held by a node that could not persist the new password tries again.
const PERSIST_AGAIN_EVERY: Duration = Duration::from_secs(30);

/// One reconcile of a resource that is not being deleted, from the resource as read: what
/// the controller runs inside its finalizer. For tests that drive the engine step by step.
pub async fn apply(ctx: &Context, rotation: PasswordRotation) -> Result<Action> {
    Rotator::new(ctx, Arc::new(rotation), true).apply().await
}

/// The finalizer's cleanup of a deleted resource; for tests, as [`apply`].
pub async fn cleanup(ctx: &Context, rotation: PasswordRotation) -> Result<Action> {
    Rotator::new(ctx, Arc::new(rotation), true).cleanup().await
}

/// Not kube's `finalizer` helper: it adds the finalizer before every first apply (a write per
/// new resource, which this operator spares until a rotation may step) and removes it without
/// the resourceVersion the cleanup decided on.
async fn reconcile(cached: Arc<PasswordRotation>, ctx: Arc<Context>) -> Result<Action> {
    // Its target is another shard's: that shard's operator acts on it, and this one only
    // looks that some operator does. A change of the target's label or of the resource's
    // target reconciles it again.
    let shard = ctx.target_index.shard_of(&cached);
    if shard != ctx.settings.shard {
        return deletion::watch_unserved(cached, shard, &ctx).await;
    }
    ctx.metrics.reconcile();
    let namespace = cached.namespace().unwrap_or_default();
    let name = cached.name_any();
    let key = ObjectRef::from_obj(&*cached);
    let api: Api<PasswordRotation> = Api::namespaced(ctx.client.clone(), &namespace);
    let span = info_span!("reconcile", %namespace, %name);
    // A stale status would repeat a finished step (a second rotation for one request, a
    // DELETE taken for a first one). The watch cache is taken when it holds this process's
    // own last write or a later one, and read again otherwise: that saves wasted steps only.
    // What keeps another actor's writes from being undone is the version every status write
    // carries, and the read a rotation starts on (`still_current`).
    let (rotation, read) = if ctx.freshness.is_fresh(&cached) {
        (cached, false)
    } else {
        match api.get_opt(&name).instrument(span.clone()).await? {
            Some(read) => {
                ctx.freshness.read(&key, read.resource_version().as_deref());
                (Arc::new(read), true)
            }
            None => {
                ctx.freshness.forget(&key);
                return Ok(Action::await_change());
            }
        }
    };
    let action = if rotation.metadata.deletion_timestamp.is_some() {
        if !has_finalizer(&rotation) {
            return Ok(Action::await_change());
        }
        let action = Rotator::new(&ctx, rotation.clone(), read)
            .cleanup()
            .instrument(span.clone())
            .await?;
        release(&ctx, &rotation).instrument(span).await?;
        action
    } else {
        Rotator::new(&ctx, rotation, read)
            .apply()
            .instrument(span)
            .await?
    };
    ctx.failures.lock().expect("not poisoned").remove(&key);
    Ok(action)
}

/// What one reconcile has read and works on, step after step.
struct Working {
    state_name: String,
    state: Option<RotationState>,
    workload: Option<Secret>,
    /// Read right before the decision at hand: an effect that must not act on a stale view
    /// of the workload Secret reads it again first.
    workload_fresh: bool,
    target: Option<Box<dyn PasswordTarget>>,
    valid: ValidSpec,
    conflict_with: Option<String>,
    credentials_changed_since_block: bool,
}

/// Per-resource exponential backoff: 1 s, 2 s, 4 s … up to 5 minutes.
fn error_policy(rotation: Arc<PasswordRotation>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.reconcile_error(error.kind());
    let mut failures = ctx.failures.lock().expect("not poisoned");
    let count = failures.entry(ObjectRef::from_obj(&*rotation)).or_insert(0);
    *count = count.saturating_add(1);
    let doublings = (*count - 1).min(11);
    let (namespace, name) = (
        rotation.namespace().unwrap_or_default(),
        rotation.name_any(),
    );
    if error.kind() == "conflict" {
        // Another writer changed the resource after this reconcile read it: expected. The
        // next reconcile reads it again, after a short wait, still doubling should the
        // other actor keep writing, and nothing to warn about.
        ctx.freshness.distrust(&ObjectRef::from_obj(&*rotation));
        let delay = (Duration::from_millis(200) * (1 << doublings)).min(Duration::from_secs(300));
        info!(
            namespace,
            name,
            retry_in_s = delay.as_secs_f32(),
            "the resource changed while it was reconciled; reconciling the newer version"
        );
        return Action::requeue(delay);
    }
    let delay = Duration::from_secs(1 << doublings.min(8)).min(Duration::from_secs(300));
    warn!(
        namespace,
        name,
        kind = error.kind(),
        %error,
        retry_in_s = delay.as_secs_f32(),
        "reconcile failed"
    );
    Action::requeue(delay)
}

/// One reconcile of one resource.
struct Rotator<'a> {
    ctx: &'a Context,
    rotation: Arc<PasswordRotation>,
    /// What this reconcile acts on: the spec on its target, with a rotation's pinned plan
    /// put back.
    spec: RotationSpec,
    /// Why the target could not be resolved; it matters only when no plan is pinned.
    unresolved: Option<Unresolved>,
    /// Spec fields edited since the rotation in flight pinned its plan.
    plan_changes: Vec<&'static str>,
    /// The status as this reconcile knows it; steps whose replay is safe change it here only.
    status: PasswordRotationStatus,
    /// The status as the resource holds it: what the last write (or the read) left.
    written: PasswordRotationStatus,
    /// The resource's resourceVersion as this reconcile last saw it: every status write
    /// carries it, so that a write over another actor's is refused rather than made.
    version: Option<String>,
    /// The resource was read from the API server for this reconcile, not taken from the
    /// watch.
    read: bool,
    /// The target's Secrets, read with the others at the start of the reconcile.
    prefetched_target_secrets: Option<Result<BTreeMap<String, Secret>>>,
    /// The finalizer being added, awaited before the first change a deletion must undo.
    adding_finalizer: Option<JoinHandle<Result<Option<String>>>>,
    /// This reconcile added the finalizer.
    finalizer_added: bool,
    /// No state Secret exists: this reconcile read none and staged none.
    no_state_secret: bool,
    secrets: Secrets<'a>,
    namespace: String,
}

/// Steps taken in one reconcile at most; a rotation with no workloads and no overlap
/// completes in one.
const MAX_STEPS: usize = 12;

impl<'a> Rotator<'a> {
    fn new(ctx: &'a Context, rotation: Arc<PasswordRotation>, read: bool) -> Self {
        let namespace = rotation.namespace().unwrap_or_default();
        let status = rotation.status.clone().unwrap_or_default();
        let (spec, unresolved) = match ctx.target_index.resolve(&rotation) {
            Ok(spec) => (spec, None),
            Err(unresolved) => (
                RotationSpec::unresolved(&rotation.spec, &namespace),
                Some(unresolved),
            ),
        };
        Self {
            ctx,
            version: rotation.resource_version(),
            read,
            written: status.clone(),
            status,
            prefetched_target_secrets: None,
            adding_finalizer: None,
            finalizer_added: false,
            no_state_secret: false,
            spec,
            unresolved,
            plan_changes: Vec::new(),
            secrets: Secrets {
                kubernetes: ctx.kubernetes.as_ref(),
                namespace: namespace.clone(),
            },
            namespace,
            rotation,
        }
    }

    /// The steps this reconcile can take, and one status write for what they recorded.
    async fn apply(mut self) -> Result<Action> {
        let result = self.steps().await;
        let finalized = self.finalized().await;
        let written = self.checkpoint().await;
        let action = result?;
        finalized?;
        written?;
        Ok(action)
    }

    /// Observes, decides and acts, step after step, until a step waits for something.
    async fn steps(&mut self) -> Result<Action> {
        let mut w = match self.observe().await? {
            Ok(working) => working,
            Err(action) => return Ok(action),
        };
        if let Some(action) = self.check_expiry_once(&mut w).await? {
            return Ok(action);
        }
        let seed = self.seed();
        for _ in 0..MAX_STEPS {
            let now = Timestamp::now();
            let decision = self.decide_now(&w, &seed, now).await?;
            debug!(?decision, "decided");
            if matches!(decision, Decision::Retire { .. } | Decision::Finish) && !w.workload_fresh {
                w.workload = self.workload_secret().await?;
                w.workload_fresh = true;
                continue;
            }
            let was_fresh = w.workload_fresh;
            w.workload_fresh = false;
            // The workload Secret's password is sent to the target, and the Secret rewritten:
            // only for a resource the Secret names.
            if matches!(
                decision,
                Decision::Stage { .. } | Decision::Restage | Decision::Publish
            ) && let Some(secret) = &w.workload
                && !secrets::allows(secret, &self.rotation.name_any())
            {
                let refused = Error::SecretNotAllowed {
                    name: self.spec.secret.name.clone(),
                    field: "spec.secret",
                    rotation: self.rotation.name_any(),
                };
                self.report_not_ready(Reason::SecretNotAllowed, &refused.to_string())
                    .await?;
                return Ok(Action::await_change());
            }
            if let Some(action) = self.act(decision, &mut w, was_fresh, now).await? {
                return Ok(action);
            }
        }
        Ok(Action::requeue(Duration::from_millis(100)))
    }

    /// Restarts the workloads (each not yet restarted so) onto the workload Secret at
    /// `secret_version`, holding this rotation's new password, and reports which still roll.
    async fn restart_onto(
        &self,
        state: &RotationState,
        secret_version: Option<&str>,
    ) -> Result<RolloutProgress> {
        let key = restart_annotation_key(&self.rotation.name_any());
        let value = restart_value(
            &state.rotation_id,
            self.status.rollout_round,
            secret_version,
        );
        self.ctx
            .kubernetes
            .advance_rollout(
                &self.namespace,
                &self.spec.rollout.workloads,
                (&key, &value),
            )
            .await
    }

    /// What `decide` says now, from the working set and the rollout (advanced first, when
    /// the rotation waits for it).
    async fn decide_now(&self, w: &Working, seed: &str, now: Timestamp) -> Result<Decision> {
        let rollout = match (&w.state, self.status.step) {
            (Some(state), Some(Step::Published)) if self.in_flight() => {
                let published = self.status.published_secret_version.as_deref();
                let progress = self.restart_onto(state, published).await?;
                self.fail_point("after-restart");
                Some(progress)
            }
            _ => None,
        };
        let summary = w.state.as_ref().map(|s| StateSummary {
            rotation_id: s.rotation_id.clone(),
            has_previous: s.previous.is_some(),
            rolled_back: s.rolled_back_in(w.workload.as_ref()),
            owned: s.owned_by(&self.rotation),
            follows: s.follows.clone(),
        });
        let workload_password = self.password_in(w.workload.as_ref());
        let workload_secret = match &w.state {
            Some(state) => state.holds(workload_password.as_ref()),
            None if workload_password.is_some() => SecretHolds::Other,
            None => SecretHolds::Nothing,
        };
        let seen_published_for = (self.status.step == Some(Step::Published))
            .then(|| self.seen_published_for())
            .flatten();
        let observation = Observation {
            now,
            seed,
            generation: self.rotation.metadata.generation,
            spec: &self.spec,
            status: &self.status,
            rotate_annotation: self.rotate_annotation(),
            state: summary.as_ref(),
            workload_secret,
            workload_version: w
                .workload
                .as_ref()
                .and_then(|w| w.metadata.resource_version.as_deref()),
            rollout,
            conflict_with: w.conflict_with.clone(),
            credentials_changed_since_block: w.credentials_changed_since_block,
            seen_published_for,
        };
        Ok(decide(&observation, &w.valid))
    }

    /// The workload Secret holds another password than the rotation started from: the
    /// rotation starts again from it.
    async fn restage(
        &mut self,
        state: &mut Option<RotationState>,
        workload: Option<&Secret>,
        current: SecretString,
        state_name: &str,
        now: Timestamp,
    ) -> Result<Option<Action>> {
        let (previous_account, pending_account) = match self.accounts(workload) {
            Ok(accounts) => accounts,
            Err(invalid) => return self.report_invalid(invalid).await.map(Some),
        };
        let workload_version = workload.and_then(ResourceExt::resource_version);
        secrets::restage(
            &self.secrets,
            state_name,
            &current,
            (previous_account.as_deref(), pending_account.as_deref()),
            workload_version.as_deref(),
        )
        .await?;
        if let Some(state) = state.as_mut() {
            state.previous = Some(current);
            state.previous_account = previous_account;
            state.pending_account = pending_account;
            state.workload_version = workload_version;
        }
        self.record(self.after(Outcome::Restaged, now));
        self.event(
            EventType::Normal,
            Reason::Restaged,
            "Rotate",
            "the workload Secret holds another password now: the rotation starts again from it",
        )
        .await;
        Ok(None)
    }

    /// Reads what a reconcile decides on, or the action to end it with: nothing to do for a
    /// settled resource, a target that cannot be resolved, an invalid spec.
    async fn observe(&mut self) -> Result<Result<Working, Action>> {
        // As read: a restarted operator exports what the resources' statuses say at once.
        self.export_status();
        // A target not seen yet may only not be listed yet.
        if self.unresolved.is_some() && !self.ctx.target_index.synced() {
            return Ok(Err(Action::requeue(Duration::from_secs(1))));
        }
        let state_name = secrets::state_secret_name(&self.rotation);
        // At the version this process wrote settled, knowing no state Secret exists (the
        // echoes of its own writes), nothing can have been staged since: staging writes the
        // resource's status before any effect.
        if self.settled()
            && (self.ctx.freshness.settled_by_this_process(&self.rotation)
                || self.ctx.listed_without_secret(&self.rotation, &state_name)
                || self.secrets.get_opt(&state_name).await?.is_none())
        {
            let next = self.status.next_rotation_time.as_ref().map(|t| t.0);
            return Ok(Err(wait_for_next(next, Timestamp::now())));
        }
        // Read at once: the state Secret, the workload Secret the spec names and, when the
        // target may be called, the Secrets it reads. A pinned plan that names other Secrets
        // has them read again.
        let prefetch_target = self.may_call_target();
        if self.rotation_may_step() {
            self.add_finalizer();
        }
        // A resource no one has given a status has nothing staged at this version (staging
        // writes the status first, and every write of this reconcile carries the version):
        // once the Secret watch has listed the namespace without its state Secret, a new
        // resource costs no read of it.
        let unstaged = self.rotation.status.is_none()
            && self.ctx.listed_without_secret(&self.rotation, &state_name);
        let (state, workload, target_secrets) = futures::join!(
            async {
                match unstaged {
                    true => Ok(None),
                    false => secrets::read_state(&self.secrets, &state_name).await,
                }
            },
            self.workload_secret(),
            async {
                match prefetch_target {
                    true => Some(self.target_secrets().await),
                    false => None,
                }
            }
        );
        let state = state?;
        self.no_state_secret = state.is_none();
        let spec_workload_secret = self.spec.secret.name.clone();
        let spec_target = self.spec.target.clone();
        self.pin(state.as_ref());
        self.leave_to_its_shard(state.as_ref()).await?;
        // A rotation in flight finishes on its pinned plan; no new one starts on a target
        // that cannot be resolved.
        let pinned = state.as_ref().is_some_and(|s| s.plan.is_some());
        if let Some(unresolved) = self.unresolved.take()
            && !pinned
        {
            return self.report_unresolved(unresolved).await.map(Err);
        }
        if self.spec.target == spec_target {
            self.prefetched_target_secrets = target_secrets;
        }
        let valid = match validate(&self.spec, &self.namespace).and_then(|v| self.permitted(v)) {
            Ok(valid) => valid,
            Err(invalid) => return self.report_invalid(invalid).await.map(Err),
        };
        let workload = match self.spec.secret.name == spec_workload_secret {
            true => workload?,
            false => self.workload_secret().await?,
        };
        // Neither changes within one reconcile: the steps below never enter Blocked (they
        // return instead) and the other resources are as the stores hold them.
        let conflict_with = self.conflict();
        let credentials_changed_since_block = self.status.phase == Some(Phase::Blocked)
            && self.credentials_fingerprint().await? != self.status.blocked_credentials_hash;
        Ok(Ok(Working {
            state_name,
            state,
            workload,
            workload_fresh: true,
            target: None,
            valid,
            conflict_with,
            credentials_changed_since_block,
        }))
    }

    /// The password's expiry, asked once, for a resource that can rotate: its workload Secret allows it and no
    /// other resource rotates the same password list. A rotation asked for now asks it when
    /// it ends.
    async fn check_expiry_once(&mut self, w: &mut Working) -> Result<Option<Action>> {
        if self.target_spec().reports_expiry()
            && self.status.password_expiry_checked_time.is_none()
            && !self.in_flight()
            && !self.rotation_asked()
            && !self.rotation.spec.suspend
            && w.conflict_with.is_none()
            && w.workload
                .as_ref()
                .is_some_and(|s| secrets::allows(s, &self.rotation.name_any()))
        {
            if let Some(action) = self.load_target(&mut w.target).await? {
                return Ok(Some(action));
            }
            let loaded = w.target.as_deref().expect("loaded");
            let now = Timestamp::now();
            match loaded.expiry().await {
                Ok(password_expires) => {
                    let scheduled = self.status.next_rotation_time.as_ref().map(|t| t.0);
                    let next_rotation = earliest(scheduled, by_expiry(password_expires, &w.valid));
                    let status = self.after(
                        Outcome::ExpiryChecked {
                            password_expires,
                            next_rotation,
                        },
                        now,
                    );
                    self.record(status);
                }
                Err(failure) => return self.stop(on_failure(failure), loaded, now).await.map(Some),
            }
        }
        Ok(None)
    }

    /// When the new password expires, for a target that says: `None` when it does not, or
    /// could not be asked now (it is asked again at the next reconcile). `target` is the one
    /// this reconcile loaded, if it did, so that its Secrets are not read again.
    async fn ask_expiry(&self, target: Option<&dyn PasswordTarget>) -> Option<Option<Timestamp>> {
        if !self.target_spec().reports_expiry() {
            return None;
        }
        let built;
        let target = match target {
            Some(target) => target,
            None => {
                built = self.target().await.ok()?;
                built.as_ref()
            }
        };
        match target.expiry().await {
            Ok(expires) => Some(expires),
            Err(failure) => {
                warn!(?failure, "could not ask when the new password expires");
                None
            }
        }
    }

    /// Fixes the resource's share of its schedule's jitter.
    fn seed(&self) -> String {
        format!("{}/{}", self.namespace, self.rotation.name_any())
    }

    /// The finalizer, before any effect: a deletion must find it to roll a rotation back.
    /// Starts adding the finalizer, unless the resource has it or it is being added: the
    /// reads and the state Secret (which goes with the resource) need not wait for it, only
    /// the first change to the target does ([`Self::guarded`]). A resource that never
    /// rotated has nothing a deletion must undo, so it gets none until a rotation may step.
    fn add_finalizer(&mut self) {
        if has_finalizer(&self.rotation) || self.finalizer_added || self.adding_finalizer.is_some()
        {
            return;
        }
        let mut finalizers = self.rotation.finalizers().to_vec();
        finalizers.push(FINALIZER.into());
        let kubernetes = self.ctx.kubernetes.clone();
        let rotation = self.rotation.clone();
        self.adding_finalizer = Some(tokio::spawn(
            async move { kubernetes.set_finalizers(&rotation, finalizers).await }.in_current_span(),
        ));
    }

    /// Whether the resource, read from the API server, still says what this reconcile
    /// decided on: at the same version, or moved only in its metadata (a label, another
    /// annotation; the same status, generation and rotate request, not deleted), when the
    /// decision stands at the version read. A rotation is started, adopted or withdrawn only
    /// then, asked once its state Secret exists (no other rotation can start after that): a
    /// copy from the watch, or one read before, may not show a rotation another actor has run
    /// meanwhile, and would start a second one for the same request, from a password that
    /// rotation retired.
    async fn still_current(&mut self) -> Result<bool> {
        match self.finalized().await {
            // Refused because the resource moved: it is added again before the target changes.
            Err(refused) if refused.kind() == "conflict" => {}
            added => added?,
        }
        let Some(current) = self.ctx.kubernetes.current(&self.rotation).await? else {
            return Ok(false);
        };
        if current.resource_version() == self.version {
            return Ok(true);
        }
        let unchanged = current.metadata.deletion_timestamp.is_none()
            && current.metadata.generation == self.rotation.metadata.generation
            && current.status == self.rotation.status
            && current
                .annotations()
                .get(ROTATE_REQUESTED_ANNOTATION)
                .map(String::as_str)
                == self.rotate_annotation();
        if unchanged {
            self.version = current.resource_version();
            self.ctx
                .freshness
                .read(&ObjectRef::from_obj(&current), self.version.as_deref());
            self.rotation = Arc::new(current);
        }
        Ok(unchanged)
    }

    /// The finalizer in place, for a change to the target.
    async fn guarded(&mut self) -> Result<()> {
        self.add_finalizer();
        self.finalized().await
    }

    /// Waits for the finalizer being added, if one is: a status write goes after it, at the
    /// version it left.
    async fn finalized(&mut self) -> Result<()> {
        let Some(adding) = self.adding_finalizer.take() else {
            return Ok(());
        };
        let version = adding.await.expect("adding a finalizer never panics")?;
        self.ctx
            .freshness
            .saw(&ObjectRef::from_obj(&*self.rotation), version.as_deref());
        self.version = version;
        self.finalizer_added = true;
        Ok(())
    }

    /// A guess of whether this reconcile calls the target (a rotation in flight or asked
    /// for, an expiry not asked yet), so that the Secrets it reads are read beside the
    /// others. A wrong guess costs a read or a round trip, nothing else.
    fn may_call_target(&self) -> bool {
        let Ok(target) = self.spec.target.selected() else {
            return false;
        };
        let expiry_unasked =
            target.reports_expiry() && self.status.password_expiry_checked_time.is_none();
        self.rotation_may_step() || expiry_unasked
    }

    /// A rotation in flight, asked for or due.
    fn rotation_may_step(&self) -> bool {
        let due = self
            .status
            .next_rotation_time
            .as_ref()
            .is_some_and(|t| t.0 <= Timestamp::now());
        self.in_flight() || self.rotation_asked() || due
    }

    /// Idle and Ready for its current spec, nothing to show and no rotation asked for or
    /// due: nothing to do unless a state Secret was left over (a crash between the end's
    /// status write and its deletion). The reconciles that follow this operator's own
    /// writes, and a restart's, end after that one read.
    fn settled(&self) -> bool {
        let status = &self.status;
        status.phase == Some(Phase::Idle)
            && status.observed_generation == self.rotation.metadata.generation
            && has_condition(status, "Ready", "True")
            && !has_condition(status, "Degraded", "True")
            && !has_condition(status, "SpecChangePending", "True")
            && !self.may_call_target()
    }

    /// A request or annotation not handled yet.
    fn rotation_asked(&self) -> bool {
        let requested = self.rotation.spec.rotation_request.is_some()
            && self.rotation.spec.rotation_request != self.status.handled_rotation_request;
        let annotated = self.rotate_annotation().is_some()
            && self.rotate_annotation() != self.status.handled_rotate_annotation.as_deref();
        requested || annotated
    }

    fn in_flight(&self) -> bool {
        matches!(
            self.status.phase,
            Some(Phase::Rotating) | Some(Phase::Blocked)
        ) && self.status.step.is_some()
    }

    fn rotate_annotation(&self) -> Option<&str> {
        self.rotation
            .annotations()
            .get(ROTATE_REQUESTED_ANNOTATION)
            .map(String::as_str)
    }

    /// What the spec asks for that this operator's flags do not allow.
    fn permitted(&self, valid: ValidSpec) -> Result<ValidSpec, InvalidField> {
        let settings = &self.ctx.settings;
        if let Some(field) = self.target_spec().insecure_field()
            && !settings.allow_insecure_http
        {
            return Err(InvalidField {
                field,
                message: "refused: this operator runs without --allow-insecure-http".into(),
            });
        }
        if self.spec.verify.is_some() && !settings.allow_verify {
            return Err(InvalidField {
                field: "spec.verify.endpoint",
                message: "refused: this operator runs without --allow-verify-endpoints".into(),
            });
        }
        Ok(valid)
    }

    /// Acts on the rotation's pinned plan while one is in flight, on the spec otherwise.
    fn pin(&mut self, state: Option<&RotationState>) {
        if let Some(plan) = state.and_then(|s| s.plan.as_ref()) {
            self.plan_changes = plan.changed_fields(&self.spec);
            self.spec = plan.applied_to(&self.spec);
        }
    }

    async fn workload_secret(&self) -> Result<Option<Secret>> {
        self.secrets.get_opt(&self.spec.secret.name).await
    }

    /// The password the workload Secret holds under the (pinned) password key.
    fn password_in(&self, workload: Option<&Secret>) -> Option<SecretString> {
        workload.and_then(|s| secrets::value(s, &self.spec.secret.password_key))
    }

    /// The workload Secret does not hold the new password after publishing: every password
    /// stays as it is until it does again, and the person who reads the resource learns who
    /// wrote it.
    async fn hold_drifted(
        &mut self,
        holds: SecretHolds,
        workload: Option<&Secret>,
        now: Timestamp,
    ) -> Result<Action> {
        let spec = self.spec.secret.clone();
        let writer = workload
            .and_then(|s| secrets::last_writer(s, &spec.password_key))
            .map(|(manager, time)| match time {
                Some(time) => format!(", last written by field manager {manager} at {time}"),
                None => format!(", last written by field manager {manager}"),
            })
            .unwrap_or_default();
        let kept = if self.status.step == Some(Step::Retired) {
            "the new password is kept in the state Secret"
        } else {
            "both passwords stay valid"
        };
        let message = format!(
            "Secret {} (spec.secret) holds {} under key {} instead of the new one{writer}; \
             {kept}; the rotation goes on when the Secret holds the new password again",
            spec.name,
            holds.describe(),
            spec.password_key,
        );
        let status = self.after(Outcome::Drifted { message: &message }, now);
        if self.write_status_if_changed(status).await? {
            warn!(secret = %spec.name, "workload Secret drifted");
            self.event(
                EventType::Warning,
                Reason::SecretDrifted,
                "Rotate",
                &message,
            )
            .await;
        }
        // The Secret watch brings the change back at once; this is only a safety net.
        Ok(Action::requeue(Duration::from_secs(60)))
    }

    fn fail_point(&self, name: &str) {
        self.ctx.settings.fail_point(name);
    }

    /// The accounts of the old and the new password, from the user name the workload
    /// Secret holds now.
    fn accounts(&self, workload: Option<&Secret>) -> Result<Accounts, InvalidField> {
        let published =
            workload.and_then(|s| secrets::text_value(s, &self.spec.secret.username_key));
        self.target_spec().accounts(published.as_deref())
    }

    async fn stage(
        &self,
        valid: &ValidSpec,
        previous: SecretString,
        (previous_account, pending_account): Accounts,
        workload_version: Option<String>,
        now: Timestamp,
    ) -> Result<RotationState> {
        let forbidden = self.target_spec().forbidden_in_password();
        let policy =
            PasswordPolicy::new(valid.password_length, forbidden).map_err(|e| Error::Target {
                reason: Reason::InvalidSpec,
                detail: e.to_string(),
            })?;
        let mut state = RotationState {
            rotation_id: rotation_id(now),
            pending: generate_os(&policy),
            previous: Some(previous),
            plan: Some(Plan::of(&self.spec)),
            previous_account,
            pending_account,
            retirement: self
                .target_spec()
                .one_password()
                .then(|| generate_os(&policy)),
            shard: self.ctx.settings.shard.clone(),
            workload_version,
            follows: Some(self.status.rotation_id.clone().unwrap_or_default()),
            owner: self.rotation.uid(),
            uid: None,
        };
        state.uid = secrets::create_state(&self.secrets, &self.rotation, &state).await?;
        Ok(state)
    }

    async fn begin(&mut self, rotation_id: String, trigger: Trigger, now: Timestamp) {
        let status = self.after(
            Outcome::Began {
                rotation_id: &rotation_id,
                trigger,
                handled_request: self.rotation.spec.rotation_request.as_deref(),
                handled_annotation: self.rotate_annotation(),
            },
            now,
        );
        // Not written on its own: the state Secret holds the rotation, and a crash before
        // the next write adopts it from there.
        self.record(status);
        self.fail_point("after-step-Staged");
        if trigger == Trigger::Resumed {
            // Whoever staged it said it started: a status write refused by a conflict, or a
            // crash, leaves the state Secret to resume from, not a second rotation.
            info!(%rotation_id, "rotation resumed from its state Secret");
            return;
        }
        info!(%rotation_id, trigger = trigger.as_str(), "rotation started");
        self.event(
            EventType::Normal,
            Reason::Started,
            "Rotate",
            &format!(
                "rotation started ({}); its steps show in the Progressing condition",
                trigger.as_str()
            ),
        )
        .await;
    }

    async fn call(
        &mut self,
        target: &dyn PasswordTarget,
        decision: &Decision,
        state: &RotationState,
    ) -> Result<CallOutcome> {
        let previous = state.previous.as_ref().ok_or_else(|| Error::Secret {
            name: secrets::state_secret_name(&self.rotation),
            problem: "has no previous password".into(),
        })?;
        self.guarded().await?;
        Ok(match decision {
            Decision::Add => {
                self.fail_point("before-add");
                let outcome = on_add(target.add(&change(state, previous)).await);
                if outcome == CallOutcome::Done {
                    self.status.persistence = target.persistence();
                }
                outcome
            }
            Decision::Replace { replay } => {
                if !replay {
                    let status = self.after(Outcome::Stepped(Step::Replacing), Timestamp::now());
                    self.write_status(status).await?;
                    self.fail_point("before-replace");
                }
                let change = change(state, previous);
                let result = target.replace(&change).await;
                self.fail_point("after-replace");
                let pending_accepted =
                    match accepted_after_a_refusal(target, &result, *replay, &change).await {
                        Ok(accepted) => accepted,
                        Err(failure) => return Ok(on_failure(failure)),
                    };
                let outcome = on_replace(result, *replay, pending_accepted);
                if outcome == CallOutcome::Done {
                    self.status.persistence = target.persistence();
                }
                outcome
            }
            Decision::Retire { replay } => {
                if !replay {
                    let now = Timestamp::now();
                    self.record_step_time(Step::Retired, now);
                    self.write_status(self.after(Outcome::Stepped(Step::Retired), now))
                        .await?;
                    self.fail_point("after-step-Retired");
                }
                let change = change(state, previous);
                let result = target.retire(&change).await;
                let pending_accepted =
                    match accepted_after_a_refusal(target, &result, *replay, &change).await {
                        Ok(accepted) => accepted,
                        Err(failure) => return Ok(on_failure(failure)),
                    };
                let outcome = on_retire(result, *replay, pending_accepted);
                if outcome == CallOutcome::Done {
                    self.status.persistence = target.persistence();
                }
                outcome
            }
            _ => unreachable!("only calls reach here"),
        })
    }

    /// Ends the rotation, deleting its state Secret (named, and as read: none when none was
    /// read), and returns the next scheduled one. `password_expires` is what the target said
    /// of the new password, if it was asked (see `ask_expiry`).
    async fn finish(
        &mut self,
        valid: &ValidSpec,
        (state_name, state): (&str, Option<&RotationState>),
        password_expires: Option<Option<Timestamp>>,
        now: Timestamp,
    ) -> Result<Option<Timestamp>> {
        // Progressing keeps its transition time from Staged on: the rotation's start.
        let started = self
            .status
            .conditions
            .iter()
            .find(|c| c.type_ == "Progressing" && c.status == "True")
            .map(|c| now.duration_since(c.last_transition_time.0).unsigned_abs());
        let scheduled = valid
            .schedule
            .as_ref()
            .and_then(|s| s.next_after(now, &self.seed()));
        let next_rotation = earliest(scheduled, by_expiry(password_expires.flatten(), valid));
        let status = self.after(
            Outcome::Finished {
                next_rotation,
                password_expires,
            },
            now,
        );
        let rotation_id = self.status.rotation_id.clone().unwrap_or_default();
        // Status first: a crash before the state Secret is gone leaves a leftover that the
        // next reconcile clears, never a rotation that looks abandoned.
        self.write_status(status).await?;
        // last_successful_rotation_timestamp_seconds follows from lastRotationTime.
        self.ctx.metrics.rotation_finished("succeeded", started);
        self.fail_point("after-finish-status");
        if let Some(state) = state {
            secrets::delete_state(&self.secrets, state_name, state).await?;
        }
        info!(%rotation_id, "rotation complete");
        self.event(
            EventType::Normal,
            Reason::Rotated,
            "Rotate",
            "rotation complete: the workloads use the new password and the old one is deleted",
        )
        .await;
        Ok(next_rotation)
    }

    /// Degraded for the rollout, once per reason: both passwords stay valid meanwhile.
    /// Gives the published password back to nodes that lost it while the workloads roll out
    /// (a replica restarted from an older ACL file): they would refuse it until Retire
    /// otherwise. Best effort: what fails is tried again at the next look.
    async fn heal(&mut self, slot: &mut Option<Box<dyn PasswordTarget>>, state: &RotationState) {
        let target = match slot {
            Some(target) => target,
            None => match self.connected_target().await {
                Ok(target) => slot.insert(target),
                Err(error) => {
                    debug!(%error, "not healing: the target cannot be reached now");
                    return;
                }
            },
        };
        let previous = state.previous.as_ref().unwrap_or(&state.pending);
        match target.heal(&change(state, previous)).await {
            Ok(healed) if !healed.is_empty() => {
                let message = format!(
                    "{} lacked the published password (restarted from an older ACL file?): \
                     given it back",
                    healed.join(", ")
                );
                self.event(EventType::Warning, Reason::NodeHealed, "Heal", &message)
                    .await;
            }
            Ok(_) => {}
            Err(failure) => debug!(?failure, "healing failed; tried again at the next look"),
        }
    }

    /// How long this process has seen the rotation in flight at Published.
    fn seen_published_for(&self) -> Option<Duration> {
        let rotation_id = self.status.rotation_id.clone()?;
        let key = ObjectRef::from_obj(&*self.rotation);
        Some(noticed_since(&self.ctx.seen_published, key, rotation_id).elapsed())
    }

    /// A node could not persist the new password: the old one stays, `Degraded`
    /// `NotPersisted` says why (with an event when it starts), and persisting is tried again.
    async fn hold_not_persisted(&mut self, why: &str, now: Timestamp) -> Result<Action> {
        let message = format!(
            "a node could not persist the new password ({why}): the old password is kept until \
             it can, since deleted but not persisted it would come back when that node \
             restarts. Give the nodes an aclfile (ACL SAVE) or a config file (CONFIG REWRITE), \
             or set spec.persistence: Optional"
        );
        if !has_condition_reason(&self.status, "Degraded", "True", Reason::NotPersisted) {
            self.event(EventType::Warning, Reason::NotPersisted, "Retire", &message)
                .await;
        }
        let outcome = Outcome::RolloutStuck {
            reason: Reason::NotPersisted,
            message: &message,
        };
        self.record(self.after(outcome, now));
        Ok(Action::requeue(PERSIST_AGAIN_EVERY))
    }

    /// Writes the new password into the workload Secret, in one write with its account's
    /// name where the target has accounts, the template keys rendered from them, and the old
    /// password under `previousPasswordKey` while it stays valid (not in Replace mode).
    /// The write carries the workload Secret's version as `workload` shows it: a deletion's
    /// rollback marks the Secret first, so a publish decided before it is refused.
    async fn publish(&self, state: &RotationState, workload: Option<&Secret>) -> Result<Secret> {
        let spec = &self.spec.secret;
        let username = state
            .pending_account
            .as_deref()
            .or_else(|| self.target_spec().username());
        let mut keys: secrets::SecretKeys = vec![(&spec.password_key, Some(state.pending.clone()))];
        if let Some(user) = username {
            keys.push((
                &spec.username_key,
                Some(SecretString::from(user.to_owned())),
            ));
        }
        for (key, template) in &spec.template {
            let rendered = template::render(template, username, &state.pending).map_err(|e| {
                Error::Target {
                    reason: Reason::InvalidSpec,
                    detail: format!("spec.secret.template key {key}: {e}"),
                }
            })?;
            keys.push((key, Some(rendered)));
        }
        if let Some(key) = &spec.previous_password_key {
            let keep = (self.spec.mode == Mode::AddThenDelete)
                .then(|| state.previous.clone())
                .flatten();
            keys.push((key, keep));
        }
        let version = workload.and_then(|w| w.metadata.resource_version.as_deref());
        secrets::write_keys(&self.secrets, &spec.name, version, keys).await
    }

    /// Removes the old password from `previousPasswordKey` just before it is deleted, so that
    /// no client is offered a password about to stop working. The write is this rotation's
    /// own: the Secret's version after it counts as the published one.
    async fn unpublish_previous(&mut self, workload: Option<&Secret>) -> Result<()> {
        let spec = &self.spec.secret;
        let Some(key) = &spec.previous_password_key else {
            return Ok(());
        };
        if workload.is_some_and(|s| s.data.as_ref().is_some_and(|d| d.contains_key(key))) {
            let written =
                secrets::write_keys(&self.secrets, &spec.name, None, vec![(key, None)]).await?;
            self.status.published_secret_version = written.resource_version();
        }
        Ok(())
    }
}

/// The rotation's passwords and accounts, as a target call takes them.
fn change<'a>(state: &'a RotationState, previous: &'a SecretString) -> Change<'a> {
    Change {
        previous,
        pending: &state.pending,
        previous_account: state.previous_account.as_deref(),
        pending_account: state.pending_account.as_deref(),
        retirement: state.retirement.as_ref(),
    }
}

/// After a first try (a PUT, a DELETE) was refused the old password: whether the new
/// password works, as another actor's replay of the same call would have left it; `None` when
/// not asked.
async fn accepted_after_a_refusal(
    target: &dyn PasswordTarget,
    result: &Result<(), CallFailure>,
    replay: bool,
    change: &Change<'_>,
) -> Result<Option<bool>, CallFailure> {
    match result {
        Err(CallFailure::PasswordRejected) if !replay => target.accepts_pending(change).await,
        _ => Ok(None),
    }
}

/// Until the next scheduled rotation, or until something changes when none is scheduled.
fn wait_for_next(next_rotation: Option<Timestamp>, now: Timestamp) -> Action {
    match next_rotation {
        Some(next) => requeue_at(next, now),
        None => Action::await_change(),
    }
}

fn requeue_at(at: Timestamp, now: Timestamp) -> Action {
    let wait = at.duration_since(now).unsigned_abs();
    Action::requeue(wait.clamp(Duration::from_millis(100), Duration::from_secs(3600)))
}

/// The restart annotation's value: the rotation, the round after a healed drift, and the
/// workload Secret's resourceVersion that holds the new password. A restart counts for the
/// Secret as it was then: pods started since may have read a revert of it, so a publish that
/// finds the Secret at another version (a replay after a crash, after a revert and its
/// repair) restarts them again (found by `tests/protocol_model.rs`).
fn restart_value(rotation_id: &str, round: Option<u32>, secret_version: Option<&str>) -> String {
    let rotation = match round {
        Some(round) if round > 1 => format!("{rotation_id}.{round}"),
        _ => rotation_id.to_owned(),
    };
    match secret_version {
        Some(version) => format!("{rotation}@{version}"),
        None => rotation,
    }
}

fn rotation_id(now: Timestamp) -> String {
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    format!("{}-{}", now.strftime("%Y%m%d%H%M%S"), &suffix[..6])
}

/// The keys of [`Context::target_keys`], from `rotation`'s spec resolved on its target. The
/// system is what it called itself when the resource last started a rotation, else what its
/// target's status says it is, else the address; what holds the passwords is what the spec
/// names, and what the system called it then (`status.holders`).
fn keys_of(
    rotation: &PasswordRotation,
    spec: &RotationSpec,
    targets: &TargetIndex,
) -> Vec<PasswordList> {
    let Ok(target) = spec.target.selected() else {
        return Vec::new();
    };
    if target.validate().is_err() {
        return Vec::new();
    }
    let system = rotation
        .status
        .as_ref()
        .and_then(|s| s.cluster.clone())
        .or_else(|| targets.identity_of(rotation))
        .unwrap_or_else(|| target.address());
    let mut holders = target.holders();
    // What the last rotation recorded, while the spec still names what it did.
    let recorded = rotation.status.as_ref().map(|s| &s.holders);
    if let Some(recorded) = recorded.filter(|r| holders.iter().all(|h| r.contains(h))) {
        holders.extend(recorded.iter().cloned());
    }
    holders.sort();
    holders.dedup();
    holders
        .into_iter()
        .map(|holder| (system.clone(), target.vendor(), holder))
        .collect()
}

/// Removes this operator's finalizer, keeping any other's, unless the resource changed since
/// it was read.
async fn release(ctx: &Context, rotation: &PasswordRotation) -> Result<()> {
    let others = rotation
        .finalizers()
        .iter()
        .filter(|f| *f != FINALIZER)
        .cloned()
        .collect();
    ctx.kubernetes.set_finalizers(rotation, others).await?;
    Ok(())
}

/// Since when `key` has been seen with `value`, on the monotonic clock: from now when it is
/// new or was seen with another value.
fn noticed_since<V: PartialEq>(
    seen: &Mutex<HashMap<ObjectRef<PasswordRotation>, (V, Instant)>>,
    key: ObjectRef<PasswordRotation>,
    value: V,
) -> Instant {
    let mut seen = seen.lock().expect("not poisoned");
    match seen.get(&key) {
        Some((seen_with, since)) if *seen_with == value => *since,
        _ => {
            let now = Instant::now();
            seen.insert(key, (value, now));
            now
        }
    }
}

fn has_finalizer(rotation: &PasswordRotation) -> bool {
    rotation.finalizers().iter().any(|f| f == FINALIZER)
}

fn order_key(rotation: &PasswordRotation) -> (Option<Timestamp>, String, String) {
    (
        rotation.metadata.creation_timestamp.as_ref().map(|t| t.0),
        rotation.namespace().unwrap_or_default(),
        rotation.name_any(),
    )
}

fn rotating(rotation: &PasswordRotation) -> bool {
    rotation.status.as_ref().is_some_and(|s| {
        s.step.is_some() && matches!(s.phase, Some(Phase::Rotating) | Some(Phase::Blocked))
    })
}

fn qualified_name(rotation: &PasswordRotation) -> String {
    format!(
        "{}/{}",
        rotation.namespace().unwrap_or_default(),
        rotation.name_any()
    )
}

fn precedes(a: &PasswordRotation, b: &PasswordRotation) -> bool {
    order_key(a) < order_key(b)
}
