//! The one-face rule of enrolment, 1:N search and compare: which face of a photo is meant, and
//! when a photo shows more than one face that could be. One function, used by the API and by
//! `facegate eval --open-set`, which measured it (docs/accuracy.md, "The one-face rule").
//!
//! The face meant is the largest one — or, when the border cuts the largest, the largest
//! uncut face if it is at least 3/4 of that width. Another face makes the photo ambiguous when
//! it is at least `ratio` of the meant face's width — unless it is a bystander: cut by the
//! image border while the face meant is not (a neighbour at the edge of a portrait), or
//! clearly smaller (under 3/4 of the width) and farther from the image centre than the face
//! meant by more than a fifth of the shorter side. Two people side by side at about the same
//! size, or a group, stay ambiguous. A faint face — a part of a face at the edge, found only
//! at the detector's border threshold — counts only when no other face does.

use super::geometry::BoundingBox;

/// What the rule makes of a photo's usable faces (those with a template).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OneFace {
    /// The face meant: its index in the boxes given.
    Chosen(usize),
    /// No usable face.
    NoFace,
    /// This many faces (2 or more) could be the one meant.
    Several(usize),
}

/// A rival under this fraction of the largest face's width may be a bystander by position.
const SMALLER: f32 = 0.75;
/// How much farther from the image centre than the face meant a smaller rival must be to be
/// off-centre, as a fraction of the image's shorter side.
const OFF_CENTRE: f32 = 0.2;

/// The face meant among `boxes` in a `width`×`height` photo (see the module's rule).
pub fn choose(boxes: &[BoundingBox], width: u32, height: u32, ratio: f32) -> OneFace {
    let (w, h) = (width as f32, height as f32);
    let widest = |uncut_only: bool| {
        boxes
            .iter()
            .enumerate()
            .filter(|(_, b)| !uncut_only || !b.cut_by_frame(w, h))
            .max_by(|a, b| a.1.width().total_cmp(&b.1.width()))
    };
    let Some(largest) = widest(false) else {
        return OneFace::NoFace;
    };
    // A face the border cuts is passed over for an uncut one of about its size (a neighbour
    // cut at the edge of a portrait), never for a much smaller one (a close selfie whose chin
    // is cut, with a passer-by in the background).
    let (main, meant) = match widest(true) {
        Some(uncut) if uncut.1.width() >= SMALLER * largest.1.width() => uncut,
        _ => largest,
    };
    let centre = super::geometry::Point::new(w / 2.0, h / 2.0);
    let meant_cut = meant.cut_by_frame(w, h);
    let meant_off = meant.center().distance(centre);
    let bystander = |b: &BoundingBox| {
        (b.cut_by_frame(w, h) && !meant_cut)
            || (b.width() < SMALLER * meant.width()
                && b.center().distance(centre) > meant_off + OFF_CENTRE * w.min(h))
    };
    let rivals = boxes
        .iter()
        .enumerate()
        .filter(|(i, b)| *i != main && b.width() >= ratio * meant.width() && !bystander(b))
        .count();
    if rivals > 0 {
        OneFace::Several(rivals + 1)
    } else {
        OneFace::Chosen(main)
    }
}

/// A usable face as the rule sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Usable {
    pub bbox: BoundingBox,
    /// Found only thanks to `detector.border_score_threshold` (a face the frame's edge cuts,
    /// scoring below `detector.score_threshold`; [`super::Engine::is_faint`]).
    pub faint: bool,
}

/// [`choose`] over the faces of `faces` that `usable` describes (those with a template);
/// `Chosen` is an index into `faces` itself. Faint faces are left out whenever a face is not
/// faint: a part of a face at the photo's edge is never the face meant nor a rival to it, even
/// when its box is larger than the subject's (measured: two portraits were refused for such a
/// neighbour before this rule).
pub fn choose_among<T>(
    faces: &[T],
    usable: impl Fn(&T) -> Option<Usable>,
    width: u32,
    height: u32,
    ratio: f32,
) -> OneFace {
    let described: Vec<(usize, Usable)> = faces
        .iter()
        .enumerate()
        .filter_map(|(i, f)| usable(f).map(|u| (i, u)))
        .collect();
    let any_sure = described.iter().any(|(_, u)| !u.faint);
    let (index, boxes): (Vec<usize>, Vec<BoundingBox>) = described
        .into_iter()
        .filter(|(_, u)| !(any_sure && u.faint))
        .map(|(i, u)| (i, u.bbox))
        .unzip();
    match choose(&boxes, width, height, ratio) {
        OneFace::Chosen(i) => OneFace::Chosen(index[i]),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn face(left: f32, top: f32, side: f32) -> BoundingBox {
        BoundingBox {
            left,
            top,
            right: left + side,
            bottom: top + side,
        }
    }

    #[test]
    fn faces_without_a_template_are_left_out_and_the_choice_indexes_the_faces_given() {
        let faces = [
            (face(150.0, 150.0, 120.0), false),
            (face(150.0, 150.0, 100.0), true),
        ];
        let usable = |f: &(BoundingBox, bool)| {
            f.1.then_some(Usable {
                bbox: f.0,
                faint: false,
            })
        };
        assert_eq!(
            choose_among(&faces, usable, 400, 400, 0.4),
            OneFace::Chosen(1)
        );
        assert_eq!(
            choose_among(&faces[..1], usable, 400, 400, 0.4),
            OneFace::NoFace
        );
    }

    #[test]
    fn a_faint_face_at_the_edge_is_neither_the_face_meant_nor_a_rival_unless_it_is_alone() {
        // A 250-px news crop: the subject (100 px, centred) and a faint 160-px box of a
        // neighbour cut by the right edge. Without the faint mark the larger cut box would be
        // the face meant and the subject its rival.
        let subject = face(75.0, 75.0, 100.0);
        let neighbour = face(170.0, 40.0, 160.0);
        let faces = [(neighbour, true), (subject, false)];
        let described = |f: &(BoundingBox, bool)| {
            Some(Usable {
                bbox: f.0,
                faint: f.1,
            })
        };
        assert_eq!(
            choose_among(&faces, described, 250, 250, 0.4),
            OneFace::Chosen(1)
        );
        let unmarked = |f: &(BoundingBox, bool)| {
            Some(Usable {
                bbox: f.0,
                faint: false,
            })
        };
        assert_eq!(
            choose_among(&faces, unmarked, 250, 250, 0.4),
            OneFace::Several(2)
        );
        // Alone, a faint face is the face meant.
        assert_eq!(
            choose_among(&faces[..1], described, 250, 250, 0.4),
            OneFace::Chosen(0)
        );
    }

    #[test]
    fn the_largest_face_is_chosen_unless_another_is_at_least_ratio_of_its_width() {
        assert_eq!(choose(&[], 400, 400, 0.4), OneFace::NoFace);
        let main = face(150.0, 150.0, 100.0);
        let small = [face(20.0, 150.0, 39.0), main];
        assert_eq!(choose(&small, 400, 400, 0.4), OneFace::Chosen(1));
        // Side by side at about the same size: two people, whatever their place.
        let pair = [face(30.0, 150.0, 95.0), face(200.0, 150.0, 100.0)];
        assert_eq!(choose(&pair, 400, 400, 0.4), OneFace::Several(2));
        let group = [main, face(40.0, 40.0, 90.0), face(270.0, 40.0, 90.0)];
        assert_eq!(choose(&group, 400, 400, 0.4), OneFace::Several(3));
        // With ratio 1.0 only an exact tie would count.
        assert_eq!(choose(&pair, 400, 400, 1.0), OneFace::Chosen(1));
    }

    /// Measured on the LFW-style evaluation set: 250×250 portraits whose rival "faces" are
    /// neighbours cut by the edge or smaller people at the side (boxes as the detector gave
    /// them).
    #[test]
    fn a_neighbour_cut_by_the_border_or_small_and_off_centre_is_a_bystander() {
        let al_gore = [
            face(74.0, 88.0, 104.0),
            BoundingBox {
                left: 179.0,
                top: 79.0,
                right: 250.0,
                bottom: 151.0,
            },
        ];
        assert_eq!(choose(&al_gore, 250, 250, 0.4), OneFace::Chosen(0));
        let ben_affleck = [
            face(83.0, 82.0, 110.0),
            BoundingBox {
                left: 0.0,
                top: 151.0,
                right: 57.0,
                bottom: 236.0,
            },
        ];
        assert_eq!(choose(&ben_affleck, 250, 250, 0.4), OneFace::Chosen(0));
        let adrien_brody = [face(75.0, 85.0, 101.0), face(180.0, 93.0, 60.0)];
        assert_eq!(choose(&adrien_brody, 250, 250, 0.4), OneFace::Chosen(0));
        // A neighbour cut by the edge but larger than the portrait's subject.
        let alex_sink = [
            face(73.0, 94.0, 97.0),
            BoundingBox {
                left: 144.0,
                top: 33.0,
                right: 250.0,
                bottom: 141.0,
            },
        ];
        assert_eq!(choose(&alex_sink, 250, 250, 0.4), OneFace::Chosen(0));
        let arturo_gatti = [face(86.0, 86.0, 101.0), face(39.0, 61.0, 54.0)];
        assert_eq!(choose(&arturo_gatti, 250, 250, 0.4), OneFace::Chosen(0));
        // The same smaller face near the middle is a second person.
        let beside = [face(60.0, 85.0, 101.0), face(150.0, 93.0, 70.0)];
        assert_eq!(choose(&beside, 250, 250, 0.4), OneFace::Several(2));
        // A close selfie whose chin is cut, with a small passer-by behind: the selfie's face.
        let selfie_with_passer_by = [
            BoundingBox {
                left: 40.0,
                top: 20.0,
                right: 220.0,
                bottom: 250.0,
            },
            face(10.0, 10.0, 40.0),
        ];
        assert_eq!(
            choose(&selfie_with_passer_by, 250, 250, 0.2),
            OneFace::Chosen(0)
        );
        // A selfie whose main face is cut too: a cut neighbour counts again.
        let selfie = [
            BoundingBox {
                left: 0.0,
                top: 40.0,
                right: 150.0,
                bottom: 190.0,
            },
            BoundingBox {
                left: 170.0,
                top: 60.0,
                right: 250.0,
                bottom: 150.0,
            },
        ];
        assert_eq!(choose(&selfie, 250, 250, 0.4), OneFace::Several(2));
    }
}
