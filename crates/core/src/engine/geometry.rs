//! Points, boxes and 2-D affine maps shared by detection, landmarks and alignment.

use serde::Serialize;

/// How close to the frame's edge, in pixels, a box counts as cut by it.
pub const FRAME_EDGE_PX: f32 = 1.0;

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Default)]
pub struct Point {
    pub x: f32,
    pub y: f32,
}

impl Point {
    pub const fn new(x: f32, y: f32) -> Self {
        Self { x, y }
    }

    pub fn distance(self, other: Point) -> f32 {
        ((self.x - other.x).powi(2) + (self.y - other.y).powi(2)).sqrt()
    }

    pub fn midpoint(self, other: Point) -> Point {
        Point::new((self.x + other.x) / 2.0, (self.y + other.y) / 2.0)
    }
}

/// An axis-aligned box in pixels, `left/top` inclusive, `right/bottom` exclusive.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Default)]
pub struct BoundingBox {
    pub left: f32,
    pub top: f32,
    pub right: f32,
    pub bottom: f32,
}

impl BoundingBox {
    pub fn from_center(cx: f32, cy: f32, w: f32, h: f32) -> Self {
        Self {
            left: cx - w / 2.0,
            top: cy - h / 2.0,
            right: cx + w / 2.0,
            bottom: cy + h / 2.0,
        }
    }

    pub fn width(&self) -> f32 {
        self.right - self.left
    }

    pub fn height(&self) -> f32 {
        self.bottom - self.top
    }

    pub fn area(&self) -> f32 {
        self.width().max(0.0) * self.height().max(0.0)
    }

    pub fn center(&self) -> Point {
        Point::new(
            (self.left + self.right) / 2.0,
            (self.top + self.bottom) / 2.0,
        )
    }

    /// Whether the edge of a `width`×`height` frame cuts the box: it reaches within
    /// [`FRAME_EDGE_PX`] of an edge, or past it (the detector's boxes may extend beyond the
    /// frame).
    pub fn cut_by_frame(&self, width: f32, height: f32) -> bool {
        self.left <= FRAME_EDGE_PX
            || self.top <= FRAME_EDGE_PX
            || self.right >= width - FRAME_EDGE_PX
            || self.bottom >= height - FRAME_EDGE_PX
    }

    /// Whether `p` lies strictly inside the box.
    pub fn contains(&self, p: Point) -> bool {
        p.x > self.left && p.x < self.right && p.y > self.top && p.y < self.bottom
    }

    pub fn intersection_over_union(&self, other: &BoundingBox) -> f32 {
        let w = (self.right.min(other.right) - self.left.max(other.left)).max(0.0);
        let h = (self.bottom.min(other.bottom) - self.top.max(other.top)).max(0.0);
        let inter = w * h;
        let union = self.area() + other.area() - inter;
        if union <= 0.0 {
            0.0
        } else {
            inter / union
        }
    }
}

/// `p' = [a b c; d e f] · [x y 1]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Affine {
    pub m: [f32; 6],
}

impl Affine {
    pub fn apply(&self, p: Point) -> Point {
        let m = &self.m;
        Point::new(
            m[0] * p.x + m[1] * p.y + m[2],
            m[3] * p.x + m[4] * p.y + m[5],
        )
    }

    pub fn invert(&self) -> Option<Affine> {
        let [a, b, c, d, e, f] = self.m;
        let det = a * e - b * d;
        if det.abs() < 1e-12 {
            return None;
        }
        let (ia, ib, id, ie) = (e / det, -b / det, -d / det, a / det);
        Some(Affine {
            m: [ia, ib, -(ia * c + ib * f), id, ie, -(id * c + ie * f)],
        })
    }

    /// Scale factor of a similarity transform (length of the first column).
    pub fn scale(&self) -> f32 {
        (self.m[0] * self.m[0] + self.m[3] * self.m[3]).sqrt()
    }

    /// The map taking a `size`×`size` crop's pixel coordinates into the image, for a square of
    /// side `side` centred on `center` and rotated by `angle` radians (counter-clockwise in
    /// image coordinates, i.e. with y pointing down the crop is turned by `angle`).
    pub fn rotated_crop(center: Point, side: f32, angle: f32, size: f32) -> Affine {
        let s = side / size;
        let (sin, cos) = angle.sin_cos();
        let (a, b, d, e) = (s * cos, -s * sin, s * sin, s * cos);
        let h = size / 2.0;
        Affine {
            m: [
                a,
                b,
                center.x - (a * h + b * h),
                d,
                e,
                center.y - (d * h + e * h),
            ],
        }
    }
}

/// Least-squares similarity transform (rotation, uniform scale, translation; no reflection)
/// taking `from[i]` to `to[i]`. Closed form of Umeyama's method in two dimensions.
pub fn fit_similarity(from: &[Point], to: &[Point]) -> Option<Affine> {
    let n = from.len();
    if n < 2 || n != to.len() {
        return None;
    }
    let nf = n as f64;
    let (mut fx, mut fy, mut tx, mut ty) = (0f64, 0f64, 0f64, 0f64);
    for (p, q) in from.iter().zip(to) {
        fx += p.x as f64;
        fy += p.y as f64;
        tx += q.x as f64;
        ty += q.y as f64;
    }
    let (fx, fy, tx, ty) = (fx / nf, fy / nf, tx / nf, ty / nf);
    let (mut dot, mut cross, mut norm) = (0f64, 0f64, 0f64);
    for (p, q) in from.iter().zip(to) {
        let (px, py) = (p.x as f64 - fx, p.y as f64 - fy);
        let (qx, qy) = (q.x as f64 - tx, q.y as f64 - ty);
        dot += px * qx + py * qy;
        cross += px * qy - py * qx;
        norm += px * px + py * py;
    }
    if norm < 1e-12 {
        return None;
    }
    let a = dot / norm;
    let b = cross / norm;
    let c = tx - (a * fx - b * fy);
    let f = ty - (b * fx + a * fy);
    Some(Affine {
        m: [a as f32, -b as f32, c as f32, b as f32, a as f32, f as f32],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: Point, b: Point) -> bool {
        a.distance(b) < 1e-3
    }

    #[test]
    fn similarity_fit_recovers_a_known_rotation_scale_and_shift() {
        let truth = Affine::rotated_crop(Point::new(40.0, -7.0), 300.0, 0.4, 100.0);
        let from = [
            Point::new(10.0, 20.0),
            Point::new(80.0, 25.0),
            Point::new(45.0, 60.0),
            Point::new(20.0, 85.0),
            Point::new(75.0, 90.0),
        ];
        let to: Vec<Point> = from.iter().map(|&p| truth.apply(p)).collect();
        let fit = fit_similarity(&from, &to).unwrap();
        for (&p, &q) in from.iter().zip(&to) {
            assert!(close(fit.apply(p), q), "{:?} vs {:?}", fit.apply(p), q);
        }
        assert!((fit.scale() - 3.0).abs() < 1e-4);
    }

    #[test]
    fn similarity_fit_is_least_squares_under_noise_and_never_reflects() {
        // Mirror-image targets cannot be reached without reflection: the fit must stay a
        // proper rotation (positive determinant) rather than flip the face.
        let from = [
            Point::new(0.0, 0.0),
            Point::new(1.0, 0.0),
            Point::new(0.0, 1.0),
        ];
        let to = [
            Point::new(0.0, 0.0),
            Point::new(-1.0, 0.0),
            Point::new(0.0, 1.0),
        ];
        let fit = fit_similarity(&from, &to).unwrap();
        let [a, b, _, d, e, _] = fit.m;
        assert!(a * e - b * d >= 0.0);
    }

    #[test]
    fn degenerate_point_sets_have_no_similarity() {
        let p = [Point::new(1.0, 1.0), Point::new(1.0, 1.0)];
        assert!(fit_similarity(&p, &p).is_none());
        assert!(fit_similarity(&p[..1], &p[..1]).is_none());
    }

    #[test]
    fn inverse_undoes_the_map() {
        let m = Affine::rotated_crop(Point::new(100.0, 50.0), 64.0, -1.1, 192.0);
        let inv = m.invert().unwrap();
        let p = Point::new(13.0, 170.0);
        assert!(close(inv.apply(m.apply(p)), p));
    }

    #[test]
    fn rotated_crop_maps_the_crop_centre_to_the_given_centre() {
        let c = Point::new(321.0, 123.0);
        let m = Affine::rotated_crop(c, 150.0, 0.7, 192.0);
        assert!(close(m.apply(Point::new(96.0, 96.0)), c));
        assert!((m.scale() - 150.0 / 192.0).abs() < 1e-5);
    }

    #[test]
    fn iou_of_identical_boxes_is_one_and_of_disjoint_boxes_zero() {
        let a = BoundingBox::from_center(10.0, 10.0, 10.0, 10.0);
        let b = BoundingBox::from_center(30.0, 10.0, 10.0, 10.0);
        assert!((a.intersection_over_union(&a) - 1.0).abs() < 1e-6);
        assert_eq!(a.intersection_over_union(&b), 0.0);
        let c = BoundingBox::from_center(15.0, 10.0, 10.0, 10.0);
        assert!((a.intersection_over_union(&c) - 50.0 / 150.0).abs() < 1e-6);
    }
}
