//! The watches and the controllers they drive: resources, Secrets and targets, one
//! controller per watched namespace.

use super::*;

/// Runs one controller per watched namespace (or one for all) until a termination signal.
pub async fn run(client: Client, settings: Settings, metrics: Arc<Metrics>, health: Health) {
    let scopes: Vec<Option<&str>> = if settings.namespaces.is_empty() {
        vec![None]
    } else {
        settings
            .namespaces
            .iter()
            .map(|ns| Some(ns.as_str()))
            .collect()
    };
    let (controllers, watched): (Vec<_>, Vec<_>) = scopes
        .iter()
        .map(|scope| watch_rotations(&client, *scope))
        .unzip();
    metrics.calls_per_cluster(settings.calls_per_cluster);
    let (target_index, namespaced_targets, cluster_targets) =
        TargetIndex::watch(&client, &scopes, settings.cluster_target_namespace.clone());
    let stores: Vec<_> = watched.iter().map(|w| w.store.clone()).collect();
    tokio::spawn(report_ready(stores, health));
    let reporter = Reporter {
        controller: MANAGER.into(),
        instance: std::env::var("POD_NAME").ok(),
    };
    let kubernetes = Arc::new(ApiServer::new(client.clone(), reporter));
    let connect: Connector = Arc::new(|spec, with| spec.connect(with));
    let context = Context::new(
        client.clone(),
        kubernetes,
        connect,
        watched.clone(),
        target_index,
        settings.clone(),
        metrics,
    );
    tokio::spawn(forget_the_gone_now_and_then(context.clone()));
    for handle in &namespaced_targets {
        tokio::spawn(target_controller::run(handle.clone(), context.clone()));
    }
    // A ClusterRotationTarget is shared by every namespace: only an operator that watches
    // them all keeps its status, so installs scoped to a few namespaces never fight over it.
    if let Some(handles) = cluster_targets
        .as_ref()
        .filter(|_| settings.namespaces.is_empty())
    {
        tokio::spawn(target_controller::run(
            handles.targets.clone(),
            context.clone(),
        ));
    }
    let runs = controllers
        .into_iter()
        .zip(scopes)
        .zip(namespaced_targets)
        .zip(watched)
        .map(|(((controller, scope), namespaced_targets), watched)| {
            let controller = watch_targets(
                controller,
                &watched.index,
                namespaced_targets,
                cluster_targets.as_ref(),
            );
            let controller = watch_secrets(controller, scope, &watched.index, &context);
            drive(controller, context.clone())
        });
    futures::future::join_all(runs).await;
}

/// The controller of the PasswordRotations of `scope` (a namespace, or all), and what its
/// watch keeps of them.
pub(super) fn watch_rotations(
    client: &Client,
    scope: Option<&str>,
) -> (Controller<PasswordRotation>, Watched) {
    let rotations = match scope {
        Some(ns) => Api::<PasswordRotation>::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    // Pages of 100: a page of 500 was the heap's peak (dhat), its text and the objects with
    // their managedFields, before the cache drops those.
    let config = watcher::Config::default().any_semantic().page_size(100);
    let (reader, writer) = reflector::store();
    let watched = Watched::new(reader.clone());
    let index = watched.index.clone();
    let cached = watcher(rotations, config)
        .default_backoff()
        .modify(forget_what_no_decision_reads)
        .reflect(writer)
        .inspect_ok(move |event| index.observe(event))
        .applied_objects();
    (Controller::for_stream(cached, reader), watched)
}

/// Reconciles the resources a Secret of `scope` concerns when it changes. Secrets are
/// watched as metadata only, so no Secret data is ever cached.
pub(super) fn watch_secrets(
    mut controller: Controller<PasswordRotation>,
    scope: Option<&str>,
    index: &ResourceIndex,
    context: &Arc<Context>,
) -> Controller<PasswordRotation> {
    let client = &context.client;
    let secrets = match scope {
        Some(ns) => Api::<PartialObjectMeta<Secret>>::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    // Small pages: the first list of every Secret's metadata passes through memory a page at
    // a time.
    let pages = watcher::Config::default().page_size(100);
    let observing = index.clone();
    let secret_events = watcher(secrets, pages.clone())
        .default_backoff()
        .inspect_ok(move |event| observing.observe_secret(event))
        .touched_objects();
    controller =
        controller.watches_stream(secret_events, secret_mapper(index.clone(), context.clone()));
    // ClusterRotationTargets' Secrets, when the watched namespaces do not hold them.
    if let (Some(scope), Some(targets)) = (scope, &context.settings.cluster_target_namespace)
        && scope != targets
    {
        let secrets = Api::<PartialObjectMeta<Secret>>::namespaced(client.clone(), targets);
        controller = controller.watches(
            secrets,
            pages,
            secret_mapper(index.clone(), context.clone()),
        );
    }
    controller
}

/// Runs `controller` until a termination signal, logging what its queue reports.
pub(super) async fn drive(controller: Controller<PasswordRotation>, context: Arc<Context>) {
    let concurrency = context.settings.concurrency;
    controller
        .with_config(ControllerConfig::default().concurrency(concurrency))
        .shutdown_on_signal()
        .run(reconcile, error_policy, context)
        .for_each(|result| async move {
            match result {
                Ok((object, _)) => debug!(%object, "reconciled"),
                // error_policy has logged it, with the resource's fields.
                Err(controller::Error::ReconcilerFailed(..)) => {}
                Err(controller::Error::ObjectNotFound(object)) => {
                    debug!(%object, "gone before its reconcile")
                }
                Err(error) => warn!(%error, "the controller's queue failed"),
            }
        })
        .await
}

/// Maps a Secret the watch shows to the resources of `index` that read it (its workload
/// Secret, or one of its target's) or own it (their state Secret), and drops the version
/// kept of it when it changed.
pub(super) fn secret_mapper(
    index: ResourceIndex,
    ctx: Arc<Context>,
) -> impl Fn(PartialObjectMeta<Secret>) -> Vec<ObjectRef<PasswordRotation>> {
    move |secret| {
        let (namespace, name) = (secret.namespace().unwrap_or_default(), secret.name_any());
        ctx.target_secret_cache
            .watched(&namespace, &name, secret.resource_version().as_deref());
        let mut concerned = index.reading_workload_secret(&namespace, &name);
        for target in ctx.target_index.reading_secret(&namespace, &name) {
            concerned.extend(index.naming(&target));
        }
        concerned.extend(state_secret_owner(&secret));
        concerned
    }
}

/// Reconciles the resources that name a target when its spec or labels change (not its
/// status, which its own controller writes), and those on a ClusterRotationTarget when their
/// namespace's labels change.
pub(super) fn watch_targets(
    controller: Controller<PasswordRotation>,
    index: &ResourceIndex,
    namespaced: ReflectHandle<RotationTarget>,
    cluster: Option<&ClusterHandles>,
) -> Controller<PasswordRotation> {
    let seen = SeenTargets::default();
    let naming = index.clone();
    let mut controller = controller.watches_shared_stream(namespaced, move |target| {
        if !seen.changed(&*target) {
            return Vec::new();
        }
        naming.naming(&NamedTarget {
            kind: TargetKind::RotationTarget,
            namespace: target.namespace(),
            name: target.name_any(),
        })
    });
    if let Some(handles) = cluster {
        let seen = SeenTargets::default();
        let naming = index.clone();
        controller = controller.watches_shared_stream(handles.targets.clone(), move |target| {
            if !seen.changed(&*target) {
                return Vec::new();
            }
            naming.naming(&NamedTarget {
                kind: TargetKind::ClusterRotationTarget,
                namespace: None,
                name: target.name_any(),
            })
        });
        let index = index.clone();
        controller = controller.watches_shared_stream(handles.namespaces.clone(), move |ns| {
            index.on_cluster_targets_in(&ns.name_any())
        });
    }
    controller
}

/// The generation and labels each target (by namespace and name) had when last seen: what
/// its resources read.
#[derive(Default)]
pub(super) struct SeenTargets(Mutex<HashMap<(Option<String>, String), SpecAndLabels>>);

pub(super) type SpecAndLabels = (Option<i64>, BTreeMap<String, String>);

impl SeenTargets {
    /// Whether `target`'s spec or labels differ from when it was last seen.
    fn changed(&self, target: &impl ResourceExt) -> bool {
        let now = (target.meta().generation, target.labels().clone());
        let key = (target.namespace(), target.name_any());
        let mut seen = self.0.lock().expect("not poisoned");
        seen.insert(key, now.clone()).as_ref() != Some(&now)
    }
}

/// The cache keeps each resource as its decisions read it: without the record of who wrote
/// which field and kubectl's copy of the last applied spec, which took most of its memory.
pub(super) fn forget_what_no_decision_reads(rotation: &mut PasswordRotation) {
    rotation.managed_fields_mut().clear();
    rotation
        .annotations_mut()
        .remove("kubectl.kubernetes.io/last-applied-configuration");
}

/// Ready once every watch has synced.
pub(super) async fn report_ready(stores: Vec<Store<PasswordRotation>>, health: Health) {
    for store in stores {
        // A store wakes only its last waiter (its controller), so look again now and then
        // rather than wait for a wake-up that may never come.
        loop {
            match tokio::time::timeout(Duration::from_millis(200), store.wait_until_ready()).await {
                Ok(Ok(())) => break,
                Ok(Err(error)) => {
                    warn!(%error, "a watch never synced");
                    return;
                }
                Err(_) => continue,
            }
        }
    }
    info!("watches synced; ready");
    health.set_ready(true);
}
