//! The ACL admin client against real redis-server processes: a primary with a replica, a
//! cluster of three primaries, nodes that restart, nodes that are down. Every claim about
//! which password works is proven with a real `AUTH` on every node. Every admin user here has
//! exactly `ADMIN_ACL_RULES`, which proves those rules suffice.

use std::time::Duration;

use password_rotator::rotation::CallFailure;
use password_rotator::targets::redis::client::{
    ADMIN_ACL_RULES, AclAdmin, AclAdminConfig, AclError, AclTls, Persistence, Role, classify,
};
use rotator_test_support::certs;
use rotator_test_support::redis_server::password_hash;
use rotator_test_support::redis_topology::{Options, Persist, Topology, random_password};
use secrecy::SecretString;

fn admin(topology: &Topology, endpoints: &[String]) -> AclAdmin {
    AclAdmin::new(AclAdminConfig {
        endpoints: endpoints.to_vec(),
        username: topology.admin.user.clone(),
        password: SecretString::from(topology.admin.password.clone()),
        tls: None,
        discover: true,
        timeout: Duration::from_secs(3),
    })
    .expect("a valid configuration")
}

fn secret(password: &str) -> SecretString {
    SecretString::from(password.to_owned())
}

/// The hashes `ACL GETUSER` lists for the app user, read through the client on every node.
async fn hashes_on_every_node(topology: &Topology, client: &AclAdmin) -> Vec<Vec<String>> {
    let nodes = client.nodes().await.unwrap();
    assert_eq!(nodes.len(), topology.nodes.len());
    let mut sets = Vec::new();
    for node in &nodes {
        let hashes = client
            .password_hashes(node, &topology.app.user)
            .await
            .unwrap()
            .expect("the app user exists");
        sets.push(hashes);
    }
    sets
}

#[tokio::test]
async fn primary_and_replica_discovered_from_either_endpoint() {
    let topology = Topology::replicated(&Options::new(Persist::Nothing, ADMIN_ACL_RULES))
        .await
        .unwrap();
    let (primary, replica) = (topology.nodes[0].addr(), topology.nodes[1].addr());
    let from_primary = admin(&topology, std::slice::from_ref(&primary));
    let from_replica = admin(&topology, std::slice::from_ref(&replica));

    let mut roles: Vec<(String, Role)> = from_replica
        .nodes()
        .await
        .unwrap()
        .into_iter()
        .map(|n| (n.addr, n.role))
        .collect();
    roles.sort_by(|a, b| a.0.cmp(&b.0));
    let mut expected = vec![(primary, Role::Primary), (replica, Role::Replica)];
    expected.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(roles, expected);

    let identity = from_primary.identity().await.unwrap();
    assert!(identity.starts_with("replication:"), "{identity}");
    assert_eq!(from_replica.identity().await.unwrap(), identity);

    let old = topology.app.password.clone();
    let new = random_password();
    let added = from_primary
        .add_password(&topology.app.user, &secret(&new))
        .await
        .unwrap();
    assert_eq!(added.nodes, 2);
    assert!(matches!(
        added.persistence,
        Persistence::NotPersisted { .. }
    ));
    topology.assert_passwords(&[&old, &new], &[]).await;
    from_primary
        .remove_password(&topology.app.user, &secret(&old), &secret(&new))
        .await
        .unwrap();
    topology.assert_passwords(&[&new], &[&old]).await;

    // The same rotation again, from the replica's endpoint alone.
    let newer = random_password();
    from_replica
        .add_password(&topology.app.user, &secret(&newer))
        .await
        .unwrap();
    topology.assert_passwords(&[&new, &newer], &[&old]).await;
    let removed = from_replica
        .remove_password(&topology.app.user, &secret(&new), &secret(&newer))
        .await
        .unwrap();
    assert_eq!(removed.nodes, 2);
    topology.assert_passwords(&[&newer], &[&old, &new]).await;
}

#[tokio::test]
async fn cluster_of_three_primaries_discovered_from_one_node() {
    let topology = Topology::cluster(&Options::new(Persist::Nothing, ADMIN_ACL_RULES))
        .await
        .unwrap();
    let seeds = topology.addrs();
    let client = admin(&topology, &seeds[..1]);
    let nodes = client.nodes().await.unwrap();
    assert_eq!(nodes.len(), 3);
    assert!(nodes.iter().all(|n| n.role == Role::Primary));

    let identity = client.identity().await.unwrap();
    assert!(identity.starts_with("cluster:"), "{identity}");
    for seed in &seeds[1..] {
        let other = admin(&topology, std::slice::from_ref(seed));
        assert_eq!(other.identity().await.unwrap(), identity);
    }

    let old = topology.app.password.clone();
    let new = random_password();
    let added = client
        .add_password(&topology.app.user, &secret(&new))
        .await
        .unwrap();
    assert_eq!(added.nodes, 3);
    topology.assert_passwords(&[&old, &new], &[]).await;
    let removed = client
        .remove_password(&topology.app.user, &secret(&old), &secret(&new))
        .await
        .unwrap();
    assert_eq!(removed.nodes, 3);
    topology.assert_passwords(&[&new], &[&old]).await;
    assert_eq!(
        hashes_on_every_node(&topology, &client).await,
        vec![vec![password_hash(&new)]; 3]
    );
    let node = &client.nodes().await.unwrap()[0];
    assert_eq!(client.password_hashes(node, "nobody").await.unwrap(), None);
}

#[tokio::test]
async fn rotation_survives_a_restart_with_an_acl_file_or_a_config_file() {
    for (persist, expected) in [
        (Persist::AclFile, Persistence::AclFile),
        (Persist::ConfigFile, Persistence::ConfigRewrite),
    ] {
        let mut topology = Topology::standalone(&Options::new(persist, ADMIN_ACL_RULES))
            .await
            .unwrap();
        let client = admin(&topology, &topology.addrs());
        let old = topology.app.password.clone();
        let new = random_password();
        let added = client
            .add_password(&topology.app.user, &secret(&new))
            .await
            .unwrap();
        assert_eq!(added.persistence, expected);
        let removed = client
            .remove_password(&topology.app.user, &secret(&old), &secret(&new))
            .await
            .unwrap();
        assert_eq!(removed.persistence, expected);

        topology.nodes[0].restart().await.unwrap();
        topology.assert_passwords(&[&new], &[&old]).await;
    }
}

#[tokio::test]
async fn a_node_without_acl_file_or_config_file_is_reported_not_persisted() {
    let topology = Topology::standalone(&Options::new(Persist::Nothing, ADMIN_ACL_RULES))
        .await
        .unwrap();
    let client = admin(&topology, &topology.addrs());
    let added = client
        .add_password(&topology.app.user, &secret(&random_password()))
        .await
        .unwrap();
    let Persistence::NotPersisted { why } = added.persistence else {
        panic!("expected NotPersisted, got {:?}", added.persistence);
    };
    assert!(why.contains("CONFIG REWRITE"), "{why}");
    assert!(why.contains(&topology.nodes[0].addr()), "{why}");
}

#[tokio::test]
async fn a_replica_down_mid_rotation_blocks_removal_everywhere() {
    let mut topology = Topology::replicated(&Options::new(Persist::AclFile, ADMIN_ACL_RULES))
        .await
        .unwrap();
    // Discovery from a primary does not see a replica that is down: list both.
    let client = admin(&topology, &topology.addrs());
    let replica = topology.nodes[1].addr();
    let old = topology.app.password.clone();
    let new = random_password();

    topology.nodes[1].stop().await.unwrap();
    let error = client
        .add_password(&topology.app.user, &secret(&new))
        .await
        .unwrap_err();
    assert!(error.to_string().contains(&replica), "{error}");
    assert!(matches!(classify(&error), CallFailure::Transient { .. }));
    assert!(
        topology.nodes[0]
            .auth(&topology.app.user, &old)
            .await
            .unwrap()
    );
    assert!(
        topology.nodes[0]
            .auth(&topology.app.user, &new)
            .await
            .unwrap()
    );

    let error = client
        .remove_password(&topology.app.user, &secret(&old), &secret(&new))
        .await
        .unwrap_err();
    assert!(matches!(error, AclError::Unchanged(_)), "{error:?}");
    assert!(error.to_string().contains(&replica), "{error}");
    assert!(
        topology.nodes[0]
            .auth(&topology.app.user, &old)
            .await
            .unwrap()
    );

    // Back up with the ACL file it saved before the rotation: only the old password.
    topology.nodes[1].restart().await.unwrap();
    assert!(
        topology.nodes[1]
            .auth(&topology.app.user, &old)
            .await
            .unwrap()
    );
    assert!(
        !topology.nodes[1]
            .auth(&topology.app.user, &new)
            .await
            .unwrap()
    );
    // Removing the old password gives the replica the new one back in the same change: the
    // workloads hold the new password, and it must work on every node before the old goes.
    let removed = client
        .remove_password(&topology.app.user, &secret(&old), &secret(&new))
        .await
        .unwrap();
    assert_eq!(removed.nodes, 2, "both nodes changed");
    topology.assert_passwords(&[&new], &[&old]).await;
}

#[tokio::test]
async fn a_cluster_node_down_is_found_through_the_cluster() {
    let mut topology = Topology::cluster(&Options::new(Persist::AclFile, ADMIN_ACL_RULES))
        .await
        .unwrap();
    let client = admin(&topology, &topology.addrs()[..1]);
    let down = topology.nodes[2].addr();
    let old = topology.app.password.clone();
    let new = random_password();

    topology.nodes[2].stop().await.unwrap();
    let error = client
        .add_password(&topology.app.user, &secret(&new))
        .await
        .unwrap_err();
    assert!(error.to_string().contains(&down), "{error}");
    let error = client
        .remove_password(&topology.app.user, &secret(&old), &secret(&new))
        .await
        .unwrap_err();
    assert!(matches!(error, AclError::Unchanged(_)), "{error:?}");
    for node in &topology.nodes[..2] {
        assert!(node.auth(&topology.app.user, &old).await.unwrap());
        assert!(node.auth(&topology.app.user, &new).await.unwrap());
    }

    topology.nodes[2].restart().await.unwrap();
    client
        .add_password(&topology.app.user, &secret(&new))
        .await
        .unwrap();
    client
        .remove_password(&topology.app.user, &secret(&old), &secret(&new))
        .await
        .unwrap();
    topology.assert_passwords(&[&new], &[&old]).await;
}

#[tokio::test]
async fn replays_change_nothing() {
    let topology = Topology::replicated(&Options::new(Persist::ConfigFile, ADMIN_ACL_RULES))
        .await
        .unwrap();
    let client = admin(&topology, &topology.addrs()[..1]);
    let (user, old, new) = (
        &topology.app.user,
        topology.app.password.clone(),
        random_password(),
    );

    assert_eq!(
        client
            .add_password(user, &secret(&new))
            .await
            .unwrap()
            .nodes,
        2
    );
    let replay = client.add_password(user, &secret(&new)).await.unwrap();
    assert_eq!(replay.nodes, 0);
    assert_eq!(replay.persistence, Persistence::ConfigRewrite);
    topology.assert_passwords(&[&old, &new], &[]).await;

    let (old_s, new_s) = (secret(&old), secret(&new));
    assert_eq!(
        client
            .remove_password(user, &old_s, &new_s)
            .await
            .unwrap()
            .nodes,
        2
    );
    assert_eq!(
        client
            .remove_password(user, &old_s, &new_s)
            .await
            .unwrap()
            .nodes,
        0
    );
    topology.assert_passwords(&[&new], &[&old]).await;

    let error = client
        .remove_password(user, &new_s, &new_s)
        .await
        .unwrap_err();
    assert_eq!(classify(&error), CallFailure::LastPassword);
    topology.assert_passwords(&[&new], &[]).await;

    // Replace: with two passwords in place, both die and only the replacement works.
    let (extra, replacement) = (random_password(), random_password());
    client.add_password(user, &secret(&extra)).await.unwrap();
    assert_eq!(
        client
            .replace_passwords(user, &secret(&replacement))
            .await
            .unwrap()
            .nodes,
        2
    );
    assert_eq!(
        client
            .replace_passwords(user, &secret(&replacement))
            .await
            .unwrap()
            .nodes,
        0
    );
    topology
        .assert_passwords(&[&replacement], &[&new, &extra])
        .await;
}

#[tokio::test]
async fn admin_failures_are_classified_and_leak_no_password() {
    let topology = Topology::standalone(&Options::new(Persist::Nothing, ADMIN_ACL_RULES))
        .await
        .unwrap();
    let (user, old, new) = (
        topology.app.user.clone(),
        topology.app.password.clone(),
        random_password(),
    );
    let mut errors = Vec::new();

    let wrong_admin = AclAdmin::new(AclAdminConfig {
        endpoints: topology.addrs(),
        username: topology.admin.user.clone(),
        password: secret("not-the-admin-password"),
        tls: None,
        discover: true,
        timeout: Duration::from_secs(3),
    })
    .unwrap();
    let error = wrong_admin
        .add_password(&user, &secret(&new))
        .await
        .unwrap_err();
    assert!(
        matches!(classify(&error), CallFailure::AdminUnauthorized { .. }),
        "{error:?}"
    );
    errors.push(error);

    let client = admin(&topology, &topology.addrs());
    let error = client
        .add_password("nobody", &secret(&new))
        .await
        .unwrap_err();
    assert!(
        matches!(classify(&error), CallFailure::NotFound { .. }),
        "{error:?}"
    );
    errors.push(error);

    let unreachable = admin(&topology, &["127.0.0.1:1".to_owned()]);
    let error = unreachable
        .add_password(&user, &secret(&new))
        .await
        .unwrap_err();
    assert!(
        matches!(classify(&error), CallFailure::Transient { .. }),
        "{error:?}"
    );
    errors.push(error);

    // An admin with every rule but the ACL ones.
    let weak = Topology::standalone(&Options::new(
        Persist::Nothing,
        "+config|get +config|rewrite +info +cluster|shards",
    ))
    .await
    .unwrap();
    let error = admin(&weak, &weak.addrs())
        .add_password(&weak.app.user, &secret(&new))
        .await
        .unwrap_err();
    assert!(
        matches!(classify(&error), CallFailure::Forbidden { .. }),
        "{error:?}"
    );
    errors.push(error);

    let secrets = [
        &old,
        &new,
        &topology.admin.password,
        &weak.admin.password,
        "not-the-admin-password",
    ];
    for error in &errors {
        for text in [error.to_string(), format!("{error:?}")] {
            for password in secrets {
                assert!(!text.contains(password), "a password leaked: {text}");
            }
        }
    }
    let debug = format!("{client:?}");
    assert!(debug.contains(&topology.admin.user));
    assert!(!debug.contains(&topology.admin.password), "{debug}");
}

#[tokio::test]
async fn tls_with_a_pinned_self_signed_certificate() {
    let cert = certs::self_signed("redis.test", &["DNS:redis.test", "IP:127.0.0.1"]).unwrap();
    let mut options = Options::new(Persist::Nothing, ADMIN_ACL_RULES);
    options.tls = Some(cert.clone());
    let topology = Topology::standalone(&options).await.unwrap();
    let tls_addr = topology.nodes[0].tls_addr().unwrap();
    let client_with = |ca_pem: &str, server_name: Option<&str>| {
        AclAdmin::new(AclAdminConfig {
            endpoints: vec![tls_addr.clone()],
            username: topology.admin.user.clone(),
            password: SecretString::from(topology.admin.password.clone()),
            tls: Some(AclTls {
                ca_pem: ca_pem.as_bytes().to_vec(),
                server_name: server_name.map(str::to_owned),
            }),
            discover: true,
            timeout: Duration::from_secs(3),
        })
        .unwrap()
    };

    let client = client_with(&cert.cert_pem, None);
    let (old, new) = (topology.app.password.clone(), random_password());
    client
        .add_password(&topology.app.user, &secret(&new))
        .await
        .unwrap();
    client
        .remove_password(&topology.app.user, &secret(&old), &secret(&new))
        .await
        .unwrap();
    topology.assert_passwords(&[&new], &[&old]).await;
    let named = client_with(&cert.cert_pem, Some("redis.test"));
    assert_eq!(named.nodes().await.unwrap().len(), 1);

    let other = certs::self_signed("other", &["IP:127.0.0.1"]).unwrap();
    let error = client_with(&other.cert_pem, None)
        .nodes()
        .await
        .unwrap_err();
    let CallFailure::TlsUntrusted { detail } = classify(&error) else {
        panic!("expected TlsUntrusted, got {error:?}");
    };
    assert!(detail.contains("redis.test"), "{detail}");
}
