//! Embedders: aligned chip in, identity template out. Two networks behind one trait, chosen by
//! `inference.embedder`; every face of a frame (and each mirrored chip) runs in one batch.

use image::RgbImage;
use ort::session::Session;
use ort::value::TensorRef;

use super::align::{chip_to_frame, cut_chip, ChipTemplate, ARCFACE_112, DLIB_150};
use super::landmarks::Landmarks;
use super::sampling::mirror;
use super::EngineError;
use crate::config::{EmbedderKind, Precision};

/// How two templates of one embedder are compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    /// Cosine of L2-normalised vectors: higher is more alike.
    Cosine,
    /// Euclidean distance: lower is more alike.
    Euclidean,
}

impl Metric {
    /// The raw comparison value (cosine or distance).
    pub fn compare(self, a: &[f32], b: &[f32]) -> f32 {
        debug_assert_eq!(a.len(), b.len());
        match self {
            Metric::Cosine => a.iter().zip(b).map(|(x, y)| x * y).sum(),
            Metric::Euclidean => a
                .iter()
                .zip(b)
                .map(|(x, y)| (x - y) * (x - y))
                .sum::<f32>()
                .sqrt(),
        }
    }

    /// The raw value turned so that higher always means more alike.
    pub fn closeness(self, raw: f32) -> f32 {
        match self {
            Metric::Cosine => raw,
            Metric::Euclidean => -raw,
        }
    }

    /// The inverse of [`Metric::closeness`].
    pub fn raw_from_closeness(self, closeness: f32) -> f32 {
        match self {
            Metric::Cosine => closeness,
            Metric::Euclidean => -closeness,
        }
    }

    pub fn raw_name(self) -> &'static str {
        match self {
            Metric::Cosine => "cosine",
            Metric::Euclidean => "distance",
        }
    }
}

pub trait Embedder: Send {
    fn kind(&self) -> EmbedderKind;
    fn dimension(&self) -> usize;
    fn metric(&self) -> Metric;
    fn template(&self) -> &ChipTemplate;
    /// The execution provider the network runs on.
    fn provider(&self) -> &'static str;
    /// One template per face, in order. `None` for a face whose landmarks are degenerate.
    fn embed(
        &mut self,
        frame: &RgbImage,
        faces: &[&Landmarks],
    ) -> Result<Vec<Option<Vec<f32>>>, EngineError>;
}

/// An ONNX embedding network with a free batch dimension.
pub struct OnnxEmbedder {
    kind: EmbedderKind,
    session: Session,
    provider: &'static str,
    template: ChipTemplate,
    dimension: usize,
    metric: Metric,
    mirror_average: bool,
    batch: Vec<f32>,
}

impl OnnxEmbedder {
    pub fn open(
        rt: &super::runtime::Runtime,
        kind: EmbedderKind,
        precision: Precision,
        mirror_average: bool,
    ) -> Result<Self, EngineError> {
        let (template, dimension, metric) = match kind {
            EmbedderKind::Arcface512 => (ARCFACE_112, 512, Metric::Cosine),
            EmbedderKind::Dlib128 => (DLIB_150, 128, Metric::Euclidean),
        };
        let file = model_file(kind, precision);
        let side = template.size as i64;
        // A free batch dimension is what `make models` produces; a fixed 1 means a stale file.
        let (session, provider) = rt.open_expecting(file, &[-1, 3, side, side])?;
        Ok(Self {
            kind,
            session,
            provider,
            template,
            dimension,
            metric,
            mirror_average,
            batch: Vec::new(),
        })
    }
}

impl OnnxEmbedder {
    /// Run the network once on the batch one face makes (two chips with `mirror_average`), on
    /// a plain grey chip: what [`super::precision`] times. The arithmetic of a CPU or NPU
    /// kernel does not depend on the pixel values.
    pub fn run_one_face(&mut self) -> Result<(), EngineError> {
        let size = self.template.size;
        let chips = if self.mirror_average { 2 } else { 1 };
        self.batch.clear();
        self.batch.resize(chips * 3 * size * size, 0.5);
        let input = TensorRef::from_array_view(([chips, 3, size, size], self.batch.as_slice()))?;
        let outputs = self.session.run(ort::inputs![input])?;
        let (_, raw) = outputs[0].try_extract_tensor::<f32>()?;
        if raw.len() != chips * self.dimension {
            return Err(EngineError::Output(format!(
                "{} returned {} values for {chips} chips of dimension {}",
                self.kind.name(),
                raw.len(),
                self.dimension
            )));
        }
        Ok(())
    }
}

impl Embedder for OnnxEmbedder {
    fn kind(&self) -> EmbedderKind {
        self.kind
    }
    fn dimension(&self) -> usize {
        self.dimension
    }
    fn metric(&self) -> Metric {
        self.metric
    }
    fn template(&self) -> &ChipTemplate {
        &self.template
    }
    fn provider(&self) -> &'static str {
        self.provider
    }

    fn embed(
        &mut self,
        frame: &RgbImage,
        faces: &[&Landmarks],
    ) -> Result<Vec<Option<Vec<f32>>>, EngineError> {
        let size = self.template.size;
        let chip_len = 3 * size * size;
        let per_face = if self.mirror_average { 2 } else { 1 };
        let maps: Vec<_> = faces
            .iter()
            .map(|lm| chip_to_frame(&self.template, lm))
            .collect();
        let usable = maps.iter().filter(|m| m.is_some()).count();
        if usable == 0 {
            return Ok(vec![None; faces.len()]);
        }
        self.batch.clear();
        self.batch.resize(usable * per_face * chip_len, 0.0);
        for (slot, map) in maps.iter().flatten().enumerate() {
            let start = slot * per_face * chip_len;
            let (chip, rest) = self.batch[start..].split_at_mut(chip_len);
            cut_chip(frame, &self.template, map, chip);
            if self.mirror_average {
                mirror(chip, size, size, &mut rest[..chip_len]);
            }
        }
        let shape = [usable * per_face, 3, size, size];
        let input = TensorRef::from_array_view((shape, self.batch.as_slice()))?;
        let outputs = self.session.run(ort::inputs![input])?;
        let (_, raw) = outputs[0].try_extract_tensor::<f32>()?;
        if raw.len() != usable * per_face * self.dimension {
            return Err(EngineError::Output(format!(
                "{} returned {} values for {} chips of dimension {}",
                self.kind.name(),
                raw.len(),
                usable * per_face,
                self.dimension
            )));
        }
        let mut vectors = raw.chunks_exact(self.dimension * per_face).map(|group| {
            let mut v = group[..self.dimension].to_vec();
            if self.mirror_average {
                for (a, b) in v.iter_mut().zip(&group[self.dimension..]) {
                    *a = (*a + b) / 2.0;
                }
            }
            if self.metric == Metric::Cosine {
                l2_normalise(&mut v);
            }
            v
        });
        Ok(maps
            .iter()
            .map(|m| m.as_ref().and_then(|_| vectors.next()))
            .collect())
    }
}

/// The model file of an embedder.
pub fn model_file(kind: EmbedderKind, precision: Precision) -> &'static str {
    match (kind, precision.resolve(kind)) {
        (EmbedderKind::Arcface512, Precision::Fp32) => "arcface512.onnx",
        (EmbedderKind::Arcface512, Precision::Int8) => "arcface512_int8.onnx",
        (EmbedderKind::Dlib128, Precision::Fp32) => "dlib128.onnx",
        (EmbedderKind::Dlib128, Precision::Int8) => "dlib128_int8.onnx",
        (_, Precision::Auto) => unreachable!("resolved above"),
    }
}

/// `name@<first 16 hex digits of the model file's SHA-256>`: what a store records, so that
/// templates of a different network (or different weights) are never compared.
pub fn fingerprint(
    model_dir: &std::path::Path,
    kind: EmbedderKind,
    precision: Precision,
) -> std::io::Result<String> {
    use sha2::Digest;
    let bytes = std::fs::read(model_dir.join(model_file(kind, precision)))?;
    let digest = sha2::Sha256::digest(&bytes);
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    let suffix = match precision.resolve(kind) {
        Precision::Int8 => "-int8",
        _ => "",
    };
    Ok(format!("{}{suffix}@{hex}", kind.name()))
}

pub fn l2_normalise(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cosine_of_normalised_vectors_and_euclidean_distance() {
        let mut a = vec![3.0, 4.0];
        l2_normalise(&mut a);
        assert!((Metric::Cosine.compare(&a, &a) - 1.0).abs() < 1e-6);
        assert!((Metric::Euclidean.compare(&[0.0, 0.0], &[3.0, 4.0]) - 5.0).abs() < 1e-6);
        assert!(Metric::Euclidean.closeness(0.3) > Metric::Euclidean.closeness(0.6));
    }
}
