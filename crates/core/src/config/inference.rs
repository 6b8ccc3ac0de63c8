//! `[inference]`: ONNX Runtime, its execution providers and the embedder.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::Problems;

/// Numeric precision of the embedding network.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// The faster of the two models on this device, where the int8 one kept its accuracy on
    /// the evaluation set (arcface512; dlib128 is always fp32): the daemon times both when it
    /// creates a store and records the choice with it (engine::precision). Commands without a
    /// store (`compare`, `embed`, `eval`) use [`Precision::resolve`]: int8 for arcface512.
    #[default]
    Auto,
    /// The converted float model.
    Fp32,
    /// Its int8 QDQ quantisation (`make models-int8`), for CPUs and NPUs with int8 paths.
    Int8,
}

impl Precision {
    /// The precision used for `kind` where no store has recorded one.
    pub fn resolve(self, kind: EmbedderKind) -> Precision {
        match (self, kind) {
            (Precision::Auto, EmbedderKind::Arcface512) => Precision::Int8,
            (Precision::Auto, EmbedderKind::Dlib128) => Precision::Fp32,
            (p, _) => p,
        }
    }
}

/// Which embedding network turns an aligned face into a template.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum EmbedderKind {
    /// ArcFace-style 512-d network on a 112×112 chip, compared by cosine. Accurate; default.
    #[default]
    Arcface512,
    /// dlib's ResNet, 128-d on a 150×150 chip, compared by Euclidean distance. ~15× faster.
    Dlib128,
}

impl EmbedderKind {
    pub fn name(self) -> &'static str {
        match self {
            EmbedderKind::Arcface512 => "arcface512",
            EmbedderKind::Dlib128 => "dlib128",
        }
    }
}

impl std::str::FromStr for EmbedderKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "arcface512" => Ok(EmbedderKind::Arcface512),
            "dlib128" => Ok(EmbedderKind::Dlib128),
            other => Err(format!(
                "unknown embedder {other:?} (expected arcface512 or dlib128)"
            )),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct InferenceConfig {
    /// Path of libonnxruntime.so. Empty: `$ORT_DYLIB_PATH`, then
    /// `<model_dir>/<arch>/libonnxruntime.so` (`<arch>`: `x86_64`, `aarch64`, `arm`) and
    /// `<model_dir>/libonnxruntime.so` (what `make models` links), then
    /// `/usr/lib/facegate/libonnxruntime.so`.
    #[serde(with = "super::optional_path")]
    pub ort_library: Option<PathBuf>,
    /// Folder with the converted models. Empty: a `models/` made by `make models` next to
    /// the executable or up to five folders above it (a binary built in a checkout), else
    /// `/usr/share/facegate/models`.
    #[serde(with = "super::optional_path")]
    pub model_dir: Option<PathBuf>,
    /// Execution providers in order of preference: cpu, cuda, tensorrt, xnnpack, acl, openvino,
    /// qnn. One that is not compiled in or not offered by the library falls back with a warning.
    pub execution_providers: Vec<ExecutionProvider>,
    /// Threads per ONNX Runtime session; 0 lets ONNX Runtime use every core.
    pub threads: usize,
    /// Which embedder produces templates: "arcface512" (default) or "dlib128".
    pub embedder: EmbedderKind,
    /// `auto` (int8 for arcface512, fp32 for dlib128), `fp32`, or `int8`.
    pub precision: Precision,
    /// Average each face's embedding with the embedding of its mirrored chip (more accurate,
    /// twice the embedding work, run in the same batch).
    pub mirror_average: bool,
    /// Run FaceMesh a second time on a crop re-centred from its first landmarks (steadier
    /// alignment, one more FaceMesh call per face).
    pub refine_landmarks: bool,
    /// Folder for execution-provider caches (TensorRT engines). Empty: `~/.cache/facegate/ep`.
    #[serde(with = "super::optional_path")]
    pub cache_dir: Option<PathBuf>,
}

/// An ONNX Runtime execution provider. Those other than CPU need the cargo feature of the
/// same name and an ONNX Runtime library that has them.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum ExecutionProvider {
    /// Always present: the last resort of every session.
    Cpu,
    /// NVIDIA GPUs (Jetson, desktop).
    Cuda,
    /// NVIDIA TensorRT, with engines cached in `cache_dir`.
    Tensorrt,
    /// XNNPACK: optimised CPU kernels for ARM and x86.
    Xnnpack,
    /// Arm Compute Library.
    Acl,
    /// Intel CPUs, GPUs and NPUs.
    Openvino,
    /// Qualcomm NPUs.
    Qnn,
}

impl ExecutionProvider {
    pub const ALL: [ExecutionProvider; 7] = [
        Self::Cpu,
        Self::Cuda,
        Self::Tensorrt,
        Self::Xnnpack,
        Self::Acl,
        Self::Openvino,
        Self::Qnn,
    ];

    /// The name in the config file, the cargo feature and the logs.
    pub fn name(self) -> &'static str {
        match self {
            Self::Cpu => "cpu",
            Self::Cuda => "cuda",
            Self::Tensorrt => "tensorrt",
            Self::Xnnpack => "xnnpack",
            Self::Acl => "acl",
            Self::Openvino => "openvino",
            Self::Qnn => "qnn",
        }
    }
}

impl Default for InferenceConfig {
    fn default() -> Self {
        Self {
            ort_library: None,
            model_dir: None,
            execution_providers: vec![ExecutionProvider::Cpu],
            threads: 0,
            embedder: EmbedderKind::Arcface512,
            precision: Precision::Auto,
            mirror_average: true,
            refine_landmarks: false,
            cache_dir: None,
        }
    }
}

impl InferenceConfig {
    /// Add every problem of this section to `p`.
    pub(super) fn validate(&self, p: &mut Problems) {
        if self.execution_providers.is_empty() {
            p.add(
                "inference.execution_providers",
                "[]".into(),
                "list at least one provider (\"cpu\" always works)",
            );
        }
    }
}
