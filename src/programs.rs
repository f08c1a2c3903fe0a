//! The external programs callml and its tests run, found on `PATH`: espeak-ng for `<Say>`
//! (whose absence `callml serve` reports once at start), and the peers the tests drive (sipp,
//! sox, espeak-ng, xmllint, ...).
//!
//! [`require_peer`] is the one rule for every test that needs a peer, unit tests included: a
//! missing peer fails the test and names its Debian package, unless `CALLML_SKIP_PEER_TESTS=1`
//! asks to skip such tests on purpose (CI never sets it). `scripts/test` installs them all.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

/// The variable that turns a missing peer from a failure into a skipped test.
pub const SKIP_PEER_TESTS: &str = "CALLML_SKIP_PEER_TESTS";

/// Where `program` is: itself when it names a path (has a `/`), else the first executable
/// file of that name in a `PATH` directory.
pub fn find_program(program: &Path) -> Option<PathBuf> {
    if program.components().count() > 1 {
        return is_executable(program).then(|| program.to_owned());
    }
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths)
        .map(|dir| dir.join(program))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

/// For tests: the path of the peer `program`, or `None` when it is missing and
/// `CALLML_SKIP_PEER_TESTS=1` (the caller returns: skipped). Otherwise a missing peer panics
/// with the Debian `package` to install.
pub fn require_peer(program: &str, package: &str) -> Option<PathBuf> {
    if let Some(path) = find_program(Path::new(program)) {
        return Some(path);
    }
    if std::env::var_os(SKIP_PEER_TESTS).as_deref() == Some(OsStr::new("1")) {
        eprintln!("skipping: {program} not found ({SKIP_PEER_TESTS}=1)");
        return None;
    }
    panic!(
        "{program} is required for this test: install the Debian package `{package}` \
         (apt-get install {package}, or run scripts/test, which installs every test peer), or \
         set {SKIP_PEER_TESTS}=1 to skip on purpose"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn programs_are_found_on_path_or_by_their_path() {
        let sh = find_program(Path::new("sh")).expect("sh is on PATH");
        assert!(sh.is_absolute() && sh.ends_with("sh"), "{}", sh.display());
        assert_eq!(find_program(&sh), Some(sh.clone()));
        assert_eq!(find_program(Path::new("callml-no-such-program")), None);
        assert_eq!(find_program(Path::new("/nonexistent/espeak-ng")), None);
        // A directory or a file that cannot be run is not a program.
        assert_eq!(find_program(Path::new("/")), None);
        let plain =
            std::env::temp_dir().join(format!("callml-not-a-program-{}", std::process::id()));
        std::fs::write(&plain, "echo").unwrap();
        assert_eq!(find_program(&plain), None);
        std::fs::remove_file(&plain).unwrap();
    }
}
