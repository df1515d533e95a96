//! `crds/` must be what `password-rotator crd` prints: regenerate it with
//! `cargo run -- crd > crds/passwordrotations.rotator.dev.yaml`.

#[test]
fn crds_directory_is_current() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/crds/passwordrotations.rotator.dev.yaml"
    );
    let committed = std::fs::read_to_string(path).expect("crds/ holds the CRD");
    assert!(
        committed == password_rotator::crd_yaml(),
        "crds/ is stale: run `cargo run -- crd > crds/passwordrotations.rotator.dev.yaml`"
    );
}
