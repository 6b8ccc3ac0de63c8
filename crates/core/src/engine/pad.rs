//! Presentation-attack detection (PAD) on one photo: a single-image classifier that scores
//! how likely the face is live rather than printed or shown on a screen. The network is
//! described by configuration (crop, size, channel order, normalisation, which output is the
//! live class), so a site can swap in another model of this family without code changes.

use image::RgbImage;
use ort::session::Session;
use ort::value::TensorRef;

use super::geometry::{Affine, BoundingBox};
use super::runtime::Runtime;
use super::sampling::{warp, Normalisation};
use super::EngineError;
use crate::config::LivenessConfig;

pub struct PadModel {
    session: Session,
    pub provider: &'static str,
    size: usize,
    crop_scale: f32,
    normalisation: Normalisation,
    softmax: bool,
    live_output: usize,
    buf: Vec<f32>,
}

impl PadModel {
    pub fn open(rt: &Runtime, cfg: &LivenessConfig) -> Result<Self, EngineError> {
        let side = cfg.pad_input_size as i64;
        let (session, provider) = rt.open_expecting(&cfg.pad_model, &[1, 3, side, side])?;
        let mut normalisation = Normalisation {
            mean: cfg.pad_mean,
            scale: cfg.pad_scale,
            bgr: false,
        };
        if cfg.pad_channel_order == crate::config::ChannelOrder::Bgr {
            normalisation = normalisation.bgr();
        }
        let size = cfg.pad_input_size as usize;
        Ok(Self {
            session,
            provider,
            size,
            crop_scale: cfg.pad_crop_scale,
            normalisation,
            softmax: cfg.pad_softmax,
            live_output: cfg.pad_live_output,
            buf: vec![0.0; 3 * size * size],
        })
    }

    /// The live probability of the face in `bbox`.
    pub fn live_probability(
        &mut self,
        frame: &RgbImage,
        bbox: &BoundingBox,
    ) -> Result<f32, EngineError> {
        let map = crop_map(
            frame.width(),
            frame.height(),
            bbox,
            self.crop_scale,
            self.size,
        );
        warp(
            frame,
            &map,
            self.size,
            self.size,
            &self.normalisation,
            &mut self.buf,
        );
        let input =
            TensorRef::from_array_view(([1usize, 3, self.size, self.size], self.buf.as_slice()))?;
        let outputs = self.session.run(ort::inputs![input])?;
        let (_, raw) = outputs[0].try_extract_tensor::<f32>()?;
        if self.live_output >= raw.len() {
            return Err(EngineError::Output(format!(
                "the PAD model has {} outputs; liveness.pad_live_output is {}",
                raw.len(),
                self.live_output
            )));
        }
        if !self.softmax {
            return Ok(raw[self.live_output]);
        }
        let max = raw.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let sum: f32 = raw.iter().map(|v| (v - max).exp()).sum();
        Ok((raw[self.live_output] - max).exp() / sum)
    }
}

/// The crop MiniFASNet-family models are trained on: the face box scaled by `scale` about its
/// centre (less when the image is too small for that), shifted to lie inside the image, then
/// resized to `size`×`size` whatever its aspect.
pub fn crop_map(width: u32, height: u32, bbox: &BoundingBox, scale: f32, size: usize) -> Affine {
    let (w, h) = (width as f32, height as f32);
    let (bw, bh) = (bbox.width().max(1.0), bbox.height().max(1.0));
    let s = scale.min((h - 1.0) / bh).min((w - 1.0) / bw).max(0.1);
    let (cw, ch) = (bw * s, bh * s);
    let c = bbox.center();
    let left = (c.x - cw / 2.0).clamp(0.0, (w - cw).max(0.0));
    let top = (c.y - ch / 2.0).clamp(0.0, (h - ch).max(0.0));
    let (sx, sy) = (cw / size as f32, ch / size as f32);
    Affine {
        m: [
            sx,
            0.0,
            left + sx / 2.0 - 0.5,
            0.0,
            sy,
            top + sy / 2.0 - 0.5,
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::geometry::Point;

    #[test]
    fn the_crop_is_scaled_about_the_face_and_kept_inside_the_image() {
        let b = BoundingBox::from_center(100.0, 100.0, 50.0, 60.0);
        let m = crop_map(1000, 1000, &b, 2.7, 128);
        let c = m.apply(Point::new(63.5, 63.5));
        assert!(c.distance(Point::new(100.0, 100.0)) < 1.0, "{c:?}");
        let tl = m.apply(Point::new(-0.5, -0.5));
        assert!(tl.x >= -0.01 && tl.y >= -0.01, "shifted inside: {tl:?}");
        // A face filling a small image: the scale shrinks to what fits.
        let m = crop_map(
            200,
            200,
            &BoundingBox::from_center(100.0, 100.0, 150.0, 150.0),
            2.7,
            128,
        );
        let br = m.apply(Point::new(127.5, 127.5));
        assert!(br.x <= 200.0 && br.y <= 200.0, "{br:?}");
    }
}
