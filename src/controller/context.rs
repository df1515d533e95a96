//! What every reconcile shares: the settings, the clients and caches, and what is kept for
//! each resource until it is gone.

use super::*;

/// How the controller runs.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Watch these namespaces, or every namespace when empty.
    pub namespaces: Vec<String>,
    /// Resources reconciled at once.
    pub concurrency: u16,
    /// Timeout of one request to a target.
    pub request_timeout: Duration,
    /// Calls to a target in flight at once, per cluster.
    pub calls_per_cluster: usize,
    /// Allow `insecureHttp: true`: the admin login would cross the network in clear text.
    pub allow_insecure_http: bool,
    /// Allow `spec.verify`: the operator would connect to a host the resource names and send
    /// it the new password.
    pub allow_verify: bool,
    /// For tests: abort the process at this named point (see [`Settings::fail_point`]).
    pub fail_point: Option<String>,
    /// Act only on resources whose target is labelled `rotator.dev/shard=<this>`; without it,
    /// only on those whose target has no such label.
    pub shard: Option<String>,
    /// Serve ClusterRotationTargets, whose Secrets are in this namespace.
    pub cluster_target_namespace: Option<String>,
    /// How long the cleanup of a deleted resource retries a rollback that fails for a
    /// transient cause, before it keeps both passwords and releases the resource.
    pub cleanup_timeout: Duration,
    /// How long a resource of another shard may go without its shard's operator acting on
    /// it before this operator says it is unserved (twice that, when it is being deleted,
    /// before it releases it).
    pub shard_patience: Duration,
}

impl Settings {
    /// Stops the process at a named point, for tests that prove what a crash there leaves:
    /// `after-step-<Step>` right after a step is recorded, and the points named where they
    /// are. `--fail-point NAME` aborts the process there; `NAME:stop` stops it (SIGSTOP) until
    /// a test continues it, as a paused process that still believes what it read.
    pub fn fail_point(&self, name: &str) {
        let Some(point) = self.fail_point.as_deref() else {
            return;
        };
        if point == name {
            tracing::error!(point = name, "fail point reached; aborting");
            std::process::abort();
        }
        if point.strip_suffix(":stop") == Some(name) {
            tracing::error!(point = name, "fail point reached; stopping");
            // SAFETY: raise has no preconditions; the process resumes here on SIGCONT.
            unsafe { libc::raise(libc::SIGSTOP) };
        }
    }
}

/// How often [`Context::forget_the_gone`] runs.
pub(super) const FORGET_EVERY: Duration = Duration::from_secs(60);

/// The shard a resource's target was labelled with when an operator of another shard saw it
/// unserved, and since when.
pub(super) type Noticed = (Option<String>, Instant);

/// Builds a target from its spec section and the Secrets it reads.
pub type Connector =
    Arc<dyn Fn(&dyn TargetSpec, Connect<'_>) -> Result<Box<dyn PasswordTarget>> + Send + Sync>;

/// Shared by every reconcile.
pub struct Context {
    pub(super) client: Client,
    pub(super) kubernetes: Arc<dyn Kubernetes>,
    /// Builds a resource's target from its spec section: `TargetSpec::connect`, except in
    /// tests that run the engine against a fake.
    pub(super) connect: Connector,
    /// One watch per watched namespace (or one for all): conflicts are looked up in each.
    pub(super) watched: Vec<Watched>,
    /// The targets resources name.
    pub(super) target_index: TargetIndex,
    pub(super) settings: Settings,
    pub(super) failures: Mutex<HashMap<ObjectRef<PasswordRotation>, u32>>,
    /// Call caps, login budgets and clients, shared by the resources of every target.
    pub(super) targets: Shared,
    pub(super) target_settings: TargetSettings,
    /// What each system says it is called, by target kind and address.
    pub(super) identities: Mutex<HashMap<(&'static str, String), String>>,
    /// The resource that last started a rotation of each user or database, and when: its
    /// status may not show it yet, and two rotations of one password list must never overlap.
    pub(super) claims: Mutex<HashMap<PasswordList, (ObjectRef<PasswordRotation>, Timestamp)>>,
    pub(super) metrics: Arc<Metrics>,
    pub(super) freshness: Freshness,
    pub(super) target_secret_cache: TargetSecretCache,
    /// Since when this process has seen each rotation (resource and rotation id) at
    /// Published, on its monotonic clock: the overlap is never shorter than that, whatever
    /// the clock of the replica that published says.
    pub(super) seen_published: Mutex<HashMap<ObjectRef<PasswordRotation>, (String, Instant)>>,
    /// Since when each resource of another shard has shown no sign of its shard's operator,
    /// and which shard its target was labelled with then.
    pub(super) unserved: Mutex<HashMap<ObjectRef<PasswordRotation>, Noticed>>,
}

impl Context {
    /// What every reconcile shares. `watched` are the watches' caches of PasswordRotations
    /// (empty ones for tests that drive [`apply`] themselves).
    pub fn new(
        client: Client,
        kubernetes: Arc<dyn Kubernetes>,
        connect: Connector,
        watched: Vec<Watched>,
        target_index: TargetIndex,
        settings: Settings,
        metrics: Arc<Metrics>,
    ) -> Arc<Self> {
        Arc::new(Context {
            client,
            kubernetes,
            connect,
            watched,
            target_index,
            target_settings: TargetSettings {
                request_timeout: settings.request_timeout,
                calls_per_cluster: settings.calls_per_cluster,
            },
            settings,
            failures: Mutex::default(),
            targets: Shared::default(),
            identities: Mutex::default(),
            claims: Mutex::default(),
            metrics,
            freshness: Freshness::default(),
            target_secret_cache: TargetSecretCache::default(),
            unserved: Mutex::default(),
            seen_published: Mutex::default(),
        })
    }
}

impl Context {
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    pub fn client(&self) -> Client {
        self.client.clone()
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Call caps, login budgets and clients, shared by every target.
    pub fn shared(&self) -> &Shared {
        &self.targets
    }

    pub fn target_settings(&self) -> &TargetSettings {
        &self.target_settings
    }

    /// Builds a target from its spec section and Secrets.
    pub fn connect_target(
        &self,
        spec: &dyn TargetSpec,
        with: Connect<'_>,
    ) -> Result<Box<dyn PasswordTarget>> {
        (self.connect)(spec, with)
    }

    /// One of a target's Secrets: as last read while the watch shows it unchanged.
    pub async fn target_secret(&self, namespace: &str, name: &str) -> Result<Option<Secret>> {
        let cache = &self.target_secret_cache;
        if let Some(kept) = cache.get(namespace, name) {
            return Ok(Some(kept));
        }
        let secrets = Secrets {
            kubernetes: self.kubernetes.as_ref(),
            namespace: namespace.to_owned(),
        };
        let read = secrets.get_opt(name).await?;
        if let Some(secret) = &read {
            cache.keep(namespace, secret.clone());
        }
        Ok(read)
    }

    /// How many resources name the target `kind`/`name` (a RotationTarget in `namespace`).
    /// Whether the Secret watch of the scope holding `rotation` has listed its Secrets and
    /// `state_name` (its state Secret) is not among them.
    pub(super) fn listed_without_secret(
        &self,
        rotation: &PasswordRotation,
        state_name: &str,
    ) -> bool {
        let key = ObjectRef::from_obj(rotation);
        let namespace = rotation.namespace().unwrap_or_default();
        self.watched
            .iter()
            .find(|w| w.store.get(&key).is_some())
            .is_some_and(|w| w.index.listed_without_secret(&namespace, state_name))
    }

    pub fn resources_naming(&self, kind: TargetKind, namespace: Option<&str>, name: &str) -> u32 {
        let target = NamedTarget {
            kind,
            namespace: namespace.map(str::to_owned),
            name: name.to_owned(),
        };
        let count: usize = self
            .watched
            .iter()
            .map(|w| w.index.count_naming(&target))
            .sum();
        u32::try_from(count).unwrap_or(u32::MAX)
    }

    /// What identifies the password lists a resource rotates, across resources: the system
    /// (see [`keys_of`]), the target kind, and each thing that holds passwords there.
    pub(super) fn target_keys(&self, rotation: &PasswordRotation) -> Vec<PasswordList> {
        self.target_index
            .resolve(rotation)
            .map(|spec| keys_of(rotation, &spec, &self.target_index))
            .unwrap_or_default()
    }

    /// Drops what is kept for resources the watches no longer show (deleted) or that belong to
    /// another shard now (their target was relabelled), for Secrets and systems none of them
    /// uses, and claims older than their hold. With churn these would grow without bound, and
    /// the admin credentials of a deleted resource would stay in memory. A resource that comes
    /// back is read and connected anew.
    /// Target Secrets read over a period ago go too: one deleted while the Secret watch
    /// reconnected shows in no event, and is missed for at most two periods.
    pub fn forget_the_gone(&self, now: Timestamp) {
        // Each key kept is looked up, rather than every resource listed: at 100,000 resources
        // copying all their keys once a minute was most of the idle CPU.
        let shard = self.settings.shard.as_deref();
        let held =
            |key: &ObjectRef<PasswordRotation>| self.watched.iter().find_map(|w| w.store.get(key));
        let live = |key: &ObjectRef<PasswordRotation>| {
            held(key).is_some_and(|r| self.target_index.serves(&r, shard))
        };
        // By target, not by resource: thousands of resources share a few targets.
        let targets: HashSet<Arc<NamedTarget>> = self
            .watched
            .iter()
            .flat_map(|w| w.index.named_targets())
            .filter(|t| self.target_index.named_in_shard(t, shard))
            .collect();
        let mut secrets = HashSet::new();
        let mut systems = HashSet::new();
        for uses in targets.iter().filter_map(|t| self.target_index.uses(t)) {
            let namespace = &uses.secrets_namespace;
            secrets.extend(
                uses.secrets
                    .into_iter()
                    .map(|name| (namespace.clone(), name)),
            );
            systems.extend(uses.systems);
        }
        self.freshness.retain(live);
        self.unserved
            .lock()
            .expect("not poisoned")
            .retain(|key, _| held(key).is_some());
        self.seen_published
            .lock()
            .expect("not poisoned")
            .retain(|key, _| live(key));
        self.metrics
            .retain_resources(|namespace, name| live(&ObjectRef::new(name).within(namespace)));
        self.metrics.retain_targets(|kind, namespace, name| {
            let shard = self.settings.shard.as_deref();
            self.target_index.in_shard(kind, namespace, name, shard)
        });
        self.failures
            .lock()
            .expect("not poisoned")
            .retain(|key, _| live(key));
        self.claims
            .lock()
            .expect("not poisoned")
            .retain(|_, (_, at)| now < *at + UNTIL_STATUS_SHOWS);
        self.identities
            .lock()
            .expect("not poisoned")
            .retain(|system, _| systems.contains(system));
        self.target_secret_cache.retain(
            |namespace, name| secrets.contains(&(namespace.to_owned(), name.to_owned())),
            FORGET_EVERY,
        );
    }
}

/// Runs [`Context::forget_the_gone`] now and then, for as long as the controller runs.
pub(super) async fn forget_the_gone_now_and_then(ctx: Arc<Context>) {
    let mut every = tokio::time::interval(FORGET_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        ctx.forget_the_gone(Timestamp::now());
    }
}
