//! The scripts README's commands rely on: `scripts/test` (set-up, then the suite) and
//! `scripts/render-welcome` (the built-in welcome prompt from its text).
//!
//! The set-up script's failure paths run against stand-ins for `id`, `dpkg-query` and
//! `apt-get` on a `PATH` of their own, so no test here ever installs anything.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::callml::TempDir;
use common::sipp::require_peer;
use common::wav::read_wav_samples;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn set_up_script() -> PathBuf {
    root().join("scripts/test")
}

/// The packages `scripts/test` installs, read from its `PACKAGES` list.
fn listed_packages() -> Vec<String> {
    let script = std::fs::read_to_string(set_up_script()).expect("read scripts/test");
    let list = script
        .split_once("PACKAGES=(\n")
        .and_then(|(_, rest)| rest.split_once("\n)"))
        .expect("a PACKAGES=( ... ) list")
        .0;
    let packages: Vec<String> = list
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter(|word| !word.starts_with('#'))
        .map(str::to_owned)
        .collect();
    for needed in ["sip-tester", "espeak-ng", "sox", "python3-venv", "kamailio"] {
        assert!(
            packages.iter().any(|p| p == needed),
            "{needed} in {packages:?}"
        );
    }
    packages
}

/// A directory of stand-in programs, to be the whole `PATH` of a run.
struct FakePath {
    dir: TempDir,
}

impl FakePath {
    fn new(name: &str) -> FakePath {
        FakePath {
            dir: TempDir::new(name),
        }
    }

    /// A program that runs `body` with `/bin/sh`.
    fn program(&self, name: &str, body: &str) -> &Self {
        let path = self.dir.path().join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("write stand-in");
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .expect("chmod");
        self
    }

    /// The real program, linked in.
    fn real(&self, name: &str, path: &str) -> &Self {
        std::os::unix::fs::symlink(path, self.dir.path().join(name)).expect("link");
        self
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `scripts/test ARGS` with this directory as the whole `PATH` and `env`.
    fn run(&self, args: &[&str], env: &[(&str, &Path)]) -> Output {
        Command::new("/bin/bash")
            .arg(set_up_script())
            .args(args)
            .env("PATH", self.path())
            .envs(env.iter().map(|(k, v)| (*k, *v)))
            .output()
            .expect("run scripts/test")
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Asserts a run stopped with one line on stderr that names every package and says `why`.
fn assert_stopped_naming_packages(output: &Output, why: &str) {
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line: {stderr}");
    assert!(lines[0].contains(why), "{stderr}");
    for package in listed_packages() {
        assert!(lines[0].contains(&package), "{package} named: {stderr}");
    }
}

#[test]
fn the_set_up_script_does_nothing_the_second_time() {
    let run = || {
        let started = Instant::now();
        let output = Command::new(set_up_script())
            .arg("--setup-only")
            .output()
            .expect("run scripts/test");
        assert!(
            output.status.success(),
            "{}{}",
            text(&output.stdout),
            text(&output.stderr)
        );
        (text(&output.stdout), started.elapsed())
    };
    run();
    let (said, took) = run();
    assert!(said.contains("nothing to set up"), "{said}");
    assert!(
        !said.contains("installing") && !said.contains("creating"),
        "{said}"
    );
    assert!(took < Duration::from_secs(5), "the check took {took:?}");
}

#[test]
fn without_a_package_manager_the_set_up_script_names_the_packages_in_one_line() {
    let empty = FakePath::new("no-apt");
    let output = empty.run(&["--setup-only"], &[]);
    assert_stopped_naming_packages(&output, "no dpkg-query or apt-get");
}

#[test]
fn without_permission_the_set_up_script_names_the_packages_in_one_line() {
    let fake = FakePath::new("no-sudo");
    let apt_log = fake.path().join("apt.log");
    fake.program("id", "echo 1000")
        .program("dpkg-query", "exit 1")
        .program("apt-get", &format!("echo \"$*\" >> {}", apt_log.display()));
    let output = fake.run(&["--setup-only"], &[]);
    assert_stopped_naming_packages(&output, "not root and no sudo");
    assert!(!apt_log.exists(), "apt-get was not run");
}

/// Virtual environments that look ready: an interpreter and the marker of their requirements.
fn ready_venvs(dir: &Path) -> [(&'static str, PathBuf); 2] {
    let venvs = [
        ("CALLML_PYTHON_VENV", "requirements-twilio.txt"),
        ("CALLML_SIGNALWIRE_VENV", "requirements-signalwire.txt"),
    ];
    venvs.map(|(variable, requirements)| {
        let venv = dir.join(variable);
        std::fs::create_dir_all(venv.join("bin")).expect("venv dir");
        std::fs::write(venv.join("bin/python"), "").expect("python");
        std::fs::set_permissions(
            venv.join("bin/python"),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .expect("chmod");
        std::fs::copy(
            root().join("tests/python").join(requirements),
            venv.join("callml-requirements.txt"),
        )
        .expect("marker");
        (variable, venv)
    })
}

#[test]
fn a_failed_install_is_retried_once_after_refreshing_the_package_lists() {
    let fake = FakePath::new("apt-retry");
    let apt_log = fake.path().join("apt.log");
    let failed_once = fake.path().join("failed-once");
    // apt-get fails its first install, as it can on a cache clean-up; then works.
    fake.program("id", "echo 0")
        .program("dpkg-query", "exit 1")
        .program(
            "apt-get",
            &format!(
                "echo \"$1\" >> {log}\n\
                 if [ \"$1\" = install ] && [ ! -e {once} ]; then : > {once}; exit 100; fi",
                log = apt_log.display(),
                once = failed_once.display()
            ),
        )
        .real("env", "/usr/bin/env")
        .real("cmp", "/usr/bin/cmp");
    let venvs = ready_venvs(fake.path());
    let env: Vec<(&str, &Path)> = venvs.iter().map(|(k, v)| (*k, v.as_path())).collect();
    let output = fake.run(&["--setup-only"], &env);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(text(&output.stdout).contains("set-up done"));
    let calls = std::fs::read_to_string(&apt_log).expect("apt-get ran");
    assert_eq!(
        calls.lines().collect::<Vec<_>>(),
        ["install", "update", "install"]
    );

    // An install that keeps failing stops after that one retry, naming the packages.
    fake.program(
        "apt-get",
        &format!("echo \"$1\" >> {}; exit 100", apt_log.display()),
    );
    std::fs::remove_file(&apt_log).expect("reset the log");
    let output = fake.run(&["--setup-only"], &env);
    assert_stopped_naming_packages(&output, "apt-get could not install them");
    let calls = std::fs::read_to_string(&apt_log).expect("apt-get ran");
    assert_eq!(
        calls.lines().collect::<Vec<_>>(),
        ["install", "update", "install"]
    );
}

/// Each shipped prompt is what `scripts/render-welcome` makes of its `assets/NAME.txt` today:
/// a text edited without rendering the prompt again fails here.
#[test]
fn the_shipped_prompts_are_their_texts_rendered() {
    let (Some(_), Some(_)) = (
        require_peer("espeak-ng", "espeak-ng"),
        require_peer("sox", "sox"),
    ) else {
        return;
    };
    let dir = TempDir::new("render-welcome");
    for prompt in ["welcome", "muted", "unmuted", "application_error"] {
        let rendered = dir.path().join(format!("{prompt}.wav"));
        let output = Command::new(root().join("scripts/render-welcome"))
            .arg(&rendered)
            .env("PROMPT", prompt)
            .output()
            .expect("run scripts/render-welcome");
        assert!(output.status.success(), "{}", text(&output.stderr));
        let (rate, fresh) = read_wav_samples(&std::fs::read(&rendered).expect("rendered"));
        let shipped_path = root().join(format!("assets/{prompt}.wav"));
        let (shipped_rate, shipped) =
            read_wav_samples(&std::fs::read(shipped_path).expect("shipped"));
        assert_eq!((rate, shipped_rate), (8000, 8000));
        // The same espeak-ng gives the same samples; another version may differ a little. One
        // word more or less changes the welcome's length by about 2 %.
        let ratio = fresh.len() as f64 / shipped.len() as f64;
        assert!(
            (0.99..=1.01).contains(&ratio),
            "assets/{prompt}.wav ({:.2} s) is not assets/{prompt}.txt as spoken now ({:.2} s): \
             run PROMPT={prompt} scripts/render-welcome and commit the WAV",
            shipped.len() as f64 / 8000.0,
            fresh.len() as f64 / 8000.0
        );
    }
}
