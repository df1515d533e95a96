//! Acting on a decision: one method per effect, each returning the action to end the
//! reconcile with, or `None` to decide again on what it changed.

use super::*;

impl Rotator<'_> {
    /// Does what `decision` says. `was_fresh`: the workload Secret was read right before
    /// this decision.
    pub(super) async fn act(
        &mut self,
        decision: Decision,
        w: &mut Working,
        was_fresh: bool,
        now: Timestamp,
    ) -> Result<Option<Action>> {
        match decision {
            Decision::Invalid { field, message } => {
                let invalid = InvalidField { field, message };
                return self.report_invalid(invalid).await.map(Some);
            }
            Decision::Conflict { with } => return self.report_conflict(with).await.map(Some),
            Decision::Suspended => {
                self.record(self.after(Outcome::Suspended, now));
                return Ok(Some(Action::await_change()));
            }
            Decision::StayBlocked { retry_at } => return Ok(Some(requeue_at(retry_at, now))),
            Decision::RolledBack => {
                let kept = "was kept by the deletion of an earlier PasswordRotation of this \
                            name, whose rotation was rolled back";
                return self
                    .left_by_a_deletion(Reason::RolledBack, &w.state_name, kept)
                    .await
                    .map(Some);
            }
            Decision::StateNotOwned => {
                let kept = "is not owned by this PasswordRotation: it was kept by the deletion \
                            of an earlier one of this name (its annotation rotator.dev/orphaned \
                            says which passwords it keeps), and this resource does not take over \
                            a rotation it did not stage";
                return self
                    .left_by_a_deletion(Reason::StateSecretNotOwned, &w.state_name, kept)
                    .await
                    .map(Some);
            }
            Decision::Idle { next_rotation } => {
                return self.idle(next_rotation, now).await.map(Some);
            }
            Decision::Stage { trigger } => return self.stage_rotation(trigger, w, now).await,
            Decision::Adopt { rotation_id } => {
                if !self.still_current().await? {
                    return Ok(Some(self.read_again()));
                }
                self.begin(rotation_id, Trigger::Resumed, now).await;
            }
            Decision::Withdraw => {
                // Decided on a copy read after the state Secret: its status, if current,
                // was written before the state Secret was created.
                if !self.still_current().await? {
                    return Ok(Some(self.read_again()));
                }
                let overtaken = w
                    .state
                    .take()
                    .expect("decide withdraws only a state it read");
                secrets::delete_state(&self.secrets, &w.state_name, &overtaken).await?;
                info!(
                    rotation_id = %overtaken.rotation_id,
                    "a rotation staged from a copy another rotation overtook was withdrawn; \
                     nothing was added from it"
                );
                // What this reconcile acts on was pinned by the plan just withdrawn: the next
                // decision is made on the spec as it is.
                return Ok(Some(Action::requeue(Duration::ZERO)));
            }
            Decision::Restage => {
                let current = self
                    .password_in(w.workload.as_ref())
                    .expect("decide restages only with one");
                let Working {
                    state,
                    workload,
                    state_name,
                    ..
                } = w;
                let restaged = self.restage(state, workload.as_ref(), current, state_name, now);
                if let Some(action) = restaged.await? {
                    return Ok(Some(action));
                }
            }
            Decision::Add | Decision::Replace { .. } | Decision::Retire { .. } => {
                return self.change_target(&decision, w, now).await;
            }
            Decision::Verify => {
                self.verify_pending(w).await?;
                self.advance(&decision, now);
            }
            Decision::Publish => {
                self.publish_pending(w, now).await?;
                self.advance(&decision, now);
            }
            Decision::AwaitRollout {
                pending,
                degraded,
                requeue_after,
            } => {
                if let Some(trouble) = degraded {
                    self.report_rollout_trouble(trouble, &pending, now).await?;
                }
                if !self.target_spec().heals() {
                    return Ok(Some(Action::requeue(requeue_after)));
                }
                let state = w.state.as_ref().expect("a rollout is awaited with a state");
                self.heal(&mut w.target, state).await;
                return Ok(Some(Action::requeue(requeue_after.min(HEAL_EVERY))));
            }
            Decision::HoldDrifted { holds } => {
                let held = self.hold_drifted(holds, w.workload.as_ref(), now).await;
                return held.map(Some);
            }
            Decision::ResumeAfterDrift => self.resume_after_drift(w.workload.as_ref(), now).await,
            Decision::PersistAgain => return self.persist_again(w, now).await,
            Decision::MarkRolledOut => {
                // Restarting workloads reads and writes them: the workload Secret may
                // have changed meanwhile.
                w.workload_fresh = was_fresh && self.spec.rollout.workloads.is_empty();
                self.advance(&decision, now);
            }
            Decision::Finish if self.status.step.is_none() => {
                // A leftover of a rotation whose end status already recorded.
                let leftover = w
                    .state
                    .as_ref()
                    .expect("decide clears only a state it read");
                secrets::delete_state(&self.secrets, &w.state_name, leftover).await?;
                let next = self.status.next_rotation_time.as_ref().map(|t| t.0);
                return Ok(Some(wait_for_next(next, now)));
            }
            Decision::Finish => {
                let password_expires = self.ask_expiry(w.target.as_deref()).await;
                let next = self
                    .finish(
                        &w.valid,
                        (&w.state_name, w.state.as_ref()),
                        password_expires,
                        now,
                    )
                    .await?;
                return Ok(Some(wait_for_next(next, now)));
            }
            Decision::Abandon { reason } => return self.abandon(&reason, &w.valid, now).await,
        }
        Ok(None)
    }

    /// A state Secret a deletion kept. Read from the API server (and not being deleted, or
    /// the cleanup would run), this is no stale copy but a new resource of the same name
    /// finding what the deletion kept; otherwise the copy may be stale: read it again.
    async fn left_by_a_deletion(
        &mut self,
        reason: Reason,
        state_name: &str,
        kept: &str,
    ) -> Result<Action> {
        if !self.read {
            self.ctx
                .freshness
                .distrust(&ObjectRef::from_obj(&*self.rotation));
            return Ok(Action::requeue(Duration::from_secs(1)));
        }
        let message = format!(
            "Secret {state_name} {kept}; delete that Secret once every operator replica has \
             restarted since, and this resource rotates"
        );
        self.report_not_ready(reason, &message).await?;
        Ok(Action::await_change())
    }

    /// Starts a rotation: the password list claimed, the new password generated and kept in
    /// the state Secret, and the copy of the resource it was decided on found still current.
    async fn stage_rotation(
        &mut self,
        trigger: Trigger,
        w: &mut Working,
        now: Timestamp,
    ) -> Result<Option<Action>> {
        if let Some(action) = self.load_target(&mut w.target).await? {
            return Ok(Some(action));
        }
        let loaded = w.target.as_deref().expect("loaded");
        if let Some(action) = self.claim_password_list(loaded, now).await? {
            return Ok(Some(action));
        }
        let previous = self
            .password_in(w.workload.as_ref())
            .expect("decide stages only with one");
        let accounts = match self.accounts(w.workload.as_ref()) {
            Ok(accounts) => accounts,
            Err(invalid) => return self.report_invalid(invalid).await.map(Some),
        };
        let workload_version = w.workload.as_ref().and_then(ResourceExt::resource_version);
        self.no_state_secret = false;
        self.fail_point("before-stage");
        let new_state = self
            .stage(&w.valid, previous, accounts, workload_version, now)
            .await?;
        let rotation_id = new_state.rotation_id.clone();
        w.state = Some(new_state);
        if !self.still_current().await? {
            // Adopted, or withdrawn when another rotation overtook the copy it came from.
            return Ok(Some(self.read_again()));
        }
        self.begin(rotation_id, trigger, now).await;
        Ok(None)
    }

    /// Ends the reconcile to decide again on the resource as the API server has it.
    fn read_again(&self) -> Action {
        self.ctx
            .freshness
            .distrust(&ObjectRef::from_obj(&*self.rotation));
        Action::requeue(Duration::ZERO)
    }

    /// The add, the replace or the retire: a call to the target. A retire that lands
    /// finishes the rotation, while the workload Secret still holds the new password.
    async fn change_target(
        &mut self,
        decision: &Decision,
        w: &mut Working,
        now: Timestamp,
    ) -> Result<Option<Action>> {
        if let Some(action) = self.load_target(&mut w.target).await? {
            return Ok(Some(action));
        }
        let Working {
            state_name,
            state,
            workload,
            target,
            valid,
            ..
        } = w;
        let state = state
            .as_ref()
            .expect("decide asks for a call only with a state");
        let target = target.as_deref().expect("loaded");
        let retire = matches!(decision, Decision::Retire { .. });
        if retire {
            self.unpublish_previous(workload.as_ref()).await?;
        }
        match self.call(target, decision, state).await? {
            CallOutcome::Done if retire => {
                // Finishing forgets the new password: only while the workload Secret still
                // holds it.
                let (read, password_expires) =
                    futures::join!(self.workload_secret(), self.ask_expiry(Some(target)));
                *workload = read?;
                let holds = state.holds(self.password_in(workload.as_ref()).as_ref());
                if holds != SecretHolds::Pending {
                    let held = self.hold_drifted(holds, workload.as_ref(), now).await;
                    return held.map(Some);
                }
                let next = self
                    .finish(valid, (state_name, Some(state)), password_expires, now)
                    .await?;
                Ok(Some(wait_for_next(next, now)))
            }
            CallOutcome::Done => {
                self.advance(decision, now);
                Ok(None)
            }
            stopped => {
                if *decision == (Decision::Replace { replay: false }) {
                    // The PUT was refused, so nothing was replaced: a later try is a first
                    // one, not a replay.
                    self.status.step = Some(Step::Staged);
                }
                self.stop(stopped, target, now).await.map(Some)
            }
        }
    }

    /// `AUTH` with the new password on `verify.endpoint`.
    async fn verify_pending(&mut self, w: &Working) -> Result<()> {
        let state = w.state.as_ref().expect("verify runs with a state");
        let endpoint = &self.spec.verify.as_ref().expect("decided on it").endpoint;
        let user = self.target_spec().username();
        if let Err(e) = verify::redis_auth(endpoint, user, &state.pending).await {
            self.event(EventType::Warning, "VerifyFailed", "Verify", &e.to_string())
                .await;
            return Err(e);
        }
        Ok(())
    }

    /// Writes the new password into the workload Secret; the write's answer is the Secret
    /// as it is now.
    async fn publish_pending(&mut self, w: &mut Working, now: Timestamp) -> Result<()> {
        let state = w.state.as_ref().expect("publish runs with a state");
        // Not recorded first: the workload Secret's resourceVersion, kept in the state Secret
        // at Stage, tells a deletion whether it may hold the new password (see `cleanup`).
        self.fail_point("before-publish");
        let published = self.publish(state, w.workload.as_ref()).await?;
        self.status.published_secret_version = published.resource_version();
        w.workload = Some(published);
        w.workload_fresh = true;
        self.fail_point("after-publish-write");
        self.status.published_time = Some(Time(ceil_to_second(now)));
        Ok(())
    }

    async fn resume_after_drift(&mut self, workload: Option<&Secret>, now: Timestamp) {
        let secret_version = workload.and_then(|w| w.metadata.resource_version.as_deref());
        self.record(self.after(Outcome::DriftHealed { secret_version }, now));
        self.event(
            EventType::Normal,
            Reason::SecretRestored,
            "Rotate",
            "the workload Secret holds the new password but was written since it was \
             published: the workloads restart once more and the overlap starts anew, as pods \
             started meanwhile may hold another password",
        )
        .await;
    }

    /// The add, replayed: it changes nothing and persists every node again. Held while a
    /// node still cannot persist, unless the resource says persistence is optional.
    async fn persist_again(&mut self, w: &mut Working, now: Timestamp) -> Result<Option<Action>> {
        if let Some(action) = self.load_target(&mut w.target).await? {
            return Ok(Some(action));
        }
        let state = w.state.as_ref().expect("decide persists only with a state");
        let target = w.target.as_deref().expect("loaded");
        let outcome = self.call(target, &Decision::Add, state).await?;
        if outcome != CallOutcome::Done {
            return self.stop(outcome, target, now).await.map(Some);
        }
        let persistence = self.status.persistence.clone();
        if !rotation::persisted(self.spec.persistence, persistence.as_deref()) {
            let why = persistence.unwrap_or_default();
            return self.hold_not_persisted(&why, now).await.map(Some);
        }
        Ok(None)
    }

    /// The state Secret vanished mid-rotation: the rotation is given up, and says why.
    async fn abandon(
        &mut self,
        reason: &str,
        valid: &ValidSpec,
        now: Timestamp,
    ) -> Result<Option<Action>> {
        let next_rotation = valid
            .schedule
            .as_ref()
            .and_then(|s| s.next_after(now, &self.seed()));
        let status = self.after(
            Outcome::Abandoned {
                message: reason,
                next_rotation,
            },
            now,
        );
        self.write_status(status).await?;
        self.ctx.metrics.rotation_finished("abandoned", None);
        self.event(EventType::Warning, "Abandoned", "Rotate", reason)
            .await;
        Ok(Some(Action::requeue(Duration::from_secs(1))))
    }
}
