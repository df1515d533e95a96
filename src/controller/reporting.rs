//! What a reconcile records: status (one write per reconcile, at the version it decided
//! on), conditions for what stops it, and Events.

use super::*;

impl Rotator<'_> {
    pub(super) async fn report_unresolved(&mut self, unresolved: Unresolved) -> Result<Action> {
        self.report_not_ready(unresolved.reason, &unresolved.message)
            .await?;
        Ok(Action::await_change())
    }

    pub(super) async fn report_invalid(&mut self, invalid: InvalidField) -> Result<Action> {
        let message = format!("{}: {}", invalid.field, invalid.message);
        self.report_not_ready(Reason::InvalidSpec, &message).await?;
        Ok(Action::await_change())
    }

    pub(super) async fn report_rollout_trouble(
        &mut self,
        trouble: RolloutTrouble,
        pending: &[String],
        now: Timestamp,
    ) -> Result<()> {
        let (reason, message) = match trouble {
            RolloutTrouble::TimedOut => (
                Reason::RolloutTimeout,
                format!(
                    "rollout not finished within spec.rollout.timeout: {}; both passwords stay valid",
                    pending.join(", ")
                ),
            ),
            RolloutTrouble::CannotComplete => (
                Reason::RolloutCannotComplete,
                format!(
                    "the rollout cannot finish by itself: {}; both passwords stay valid until it does",
                    pending.join(", ")
                ),
            ),
        };
        if has_condition_reason(&self.status, "Degraded", "True", reason) {
            return Ok(());
        }
        let outcome = Outcome::RolloutStuck {
            reason,
            message: &message,
        };
        let status = self.after(outcome, now);
        self.write_status(status).await?;
        self.event(EventType::Warning, reason, "Rollout", &message)
            .await;
        Ok(())
    }

    pub(super) async fn report_conflict(&mut self, with: String) -> Result<Action> {
        let message = format!(
            "{} of this cluster: PasswordRotation {with} rotates it already (the oldest \
             resource on a user, database or account wins); this one does nothing",
            self.target_spec().object()
        );
        self.report_not_ready(Reason::Conflict, &message).await?;
        // The other resource's deletion does not trigger this one: look again now and then.
        Ok(Action::requeue(Duration::from_secs(60)))
    }

    /// A rotation in flight belongs to the shard whose operator staged it, as its state
    /// Secret's label says, whatever its target's label says now: the operator of any other
    /// shard reports so and stops here (with an error, so that it looks again with backoff
    /// and sees a hand-over of the state Secret).
    pub(super) async fn leave_to_its_shard(&mut self, state: Option<&RotationState>) -> Result<()> {
        let Some(state) = state else {
            return Ok(());
        };
        let mine = self.ctx.settings.shard.as_deref();
        if state.shard.as_deref() == mine {
            self.record(self.after(Outcome::ShardReturned, Timestamp::now()));
            return Ok(());
        }
        let message = shard::moved_message(
            &state.rotation_id,
            state.shard.as_deref(),
            mine,
            (
                &self.namespace,
                &self.rotation.spec.target.reference,
                &secrets::state_secret_name(&self.rotation),
            ),
        );
        self.report_not_ready(Reason::ShardMoved, &message).await?;
        Err(Error::ShardMoved(message))
    }

    /// Ready=False with a Warning event, both only when they change: nothing is written
    /// while the reason stays the same.
    pub(super) async fn report_not_ready(&mut self, reason: Reason, message: &str) -> Result<()> {
        let status = self.after(Outcome::NotReady { reason, message }, Timestamp::now());
        if self.write_status_if_changed(status).await? {
            self.event(EventType::Warning, reason, "Validate", message)
                .await;
        }
        Ok(())
    }

    /// Records `status` and writes it, unless the resource holds it already; true when written.
    pub(super) async fn write_status_if_changed(
        &mut self,
        status: PasswordRotationStatus,
    ) -> Result<bool> {
        self.record(status);
        self.checkpoint().await
    }

    /// Records `status` and writes it now: before an effect whose replay is not safe.
    pub(super) async fn write_status(&mut self, status: PasswordRotationStatus) -> Result<()> {
        self.record(status);
        self.checkpoint().await.map(drop)
    }

    /// Records `status` as this reconcile's view, to be written with the next write.
    pub(super) fn record(&mut self, status: PasswordRotationStatus) {
        self.status = status;
        self.export_status();
    }

    /// Writes the status this reconcile recorded, when the resource does not hold it yet;
    /// true when written.
    pub(super) async fn checkpoint(&mut self) -> Result<bool> {
        let mut status = self.status.clone();
        status::show_pending_changes(&mut status, &self.plan_changes, Timestamp::now());
        let shard = self.ctx.settings.shard.as_deref();
        if self.ctx.target_index.serves(&self.rotation, shard) {
            status.shard.clone_from(&self.ctx.settings.shard);
        }
        if status == self.written {
            return Ok(false);
        }
        self.finalized().await?;
        let version = self
            .ctx
            .kubernetes
            .write_status(&self.rotation, self.version.as_deref(), &status)
            .await?;
        let key = ObjectRef::from_obj(&*self.rotation);
        self.ctx.freshness.saw(&key, version.as_deref());
        self.version = version;
        self.written = status.clone();
        self.record(status);
        if self.no_state_secret && self.settled() {
            let version = self.version.as_deref();
            self.ctx.freshness.settled_at(&key, version);
        }
        Ok(true)
    }

    /// The status after `outcome`, from the status as this reconcile knows it.
    pub(super) fn after(&self, outcome: Outcome<'_>, now: Timestamp) -> PasswordRotationStatus {
        status::after(
            &self.status,
            outcome,
            self.rotation.metadata.generation,
            now,
        )
    }

    /// The per-resource gauges (phase, conditions, last and next rotation) from the status:
    /// called with the status as read and after every write, so no path is missed.
    pub(super) fn export_status(&self) {
        let name = self.rotation.name_any();
        if self.rotation.metadata.deletion_timestamp.is_some() {
            self.ctx.metrics.forget(&self.namespace, &name);
        } else {
            self.ctx.metrics.resource_status(
                &self.namespace,
                &name,
                &NamedTarget::of(&self.rotation),
                &self.status,
            );
        }
    }

    pub(super) fn record_step_time(&self, step: Step, now: Timestamp) {
        if let Some(Time(previous)) = self.status.step_time {
            self.ctx
                .metrics
                .step_reached(step.as_str(), now.duration_since(previous).unsigned_abs());
        }
    }

    pub(super) async fn event(
        &self,
        type_: EventType,
        reason: impl AsRef<str>,
        action: &str,
        note: &str,
    ) {
        let reason = reason.as_ref();
        let event = Event {
            type_,
            reason: reason.into(),
            note: Some(note.chars().take(1000).collect()),
            action: action.into(),
            secondary: None,
        };
        self.ctx
            .kubernetes
            .publish_event(&self.rotation, event)
            .await;
    }

    /// Records the step a done effect leads to. Its replay is safe, so it is written with
    /// the next status write: before an effect that must not be repeated, or at the end of
    /// the reconcile.
    pub(super) fn advance(&mut self, decision: &Decision, now: Timestamp) {
        let step = step_after(decision).expect("a step follows every effect");
        self.record_step_time(step, now);
        self.record(self.after(Outcome::Stepped(step), now));
        self.fail_point(&format!("after-step-{}", step.as_str()));
        // Backoff counts failures in a row: progress starts it again from its shortest wait.
        self.ctx
            .failures
            .lock()
            .expect("not poisoned")
            .remove(&ObjectRef::from_obj(&*self.rotation));
        info!(step = step.as_str(), "rotation step done");
    }

    pub(super) async fn block(
        &mut self,
        reason: Reason,
        message: String,
        target: &dyn PasswordTarget,
        now: Timestamp,
    ) -> Result<Action> {
        let budget = target.budget();
        let status = self.after(
            Outcome::Blocked {
                reason,
                message: &message,
                credentials: &budget.credentials,
                account: &budget.account_key,
            },
            now,
        );
        self.write_status(status).await?;
        warn!(reason = reason.as_str(), "blocked");
        self.ctx.metrics.rotation_finished("blocked", None);
        self.event(EventType::Warning, reason, "Rotate", &message)
            .await;
        Ok(requeue_at(now + crate::rotation::BLOCKED_RETRY, now))
    }

    pub(super) async fn idle(
        &mut self,
        next_rotation: Option<Timestamp>,
        now: Timestamp,
    ) -> Result<Action> {
        let status = self.after(Outcome::Idle { next_rotation }, now);
        self.write_status_if_changed(status).await?;
        Ok(wait_for_next(next_rotation, now))
    }
}
