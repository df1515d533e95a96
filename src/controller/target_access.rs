//! A reconcile's way to its target: the spec's target and Secrets, the connection and its
//! failed-login budget, and the claim on the password list it rotates.

use super::*;

impl Rotator<'_> {
    /// The oldest other resource that rotates the same user or database of the same cluster.
    pub(super) fn conflict(&self) -> Option<String> {
        let mine = self.ctx.target_keys(&self.rotation);
        self.competitor(&mine, false)
    }

    /// The oldest other resource on `mine` that came first, or, when `busy` counts, that is
    /// rotating it right now.
    pub(super) fn competitor(&self, mine: &[PasswordList], busy: bool) -> Option<String> {
        let uid = self.rotation.uid();
        let targets = &self.ctx.target_index;
        let basis = targets.basis();
        let lists_of = |other: &PasswordRotation| {
            targets
                .resolve(other)
                .map(|spec| keys_of(other, &spec, targets))
                .unwrap_or_default()
        };
        self.ctx
            .watched
            .iter()
            .flat_map(|w| {
                w.index
                    .sharing(mine, basis, &w.store, lists_of)
                    .into_iter()
                    .filter_map(|key| w.store.get(&key))
            })
            .filter(|other| other.uid() != uid)
            // Each other resource is resolved once: for its key, and whether its spec is valid.
            // One refused for its spec holds none back, unless it is rotating now: its plan
            // is pinned, and a spec edited mid-rotation must not free the password list.
            .filter(|other| {
                let Ok(spec) = self.ctx.target_index.resolve(other) else {
                    return false;
                };
                keys_of(other, &spec, &self.ctx.target_index)
                    .iter()
                    .any(|key| mine.contains(key))
                    && ((busy && rotating(other))
                        || (precedes(other, &self.rotation)
                            && validate(&spec, &other.namespace().unwrap_or_default()).is_ok()))
            })
            .min_by_key(|other| order_key(other))
            .map(|other| qualified_name(&other))
    }

    /// Takes each of `mine` for this resource's rotation, unless another resource took one
    /// moments ago (before its status could show it).
    pub(super) fn claim(&self, mine: Vec<PasswordList>, now: Timestamp) -> Option<String> {
        let me = ObjectRef::from_obj(&*self.rotation);
        let mut claims = self.ctx.claims.lock().expect("not poisoned");
        let taken = mine.iter().find_map(|key| {
            claims
                .get(key)
                .filter(|(holder, at)| *holder != me && now < *at + UNTIL_STATUS_SHOWS)
        });
        if let Some((holder, _)) = taken {
            return Some(format!(
                "{}/{}",
                holder.namespace.as_deref().unwrap_or_default(),
                holder.name
            ));
        }
        for key in mine {
            claims.insert(key, (me.clone(), now));
        }
        None
    }

    /// The target's section of the (pinned) spec; validated before any use.
    pub(super) fn target_spec(&self) -> &dyn TargetSpec {
        self.spec.target.selected().expect("validated")
    }

    /// What the target's system says it is called, asked once per address.
    pub(super) async fn cluster_identity(
        &self,
        target: &dyn PasswordTarget,
    ) -> Result<String, CallFailure> {
        let selected = self.target_spec();
        let key = (selected.vendor(), selected.address());
        if let Some(known) = self.ctx.identities.lock().expect("not poisoned").get(&key) {
            return Ok(known.clone());
        }
        let identity = target.identity().await?;
        self.ctx
            .identities
            .lock()
            .expect("not poisoned")
            .insert(key, identity.clone());
        Ok(identity)
    }

    /// The target, from the Secrets read beside the first reads if they were, else read now.
    pub(super) async fn connected_target(&mut self) -> Result<Box<dyn PasswordTarget>> {
        match self.prefetched_target_secrets.take() {
            Some(secrets) => secrets.and_then(|secrets| self.connect_target(&secrets)),
            None => self.target().await,
        }
    }

    /// Builds the target into `slot` once per reconcile; the action to return instead when a
    /// Secret it needs is missing or does not allow this resource.
    pub(super) async fn load_target(
        &mut self,
        slot: &mut Option<Box<dyn PasswordTarget>>,
    ) -> Result<Option<Action>> {
        if slot.is_some() {
            return Ok(None);
        }
        match self.connected_target().await {
            Ok(target) => {
                *slot = Some(target);
                Ok(None)
            }
            // Watched Secrets trigger a new reconcile when they change.
            Err(Error::Secret { name, problem }) => {
                let message = format!("Secret {name} {problem}");
                self.report_not_ready(Reason::SecretMissing, &message)
                    .await?;
                Ok(Some(Action::await_change()))
            }
            Err(Error::Target {
                reason: reason @ Reason::TargetNotAllowed,
                detail,
            }) => {
                self.report_not_ready(reason, &detail).await?;
                Ok(Some(Action::await_change()))
            }
            Err(e) => Err(e),
        }
    }

    /// A call that did not get through: Blocked for a person to act, or retried with backoff.
    pub(super) async fn stop(
        &mut self,
        outcome: CallOutcome,
        target: &dyn PasswordTarget,
        now: Timestamp,
    ) -> Result<Action> {
        match outcome {
            CallOutcome::Block { reason, message } => {
                self.block(reason, message, target, now).await
            }
            CallOutcome::Retry { reason, detail } => {
                self.event(EventType::Warning, reason, "Retry", &detail)
                    .await;
                Err(Error::Target { reason, detail })
            }
            CallOutcome::Done => unreachable!("only a failed call stops"),
        }
    }

    /// The Secrets the target reads, as they are now.
    pub(super) async fn target_secrets(&self) -> Result<BTreeMap<String, Secret>> {
        let used = self.target_spec().secrets();
        let found =
            futures::future::try_join_all(used.iter().map(|u| self.target_secret(&u.name))).await?;
        let mut read = BTreeMap::new();
        for (used, found) in used.into_iter().zip(found) {
            let secret = found.ok_or_else(|| Error::Secret {
                name: used.name.clone(),
                problem: format!(
                    "not found in namespace {} ({} of the target)",
                    self.spec.secrets_namespace, used.field
                ),
            })?;
            read.insert(used.name, secret);
        }
        Ok(read)
    }

    /// One of the target's Secrets: as last read while the watch shows it unchanged.
    pub(super) async fn target_secret(&self, name: &str) -> Result<Option<Secret>> {
        self.ctx
            .target_secret(&self.spec.secrets_namespace, name)
            .await
    }

    /// The fingerprint of the target's Secrets now; `None` while one is missing or not allowed.
    pub(super) async fn credentials_fingerprint(&self) -> Result<Option<String>> {
        match self.target_secrets().await {
            Ok(secrets) => Ok(Some(credentials_fingerprint(&secrets))),
            Err(Error::Secret { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub(super) async fn target(&self) -> Result<Box<dyn PasswordTarget>> {
        self.connect_target(&self.target_secrets().await?)
    }

    pub(super) fn connect_target(
        &self,
        secrets: &BTreeMap<String, Secret>,
    ) -> Result<Box<dyn PasswordTarget>> {
        not_its_own_admin(self.target_spec(), secrets)?;
        let credentials = credentials_fingerprint(secrets);
        let remembered = |account: &str| self.remembered_refusal(account);
        let system = self.ctx.target_index.identity_of(&self.rotation);
        self.ctx.connect_target(
            self.target_spec(),
            Connect {
                secrets,
                credentials: &credentials,
                secrets_namespace: &self.spec.secrets_namespace,
                lockout: self.spec.lockout.as_ref(),
                shared: &self.ctx.targets,
                settings: &self.ctx.target_settings,
                resource: format!("{}/{}", self.namespace, self.rotation.name_any()),
                observer: self.ctx.metrics.clone(),
                remembered: &remembered,
                system: system.as_deref(),
            },
        )
    }

    /// The latest refusal of `account` that the target's status or a Blocked resource
    /// recorded, for a budget that this process has not seen used yet (after a restart or a
    /// failover).
    pub(super) fn remembered_refusal(&self, account: &str) -> Option<Refusal> {
        let on_target = self
            .ctx
            .target_index
            .status_of(&self.rotation)
            .and_then(|status| crate::target_status::remembered(&status, account));
        self.ctx
            .watched
            .iter()
            .flat_map(|w| {
                w.index
                    .blocked()
                    .into_iter()
                    .filter_map(|key| w.store.get(&key))
            })
            .filter_map(|other| {
                let status = other.status.as_ref()?;
                if status.phase != Some(Phase::Blocked)
                    || status.blocked_account.as_deref() != Some(account)
                {
                    return None;
                }
                // The target's own lockout is unknown here: hold for the longest retry.
                Some(Refusal {
                    hold: crate::rotation::BLOCKED_RETRY,
                    at: status.blocked_time.as_ref()?.0,
                    credentials: status.blocked_credentials_hash.clone()?,
                    by: format!(
                        "{}/{}",
                        other.namespace().unwrap_or_default(),
                        other.name_any()
                    ),
                })
            })
            .chain(on_target)
            .max_by_key(|refusal| refusal.at)
    }

    /// Names the password list a new rotation changes (the system, as it calls itself, and
    /// what holds the passwords there) and claims it; the action to end with instead when
    /// the target cannot say, or another resource rotates the same list.
    pub(super) async fn claim_password_list(
        &mut self,
        loaded: &dyn PasswordTarget,
        now: Timestamp,
    ) -> Result<Option<Action>> {
        let cluster = match self.cluster_identity(loaded).await {
            Ok(cluster) => cluster,
            Err(failure) => {
                return self.stop(on_failure(failure), loaded, now).await.map(Some);
            }
        };
        // Best effort: a lookup that fails leaves the spec's names, which meet
        // any resource whose own lookup worked.
        let canonical = loaded.canonical_holders().await.unwrap_or_else(|failure| {
            warn!(
                ?failure,
                "the system's name of what this rotates is unknown"
            );
            Vec::new()
        });
        let selected = self.target_spec();
        let mut holders: Vec<String> = Vec::new();
        for holder in selected.holders().into_iter().chain(canonical) {
            if !holders.contains(&holder) {
                holders.push(holder);
            }
        }
        let mine: Vec<PasswordList> = holders
            .iter()
            .map(|holder| (cluster.clone(), selected.vendor(), holder.clone()))
            .collect();
        if let Some(with) = self
            .competitor(&mine, true)
            .or_else(|| self.claim(mine, now))
        {
            return self.report_conflict(with).await.map(Some);
        }
        self.status.cluster = Some(cluster);
        self.status.holders = holders;
        Ok(None)
    }
}
