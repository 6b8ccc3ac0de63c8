//! ONNX Runtime: finding and loading the library, choosing execution providers, opening
//! sessions. Everything here fails with a message that says what to do about it.

use std::path::{Path, PathBuf};

use ort::ep::ExecutionProviderDispatch;
use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;

use crate::config::{ExecutionProvider, InferenceConfig};

/// How many folders above the executable's own may hold a checkout's `models/`: a binary in
/// `target/release/` is two below the checkout, a test in `target/release/deps/` or a cross
/// build in `target/<triple>/release/` three, a cross-built test four. (A `CARGO_TARGET_DIR`
/// outside the checkout needs `inference.model_dir`.)
const CHECKOUT_LEVELS: usize = 5;
/// Where a packaged install keeps them.
const SYSTEM_MODEL_DIR: &str = "/usr/share/facegate/models";
const SYSTEM_ORT_LIBRARY: &str = "/usr/lib/facegate/libonnxruntime.so";

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error(
        "the ONNX Runtime library was not found (looked in: {looked}). Run `make models`, \
         set inference.ort_library in the config file, or set ORT_DYLIB_PATH"
    )]
    LibraryNotFound { looked: String },
    #[error(
        "the ONNX Runtime library {path} could not be loaded: {detail}. It must be ONNX Runtime \
         1.20 or newer for this CPU architecture (the PyPI onnxruntime wheel has one)"
    )]
    LibraryUnusable { path: PathBuf, detail: String },
    #[error(
        "model file {path} is missing. Run `make models` (or set inference.model_dir to the \
         folder holding the converted models)"
    )]
    ModelMissing { path: PathBuf },
    #[error("model {path} could not be opened by ONNX Runtime: {detail}. Re-run `make models`")]
    ModelUnusable { path: PathBuf, detail: String },
    #[error("model {path} does not have the expected shape: {detail}. Re-run `make models`")]
    ModelShape { path: PathBuf, detail: String },
}

/// Resolve the library path: config, then `$ORT_DYLIB_PATH`, then the model folder's links made
/// by `make models` (`<model_dir>/<arch>/libonnxruntime.so` first, so one checkout can hold the
/// library of a cross-built target beside the native one: `make test-arm64` links
/// `models/aarch64/`), then the packaged location.
pub fn ort_library_path(cfg: &InferenceConfig, model_dir: &Path) -> Result<PathBuf, RuntimeError> {
    if let Some(library) = &cfg.ort_library {
        // An explicit setting is the only candidate: silently using another library would
        // hide a mistake in the config.
        return Ok(library.clone());
    }
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    let candidates = [
        model_dir
            .join(std::env::consts::ARCH)
            .join("libonnxruntime.so"),
        model_dir.join("libonnxruntime.so"),
        PathBuf::from(SYSTEM_ORT_LIBRARY),
    ];
    if let Some(found) = candidates.iter().find(|p| p.exists()) {
        return Ok(found.clone());
    }
    Err(RuntimeError::LibraryNotFound {
        looked: candidates
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
    })
}

/// Resolve the model folder: config, else a `models/` made by `make models` next to or above
/// the executable (a binary run from its checkout, from any directory), else the packaged
/// location. Nothing of the build machine is compiled in: a copied binary looks around
/// itself, never at the folder it was built in.
pub fn model_dir(cfg: &InferenceConfig) -> PathBuf {
    if let Some(dir) = &cfg.model_dir {
        return dir.clone();
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| checkout_model_dir(&exe))
        .unwrap_or_else(|| PathBuf::from(SYSTEM_MODEL_DIR))
}

/// The nearest `models/` with a `models.toml` in the executable's folder or the
/// [`CHECKOUT_LEVELS`] folders above it.
fn checkout_model_dir(exe: &Path) -> Option<PathBuf> {
    near_executable(exe, Path::new("models/models.toml"))
        .and_then(|toml| toml.parent().map(Path::to_path_buf))
}

/// The nearest `relative` path that exists in the executable's folder or the
/// [`CHECKOUT_LEVELS`] folders above it (a checkout's `models/` or `tests/fixtures`).
pub fn near_executable(exe: &Path, relative: &Path) -> Option<PathBuf> {
    exe.ancestors()
        .skip(1)
        .take(CHECKOUT_LEVELS)
        .map(|dir| dir.join(relative))
        .find(|p| p.exists())
}

/// The loaded runtime: the environment every session is created in, plus the choices made.
pub struct Runtime {
    env: ort::environment::Environment,
    pub library: PathBuf,
    pub model_dir: PathBuf,
    execution_providers: Vec<ExecutionProvider>,
    threads: usize,
    cache_dir: PathBuf,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("library", &self.library)
            .field("model_dir", &self.model_dir)
            .field("execution_providers", &self.execution_providers)
            .finish()
    }
}

impl Runtime {
    /// Load ONNX Runtime. ONNX Runtime allows one library and one environment per process:
    /// the first call loads them, later calls share them (and refuse a different library).
    pub fn load(cfg: &InferenceConfig) -> Result<Self, RuntimeError> {
        let model_dir = model_dir(cfg);
        let library = ort_library_path(cfg, &model_dir)?;
        let env = process_environment(&library)?;
        let cache_dir = cfg.cache_dir.clone().unwrap_or_else(|| {
            std::env::var_os("HOME")
                .map(|h| PathBuf::from(h).join(".cache/facegate/ep"))
                .unwrap_or_else(|| PathBuf::from("/var/cache/facegate/ep"))
        });
        // Providers this binary was built without are reported once here, not per model.
        let execution_providers = cfg
            .execution_providers
            .iter()
            .filter(|p| {
                let name = p.name();
                let compiled = compiled_in(name);
                if !compiled {
                    tracing::warn!(
                        provider = name,
                        "execution provider not compiled into this binary (build with --features {name}); skipping it"
                    );
                }
                compiled
            })
            .copied()
            .collect();
        Ok(Self {
            env,
            library,
            model_dir,
            execution_providers,
            threads: cfg.threads,
            cache_dir,
        })
    }

    pub fn model_path(&self, file: &str) -> PathBuf {
        self.model_dir.join(file)
    }

    /// Open a model and check its first input's shape (`-1` = a free dimension), so a wrong or
    /// stale file is a startup error instead of a failure on the first frame.
    pub fn open_expecting(
        &self,
        file: &str,
        input_shape: &[i64],
    ) -> Result<(Session, &'static str), RuntimeError> {
        let (session, provider) = self.open(file)?;
        let actual: Option<Vec<i64>> = session
            .inputs()
            .first()
            .and_then(|i| i.dtype().tensor_shape())
            .map(|s| s.to_vec());
        let fits = actual
            .as_ref()
            .is_some_and(|a| a.iter().eq(input_shape.iter()));
        if !fits {
            return Err(RuntimeError::ModelShape {
                path: self.model_path(file),
                detail: format!("input shape {actual:?}, expected {input_shape:?} (-1 = free)"),
            });
        }
        Ok((session, provider))
    }

    /// Open one model with the configured execution providers, trying them in order. Returns
    /// the session and the name of the provider it runs on.
    pub fn open(&self, file: &str) -> Result<(Session, &'static str), RuntimeError> {
        let (path, threads) = (self.model_path(file), self.threads);
        if !path.exists() {
            return Err(RuntimeError::ModelMissing { path });
        }
        for name in self.execution_providers.iter().map(|p| p.name()) {
            let Some(dispatch) = provider(name, &self.cache_dir) else {
                continue; // "cpu": the implicit last resort below
            };
            match open_session(&self.env, &path, Some(dispatch), threads) {
                Ok(session) => {
                    tracing::info!(model = file, provider = name, "model loaded");
                    return Ok((session, name));
                }
                Err(e) => tracing::warn!(
                    model = file,
                    provider = name,
                    error = %e,
                    "execution provider unavailable, trying the next one"
                ),
            }
        }
        let session = open_session(&self.env, &path, None, threads).map_err(|e| {
            RuntimeError::ModelUnusable {
                path: path.clone(),
                detail: e.to_string(),
            }
        })?;
        tracing::info!(model = file, provider = "cpu", "model loaded");
        Ok((session, "cpu"))
    }
}

static ENVIRONMENT: std::sync::Mutex<Option<(PathBuf, ort::environment::Environment)>> =
    std::sync::Mutex::new(None);

fn process_environment(library: &Path) -> Result<ort::environment::Environment, RuntimeError> {
    let mut slot = ENVIRONMENT.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((loaded, env)) = slot.as_ref() {
        if loaded == library {
            return Ok(env.clone());
        }
        return Err(RuntimeError::LibraryUnusable {
            path: library.to_owned(),
            detail: format!(
                "this process already loaded {}; ONNX Runtime cannot load a second library",
                loaded.display()
            ),
        });
    }
    if !library.exists() {
        return Err(RuntimeError::LibraryUnusable {
            path: library.to_owned(),
            detail: "no such file".into(),
        });
    }
    let unusable = |detail: String| RuntimeError::LibraryUnusable {
        path: library.to_owned(),
        detail,
    };
    let env = ort::init_from(library)
        .map_err(|e| unusable(e.to_string()))?
        .with_name("facegate")
        .with_telemetry(false)
        .build()
        .map_err(|e| unusable(e.to_string()))?;
    tracing::info!(library = %library.display(), "ONNX Runtime loaded");
    *slot = Some((library.to_owned(), env.clone()));
    Ok(env)
}

/// Whether this binary can register `name` (CPU always; the others behind cargo features).
fn compiled_in(name: &str) -> bool {
    match name {
        "cpu" => true,
        "cuda" => cfg!(feature = "cuda"),
        "tensorrt" => cfg!(feature = "tensorrt"),
        "xnnpack" => cfg!(feature = "xnnpack"),
        "acl" => cfg!(feature = "acl"),
        "openvino" => cfg!(feature = "openvino"),
        "qnn" => cfg!(feature = "qnn"),
        _ => false,
    }
}

/// Build the dispatch for a configured provider name. `None` for "cpu" (always the implicit
/// last resort) and for providers this binary was built without (`Runtime::load` warns).
fn provider(name: &str, cache_dir: &Path) -> Option<ExecutionProviderDispatch> {
    let _ = cache_dir; // only the TensorRT engine cache uses it
    match name {
        #[cfg(feature = "cuda")]
        "cuda" => Some(ort::ep::CUDA::default().build().error_on_failure()),
        #[cfg(feature = "tensorrt")]
        "tensorrt" => Some(
            ort::ep::TensorRT::default()
                .with_fp16(true)
                .with_engine_cache(true)
                .with_engine_cache_path(cache_dir.display().to_string())
                .build()
                .error_on_failure(),
        ),
        #[cfg(feature = "xnnpack")]
        "xnnpack" => Some(ort::ep::XNNPACK::default().build().error_on_failure()),
        #[cfg(feature = "acl")]
        "acl" => Some(
            ort::ep::ACL::default()
                .with_fast_math(true)
                .build()
                .error_on_failure(),
        ),
        #[cfg(feature = "openvino")]
        "openvino" => Some(ort::ep::OpenVINO::default().build().error_on_failure()),
        #[cfg(feature = "qnn")]
        "qnn" => Some(ort::ep::QNN::default().build().error_on_failure()),
        _ => None, // "cpu", or a provider this binary was built without
    }
}

// The builder chain lives in an `ort::Result` function because `ort::Error<SessionBuilder>`
// is not `Send`, which rules out converting it with `?` anywhere else.
fn open_session(
    env: &ort::environment::Environment,
    path: &Path,
    provider: Option<ExecutionProviderDispatch>,
    threads: usize,
) -> ort::Result<Session> {
    let mut builder = Session::builder(env)?
        .with_optimization_level(GraphOptimizationLevel::Level3)?
        .with_intra_op_spinning(false)?;
    if threads > 0 {
        builder = builder.with_intra_threads(threads)?;
    }
    if let Some(p) = provider {
        builder = builder.with_execution_providers([p])?;
    }
    builder.commit_from_file(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn models_are_found_above_the_executable_and_not_beyond_five_folders() {
        let root = tempfile::tempdir().unwrap();
        let release = root.path().join("checkout/target/release");
        std::fs::create_dir_all(release.join("deps")).unwrap();
        let models = root.path().join("checkout/models");
        std::fs::create_dir_all(&models).unwrap();
        // A models/ folder without models.toml is not what `make models` made.
        assert_eq!(checkout_model_dir(&release.join("facegate")), None);
        std::fs::write(models.join("models.toml"), "").unwrap();
        assert_eq!(
            checkout_model_dir(&release.join("facegate")),
            Some(models.clone())
        );
        assert_eq!(
            checkout_model_dir(&release.join("deps/test-1234")),
            Some(models)
        );
        let cross_test = root
            .path()
            .join("checkout/target/aarch64-unknown-linux-gnu/release/deps");
        std::fs::create_dir_all(&cross_test).unwrap();
        assert!(checkout_model_dir(&cross_test.join("engine_detection-1234")).is_some());
        let deep = root.path().join("checkout/a/b/c/d/e/f");
        std::fs::create_dir_all(&deep).unwrap();
        assert_eq!(checkout_model_dir(&deep.join("facegate")), None);
    }

    #[test]
    fn an_explicit_library_setting_wins_over_everything() {
        let cfg = InferenceConfig {
            ort_library: Some("/opt/ort/libonnxruntime.so".into()),
            ..Default::default()
        };
        assert_eq!(
            ort_library_path(&cfg, Path::new("/nonexistent")).unwrap(),
            PathBuf::from("/opt/ort/libonnxruntime.so")
        );
    }

    #[test]
    fn a_configured_model_dir_is_used_as_given() {
        let cfg = InferenceConfig {
            model_dir: Some("/srv/models".into()),
            ..Default::default()
        };
        assert_eq!(model_dir(&cfg), PathBuf::from("/srv/models"));
    }

    #[test]
    fn cpu_and_unknown_providers_have_no_dispatch() {
        assert!(provider("cpu", Path::new("/tmp")).is_none());
        assert!(provider("warp-drive", Path::new("/tmp")).is_none());
    }

    #[test]
    fn a_provider_has_a_dispatch_exactly_when_it_is_compiled_in() {
        for name in ExecutionProvider::ALL.map(ExecutionProvider::name) {
            let has_dispatch = provider(name, Path::new("/tmp")).is_some();
            assert_eq!(has_dispatch, compiled_in(name) && name != "cpu", "{name}");
        }
        assert!(!compiled_in("warp-drive"));
    }
}
