//! The rotation protocol, model-checked: every interleaving of two operator processes, the
//! Kubernetes objects with their resourceVersions, the target's passwords and the workloads
//! that read the Secret, explored exhaustively within bounds by `stateright`. Each operator
//! step calls the engine's real `decide`, `status::after` and the call outcomes; what the
//! model adds is what the shell does with a decision (its reads, writes and calls), one
//! effect per transition, so that anything may happen between two of them.
//!
//! Faults: an operator crashes after any effect (losing what it had not written, and what it
//! knew of versions), a call fails or its answer is lost, before or after its effect (the
//! reconcile ends in an error and is retried; the process keeps its watch and what it knew
//! of versions, the staler case being a crash's), its watch delivers late or not at all (it
//! decides on any older copy of the resource), two operators act at once, a person asks for
//! rotations, something puts the old password back into the workload Secret while it is
//! still valid, and later the new one again, a person sets `suspend` at any step and lifts
//! it later, switches `mode`, or moves the resource to another user, its Secret and its
//! Deployment (the rotation in flight keeps what its plan pinned: the real `Plan` is applied
//! to the spec, as the shell does, and each user has its own passwords, Secret and pods),
//! and a person deletes the resource at any step: the finalizer's cleanup (the real
//! `on_deletion` and `on_rollback`) runs, the finalizer goes, and the garbage
//! collector takes the state Secret unless the cleanup orphaned it. The model found two
//! faults there, each with a test on the real parts in `tests/rotation.rs`: an add, and a
//! publish, sent from a copy read before the deletion and landing after its rollback. Both
//! modes are checked; in `Replace` mode (a status write before the PUT, which fences it) it
//! found a third: a resource deleted after the PUT was released with its pods still on the
//! replaced password, as the cleanup published the new one but restarted nothing
//! (`tests/production.rs`). With a revert of the workload Secret and its repair it found
//! a fourth: a restart made just before a revert (and not recorded, the operator crashed)
//! taken for the rollout of a later publish into the repaired Secret, so pods that started
//! during the revert were locked out; a restart now names the Secret version it was for
//! (`tests/production.rs` too). With two rotations it found two more: a process that paused
//! before deleting the state Secret of a rotation it had finished deleted the next one's (a
//! state Secret is now deleted by its UID); and a process that paused between deciding a
//! rotation and staging it, while another ran that whole rotation, staged a
//! second one for the same request from the password the first had retired; a rotation now
//! begins on a read of the resource made after its state Secret exists, and a state Secret
//! staged from an overtaken copy is withdrawn (`tests/rotation.rs`). In `Replace` mode the
//! PUT names the old password, as a Redis Software user's does, and is refused once that is
//! gone: a first PUT that lost the race to another operator's replay blocked the rotation
//! `OldPasswordRejected`; it now asks whether the new password works, as a refused first
//! DELETE does (`tests/production.rs`). With a move to another user and two rotations it
//! found a seventh: a process that withdrew an overtaken stage decided again on the spec
//! that stage had pinned, and staged the next rotation on the user the resource no longer
//! named; a withdrawal now ends the reconcile (`tests/rotation.rs`). The resource carries the
//! finalizer from the start, as after any earlier rotation (adding it is a write with a
//! precondition, which a deletion already fences).
//!
//! Invariants, in every reachable state, for each user: no rolled-out workload holds a
//! password the target refuses (in `Replace` mode: but while the rotation runs, or a restart
//! onto a valid password is under way); no password is valid on the target that no Secret
//! holds; a rotation is staged on the plan of the spec it was decided on; the resource is never
//! Blocked (nothing here is a reason to block); and, once faults stop, the rotations asked
//! for complete with both operators scheduled fairly.

use std::collections::{BTreeSet, HashMap};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::Write;
use std::sync::{Arc, Mutex};

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::reflector::store::Writer;
use kube::runtime::watcher;
use password_rotator::plan::Plan;
use password_rotator::reason::Reason;
use password_rotator::resource::{Mode, PasswordRotation, PasswordRotationStatus, Phase, Step};
use password_rotator::rotation::{
    CallFailure, CallOutcome, Decision, Observation, OnDeletion, RolloutProgress, SecretHolds,
    StateSummary, decide, on_add, on_deletion, on_replace, on_retire, on_rollback, step_after,
};
use password_rotator::rotation_spec::RotationSpec;
use password_rotator::rotation_target::RotationTarget;
use password_rotator::schedule::Trigger;
use password_rotator::status::{self, Outcome};
use password_rotator::target_index::TargetIndex;
use password_rotator::validation::{ValidSpec, validate};
use serde_json::json;
use stateright::{Checker, Expectation, HasDiscoveries, Model, Property};

const NS: &str = "shop";
const NAME: &str = "orders-cache";
/// A newer resourceVersion than any: what a process that was refused a write knows, so that
/// it reads the resource again rather than trust its watch.
const DISTRUSTED: u32 = u32::MAX;

type Password = u8;

/// A status, compared and hashed by its JSON (the real type has no `Hash`).
#[derive(Clone, Debug)]
struct Status {
    status: Arc<PasswordRotationStatus>,
    hash: u64,
}

impl Status {
    fn new(status: PasswordRotationStatus) -> Self {
        let mut hasher = DefaultHasher::new();
        serde_json::to_string(&status)
            .expect("a status serializes")
            .hash(&mut hasher);
        Status {
            status: Arc::new(status),
            hash: hasher.finish(),
        }
    }
}

impl PartialEq for Status {
    fn eq(&self, other: &Self) -> bool {
        self.hash == other.hash && self.status == other.status
    }
}
impl Eq for Status {}
impl Hash for Status {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.hash.hash(state);
    }
}

/// The PasswordRotation as one version of it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Resource {
    version: u32,
    /// How many rotations were asked for (`spec.rotationRequest`); each is a spec edit.
    requests: u8,
    /// `spec.suspend`, set and lifted by a person at any step.
    suspended: bool,
    /// `spec.mode`, switched by a person at any step: the rotation in flight keeps the mode
    /// it was staged with (its plan), the next one takes the new one.
    mode: Mode,
    /// Which user, Secret and Deployment the spec names (`spec.target.user`, `spec.secret`,
    /// `spec.rollout.workloads`), moved by a person to the other at any step: the rotation in
    /// flight keeps those its plan pinned.
    account: usize,
    /// `metadata.generation`: every spec edit moves it.
    generation: i64,
    status: Status,
    /// A person deleted it: it waits for the finalizer's cleanup.
    deleting: bool,
    /// The finalizer was removed: the resource is gone.
    gone: bool,
}

/// The state Secret `<name>-rotation`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct StateSecret {
    rotation_id: u8,
    pending: Password,
    previous: Password,
    /// The workload Secret's version when the rotation began from it.
    workload_version: u8,
    /// The rotation status named when this one was staged.
    follows: Option<u8>,
    /// The mode and the account its plan pinned.
    mode: Mode,
    account: usize,
    /// Kept beyond the resource: the garbage collector leaves it.
    orphaned: bool,
}

/// Where an operator is within one reconcile.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Pc {
    /// Decide on what it holds, and make the decision's first effect.
    Decide,
    /// Read the resource, the state Secret just created: the rotation begins if it is still
    /// at the version the stage was decided on.
    Begin { trigger: Trigger },
    /// `mode: Replace`: send the PUT that leaves the new password alone on the target (after
    /// writing `Replacing`, or as a replay).
    Put { replay: bool },
    /// Send the DELETE of the old password (after writing `Retired`, or as a replay).
    Delete { replay: bool },
    /// The DELETE answered (`refused`: the old password was not there): take its meaning,
    /// and finish or block.
    Deleted { replay: bool, refused: bool },
    /// Delete the state Secret, the end status being written.
    DeleteState,
    /// The finalizer's cleanup reads the state Secret and the workload Secret and decides.
    Cleanup,
    /// ... marks the workload Secret, at the version it read, with the rotation it rolls back,
    Fence,
    /// ... removes the staged password from the target (in Replace mode: sends the PUT again
    /// if one may have landed, then publishes),
    RollBack,
    /// ... in Replace mode, once the PUT may have landed: publishes the new password,
    CleanupPublish,
    /// ... and restarts the workloads onto it (also when it keeps both passwords),
    CleanupRestart,
    /// ... keeps the state Secret, without its owner (even after a rollback: another
    /// operator may still send the add it read there),
    Orphan,
    /// ... and removes the finalizer, at the version it decided on.
    Release,
}

/// One reconcile in progress: what it read and what it recorded.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Run {
    pc: Pc,
    /// The status as this reconcile knows it, and as the resource holds it.
    status: Status,
    written: Status,
    /// The resourceVersion every write of this reconcile carries.
    version: u32,
    requests: u8,
    suspended: bool,
    mode: Mode,
    account: usize,
    /// The plan the reconcile acts on: pinned by the state Secret it read.
    pinned: Option<(Mode, usize)>,
    generation: i64,
    state: Option<StateSecret>,
    workload: Password,
    workload_version: u8,
    workload_mark: Option<u8>,
    workload_fresh: bool,
}

impl Run {
    /// The mode and account the reconcile acts on: pinned by the state Secret it read, or
    /// the spec's.
    fn plan(&self) -> (Mode, usize) {
        self.pinned.unwrap_or((self.mode, self.account))
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Operator {
    /// The resource as this process's watch holds it.
    cache: Resource,
    /// The newest resourceVersion this process wrote or read (see `freshness.rs`).
    known: Option<u32>,
    run: Option<Run>,
}

/// A restart annotation's value: the rotation, its round, and the workload Secret's version
/// published.
type Restart = (u8, u32, Option<String>);

/// The Deployment that reads the workload Secret.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Deployment {
    /// The restart annotation's value: the rotation and its round.
    restart: Option<Restart>,
    rolled_out: bool,
    /// The passwords its running pods use.
    pods: BTreeSet<Password>,
}

impl Deployment {
    /// Sets the restart annotation; the same value again changes nothing.
    fn restart_onto(&mut self, restart: Restart) {
        if self.restart.as_ref() != Some(&restart) {
            self.restart = Some(restart);
            self.rolled_out = false;
        }
    }
}

/// A user on the target, the workload Secret that holds its password and the Deployment that
/// reads it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Account {
    /// The passwords the target accepts for the user.
    target: BTreeSet<Password>,
    workload: Password,
    /// The workload Secret's resourceVersion: every write to it moves it, and no two Secrets
    /// share one.
    workload_version: u8,
    /// The rotation a deletion's cleanup marked the workload Secret with, before its rollback.
    workload_mark: Option<u8>,
    deployment: Deployment,
}

/// The API server's resourceVersions: one sequence for all objects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Versions(u8);

impl Versions {
    fn next(&mut self) -> u8 {
        self.0 += 1;
        self.0
    }
}

const ACCOUNTS: [(&str, &str, &str); 2] = [
    ("orders-app", "orders-redis", "orders"),
    ("billing-app", "billing-redis", "billing"),
];

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct World {
    resource: Resource,
    state: Option<StateSecret>,
    accounts: [Account; 2],
    secret_writes: Versions,
    next_password: Password,
    next_rotation_id: u8,
    operators: [Operator; 2],
    crashes_left: u8,
    failures_left: u8,
    reverts_left: u8,
    deletes_left: u8,
    suspends_left: u8,
    switches_left: u8,
    retargets_left: u8,
    /// What a revert took out of an account's workload Secret, to be put back.
    reverted: Option<(usize, Password)>,
    /// A decision the model does not expect here (an invalid spec, a conflict).
    unexpected: Option<String>,
    /// A rotation was staged with a plan other than the spec it was decided on.
    staged_off_spec: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Action {
    /// Operator `i` starts a reconcile.
    Observe(usize),
    /// Operator `i` takes the next step of its reconcile.
    Step(usize),
    /// Operator `i` is killed and starts again.
    Crash(usize),
    /// Operator `i`'s call fails or its answer is lost (a timeout, a reset connection), before
    /// or after the effect: the reconcile ends in an error, the process keeps its watch and
    /// the versions it knew.
    Fail(usize),
    /// Operator `i`'s watch delivers the resource as it is.
    Sync(usize),
    /// A person asks for a rotation.
    Request,
    /// A person sets `spec.suspend` ...
    Suspend,
    /// ... and lifts it.
    Unsuspend,
    /// A person switches `spec.mode`.
    SwitchMode,
    /// A person moves the resource to the other user, its Secret and its Deployment.
    Retarget,
    /// Something puts the old password back into the workload Secret.
    Revert,
    /// ... and the new one again.
    Restore,
    /// An account's Deployment finishes rolling out: its pods read the Secret as it is now.
    RollOut(usize),
    /// A person deletes the resource.
    Delete,
    /// The garbage collector deletes the state Secret of a resource that is gone.
    Collect,
}

struct Protocol {
    mode: Mode,
    /// The spec a reconcile acts on, resolved and validated as the shell does, for each number
    /// of requests (`rotationRequest` "r1", "r2" ...), suspended or not, each mode and account,
    /// and each plan (mode and account) a state Secret may pin on it.
    specs: HashMap<SpecKey, (RotationSpec, ValidSpec)>,
    now: Timestamp,
    bounds: Bounds,
    /// Whether a state completes once faults stop: a deterministic fair run from it.
    completes: Mutex<HashMap<u64, bool>>,
}

fn token(requests: u8) -> Option<String> {
    (requests > 0).then(|| format!("r{requests}"))
}

fn hash_of(world: &World) -> u64 {
    let mut hasher = DefaultHasher::new();
    world.hash(&mut hasher);
    hasher.finish()
}

/// How many of each fault and edit a run of the model allows.
#[derive(Clone, Copy, Debug, Default)]
struct Bounds {
    requests: u8,
    crashes: u8,
    failures: u8,
    reverts: u8,
    deletes: u8,
    suspends: u8,
    switches: u8,
    retargets: u8,
}

/// What the spec a reconcile acts on depends on: see `Protocol::specs`.
type SpecKey = (u8, bool, Mode, usize, Option<(Mode, usize)>);

/// One rotation asked for, no faults.
const ONE: Bounds = Bounds {
    requests: 1,
    crashes: 0,
    failures: 0,
    reverts: 0,
    deletes: 0,
    suspends: 0,
    switches: 0,
    retargets: 0,
};

impl Protocol {
    fn new(mode: Mode, bounds: Bounds) -> Self {
        let mut targets = Writer::<RotationTarget>::default();
        targets.apply_watcher_event(&watcher::Event::Apply(
            serde_json::from_value(json!({
                "apiVersion": "rotator.dev/v1alpha2",
                "kind": "RotationTarget",
                "metadata": {"name": "rs", "namespace": NS},
                "spec": {"redisSoftware": {
                    "url": "https://rs.example:9443",
                    "credentialsSecret": "rs-admin",
                },
                "allow": {"modes": ["AddThenDelete", "Replace"]}},
            }))
            .expect("a target"),
        ));
        let index = TargetIndex::of(vec![targets.as_reader()]);
        let resolved = |n: u8, suspend: bool, mode: Mode, account: usize| {
            let (user, secret, deployment) = ACCOUNTS[account];
            let rotation: PasswordRotation = serde_json::from_value(json!({
                "apiVersion": "rotator.dev/v1alpha2",
                "kind": "PasswordRotation",
                "metadata": {"name": NAME, "namespace": NS},
                "spec": {
                    "target": {"ref": {"kind": "RotationTarget", "name": "rs"}, "user": user},
                    "secret": {"name": secret},
                    "rollout": {
                        "workloads": [{"kind": "Deployment", "name": deployment}],
                        "overlap": "0s",
                    },
                    "rotationRequest": token(n),
                    "mode": mode,
                    "suspend": suspend,
                },
            }))
            .expect("a resource");
            index.resolve(&rotation).expect("its target resolves")
        };
        let modes = [Mode::AddThenDelete, Mode::Replace];
        let plans = modes.iter().flat_map(|m| [(*m, 0), (*m, 1)]);
        let mut specs = HashMap::new();
        for n in 0..=bounds.requests {
            for suspend in [false, true] {
                for (mode, account) in plans.clone() {
                    let spec = resolved(n, suspend, mode, account);
                    for pinned in plans.clone().map(Some).chain([None]) {
                        // As the shell pins a plan on the spec, and validates what it acts on.
                        let acted_on = match pinned {
                            Some((m, a)) => Plan::of(&resolved(0, false, m, a)).applied_to(&spec),
                            None => spec.clone(),
                        };
                        let valid = validate(&acted_on, NS).expect("a valid spec");
                        specs.insert((n, suspend, mode, account, pinned), (acted_on, valid));
                    }
                }
            }
        }
        Protocol {
            mode,
            specs,
            now: "2026-06-01T12:00:00Z".parse().expect("a time"),
            bounds,
            completes: Mutex::new(HashMap::new()),
        }
    }

    /// The spec a reconcile acts on: with the plan the rotation in flight pinned.
    fn spec(&self, run: &Run) -> &(RotationSpec, ValidSpec) {
        &self.specs[&(
            run.requests,
            run.suspended,
            run.mode,
            run.account,
            run.pinned,
        )]
    }

    fn initial(&self) -> World {
        let idle = status::after(
            &PasswordRotationStatus::default(),
            Outcome::Idle {
                next_rotation: None,
            },
            Some(1),
            self.now,
        );
        let resource = Resource {
            version: 1,
            requests: 0,
            suspended: false,
            mode: self.mode,
            account: 0,
            generation: 1,
            status: Status::new(idle),
            deleting: false,
            gone: false,
        };
        let operator = Operator {
            cache: resource.clone(),
            known: None,
            run: None,
        };
        let account = |password: Password, version: u8| Account {
            target: BTreeSet::from([password]),
            workload: password,
            workload_version: version,
            workload_mark: None,
            deployment: Deployment {
                restart: None,
                rolled_out: true,
                pods: BTreeSet::from([password]),
            },
        };
        World {
            resource,
            state: None,
            accounts: [account(0, 0), account(1, 1)],
            secret_writes: Versions(1),
            next_password: 2,
            next_rotation_id: 1,
            operators: [operator.clone(), operator],
            crashes_left: self.bounds.crashes,
            failures_left: self.bounds.failures,
            reverts_left: self.bounds.reverts,
            deletes_left: self.bounds.deletes,
            suspends_left: self.bounds.suspends,
            switches_left: self.bounds.switches,
            retargets_left: self.bounds.retargets,
            reverted: None,
            unexpected: None,
            staged_off_spec: false,
        }
    }

    /// The transitions no fault needs, in a fixed order: operators, their watches, the
    /// Deployment, the person who undoes a revert or lifts `suspend`, the garbage collector,
    /// and the next rotation asked for.
    fn fair_actions(&self, world: &World) -> [Option<Action>; 10] {
        // A resource gone from an operator's watch is not reconciled.
        let operator = |i: usize| match world.operators[i].run {
            None => (!world.operators[i].cache.gone).then_some(Action::Observe(i)),
            Some(_) => Some(Action::Step(i)),
        };
        let sync =
            |i: usize| (world.operators[i].cache != world.resource).then_some(Action::Sync(i));
        let collect = world.resource.gone && world.state.is_some_and(|s| !s.orphaned);
        let request = !world.resource.deleting && world.resource.requests < self.bounds.requests;
        [
            operator(0),
            sync(0),
            operator(1),
            sync(1),
            (!world.accounts[0].deployment.rolled_out).then_some(Action::RollOut(0)),
            (!world.accounts[1].deployment.rolled_out).then_some(Action::RollOut(1)),
            world.reverted.map(|_| Action::Restore),
            (world.resource.suspended && !world.resource.deleting).then_some(Action::Unsuspend),
            collect.then_some(Action::Collect),
            request.then_some(Action::Request),
        ]
    }

    fn done(&self, world: &World) -> bool {
        if !world
            .accounts
            .iter()
            .all(|a| a.deployment.pods.is_subset(&a.target))
        {
            return false;
        }
        if world.resource.gone {
            return world.state.is_none_or(|s| s.orphaned) && world.reverted.is_none();
        }
        let status = &world.resource.status.status;
        world.state.is_none()
            && !world.resource.suspended
            && status.phase == Some(Phase::Idle)
            && status.step.is_none()
            && status.handled_rotation_request == token(self.bounds.requests)
            && world.reverted.is_none()
    }

    /// Once faults stop, a fair schedule (each enabled transition in turn) ends with every
    /// rotation asked for complete. Memoized: the run is deterministic, so a state completes
    /// when the next one on its run does.
    fn completes_when_faults_stop(&self, world: &World) -> bool {
        let mut path = Vec::new();
        let mut world = world.clone();
        world.crashes_left = 0;
        world.failures_left = 0;
        world.reverts_left = 0;
        world.suspends_left = 0;
        world.switches_left = 0;
        world.retargets_left = 0;
        let mut result = false;
        for turn in 0..400 {
            let key = hash_of(&world);
            if let Some(known) = self.completes.lock().expect("not poisoned").get(&key) {
                result = *known;
                break;
            }
            path.push(key);
            if self.done(&world) && world.operators.iter().all(|o| o.run.is_none()) {
                result = true;
                break;
            }
            // Round robin: each enabled transition is taken within a turn of them all. Once
            // done, an operator whose watch is current has nothing to reconcile.
            let mut fair = self.fair_actions(&world);
            if self.done(&world) {
                for (i, operator) in world.operators.iter().enumerate() {
                    if operator.run.is_none() && operator.cache == world.resource {
                        fair[2 * i] = None;
                    }
                }
            }
            let Some(action) = (0..fair.len()).find_map(|k| fair[(turn + k) % fair.len()]) else {
                break;
            };
            world = self.next_state(&world, action).unwrap_or(world);
        }
        let mut known = self.completes.lock().expect("not poisoned");
        for key in path {
            known.insert(key, result);
        }
        result
    }

    fn observe(&self, world: &mut World, i: usize) {
        let current = world.resource.clone();
        let operator = &mut world.operators[i];
        let fresh = operator
            .known
            .is_none_or(|known| operator.cache.version >= known);
        let view = if fresh {
            operator.cache.clone()
        } else {
            operator.known = Some(current.version);
            current
        };
        if view.gone {
            // Read again and not found: it is not reconciled again (no event will come for
            // the copy the watch still holds).
            operator.known = None;
            operator.cache = view;
            return;
        }
        // The state Secret pins the plan, and with it the workload Secret read.
        let pinned = world.state.map(|s| (s.mode, s.account));
        let account = &world.accounts[pinned.map_or(view.account, |p| p.1)];
        operator.run = Some(Run {
            pc: if view.deleting {
                Pc::Cleanup
            } else {
                Pc::Decide
            },
            status: view.status.clone(),
            written: view.status.clone(),
            version: view.version,
            requests: view.requests,
            suspended: view.suspended,
            mode: view.mode,
            account: view.account,
            pinned,
            generation: view.generation,
            state: world.state,
            workload: account.workload,
            workload_version: account.workload_version,
            workload_mark: account.workload_mark,
            workload_fresh: true,
        });
    }

    /// A status write that carries the version the reconcile decided on: refused (and the
    /// reconcile over, the resource distrusted) when another actor wrote since.
    fn write(world: &mut World, i: usize, status: Status) -> bool {
        let run = world.operators[i].run.as_mut().expect("in a reconcile");
        run.status = status.clone();
        if status == run.written {
            return true;
        }
        if world.resource.version != run.version {
            world.operators[i].known = Some(DISTRUSTED);
            world.operators[i].run = None;
            return false;
        }
        world.resource.version += 1;
        world.resource.status = status.clone();
        run.version = world.resource.version;
        run.written = status;
        let operator = &mut world.operators[i];
        operator.known = Some(operator.known.unwrap_or(0).max(world.resource.version));
        true
    }

    /// The end of a reconcile: what it recorded is written.
    fn end(world: &mut World, i: usize) {
        let status = world.operators[i].run.as_ref().map(|r| r.status.clone());
        if let Some(status) = status
            && Self::write(world, i, status)
        {
            world.operators[i].run = None;
        }
    }

    fn after(&self, run: &Run, outcome: Outcome<'_>) -> Status {
        Status::new(status::after(
            &run.status.status,
            outcome,
            Some(run.generation),
            self.now,
        ))
    }

    fn step(&self, world: &mut World, i: usize) {
        let run = world.operators[i].run.clone().expect("in a reconcile");
        match run.pc {
            Pc::Decide => self.decide_and_act(world, i, run),
            Pc::Begin { trigger } => {
                let Some(version) = Self::still_current(world, i) else {
                    return;
                };
                let state = run.state.expect("staged");
                let status = self.began(&run, state.rotation_id, trigger);
                let run = world.operators[i].run.as_mut().expect("in a reconcile");
                run.status = status;
                run.version = version;
                run.pc = Pc::Decide;
            }
            Pc::Put { replay } => {
                let state = run.state.expect("a PUT has a state");
                let decision = Decision::Replace { replay };
                let result = Self::put(world, &state);
                let accepted = accepted_after_a_refusal(world, &state, result.is_err(), replay);
                match on_replace(result, replay, accepted) {
                    CallOutcome::Done => {
                        let status = self.advance(&run, &decision);
                        let run = world.operators[i].run.as_mut().expect("in a reconcile");
                        run.status = status;
                        run.pc = Pc::Decide;
                    }
                    outcome => self.block(world, i, &run, outcome),
                }
            }
            Pc::Delete { replay } => {
                let state = run.state.expect("a delete has a state");
                let target = &mut world.accounts[state.account].target;
                let refused = !target.contains(&state.previous);
                if !refused && target.len() > 1 {
                    target.remove(&state.previous);
                }
                world.operators[i].run.as_mut().expect("in a reconcile").pc =
                    Pc::Deleted { replay, refused };
            }
            Pc::Deleted { replay, refused } => {
                let state = run.state.expect("a delete has a state");
                let result = match refused {
                    true => Err(CallFailure::PasswordRejected),
                    false => Ok(()),
                };
                let accepted = accepted_after_a_refusal(world, &state, refused, replay);
                match on_retire(result, replay, accepted) {
                    CallOutcome::Done => {
                        // The shell reads the workload Secret again before finishing.
                        let workload = world.accounts[state.account].workload;
                        if holds(Some(&state), workload) != SecretHolds::Pending {
                            let status = self.after(&run, drifted());
                            Self::write(world, i, status);
                            Self::end(world, i);
                            return;
                        }
                        self.finish(world, i, &run);
                    }
                    outcome => self.block(world, i, &run, outcome),
                }
            }
            Pc::DeleteState => {
                Self::delete_state(world, &run);
                world.operators[i].run = None;
            }
            Pc::Cleanup => self.clean_up(world, i),
            Pc::Fence => {
                let state = run.state.expect("a fence has a state");
                let account = &mut world.accounts[state.account];
                if account.workload_version != run.workload_version {
                    world.operators[i].known = Some(DISTRUSTED);
                    world.operators[i].run = None;
                    return;
                }
                account.workload_mark = Some(state.rotation_id);
                account.workload_version = world.secret_writes.next();
                world.operators[i].run.as_mut().expect("in a reconcile").pc = Pc::RollBack;
            }
            Pc::RollBack if run.state.is_some_and(|s| s.mode == Mode::Replace) => {
                let state = run.state.expect("a rollback has a state");
                let pc = match Self::cleanup_step(&run, &state) {
                    Step::Staged => Pc::Orphan,
                    Step::Replacing => {
                        // Refused, the earlier PUT landed: a replay is done either way.
                        let _ = Self::put(world, &state);
                        Pc::CleanupPublish
                    }
                    _ => Pc::CleanupPublish,
                };
                world.operators[i].run.as_mut().expect("in a reconcile").pc = pc;
            }
            Pc::CleanupPublish => {
                let state = run.state.expect("a publish has a state");
                let account = &mut world.accounts[state.account];
                if account.workload_version != run.workload_version {
                    // The publish carries the version the cleanup read: refused, it runs
                    // again.
                    world.operators[i].known = Some(DISTRUSTED);
                    world.operators[i].run = None;
                    return;
                }
                if account.workload != state.pending {
                    account.workload = state.pending;
                    account.workload_version = world.secret_writes.next();
                }
                let version = account.workload_version;
                let run = world.operators[i].run.as_mut().expect("in a reconcile");
                run.workload_version = version;
                run.pc = Pc::CleanupRestart;
            }
            Pc::CleanupRestart => {
                let state = run.state.expect("a restart has a state");
                // Onto the workload Secret as the cleanup read it, or wrote it.
                let version = Some(run.workload_version.to_string());
                world.accounts[state.account]
                    .deployment
                    .restart_onto(restart_of(&state, &run.status.status, version));
                world.operators[i].run.as_mut().expect("in a reconcile").pc = Pc::Orphan;
            }
            Pc::RollBack => {
                let state = run.state.expect("a rollback has a state");
                let target = &mut world.accounts[state.account].target;
                let result = if target.contains(&state.pending) {
                    if target.len() > 1 {
                        target.remove(&state.pending);
                    }
                    Ok(())
                } else {
                    Err(CallFailure::PasswordRejected)
                };
                let run = world.operators[i].run.as_mut().expect("in a reconcile");
                match on_rollback(result) {
                    CallOutcome::Done | CallOutcome::Block { .. } => run.pc = Pc::Orphan,
                    CallOutcome::Retry { .. } => world.operators[i].run = None,
                }
            }
            Pc::Orphan => {
                if let Some(state) = world.state.as_mut() {
                    state.orphaned = true;
                }
                world.operators[i].run.as_mut().expect("in a reconcile").pc = Pc::Release;
            }
            Pc::Release => {
                if world.resource.version != run.version {
                    world.operators[i].known = Some(DISTRUSTED);
                } else {
                    world.resource.gone = true;
                    world.resource.version += 1;
                }
                world.operators[i].run = None;
            }
        }
    }

    /// The finalizer's cleanup decides, from the state Secret and the workload Secret as they
    /// are, and the step the resource it acts on shows.
    fn clean_up(&self, world: &mut World, i: usize) {
        let run = world.operators[i].run.as_mut().expect("in a reconcile");
        let Some(state) = world.state.filter(|s| !s.orphaned) else {
            run.pc = Pc::Release;
            return;
        };
        let step = Self::cleanup_step(run, &state);
        let account = &world.accounts[state.account];
        let holds_new = account.workload == state.pending;
        let fenced = account.workload_mark == Some(state.rotation_id);
        let written_since_stage = !fenced && account.workload_version != state.workload_version;
        run.state = Some(state);
        run.workload_version = account.workload_version;
        run.pc = match on_deletion(step, holds_new, written_since_stage) {
            OnDeletion::KeepBoth if state.mode == Mode::Replace => Pc::CleanupRestart,
            OnDeletion::KeepBoth => Pc::Orphan,
            OnDeletion::RollBack if fenced || state.mode == Mode::Replace => Pc::RollBack,
            OnDeletion::RollBack => Pc::Fence,
        };
    }

    /// The read of the resource before a rotation begins, is adopted or withdrawn: the
    /// version the reconcile goes on at, if the resource still says what it decided on (the
    /// same version, or the same status and spec); otherwise the reconcile ends, distrusting
    /// its copy.
    fn still_current(world: &mut World, i: usize) -> Option<u32> {
        let run = world.operators[i].run.as_ref().expect("in a reconcile");
        let r = &world.resource;
        let unchanged = r.status == run.written
            && (r.requests, r.suspended, r.mode, r.account)
                == (run.requests, run.suspended, run.mode, run.account)
            && !r.deleting;
        if r.version == run.version || unchanged {
            return Some(r.version);
        }
        world.operators[i].known = Some(DISTRUSTED);
        world.operators[i].run = None;
        None
    }

    /// A Redis Software user's PUT: the new password becomes the only one, if the old one it
    /// names is still valid (it authenticates the request). A PUT sent late, after another
    /// process finished the rotation and the next one replaced again, is refused.
    fn put(world: &mut World, state: &StateSecret) -> Result<(), CallFailure> {
        let target = &mut world.accounts[state.account].target;
        if !target.contains(&state.previous) {
            return Err(CallFailure::PasswordRejected);
        }
        *target = BTreeSet::from([state.pending]);
        Ok(())
    }

    /// Deletes the state Secret the reconcile read, by its UID (the rotation it holds): not
    /// another created since under the same name.
    fn delete_state(world: &mut World, run: &Run) {
        let read = run.state.map(|s| s.rotation_id);
        if read.is_some() && world.state.map(|s| s.rotation_id) == read {
            world.state = None;
        }
    }

    /// The step the cleanup takes the rotation to be at: the resource's, if it names it.
    fn cleanup_step(run: &Run, state: &StateSecret) -> Step {
        let status = &run.status.status;
        match &status.rotation_id {
            Some(id) if *id == state.rotation_id.to_string() => status.step.unwrap_or(Step::Staged),
            _ => Step::Staged,
        }
    }

    fn finish(&self, world: &mut World, i: usize, run: &Run) {
        let status = self.after(
            run,
            Outcome::Finished {
                next_rotation: None,
                password_expires: None,
            },
        );
        if Self::write(world, i, status) {
            world.operators[i].run.as_mut().expect("in a reconcile").pc = Pc::DeleteState;
        }
    }

    fn block(&self, world: &mut World, i: usize, run: &Run, outcome: CallOutcome) {
        let CallOutcome::Block { reason, message } = outcome else {
            // A retry: the reconcile ends in an error, nothing written.
            world.operators[i].run = None;
            return;
        };
        let status = self.after(
            run,
            Outcome::Blocked {
                reason,
                message: &message,
                credentials: "",
                account: "",
            },
        );
        Self::write(world, i, status);
        world.operators[i].run = None;
    }

    fn decide_and_act(&self, world: &mut World, i: usize, run: Run) {
        let (spec, valid) = self.spec(&run);
        let decided_on = run.status.status.clone();
        let status = &*decided_on;
        let in_flight = status.phase == Some(Phase::Rotating) && status.step.is_some();
        // The shell restarts the workloads (if not yet for this round) as it looks at them.
        let rollout = match (run.state, status.step) {
            (Some(state), Some(Step::Published)) if in_flight => {
                let published = status.published_secret_version.clone();
                let deployment = &mut world.accounts[state.account].deployment;
                deployment.restart_onto(restart_of(&state, status, published));
                Some(match deployment.rolled_out {
                    true => RolloutProgress::Complete,
                    false => RolloutProgress::Pending(vec![format!(
                        "Deployment/{}",
                        ACCOUNTS[state.account].2
                    )]),
                })
            }
            _ => None,
        };
        let summary = run.state.map(|s| StateSummary {
            rotation_id: s.rotation_id.to_string(),
            has_previous: true,
            rolled_back: run.workload_mark == Some(s.rotation_id),
            owned: !s.orphaned,
            follows: Some(s.follows.map(|f| f.to_string()).unwrap_or_default()),
        });
        let seed = format!("{NS}/{NAME}");
        let workload_version = run.workload_version.to_string();
        let observation = Observation {
            now: self.now,
            seed: &seed,
            generation: Some(run.generation),
            spec,
            status,
            rotate_annotation: None,
            state: summary.as_ref(),
            workload_secret: holds(run.state.as_ref(), run.workload),
            workload_version: Some(&workload_version),
            rollout,
            conflict_with: None,
            credentials_changed_since_block: false,
            // Not modelled: the model's time is the overlap passing or not.
            seen_published_for: None,
        };
        let decision = decide(&observation, valid);
        let update = |world: &mut World, run: Run| world.operators[i].run = Some(run);
        if matches!(decision, Decision::Retire { .. } | Decision::Finish) && !run.workload_fresh {
            let account = &world.accounts[run.plan().1];
            update(
                world,
                Run {
                    workload: account.workload,
                    workload_version: account.workload_version,
                    workload_mark: account.workload_mark,
                    workload_fresh: true,
                    ..run
                },
            );
            return;
        }
        let mut run = Run {
            workload_fresh: false,
            ..run
        };
        match decision {
            Decision::StayBlocked { .. }
            | Decision::AwaitRollout { .. }
            | Decision::Idle { .. }
            | Decision::Suspended => {
                let status = match decision {
                    Decision::Idle { next_rotation } => {
                        self.after(&run, Outcome::Idle { next_rotation })
                    }
                    Decision::Suspended => self.after(&run, Outcome::Suspended),
                    _ => run.status.clone(),
                };
                update(world, Run { status, ..run });
                Self::end(world, i);
            }
            Decision::Stage { trigger } => {
                if world.state.is_some() {
                    // The create is refused: another actor staged.
                    world.operators[i].known = Some(DISTRUSTED);
                    world.operators[i].run = None;
                    return;
                }
                // The plan of the spec it acts on: pinned still, after a withdrawal.
                let (mode, account) = run.plan();
                world.staged_off_spec |= (mode, account) != (run.mode, run.account);
                let state = StateSecret {
                    rotation_id: world.next_rotation_id,
                    pending: world.next_password,
                    previous: run.workload,
                    workload_version: run.workload_version,
                    follows: status
                        .rotation_id
                        .as_ref()
                        .map(|id| id.parse().expect("ours")),
                    mode,
                    account,
                    orphaned: false,
                };
                world.next_rotation_id += 1;
                world.next_password += 1;
                world.state = Some(state);
                run.state = Some(state);
                run.pc = Pc::Begin { trigger };
                update(world, run);
            }
            Decision::Adopt { rotation_id } => {
                let Some(version) = Self::still_current(world, i) else {
                    return;
                };
                run.version = version;
                let id: u8 = rotation_id.parse().expect("the model's ids");
                run.status = self.began(&run, id, Trigger::Resumed);
                update(world, run);
            }
            Decision::Withdraw => {
                let Some(version) = Self::still_current(world, i) else {
                    return;
                };
                run.version = version;
                Self::delete_state(world, &run);
                update(world, run);
                Self::end(world, i);
            }
            Decision::Restage => {
                let state = StateSecret {
                    previous: run.workload,
                    workload_version: run.workload_version,
                    ..run.state.expect("restage has a state")
                };
                if world.state.is_some() {
                    world.state = Some(StateSecret {
                        previous: run.workload,
                        workload_version: run.workload_version,
                        ..world.state.expect("checked")
                    });
                }
                run.state = Some(state);
                run.status = self.after(&run, Outcome::Restaged);
                update(world, run);
            }
            Decision::Add => {
                let state = run.state.expect("add has a state");
                let target = &mut world.accounts[state.account].target;
                let result = if target.contains(&state.pending) {
                    Err(CallFailure::AlreadyPresent)
                } else if target.contains(&state.previous) {
                    target.insert(state.pending);
                    Ok(())
                } else {
                    Err(CallFailure::PasswordRejected)
                };
                match on_add(result) {
                    CallOutcome::Done => {
                        run.status = self.advance(&run, &decision);
                        update(world, run);
                    }
                    outcome => self.block(world, i, &run, outcome),
                }
            }
            Decision::Publish
                if run.state.is_some_and(|s| {
                    world.accounts[s.account].workload_version != run.workload_version
                }) =>
            {
                // The write carries the version read, and is refused.
                world.operators[i].known = Some(DISTRUSTED);
                world.operators[i].run = None;
            }
            Decision::RolledBack | Decision::StateNotOwned => {
                world.operators[i].known = Some(DISTRUSTED);
                world.operators[i].run = None;
            }
            Decision::Publish => {
                let state = run.state.expect("publish has a state");
                let account = &mut world.accounts[state.account];
                // A write that changes nothing keeps the Secret's resourceVersion.
                if account.workload != state.pending {
                    account.workload = state.pending;
                    account.workload_version = world.secret_writes.next();
                }
                run.workload = state.pending;
                run.workload_version = account.workload_version;
                run.workload_fresh = true;
                let mut published = (*run.status.status).clone();
                published.published_time = Some(Time(self.now));
                published.published_secret_version = Some(run.workload_version.to_string());
                run.status = Status::new(published);
                run.status = self.advance(&run, &decision);
                update(world, run);
            }
            Decision::MarkRolledOut => {
                run.status = self.advance(&run, &decision);
                update(world, run);
            }
            Decision::ResumeAfterDrift => {
                run.status = self.after(
                    &run,
                    Outcome::DriftHealed {
                        secret_version: Some(&workload_version),
                    },
                );
                update(world, run);
            }
            Decision::HoldDrifted { .. } => {
                let status = self.after(&run, drifted());
                update(world, run);
                Self::write(world, i, status);
                Self::end(world, i);
            }
            Decision::Replace { replay: false } => {
                let status = self.after(&run, Outcome::Stepped(Step::Replacing));
                update(world, run);
                if Self::write(world, i, status) {
                    world.operators[i].run.as_mut().expect("in a reconcile").pc =
                        Pc::Put { replay: false };
                }
            }
            Decision::Replace { replay: true } => {
                run.pc = Pc::Put { replay: true };
                update(world, run);
            }
            Decision::Retire { replay: false } => {
                let status = self.after(&run, Outcome::Stepped(Step::Retired));
                update(world, run);
                if Self::write(world, i, status) {
                    world.operators[i].run.as_mut().expect("in a reconcile").pc =
                        Pc::Delete { replay: false };
                }
            }
            Decision::Retire { replay: true } => {
                run.pc = Pc::Delete { replay: true };
                update(world, run);
            }
            Decision::Finish if status.step.is_none() => {
                Self::delete_state(world, &run);
                world.operators[i].run = None;
            }
            Decision::Finish => {
                update(world, run.clone());
                self.finish(world, i, &run);
            }
            Decision::Abandon { reason } => {
                let status = self.after(
                    &run,
                    Outcome::Abandoned {
                        message: &reason,
                        next_rotation: None,
                    },
                );
                update(world, run);
                Self::write(world, i, status);
                world.operators[i].run = None;
            }
            other => {
                world.unexpected = Some(format!("{other:?}"));
                world.operators[i].run = None;
            }
        }
    }

    fn began(&self, run: &Run, rotation_id: u8, trigger: Trigger) -> Status {
        let handled = token(run.requests);
        self.after(
            run,
            Outcome::Began {
                rotation_id: &rotation_id.to_string(),
                trigger,
                handled_request: handled.as_deref(),
                handled_annotation: None,
            },
        )
    }

    fn advance(&self, run: &Run, decision: &Decision) -> Status {
        let step = step_after(decision).expect("a step follows every effect");
        self.after(run, Outcome::Stepped(step))
    }
}

/// As the shell does after a first try (a PUT, a DELETE) was refused the old password:
/// whether the new password works.
fn accepted_after_a_refusal(
    world: &World,
    state: &StateSecret,
    refused: bool,
    replay: bool,
) -> Option<bool> {
    (refused && !replay).then(|| {
        world.accounts[state.account]
            .target
            .contains(&state.pending)
    })
}

/// The restart annotation's value onto the workload Secret at `secret_version`.
fn restart_of(
    state: &StateSecret,
    status: &PasswordRotationStatus,
    secret_version: Option<String>,
) -> Restart {
    (
        state.rotation_id,
        status.rollout_round.unwrap_or(0),
        secret_version,
    )
}

fn drifted() -> Outcome<'static> {
    Outcome::Drifted {
        message: "the workload Secret holds another password",
    }
}

fn holds(state: Option<&StateSecret>, workload: Password) -> SecretHolds {
    match state {
        Some(state) if workload == state.pending => SecretHolds::Pending,
        Some(state) if workload == state.previous => SecretHolds::Previous,
        _ => SecretHolds::Other,
    }
}

impl Model for Protocol {
    type State = World;
    type Action = Action;

    fn init_states(&self) -> Vec<World> {
        vec![self.initial()]
    }

    fn actions(&self, world: &World, actions: &mut Vec<Action>) {
        actions.extend(self.fair_actions(world).into_iter().flatten());
        for (i, operator) in world.operators.iter().enumerate() {
            if operator.run.is_some() {
                if world.crashes_left > 0 {
                    actions.push(Action::Crash(i));
                }
                if world.failures_left > 0 {
                    actions.push(Action::Fail(i));
                }
            }
        }
        if world.reverts_left > 0
            && world.reverted.is_none()
            && let Some(state) = world.state
            && world.accounts[state.account].workload == state.pending
            && world.accounts[state.account]
                .target
                .contains(&state.previous)
        {
            actions.push(Action::Revert);
        }
        if world.deletes_left > 0 && !world.resource.deleting {
            actions.push(Action::Delete);
        }
        if world.suspends_left > 0 && !world.resource.suspended && !world.resource.deleting {
            actions.push(Action::Suspend);
        }
        if world.switches_left > 0 && !world.resource.deleting {
            actions.push(Action::SwitchMode);
        }
        if world.retargets_left > 0 && !world.resource.deleting {
            actions.push(Action::Retarget);
        }
    }

    fn next_state(&self, world: &World, action: Action) -> Option<World> {
        let mut world = world.clone();
        match action {
            Action::Observe(i) => self.observe(&mut world, i),
            Action::Step(i) => self.step(&mut world, i),
            Action::Crash(i) => {
                world.crashes_left -= 1;
                let operator = &mut world.operators[i];
                operator.run = None;
                operator.known = None;
            }
            Action::Fail(i) => {
                world.failures_left -= 1;
                world.operators[i].run = None;
            }
            Action::Sync(i) => world.operators[i].cache = world.resource.clone(),
            Action::Request => {
                world.resource.requests += 1;
                world.resource.generation += 1;
                world.resource.version += 1;
            }
            Action::SwitchMode => {
                world.switches_left -= 1;
                world.resource.mode = match world.resource.mode {
                    Mode::AddThenDelete => Mode::Replace,
                    Mode::Replace => Mode::AddThenDelete,
                };
                world.resource.generation += 1;
                world.resource.version += 1;
            }
            Action::Retarget => {
                world.retargets_left -= 1;
                world.resource.account = 1 - world.resource.account;
                world.resource.generation += 1;
                world.resource.version += 1;
            }
            Action::Suspend | Action::Unsuspend => {
                if action == Action::Suspend {
                    world.suspends_left -= 1;
                }
                world.resource.suspended = action == Action::Suspend;
                world.resource.generation += 1;
                world.resource.version += 1;
            }
            Action::Revert => {
                let state = world.state.expect("a revert needs a rotation");
                world.reverts_left -= 1;
                let account = &mut world.accounts[state.account];
                world.reverted = Some((state.account, account.workload));
                account.workload = state.previous;
                account.workload_version = world.secret_writes.next();
            }
            Action::Restore => {
                let (a, password) = world.reverted.take().expect("reverted");
                world.accounts[a].workload = password;
                world.accounts[a].workload_version = world.secret_writes.next();
            }
            Action::Delete => {
                world.deletes_left -= 1;
                world.resource.deleting = true;
                world.resource.version += 1;
            }
            Action::Collect => world.state = None,
            Action::RollOut(a) => {
                let account = &mut world.accounts[a];
                account.deployment.rolled_out = true;
                account.deployment.pods = BTreeSet::from([account.workload]);
            }
        }
        Some(world)
    }

    fn properties(&self) -> Vec<Property<Self>> {
        let mut properties = vec![
            Property::always("no workload holds a refused password", |m: &Protocol, w| {
                // Replace mode's outage: from the PUT until the workloads restarted on the new
                // password, while the rotation runs or a restart onto it is under way.
                w.accounts.iter().enumerate().all(|(a, account)| {
                    let replacing = (m.mode == Mode::Replace || m.bounds.switches > 0)
                        && ((!w.resource.gone && w.state.is_some_and(|s| s.account == a))
                            || (!account.deployment.rolled_out
                                && account.target.contains(&account.workload)));
                    account.deployment.pods.is_subset(&account.target) || replacing
                })
            }),
            Property::always("every valid password is in a Secret", |_, w: &World| {
                w.accounts.iter().enumerate().all(|(a, account)| {
                    account.target.iter().all(|p| {
                        *p == account.workload
                            || w.state.is_some_and(|s| {
                                s.account == a && (*p == s.pending || *p == s.previous)
                            })
                    })
                })
            }),
            Property::always(
                "a rotation is staged on the account the spec names",
                |_, w: &World| !w.staged_off_spec,
            ),
            Property::always("never Blocked", |_, w: &World| {
                w.resource.status.status.phase != Some(Phase::Blocked)
            }),
            Property::always("every decision is one the model expects", |_, w: &World| {
                w.unexpected.is_none()
            }),
            Property::always(
                "the rotations complete once faults stop",
                |m: &Protocol, w| m.completes_when_faults_stop(w),
            ),
            Property::sometimes("both operators send the change", |_, w: &World| {
                w.operators.iter().all(|o| {
                    o.run.as_ref().is_some_and(|r| {
                        matches!(
                            r.pc,
                            Pc::Put { .. } | Pc::Delete { .. } | Pc::Deleted { .. }
                        )
                    })
                })
            }),
            Property::sometimes("an operator decides on a stale copy", |_, w: &World| {
                w.operators.iter().any(|o| {
                    o.run
                        .as_ref()
                        .is_some_and(|r| r.version < w.resource.version)
                })
            }),
        ];
        if self.bounds.switches > 0 {
            properties.push(Property::sometimes(
                "a rotation in flight keeps its mode after a switch",
                |_, w: &World| w.state.is_some_and(|s| s.mode != w.resource.mode),
            ));
        }
        if self.bounds.retargets > 0 {
            properties.push(Property::sometimes(
                "a rotation in flight keeps its account after a retarget",
                |_, w: &World| w.state.is_some_and(|s| s.account != w.resource.account),
            ));
        }
        if self.bounds.suspends > 0 {
            properties.push(Property::sometimes(
                "a rotation in flight is suspended",
                |_, w: &World| {
                    w.state.is_some()
                        && w.resource
                            .status
                            .status
                            .conditions
                            .iter()
                            .any(|c| c.type_ == "Ready" && c.reason == Reason::Suspended.as_str())
                },
            ));
        }
        if self.bounds.requests > 1 {
            properties.push(Property::sometimes(
                "a rotation is staged from a copy another rotation overtook",
                |_, w: &World| {
                    w.operators.iter().any(|o| {
                        o.run.as_ref().is_some_and(|r| {
                            matches!(r.pc, Pc::Begin { .. })
                                && r.state.is_some_and(|s| {
                                    let named = &w.resource.status.status.rotation_id;
                                    named.as_deref() != s.follows.map(|f| f.to_string()).as_deref()
                                })
                        })
                    })
                },
            ));
        }
        if self.bounds.deletes > 0 && self.mode == Mode::Replace {
            properties.push(Property::sometimes(
                "a resource deleted after the PUT is released with the new password published",
                |_, w: &World| {
                    w.resource.gone
                        && w.state.is_some_and(|s| {
                            s.orphaned
                                && w.accounts[s.account].target == BTreeSet::from([s.pending])
                                && w.accounts[s.account].workload == s.pending
                        })
                },
            ));
        }
        if self.bounds.deletes > 0 && self.mode == Mode::AddThenDelete {
            properties.extend([
                Property::sometimes(
                    "a deleted resource is rolled back and released",
                    |_, w: &World| {
                        w.resource.gone
                            && w.state.is_some_and(|s| {
                                s.orphaned
                                    && w.accounts[s.account].target == BTreeSet::from([s.previous])
                            })
                    },
                ),
                Property::sometimes("a deleted resource keeps both passwords", |_, w: &World| {
                    w.resource.gone
                        && w.state
                            .is_some_and(|s| s.orphaned && w.accounts[s.account].target.len() == 2)
                }),
            ]);
        }
        properties
    }
}

/// Explores every interleaving within the bounds and fails with the shortest path to any
/// state that breaks an invariant.
fn check(mode: Mode, bounds: Bounds) {
    let checker = Protocol::new(mode, bounds)
        .checker()
        .finish_when(HasDiscoveries::AnyFailures)
        .spawn_bfs()
        .join();
    // Written to stderr itself, not through eprintln!, which the test harness captures: the
    // counts show in `make test`'s output whether the test passes or not.
    let Bounds {
        requests,
        crashes,
        failures,
        reverts,
        deletes,
        suspends,
        switches,
        retargets,
    } = bounds;
    writeln!(
        std::io::stderr(),
        "protocol model, {mode:?}, {requests} rotation(s), {crashes} crash(es), {failures} lost \
         answer(s), {reverts} revert(s), {deletes} deletion(s), {suspends} suspension(s), \
         {switches} mode switch(es), {retargets} move(s) to another user: {} states explored, \
         {} unique",
        checker.state_count(),
        checker.unique_state_count()
    )
    .expect("stderr");
    let discoveries = checker.discoveries();
    let properties = checker.model().properties();
    for property in properties
        .iter()
        .filter(|p| p.expectation != Expectation::Sometimes)
    {
        if let Some(path) = discoveries.get(property.name) {
            let end = path.last_state();
            let steps: Vec<String> = path
                .clone()
                .into_actions()
                .iter()
                .map(|a| format!("{a:?}"))
                .collect();
            panic!(
                "{} breaks after: {}\nthe resource: {:#?}\nthe accounts: {:?}\nthe state \
                 Secret: {:?}",
                property.name,
                steps.join(" -> "),
                end.resource.status.status,
                end.accounts,
                end.state,
            );
        }
    }
    for property in properties
        .iter()
        .filter(|p| p.expectation == Expectation::Sometimes)
    {
        assert!(
            discoveries.contains_key(property.name),
            "never: {}",
            property.name
        );
    }
    assert!(checker.unique_state_count() > 1000, "the model explored");
}

#[test]
fn two_operators_with_stale_watches() {
    check(Mode::AddThenDelete, ONE);
}

#[test]
fn two_operators_crashing_anywhere() {
    check(Mode::AddThenDelete, Bounds { crashes: 1, ..ONE });
}

#[test]
fn two_operators_and_a_deletion_at_any_step() {
    check(Mode::AddThenDelete, Bounds { deletes: 1, ..ONE });
}

#[test]
fn two_operators_a_crash_and_a_deletion() {
    check(
        Mode::AddThenDelete,
        Bounds {
            crashes: 1,
            deletes: 1,
            ..ONE
        },
    );
}

#[test]
fn replace_mode_two_operators_crashing_anywhere() {
    check(Mode::Replace, Bounds { crashes: 1, ..ONE });
}

#[test]
fn replace_mode_two_operators_and_a_deletion_at_any_step() {
    check(Mode::Replace, Bounds { deletes: 1, ..ONE });
}

#[test]
fn replace_mode_two_operators_a_crash_and_a_deletion() {
    check(
        Mode::Replace,
        Bounds {
            crashes: 1,
            deletes: 1,
            ..ONE
        },
    );
}

#[test]
fn two_operators_losing_an_answer_anywhere() {
    check(Mode::AddThenDelete, Bounds { failures: 1, ..ONE });
}

#[test]
fn two_operators_losing_an_answer_and_crashing() {
    check(
        Mode::AddThenDelete,
        Bounds {
            failures: 1,
            crashes: 1,
            ..ONE
        },
    );
}

#[test]
fn replace_mode_two_operators_losing_an_answer_anywhere() {
    check(Mode::Replace, Bounds { failures: 1, ..ONE });
}

#[test]
fn two_operators_and_a_revert_of_the_secret() {
    check(Mode::AddThenDelete, Bounds { reverts: 1, ..ONE });
}

#[test]
fn two_operators_crashing_twice() {
    check(Mode::AddThenDelete, Bounds { crashes: 2, ..ONE });
}

#[test]
fn two_operators_and_two_rotations() {
    check(Mode::AddThenDelete, Bounds { requests: 2, ..ONE });
}

#[test]
fn two_operators_and_a_suspension_set_and_lifted_at_any_step() {
    check(Mode::AddThenDelete, Bounds { suspends: 1, ..ONE });
}

#[test]
fn two_operators_and_a_mode_switch_at_any_step() {
    check(Mode::AddThenDelete, Bounds { switches: 1, ..ONE });
}

#[test]
fn two_operators_and_a_move_to_another_user_at_any_step() {
    check(
        Mode::AddThenDelete,
        Bounds {
            retargets: 1,
            ..ONE
        },
    );
}

#[test]
fn replace_mode_two_operators_and_a_move_to_another_user_at_any_step() {
    check(
        Mode::Replace,
        Bounds {
            retargets: 1,
            ..ONE
        },
    );
}

#[test]
fn replace_mode_two_operators_and_two_rotations() {
    check(Mode::Replace, Bounds { requests: 2, ..ONE });
}
