//! Text to speech with espeak-ng, run as a child process (its GPL code stays out of callml).
//!
//! [`espeak_voice`] maps the markup's `voice` and `language` attributes (Twilio / SignalWire
//! values) to an espeak-ng voice name such as `en-us` or `fr-fr+f3`: the language picks the
//! closest espeak-ng language (unknown ones fall back to `en-us` with a warning); `man` is
//! espeak-ng's default male voice and `woman`, `alice` and the female `Polly.*` / `Google.*`
//! voices add the `f3` female variant.
//!
//! [`SpeechEngine::synthesize`] runs `espeak-ng -v VOICE -w FILE --stdin` with the text on
//! standard input (never through a shell, never as an argument that could look like an
//! option), waits without blocking the runtime, enforces a timeout (the child is killed when
//! it expires), then decodes the 22,050 Hz WAV it wrote to 8 kHz.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use thiserror::Error;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;
use tokio::sync::Semaphore;

use super::decode::{DecodeError, decode_audio};

/// The espeak-ng executable, looked up on `PATH`.
pub const ESPEAK_PROGRAM: &str = "espeak-ng";
/// Longest time one synthesis may take.
pub const DEFAULT_TTS_TIMEOUT: Duration = Duration::from_secs(30);
/// The espeak-ng variant used for female voices.
pub const FEMALE_VARIANT: &str = "f3";
/// espeak-ng voice used when the language is unknown.
pub const FALLBACK_LANGUAGE: &str = "en-us";
/// Output sample rate of synthesized speech.
const OUTPUT_RATE: u32 = 8000;
/// Characters of espeak-ng's standard error kept in an error.
const MAX_STDERR_CHARS: usize = 300;

/// Why text could not be spoken.
#[derive(Debug, Clone, Error)]
pub enum TtsError {
    #[error(
        "text to speech needs `{program}`, which is not installed: install the espeak-ng package \
         (e.g. `apt-get install espeak-ng`)"
    )]
    NotInstalled { program: PathBuf },
    #[error("could not run `{program}`: {source}")]
    Spawn {
        program: PathBuf,
        #[source]
        source: Arc<std::io::Error>,
    },
    #[error("espeak-ng did not finish within {} s", timeout.as_secs())]
    Timeout { timeout: Duration },
    #[error("espeak-ng failed (voice {voice}, {status}): {stderr}")]
    Failed {
        voice: String,
        status: std::process::ExitStatus,
        stderr: String,
    },
    #[error("could not use the speech work directory {}: {source}", dir.display())]
    WorkDir {
        dir: PathBuf,
        #[source]
        source: Arc<std::io::Error>,
    },
    #[error("espeak-ng wrote unreadable audio: {0}")]
    BadOutput(#[source] DecodeError),
}

/// Voice gender requested by the markup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gender {
    Male,
    Female,
}

/// An espeak-ng voice: a language and an optional variant (`en-us`, `fr-fr+f3`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EspeakVoice {
    pub language: &'static str,
    pub variant: Option<&'static str>,
}

impl fmt::Display for EspeakVoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.variant {
            Some(variant) => write!(f, "{}+{variant}", self.language),
            None => f.write_str(self.language),
        }
    }
}

/// The espeak-ng voice for a markup `voice` and `language` (Twilio defaults: `man`, `en-US`;
/// empty strings mean the defaults). Unknown values fall back with a warning in the log.
pub fn espeak_voice(voice: &str, language: &str) -> EspeakVoice {
    let language = if language.trim().is_empty() {
        FALLBACK_LANGUAGE
    } else {
        espeak_language(language).unwrap_or_else(|| {
            tracing::warn!(
                language,
                fallback = FALLBACK_LANGUAGE,
                "no espeak-ng voice for language"
            );
            FALLBACK_LANGUAGE
        })
    };
    let gender = if voice.trim().is_empty() {
        Gender::Male
    } else {
        voice_gender(voice).unwrap_or_else(|| {
            tracing::warn!(voice, "unknown voice, using the default male voice");
            Gender::Male
        })
    };
    EspeakVoice {
        language,
        variant: match gender {
            Gender::Male => None,
            Gender::Female => Some(FEMALE_VARIANT),
        },
    }
}

/// The closest espeak-ng language for a BCP 47 tag (`en-US`, `pt_BR`, `zh-CN`, `de`), or
/// `None` when espeak-ng has no voice for it.
pub fn espeak_language(tag: &str) -> Option<&'static str> {
    let tag = tag.trim().to_ascii_lowercase().replace('_', "-");
    let mut parts = tag.split('-');
    let primary = parts.next().unwrap_or_default();
    let region = parts.next().unwrap_or_default();
    let voice = match (primary, region) {
        ("en", "gb" | "au" | "nz" | "ie" | "za" | "in") => "en-gb",
        ("en", _) => "en-us",
        ("es", "" | "es") => "es",
        ("es", _) => "es-419",
        ("fr", "be") => "fr-be",
        ("fr", "ch") => "fr-ch",
        ("fr", _) => "fr-fr",
        ("pt", "br") => "pt-br",
        ("pt", _) => "pt",
        ("zh", "hk" | "mo") | ("yue", _) => "yue",
        ("zh" | "cmn", _) => "cmn",
        ("no" | "nb" | "nn", _) => "nb",
        ("iw", _) => "he",
        ("arb", _) => "ar",
        ("in", _) => "id",
        (primary, _) => ESPEAK_LANGUAGES
            .iter()
            .find(|&&language| language == primary)
            .copied()?,
    };
    Some(voice)
}

/// espeak-ng 1.51 languages named by their primary subtag alone.
const ESPEAK_LANGUAGES: &[&str] = &[
    "af", "am", "an", "ar", "as", "az", "ba", "be", "bg", "bn", "bs", "ca", "cs", "cv", "cy", "da",
    "de", "el", "eo", "et", "eu", "fa", "fi", "ga", "gd", "gn", "gu", "hak", "haw", "he", "hi",
    "hr", "ht", "hu", "hy", "ia", "id", "is", "it", "ja", "ka", "kk", "kl", "kn", "ko", "kok",
    "ku", "ky", "la", "lb", "lt", "lv", "mi", "mk", "ml", "mr", "ms", "mt", "my", "ne", "nl", "om",
    "or", "pa", "pap", "pl", "qu", "ro", "ru", "sd", "si", "sk", "sl", "sq", "sr", "sv", "sw",
    "ta", "te", "th", "tk", "tn", "tr", "tt", "ug", "uk", "ur", "uz", "vi",
];

/// The gender of a markup voice name, or `None` when the name is not one callml knows.
pub fn voice_gender(voice: &str) -> Option<Gender> {
    let voice = voice.trim().to_ascii_lowercase();
    match voice.as_str() {
        "man" => return Some(Gender::Male),
        "woman" | "alice" => return Some(Gender::Female),
        _ => {}
    }
    let (family, name) = voice.split_once('.')?;
    if family != "polly" && family != "google" {
        return None;
    }
    // Polly.Joanna-Neural, Google.en-US-Chirp3-HD-Charon: the person's name is the part that
    // is neither a language nor a model; most of these voices are female.
    let is_male = name.split('-').any(|part| MALE_VOICE_NAMES.contains(&part));
    Some(if is_male {
        Gender::Male
    } else {
        Gender::Female
    })
}

/// Male Amazon Polly and Google Chirp voice names (lower case).
const MALE_VOICE_NAMES: &[&str] = &[
    // Amazon Polly
    "adriano",
    "andres",
    "andrés",
    "arthur",
    "brian",
    "burak",
    "cristiano",
    "daniel",
    "enrique",
    "geraint",
    "giorgio",
    "gregory",
    "hans",
    "jacek",
    "jan",
    "joey",
    "justin",
    "karl",
    "kevin",
    "liam",
    "mads",
    "mathieu",
    "matthew",
    "maxim",
    "miguel",
    "pedro",
    "remi",
    "rémi",
    "ricardo",
    "ruben",
    "russell",
    "sergio",
    "stephen",
    "takumi",
    "thiago",
    "zayd",
    // Google Chirp 3 HD
    "achird",
    "algenib",
    "algieba",
    "alnilam",
    "charon",
    "enceladus",
    "fenrir",
    "iapetus",
    "orus",
    "puck",
    "rasalgethi",
    "sadachbia",
    "sadaltager",
    "schedar",
    "umbriel",
    "zubenelgenubi",
];

/// Runs espeak-ng; cheap to clone.
#[derive(Debug, Clone)]
pub struct SpeechEngine {
    program: PathBuf,
    work_dir: PathBuf,
    timeout: Duration,
    permits: Arc<Semaphore>,
}

impl SpeechEngine {
    /// An engine running `espeak-ng` from `PATH`, writing its temporary files in `work_dir`.
    /// At most two syntheses per CPU run at once; the others wait their turn.
    pub fn new(work_dir: PathBuf) -> Self {
        let cpus = std::thread::available_parallelism().map_or(2, usize::from);
        SpeechEngine {
            program: PathBuf::from(ESPEAK_PROGRAM),
            work_dir,
            timeout: DEFAULT_TTS_TIMEOUT,
            permits: Arc::new(Semaphore::new(2 * cpus)),
        }
    }

    /// Uses another espeak-ng executable.
    pub fn with_program(mut self, program: PathBuf) -> Self {
        self.program = program;
        self
    }

    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Speaks `text` (verbatim, not SSML) in `voice`; returns 8 kHz mono samples. Text that
    /// produces no sound (empty, or only whitespace) gives no samples.
    pub async fn synthesize(&self, text: &str, voice: EspeakVoice) -> Result<Vec<i16>, TtsError> {
        if text.trim().is_empty() {
            return Ok(Vec::new());
        }
        let _permit = self.permits.acquire().await;
        tokio::fs::create_dir_all(&self.work_dir)
            .await
            .map_err(|source| TtsError::WorkDir {
                dir: self.work_dir.clone(),
                source: Arc::new(source),
            })?;
        let output = TempFile(self.work_dir.join(unique_wav_name()));
        let voice_name = voice.to_string();
        tokio::time::timeout(self.timeout, self.run(text, &voice_name, &output.0))
            .await
            .map_err(|_| TtsError::Timeout {
                timeout: self.timeout,
            })??;

        let wav = tokio::fs::read(&output.0)
            .await
            .map_err(|source| TtsError::WorkDir {
                dir: self.work_dir.clone(),
                source: Arc::new(source),
            })?;
        drop(output);
        let decoded = tokio::task::spawn_blocking(move || decode_audio(&wav, OUTPUT_RATE))
            .await
            .unwrap_or(Err(DecodeError::Corrupt {
                detail: "the decoding task stopped",
            }));
        match decoded {
            Ok(samples) => Ok(samples),
            Err(DecodeError::Empty) => Ok(Vec::new()),
            Err(error) => Err(TtsError::BadOutput(error)),
        }
    }

    /// Runs espeak-ng to completion; the child is killed if this future is dropped.
    async fn run(&self, text: &str, voice: &str, output: &Path) -> Result<(), TtsError> {
        let mut child = Command::new(&self.program)
            .arg("-v")
            .arg(voice)
            .arg("-w")
            .arg(output)
            .arg("--stdin")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| match source.kind() {
                std::io::ErrorKind::NotFound => TtsError::NotInstalled {
                    program: self.program.clone(),
                },
                _ => TtsError::Spawn {
                    program: self.program.clone(),
                    source: Arc::new(source),
                },
            })?;
        let stdin = child.stdin.take();
        let feed = async move {
            if let Some(mut stdin) = stdin {
                // A write error means espeak-ng exited early; its status tells why.
                let _ = stdin.write_all(text.as_bytes()).await;
            }
        };
        let (_, finished) = tokio::join!(feed, child.wait_with_output());
        let finished = finished.map_err(|source| TtsError::Spawn {
            program: self.program.clone(),
            source: Arc::new(source),
        })?;
        if finished.status.success() {
            return Ok(());
        }
        let stderr = String::from_utf8_lossy(&finished.stderr);
        Err(TtsError::Failed {
            voice: voice.to_owned(),
            status: finished.status,
            stderr: stderr.trim().chars().take(MAX_STDERR_CHARS).collect(),
        })
    }
}

/// A file name no other synthesis in this or another callml process uses.
fn unique_wav_name() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let sequence = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!(
        "say-{}-{sequence}-{:08x}.wav",
        std::process::id(),
        rand::random::<u32>()
    )
}

/// Removes the file when dropped (on success and on every error path).
struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::tone::rms_level;
    use crate::programs::require_peer;

    /// Whether espeak-ng is there; panics naming its package unless peer tests are skipped.
    fn espeak_installed() -> bool {
        require_peer(ESPEAK_PROGRAM, "espeak-ng").is_some()
    }

    fn work_dir(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("callml-tts-{name}-{}", std::process::id()))
    }

    #[test]
    fn maps_twilio_languages_to_espeak_voices() {
        let cases = [
            ("en-US", "en-us"),
            ("en-GB", "en-gb"),
            ("en-AU", "en-gb"),
            ("en-IN", "en-gb"),
            ("en-CA", "en-us"),
            ("es-ES", "es"),
            ("es-MX", "es-419"),
            ("fr-FR", "fr-fr"),
            ("fr-CA", "fr-fr"),
            ("de-DE", "de"),
            ("it-IT", "it"),
            ("pt-BR", "pt-br"),
            ("pt-PT", "pt"),
            ("nl-NL", "nl"),
            ("ja-JP", "ja"),
            ("ko-KR", "ko"),
            ("zh-CN", "cmn"),
            ("zh-TW", "cmn"),
            ("zh-HK", "yue"),
            ("ru-RU", "ru"),
            ("pl-PL", "pl"),
            ("sv-SE", "sv"),
            ("da-DK", "da"),
            ("nb-NO", "nb"),
            ("fi-FI", "fi"),
            ("ca-ES", "ca"),
            ("arb", "ar"),
            ("cy-GB", "cy"),
            ("hi_IN", "hi"),
            ("TR-tr", "tr"),
        ];
        for (tag, expected) in cases {
            assert_eq!(espeak_language(tag), Some(expected), "{tag}");
        }
        assert_eq!(espeak_language("xx-YY"), None);
        assert_eq!(espeak_language(""), None);
    }

    #[test]
    fn maps_voices_to_gender() {
        assert_eq!(voice_gender("man"), Some(Gender::Male));
        assert_eq!(voice_gender("Woman"), Some(Gender::Female));
        assert_eq!(voice_gender("alice"), Some(Gender::Female));
        assert_eq!(voice_gender("Polly.Joanna"), Some(Gender::Female));
        assert_eq!(voice_gender("Polly.Matthew-Neural"), Some(Gender::Male));
        assert_eq!(voice_gender("Polly.Céline"), Some(Gender::Female));
        assert_eq!(
            voice_gender("Google.en-US-Standard-C"),
            Some(Gender::Female)
        );
        assert_eq!(
            voice_gender("Google.en-US-Chirp3-HD-Charon"),
            Some(Gender::Male)
        );
        assert_eq!(voice_gender("robot"), None);
    }

    #[test]
    fn combines_language_and_gender_with_twilio_defaults() {
        assert_eq!(espeak_voice("", "").to_string(), "en-us");
        assert_eq!(espeak_voice("man", "en-US").to_string(), "en-us");
        assert_eq!(espeak_voice("alice", "fr-FR").to_string(), "fr-fr+f3");
        assert_eq!(espeak_voice("Polly.Hans", "de-DE").to_string(), "de");
        assert_eq!(espeak_voice("robot", "klingon").to_string(), "en-us");
    }

    /// Every language the mapping can produce is a voice of the installed espeak-ng.
    #[test]
    fn every_mapped_language_exists_in_espeak_ng() {
        if !espeak_installed() {
            return;
        }
        let listing = std::process::Command::new(ESPEAK_PROGRAM)
            .arg("--voices")
            .output()
            .unwrap();
        let listing = String::from_utf8_lossy(&listing.stdout);
        let installed: Vec<&str> = listing
            .lines()
            .skip(1)
            .filter_map(|line| line.split_whitespace().nth(1))
            .collect();
        let mapped = ESPEAK_LANGUAGES.iter().copied().chain([
            "en-us", "en-gb", "es", "es-419", "fr-fr", "fr-be", "fr-ch", "pt", "pt-br", "cmn",
            "yue", "nb",
        ]);
        for language in mapped {
            assert!(
                installed.contains(&language),
                "espeak-ng has no voice {language}"
            );
        }
    }

    #[tokio::test]
    async fn speaks_text_at_8_khz() {
        if !espeak_installed() {
            return;
        }
        let dir = work_dir("speak");
        let engine = SpeechEngine::new(dir.clone());
        let text = "-v xx Hello from callml; $HOME `id` \"quoted\"\nsecond line";
        let samples = engine
            .synthesize(text, espeak_voice("woman", "en-US"))
            .await
            .unwrap();
        // A couple of seconds of speech at 8 kHz, not silence.
        assert!(
            (8000..64_000).contains(&samples.len()),
            "{} samples",
            samples.len()
        );
        assert!(rms_level(&samples) > 0.02);
        // The temporary WAV is gone.
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn blank_text_needs_no_process() {
        let engine =
            SpeechEngine::new(work_dir("blank")).with_program("/nonexistent/espeak".into());
        let samples = engine
            .synthesize(" \n\t", espeak_voice("man", "en-US"))
            .await;
        assert!(samples.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_missing_binary_names_the_package() {
        let dir = work_dir("missing");
        let engine = SpeechEngine::new(dir.clone()).with_program("/nonexistent/espeak-ng".into());
        let error = engine
            .synthesize("hello", espeak_voice("man", "en-US"))
            .await
            .unwrap_err();
        assert!(matches!(error, TtsError::NotInstalled { .. }), "{error:?}");
        assert!(error.to_string().contains("install the espeak-ng package"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn a_failing_espeak_reports_its_error() {
        if !espeak_installed() {
            return;
        }
        let dir = work_dir("failing");
        let engine = SpeechEngine::new(dir.clone());
        let voice = EspeakVoice {
            language: "xx-yy",
            variant: None,
        };
        match engine.synthesize("hello", voice).await {
            Err(TtsError::Failed { voice, stderr, .. }) => {
                assert_eq!(voice, "xx-yy");
                assert!(stderr.contains("voice does not exist"), "{stderr}");
            }
            Err(other) => panic!("unexpected {other:?}"),
            Ok(samples) => panic!("spoke {} samples with an unknown voice", samples.len()),
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn a_hanging_process_times_out() {
        let dir = work_dir("hanging");
        // A stand-in for espeak-ng that accepts any arguments and never finishes.
        let script = dir.join("hang.sh");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(&script, "#!/bin/sh\nexec sleep 600\n").unwrap();
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let engine = SpeechEngine::new(dir.clone())
            .with_program(script)
            .with_timeout(Duration::from_millis(200));
        let error = engine
            .synthesize("hello", espeak_voice("man", "en-US"))
            .await
            .unwrap_err();
        assert!(matches!(error, TtsError::Timeout { .. }), "{error:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
