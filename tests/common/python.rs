//! The official helper libraries in Python as peers: the virtual environments `scripts/test`
//! makes (`.venv` with `twilio`, `.venv-signalwire` with `signalwire`, `.venv-pjsua` with
//! pjproject's `pjsua2`) and pytest runs of
//! `tests/python/`, which read where callml is and what the Rust side set up from `CALLML_*`
//! environment variables.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A Python virtualenv's interpreter: from `env_var`, else `default` at the repository root.
/// `None` (skip) when it is missing and CALLML_SKIP_PEER_TESTS=1; otherwise a missing venv
/// fails with the command that creates it.
pub fn python_venv(env_var: &str, default: &str, setup: &str) -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let venv = std::env::var_os(env_var).map_or_else(|| root.join(default), PathBuf::from);
    let python = venv.join("bin/python");
    if python.is_file() {
        return Some(python);
    }
    if std::env::var("CALLML_SKIP_PEER_TESTS").as_deref() == Ok("1") {
        eprintln!(
            "skipping: no Python venv at {} (CALLML_SKIP_PEER_TESTS=1)",
            venv.display()
        );
        return None;
    }
    panic!(
        "the Python peer tests need a virtualenv at {} (set {env_var} to use another): create it \
         with `{setup}` at the repository root (.ci/run does), or set CALLML_SKIP_PEER_TESTS=1 \
         to skip on purpose",
        venv.display()
    );
}

/// The `twilio` library's virtualenv ([`python_venv`] with `CALLML_PYTHON_VENV`, `.venv`).
pub fn twilio_venv() -> Option<PathBuf> {
    python_venv(
        "CALLML_PYTHON_VENV",
        ".venv",
        "python3 -m venv .venv && .venv/bin/pip install -r tests/python/requirements-twilio.txt",
    )
}

/// The `signalwire` library's virtualenv (`CALLML_SIGNALWIRE_VENV`, `.venv-signalwire`).
pub fn signalwire_venv() -> Option<PathBuf> {
    python_venv(
        "CALLML_SIGNALWIRE_VENV",
        ".venv-signalwire",
        "python3 -m venv .venv-signalwire && .venv-signalwire/bin/pip install -r tests/python/requirements-signalwire.txt",
    )
}

/// pjsua2's virtualenv (`CALLML_PJSUA_VENV`, `.venv-pjsua`).
pub fn pjsua_venv() -> Option<PathBuf> {
    python_venv(
        "CALLML_PJSUA_VENV",
        ".venv-pjsua",
        "python3 -m venv .venv-pjsua && .venv-pjsua/bin/pip install -r tests/python/requirements-pjsua.txt",
    )
}

/// Runs pytest on `test_file` (in tests/python) with `python`, selecting `marks` (pytest
/// `-m`); panics with its output unless every test passed.
pub fn pytest(python: &Path, test_file: &str, env: &[(&str, String)], marks: &str) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python");
    let output = Command::new(python)
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", marks])
        .arg(dir.join(test_file))
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .current_dir(&dir)
        .output()
        .expect("run pytest");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    println!("{report}");
    assert!(
        output.status.success(),
        "pytest {test_file} failed:\n{report}"
    );
}
