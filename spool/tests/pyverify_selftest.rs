//! Runs the independent Python verifier's own self-tests
//! (tests/pyverify/test_selfcheck.py), so that `cargo test` covers them.

#[test]
fn python_verifier_self_tests_pass() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/pyverify");
    let python = std::env::var("WORMLOG_PYTHON").unwrap_or_else(|_| "python3".into());
    let out = std::process::Command::new(&python)
        .args(["-m", "unittest", "-q"])
        .current_dir(&dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {python}: {e}"));
    assert!(
        out.status.success(),
        "python self-tests failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
