//! Deleting a resource (the finalizer's cleanup), and resources that no operator of their
//! shard serves. Neither leaves a resource Terminating for good, nor a password valid that no
//! Secret holds: what cannot be undone is kept, in the orphaned state Secret.

use super::*;

/// A resource of another shard is left to that shard's operator, unless none acts on it (a
/// typo in the label, a shard no operator runs): after `shard_patience` its status says so,
/// and one being deleted is released after twice that, its passwords kept as they are.
pub(super) async fn watch_unserved(
    cached: Arc<PasswordRotation>,
    shard: Option<String>,
    ctx: &Context,
) -> Result<Action> {
    let key = ObjectRef::from_obj(&*cached);
    let deleting = cached.metadata.deletion_timestamp.is_some() && has_finalizer(&cached);
    if !deleting && !shard::unserved(cached.status.as_ref(), shard.as_deref()) {
        ctx.unserved.lock().expect("not poisoned").remove(&key);
        return Ok(Action::await_change());
    }
    let since = noticed_since(&ctx.unserved, key.clone(), shard.clone());
    let patience = ctx.settings.shard_patience * if deleting { 2 } else { 1 };
    let waited = since.elapsed();
    if waited < patience {
        return Ok(Action::requeue(patience - waited));
    }
    let api: Api<PasswordRotation> =
        Api::namespaced(ctx.client.clone(), &key.namespace.unwrap_or_default());
    let Some(rotation) = api.get_opt(&cached.name_any()).await? else {
        return Ok(Action::await_change());
    };
    let rotator = Rotator::new(ctx, Arc::new(rotation), true);
    if deleting {
        rotator.release_unserved(shard.as_deref(), waited).await
    } else {
        rotator.report_unserved(shard.as_deref(), waited).await
    }
}

impl Rotator<'_> {
    /// Deleting the resource: roll back before the new password is published; after, keep
    /// both passwords valid and the old one in the (now orphaned) state Secret.
    pub(super) async fn cleanup(mut self) -> Result<Action> {
        self.ctx
            .metrics
            .forget(&self.namespace, &self.rotation.name_any());
        self.ctx
            .freshness
            .forget(&ObjectRef::from_obj(&*self.rotation));
        let state_name = secrets::state_secret_name(&self.rotation);
        // Not its own: an earlier resource of this name left it, or this cleanup ran before
        // and kept it; either way it is no longer this resource's to undo.
        let Some(state) = secrets::read_state(&self.secrets, &state_name)
            .await?
            .filter(|state| state.owned_by(&self.rotation))
        else {
            return Ok(Action::await_change());
        };
        self.pin(Some(&state));
        if let Err(error) = self.leave_to_its_shard(Some(&state)).await {
            return self.release_keeping_the_passwords(error, &state_name).await;
        }
        let step = match &self.status.rotation_id {
            Some(id) if *id == state.rotation_id => self.status.step.unwrap_or(Step::Staged),
            _ => Step::Staged,
        };
        let workload = self.workload_secret().await?;
        let holds_new =
            state.holds(self.password_in(workload.as_ref()).as_ref()) == SecretHolds::Pending;
        // Any write to the workload Secret since Stage may have been the publish, and pods
        // may have read the new password from it even if it was changed back since; except
        // this cleanup's own mark, after which no publish of this rotation is accepted.
        let fenced = state.rolled_back_in(workload.as_ref());
        let written_since_stage = !fenced
            && state.workload_version.as_ref().is_some_and(|staged| {
                workload.as_ref().and_then(ResourceExt::resource_version) != Some(staged.clone())
            });
        if rotation::on_deletion(step, holds_new, written_since_stage) == OnDeletion::KeepBoth {
            // In Replace mode the workload Secret may hold the only password that works
            // while pods still run on the replaced one: they restart onto it.
            let holding = workload.as_ref().and_then(ResourceExt::resource_version);
            if self.spec.mode == Mode::Replace
                && let Err(error) = self.restart_onto(&state, holding.as_deref()).await
            {
                return self.release_keeping_the_passwords(error, &state_name).await;
            }
            let kept = match self.spec.mode {
                Mode::AddThenDelete => "both passwords remain valid",
                Mode::Replace => "the old password may have been replaced; the workloads restart",
            };
            let message = format!(
                "deleted after the new password may have been published (the workload Secret \
                 was written since the rotation began): {kept}; the old one is kept in Secret \
                 {state_name}"
            );
            return self
                .orphan_state(&state_name, Reason::LeftBothValid, &message)
                .await;
        }
        // In Replace mode the status written before the PUT fences it instead; a Secret that
        // no longer allows this resource takes no publish from it anyway.
        if !fenced
            && self.spec.mode == Mode::AddThenDelete
            && let Some(secret) = &workload
            && secrets::allows(secret, &self.rotation.name_any())
        {
            secrets::fence_rollback(&self.secrets, secret, &state.rotation_id).await?;
        }
        let (outcome, message) = match self.roll_back(&state, step, workload.as_ref()).await {
            Ok(rolled_back) => rolled_back,
            Err(error) => return self.release_keeping_the_passwords(error, &state_name).await,
        };
        match outcome {
            CallOutcome::Done => {
                // Not deleted: another operator process may have read the state Secret
                // before the deletion and still send the add, which would make the staged
                // password valid again (see `tests/protocol_model.rs`).
                self.ctx.metrics.rotation_finished("rolled_back", None);
                secrets::orphan_state(&self.secrets, &state_name, secrets::KEPT_ROLLED_BACK)
                    .await?;
                let message = format!(
                    "{message}; Secret {state_name} is kept without an owner in case an \
                     operator process that read it before the deletion still adds that \
                     password: delete it once every operator replica has restarted"
                );
                self.event(EventType::Normal, "RolledBack", "Delete", &message)
                    .await;
                Ok(Action::await_change())
            }
            CallOutcome::Retry { reason, detail } => {
                self.event(EventType::Warning, reason, "Retry", &detail)
                    .await;
                let error = Error::Target { reason, detail };
                self.release_keeping_the_passwords(error, &state_name).await
            }
            CallOutcome::Block { reason, message } => {
                let message = format!(
                    "deleted mid-rotation but the rollback failed ({reason}: {message}); the staged \
                     password is kept in Secret {state_name}"
                );
                self.orphan_state(&state_name, Reason::RollbackFailed, &message)
                    .await
            }
        }
    }

    /// Cleanup that cannot finish, because a person has to change something first or because
    /// it kept failing for `cleanup_timeout` since the deletion: the passwords stay as they
    /// are, kept in the orphaned state Secret, and the resource is released rather than left
    /// Terminating. Until then the error is retried.
    async fn release_keeping_the_passwords(
        &self,
        error: Error,
        state_name: &str,
    ) -> Result<Action> {
        let deleted = self.rotation.metadata.deletion_timestamp.as_ref();
        let waited = deleted.map_or(Duration::ZERO, |at| {
            Timestamp::now()
                .duration_since(at.0)
                .try_into()
                .unwrap_or(Duration::ZERO)
        });
        if !error.needs_a_change() && waited < self.ctx.settings.cleanup_timeout {
            return Err(error);
        }
        let kept = match self.spec.mode {
            Mode::AddThenDelete => "both passwords remain valid",
            Mode::Replace => "the password may have been replaced",
        };
        let message = format!(
            "deleted mid-rotation and the rotation could not be undone or finished ({error}): \
             {kept}; the passwords are kept in Secret {state_name}"
        );
        self.orphan_state(state_name, Reason::LeftBothValid, &message)
            .await
    }

    /// Keeps the state Secret, with the passwords it holds, beyond the resource (its owner
    /// reference removed), and says why in a Warning event.
    async fn orphan_state(
        &self,
        state_name: &str,
        reason: Reason,
        message: &str,
    ) -> Result<Action> {
        secrets::orphan_state(&self.secrets, state_name, secrets::KEPT_BOTH_VALID).await?;
        self.event(EventType::Warning, reason, "Delete", message)
            .await;
        Ok(Action::await_change())
    }

    /// Ready=False `ShardUnserved`, with a Warning event, once; the shard the status names
    /// stays as it is, so that operators of other shards agree on it.
    pub(super) async fn report_unserved(
        mut self,
        shard: Option<&str>,
        waited: Duration,
    ) -> Result<Action> {
        let target = &self.rotation.spec.target.reference;
        let message = shard::unserved_message(shard, waited, (&self.namespace, target));
        let status = self.after(
            Outcome::NotReady {
                reason: Reason::ShardUnserved,
                message: &message,
            },
            Timestamp::now(),
        );
        let unchanged =
            has_condition_reason(&self.written, "Ready", "False", Reason::ShardUnserved);
        if !unchanged && self.write_status_if_changed(status).await? {
            self.event(
                EventType::Warning,
                Reason::ShardUnserved,
                "Validate",
                &message,
            )
            .await;
        }
        Ok(Action::await_change())
    }

    /// A deleted resource that no operator of its shard acts on: its state Secret, if a
    /// rotation is in flight, is orphaned with the passwords as they are, and the finalizer
    /// removed.
    pub(super) async fn release_unserved(
        self,
        shard: Option<&str>,
        waited: Duration,
    ) -> Result<Action> {
        let target = &self.rotation.spec.target.reference;
        let why = shard::unserved_message(shard, waited, (&self.namespace, target));
        let state_name = secrets::state_secret_name(&self.rotation);
        if secrets::read_state(&self.secrets, &state_name)
            .await?
            .is_some_and(|state| state.owned_by(&self.rotation))
        {
            let message = format!(
                "deleted mid-rotation, and {why}: the passwords stay as they are, kept in \
                 Secret {state_name}"
            );
            self.orphan_state(&state_name, Reason::LeftBothValid, &message)
                .await?;
        }
        release(self.ctx, &self.rotation).await?;
        Ok(Action::await_change())
    }

    /// Undoes the stage of a rotation deleted before it published: the outcome of the call
    /// and what the event says when it is done.
    async fn roll_back(
        &mut self,
        state: &RotationState,
        step: Step,
        workload: Option<&Secret>,
    ) -> Result<(CallOutcome, &'static str)> {
        validate(&self.spec, &self.namespace).map_err(|e| Error::Target {
            reason: Reason::InvalidSpec,
            detail: format!("{}: {}", e.field, e.message),
        })?;
        let target = self.target().await?;
        Ok(match (self.spec.mode, step) {
            (Mode::AddThenDelete, _) => (
                on_rollback(match &state.previous {
                    Some(previous) => target.roll_back(&change(state, previous)).await,
                    None => Err(CallFailure::Other {
                        detail: "the state Secret holds no previous password to keep".into(),
                    }),
                }),
                "deleted mid-rotation: the staged password was removed from the database",
            ),
            (Mode::Replace, Step::Staged) => (
                CallOutcome::Done,
                "deleted mid-rotation before any password was replaced",
            ),
            (Mode::Replace, _) => {
                // Once a PUT may have landed only the new password works: finish it and
                // publish, rather than leave the workload Secret with a dead password.
                let previous = state.previous.as_ref().unwrap_or(&state.pending);
                let outcome = match step {
                    Step::Replacing => {
                        on_replace(target.replace(&change(state, previous)).await, true, None)
                    }
                    _ => CallOutcome::Done,
                };
                if outcome == CallOutcome::Done {
                    let published = self.publish(state, workload).await?;
                    self.restart_onto(state, published.resource_version().as_deref())
                        .await?;
                }
                (
                    outcome,
                    "deleted mid-rotation in Replace mode: the new password was set and \
                     published, and the workloads restarted onto it",
                )
            }
        })
    }
}
